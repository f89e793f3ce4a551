#!/usr/bin/env bash
# Web terminal keystroke latency (issue 8): one keystroke's echo round trip through meshgate's web terminal
#
#   WebSocket client → TLS → meshgate server --dev → mesh → meshgate agent → PTY (line discipline echo) → back
#
# against `ssh -tt` to a private sshd on 127.0.0.1 as the anchor, in one run on the same machine:
#
#   Python on a local PTY → ssh client → TCP → sshd → PTY (line discipline echo) → back
#
# Both run `stty -icanon && exec cat >/dev/null` in an 80×24 terminal and go through bench/lib/keystroke_rtt.py's
# one loop: COUNT keystrokes after WARMUP, one at a time, each a distinct printable byte, timed from writing it to
# reading its echo. A third row drives the same socket from headless Chromium (BROWSER=0 leaves it out). Every
# figure is printed as `result name=… value=… unit=…` and the section "Web terminal latency" of BENCHMARKS.md is
# replaced (bench/lib/terminal_report.py).
#
# Needs root (sshd, and the keystrokes run as root on both sides). Usage: bash bench/terminal.sh (make
# bench-terminal). MESHGATE_BIN: a release meshgate already built (skips the build). COUNT, WARMUP, BROWSER
# override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/machine.sh
source bench/lib/machine.sh
COUNT=${COUNT:-2000}
WARMUP=${WARMUP:-200}
BROWSER=${BROWSER:-1}
PYTHON=/usr/bin/python3
load=$(cut -d' ' -f1-3 /proc/loadavg)  # at the start, before the build: other jobs on the machine show here
command_line="bash bench/terminal.sh"

[ "$(id -u)" = 0 ] || { echo "terminal: needs root (a private sshd; keystrokes run as root on both sides)" >&2; exit 1; }
for tool in /usr/sbin/sshd ssh ssh-keygen "$PYTHON"; do
  command -v "$tool" >/dev/null || { echo "terminal: $tool not found (make deps-bench installs it)" >&2; exit 1; }
done
"$PYTHON" -c 'import websockets' 2>/dev/null || { echo "terminal: python3-websockets missing (make deps-bench)" >&2; exit 1; }
if [ "$BROWSER" = 1 ] && ! { [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && "$PYTHON" -c 'import selenium' 2>/dev/null; }; then
  echo "terminal: chromium, chromium-driver or python3-selenium missing (make deps-bench); BROWSER=0 skips that row" >&2
  exit 1
fi
# Without PAM, sshd refuses a locked account (a password field starting with "!") even for a key; "*" is fine.
case $(getent shadow root | cut -d: -f2) in
  '!'*) echo "terminal: root's account is locked ('!' in /etc/shadow); the anchor sshd runs without PAM and would refuse it" >&2
    exit 1 ;;
esac

WORK=$(mktemp -d /tmp/meshgate-terminal.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # through the EXIT trap, so cleanup runs on ^C and kill too
RESULTS=$WORK/results

if [ -z "${MESHGATE_BIN:-}" ]; then
  echo "== building meshgate (release)"
  swift build -c release --product meshgate >/dev/null
fi
MESHGATE=${MESHGATE_BIN:-$PWD/.build/release/meshgate}

# A port the kernel hands out now; sshd cannot bind :0 and report it, and --dev's access URL (and the relay's
# address in its DERP map) derives from its TLS address, so both get a fixed one.
free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Runs "$@" until it succeeds, for up to $1 seconds; if it never does, shows the log $2.
retry() {
  local deadline=$((SECONDS + $1)) log=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "terminal: gave up on: $*" >&2
      tail -n 20 "$log" >&2
      return 1
    fi
    sleep 0.2
  done
}

SSH_PORT=$(free_port)
echo "== anchor: sshd on 127.0.0.1:$SSH_PORT ($(ssh -V 2>&1))"
ssh-keygen -q -t ed25519 -N "" -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N "" -f "$WORK/client_key"
cp "$WORK/client_key.pub" "$WORK/authorized_keys"
mkdir -p /run/sshd  # its privilege separation directory; Debian's unit makes it, a fresh machine may not have it
# Nothing from /etc/ssh: keys only, no PAM (its session modules need a full login environment), no motd.
cat >"$WORK/sshd_config" <<CONF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
CONF
/usr/sbin/sshd -D -e -f "$WORK/sshd_config" 2>"$WORK/sshd.log" &
PIDS+=($!)
ssh_probe() {
  ssh -F /dev/null -p "$SSH_PORT" -i "$WORK/client_key" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1 true
}
retry 15 "$WORK/sshd.log" ssh_probe

TLS_PORT=$(free_port)
echo "== meshgate server --dev on 127.0.0.1:$TLS_PORT ($("$MESHGATE" --version 2>/dev/null || echo "version unknown"))"
# --log-level warning: no per-request lines. TLS only, with --dev's self-signed certificate, as the dashboard is
# reached; --dev creates the account and the demo workspace and runs the agent as its child.
"$MESHGATE" server --dev --tls-address "127.0.0.1:$TLS_PORT" --http-address "" --data-dir "$WORK/data" \
  --log-level warning >"$WORK/server.out" 2>"$WORK/server.log" &
PIDS+=($!)
retry 60 "$WORK/server.log" grep -q "Workspace:" "$WORK/server.out"
# The socket accepts only the access URL's origin: --dev's is https://localhost:PORT.
ACCESS_URL=$(awk '$1 == "URL:" {print $2; exit}' "$WORK/server.out")

# ssh first, then meshgate, then the browser: each alone on the machine while it runs.
measure() {
  echo "== $1: $COUNT keystrokes after $WARMUP"
  "$PYTHON" bench/lib/keystroke_rtt.py "$@" --count "$COUNT" --warmup "$WARMUP" | tee -a "$RESULTS"
}
measure ssh 127.0.0.1 "$SSH_PORT" --identity "$WORK/client_key"
measure meshgate 127.0.0.1 "$TLS_PORT" --credentials "$WORK/data/dev-credentials.json" --origin "$ACCESS_URL"
if [ "$BROWSER" = 1 ]; then
  measure browser 127.0.0.1 "$TLS_PORT" --credentials "$WORK/data/dev-credentials.json" --origin "$ACCESS_URL"
fi

machine="$(bench_machine); $(ssh -V 2>&1 | cut -d, -f1); Python $("$PYTHON" -c 'import platform; print(platform.python_version())') with websockets $("$PYTHON" -c 'import websockets; print(websockets.__version__)'); meshgate $(git rev-parse --short HEAD) (release); run on $(date -u '+%Y-%m-%d %H:%M') UTC, load average $load at the start"
# More than a core's worth of load before the run: other jobs shared the cores, and the figures paid for it.
if awk '{exit !($1 > 1)}' <<<"$load"; then machine="$machine, while other jobs (builds, tests) shared the machine"; fi
section=$("$PYTHON" bench/lib/terminal_report.py "$RESULTS" "$machine" "$command_line" "$COUNT" "$WARMUP")
"$PYTHON" bench/lib/replace_section.py "Web terminal latency" "$section"
echo "== BENCHMARKS.md updated"

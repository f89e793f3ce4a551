#!/usr/bin/env bash
# Workspace apps (issue 7): one app request through meshgate's full path (TLS → gateway → mesh → agent → app)
# against nginx reverse-proxying to the same app, in one run, on the same two network namespaces
# (bench/lib/wg-netns.sh):
#
#   $WGN_NS1, the gateway side                                $WGN_NS2, the workspace
#   wrk / h2load → 10.219.3.1:8443  nginx, TLS ─── veth ────→ 10.219.3.2:8080  nginx serving files   (A: direct)
#   wrk / h2load → 10.219.3.1:8444  nginx, TLS ─ wireguard-go → 10.219.4.2:8080  (MTU 1280)         (B: the anchor)
#   wrk / h2load → 10.219.3.1:9443  meshgate server ←─ veth ── meshgate agent → 127.0.0.1:8080       (meshgate)
#
# The app is nginx serving a 1 KiB and a 1 MiB file with keep-alive, so the proxies are the bottleneck. Every
# target is asked for the same URL, /@owner/dev/apps/bench/FILE with the same session cookie: meshgate's path
# app, and nginx strips the same prefix. Load: wrk (HTTP/1.1, --latency) and h2load (HTTP/2, p99 from its
# --log-file) for DURATION seconds after WARMUP seconds, at each of CONNECTIONS; the three targets run back to
# back for each case. Every figure is printed as `result name=… value=… unit=…` and the section "Workspace
# apps" of BENCHMARKS.md is replaced (bench/lib/apps_report.py).
#
# Needs root. Usage: bash bench/apps.sh (make bench-apps). MESHGATE_BIN: a release meshgate already built
# (skips the build); ANCHORS_ONLY=1 measures the nginx anchors alone. DURATION, WARMUP, CONNECTIONS,
# H2_STREAMS and WRK_THREADS override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/machine.sh
source bench/lib/machine.sh
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-16 64}
H2_STREAMS=${H2_STREAMS:-10}  # concurrent streams per HTTP/2 connection, as in bench/tls-front.sh
WRK_THREADS=${WRK_THREADS:-1}  # the load generator shares the 2 cores with everything it measures
ANCHORS_ONLY=${ANCHORS_ONLY:-0}
# The app token in meshgate's requests lasts 60 s and wrk cannot renew it.
[ $((WARMUP + DURATION)) -lt 60 ] || { echo "apps: WARMUP + DURATION must stay under 60 s" >&2; exit 1; }
PYTHON=/usr/bin/python3
load=$(cut -d' ' -f1-3 /proc/loadavg)  # at the start, before the build: other jobs on the machine show here
command_line="bash bench/apps.sh"
[ "$ANCHORS_ONLY" = 1 ] && command_line="ANCHORS_ONLY=1 $command_line"

# Fixed ports are safe: they are bound inside this run's own namespaces, never the root namespace.
GATEWAY=10.219.3.1
APP_PORT=8080
DIRECT_PORT=8443
WIREGUARD_PORT=8444
MESHGATE_PORT=9443
APP_PATH=/@owner/dev/apps/bench
PASSWORD="bench horse battery staple"

# shellcheck source=lib/wg-netns.sh
source bench/lib/wg-netns.sh
wgn_require
for tool in nginx wrk h2load curl openssl "$PYTHON"; do
  command -v "$tool" >/dev/null || { echo "apps: $tool not found (make deps-bench installs it)" >&2; exit 1; }
done
APPS_WORK=""
cleanup() {
  wgn_cleanup
  if [ -n "$APPS_WORK" ]; then rm -rf "$APPS_WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # through the EXIT trap, so cleanup runs on ^C and kill too

if [ "$ANCHORS_ONLY" != 1 ] && [ -z "${MESHGATE_BIN:-}" ]; then
  echo "== building meshgate (release)"
  swift build -c release --product meshgate >/dev/null
fi
MESHGATE=${MESHGATE_BIN:-$PWD/.build/release/meshgate}

echo "== namespaces $WGN_NS1 (gateway side) and $WGN_NS2 (workspace), wireguard-go between them (MTU $WGN_MTU)"
wgn_setup
wgn_use_direct
# Not under WGN_WORK (0700): nginx's workers run as nobody and must read the files.
APPS_WORK=$(mktemp -d /tmp/meshgate-apps.XXXXXX)
chmod 755 "$APPS_WORK"
RESULTS=$APPS_WORK/results

result() {
  echo "result name=$1 value=$2 unit=$3" | tee -a "$RESULTS"
}

mkdir -p "$APPS_WORK/files"
head -c 1024 /dev/zero | tr '\0' a >"$APPS_WORK/files/small.txt"
head -c 1048576 /dev/urandom >"$APPS_WORK/files/large.bin"
chmod 644 "$APPS_WORK/files/"*
(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=meshgate-bench \
  -addext "subjectAltName=IP:$GATEWAY" -keyout "$APPS_WORK/key.pem" -out "$APPS_WORK/cert.pem" 2>/dev/null)

# Writes an nginx configuration $1 whose http block holds the rest of the arguments, and starts nginx with it
# in namespace $2.
start_nginx() {
  local name=$1 namespace=$2
  shift 2
  mkdir -p "$APPS_WORK/$name"
  cat >"$APPS_WORK/$name/nginx.conf" <<CONF
worker_processes auto;
error_log $APPS_WORK/$name/error.log warn;
pid $APPS_WORK/$name/nginx.pid;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path $APPS_WORK/$name/body; proxy_temp_path $APPS_WORK/$name/proxy;
  fastcgi_temp_path $APPS_WORK/$name/fastcgi; uwsgi_temp_path $APPS_WORK/$name/uwsgi; scgi_temp_path $APPS_WORK/$name/scgi;
$*
}
CONF
  wgn_spawn ip netns exec "$namespace" nginx -c "$APPS_WORK/$name/nginx.conf"
}

# The same proxy configuration for both anchors: TLS with HTTP/2, and responses streamed through memory buffers,
# never spooled to temporary files. Upstream keep-alive keeps more idle connections than the most requests in
# flight (64 × H2_STREAMS): with fewer, nginx opens and closes upstream connections all run long and TIME_WAIT
# sockets run out of ports.
proxy_server() {
  local port=$1 upstream=$2 address=$3
  cat <<CONF
  upstream $upstream { server $address:$APP_PORT; keepalive 1024; }
  server {
    listen $GATEWAY:$port ssl http2;
    ssl_certificate $APPS_WORK/cert.pem;
    ssl_certificate_key $APPS_WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location $APP_PATH/ {
      proxy_pass http://$upstream/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffers 16 64k;
      proxy_busy_buffers_size 128k;
      proxy_max_temp_file_size 0;
    }
  }
CONF
}

echo "== the app: nginx in $WGN_NS2 on port $APP_PORT"
start_nginx app "$WGN_NS2" "  sendfile on; tcp_nopush on;
  server { listen $APP_PORT; root $APPS_WORK/files; }"
echo "== anchors: nginx in $WGN_NS1, direct on $DIRECT_PORT, over wireguard-go on $WIREGUARD_PORT"
start_nginx proxy "$WGN_NS1" "$(proxy_server "$DIRECT_PORT" app_direct 10.219.3.2)
$(proxy_server "$WIREGUARD_PORT" app_wireguard "$WGN_TUNNEL2")"

# An HTTP request from the gateway side: fetch URL [curl options…]; prints "STATUS BYTES".
fetch() {
  wgn_in "$WGN_NS1" curl -sk -o /dev/null -w '%{http_code} %{size_download}' "$@"
}

# Succeeds when URL $1 answers 200 with $2 bytes (cookie sent); prints the answer.
serving() {
  local answer
  answer=$(fetch -H "Cookie: $COOKIE" "$1" || true)
  echo "$1 answered '$answer'"
  [ "$answer" = "200 $2" ]
}

# Runs "$@" until it succeeds, for up to $1 seconds; if it never does, shows its last output and the logs named
# in WATCH_LOGS.
retry() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >"$APPS_WORK/last" 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "apps: gave up on: $*" >&2
      cat "$APPS_WORK/last" "${WATCH_LOGS[@]}" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}
WATCH_LOGS=()

# A JSON call to meshgate's API: api METHOD PATH [BODY]; prints the response body, fails on an HTTP error.
api() {
  wgn_in "$WGN_NS1" curl -sSk --max-time 15 --fail-with-body -X "$1" -H 'Content-Type: application/json' \
    ${SESSION:+-H "Meshgate-Session-Token: $SESSION"} ${3:+--data "$3"} "https://$GATEWAY:$MESHGATE_PORT$2"
}

json_field() { "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# Every target gets the same cookie (the anchors ignore it), so requests are the same size everywhere.
COOKIE="meshgate_session_token=none"
TARGETS="direct wireguard"
declare -A BASE_URL=([direct]="https://$GATEWAY:$DIRECT_PORT$APP_PATH" [wireguard]="https://$GATEWAY:$WIREGUARD_PORT$APP_PATH")

if [ "$ANCHORS_ONLY" != 1 ]; then
  echo "== meshgate server in $WGN_NS1 on $GATEWAY:$MESHGATE_PORT ($("$MESHGATE" --version 2>/dev/null || echo "version unknown"))"
  # --log-level warning: at info every request writes a log line (as in bench/tls-front.sh). Its own self-signed
  # certificate (P-256, like nginx's): with --tls-cert-file the server takes the certificate for a CA-signed one
  # and its DERP map pins nothing, so the agent's relay connection would fail verification.
  wgn_spawn ip netns exec "$WGN_NS1" "$MESHGATE" server --tls-address "$GATEWAY:$MESHGATE_PORT" --http-address "" \
    --access-url "https://$GATEWAY:$MESHGATE_PORT" --data-dir "$APPS_WORK/data" --log-level warning >"$APPS_WORK/server.log" 2>&1
  WATCH_LOGS=("$APPS_WORK/server.log")
  retry 30 serving "https://$GATEWAY:$MESHGATE_PORT/healthz" 2
  SESSION=""
  api POST /api/v2/users/first "{\"email\":\"owner@example.com\",\"username\":\"owner\",\"password\":\"$PASSWORD\"}" >/dev/null
  SESSION=$(api POST /api/v2/users/login "{\"email\":\"owner@example.com\",\"password\":\"$PASSWORD\"}" | json_field session_token)
  workspace=$(api POST /api/v2/workspaces '{"name":"dev"}' | json_field id)
  agent=$(api POST "/api/v2/workspaces/$workspace/agents" '{"name":"main"}')
  agent_id=$(json_field id <<<"$agent")
  fingerprint=$(cat "$APPS_WORK"/data/tls/*.crt | openssl x509 -noout -fingerprint -sha256 | cut -d= -f2)
  echo "== meshgate agent in $WGN_NS2, app bench=http://127.0.0.1:$APP_PORT (sharing: owner)"
  # The token goes in the environment, not on the command line (ps).
  MESHGATE_AGENT_TOKEN=$(json_field token <<<"$agent") wgn_spawn ip netns exec "$WGN_NS2" "$MESHGATE" agent \
    --url "https://$GATEWAY:$MESHGATE_PORT" --tls-fingerprint "$fingerprint" --app "bench=http://127.0.0.1:$APP_PORT,share=owner" \
    --log-level warning >"$APPS_WORK/agent.log" 2>&1
  WATCH_LOGS+=("$APPS_WORK/agent.log")
  # The mesh first, so that a failure below is the app proxy's.
  retry 30 api GET "/api/v2/workspaceagents/$agent_id/http-check?port=$APP_PORT&path=/small.txt"
  COOKIE="meshgate_session_token=$SESSION"
  TARGETS="$TARGETS meshgate"
  BASE_URL[meshgate]="https://$GATEWAY:$MESHGATE_PORT$APP_PATH"
fi

# The path meshgate's gateway uses to the agent (derp or direct), from the agent's state in the API.
meshgate_path() {
  api GET "/api/v2/workspaceagents/$agent_id" | "$PYTHON" -c 'import json, sys; print((json.load(sys.stdin).get("path") or {}).get("kind", "none"))'
}

for target in $TARGETS; do
  retry 30 serving "${BASE_URL[$target]}/small.txt" 1024
  retry 30 serving "${BASE_URL[$target]}/large.bin" 1048576
done
if [ "$ANCHORS_ONLY" != 1 ]; then result meshgate_path_before "$(meshgate_path)" kind; fi

# A wrk or h2load run's figures: results NAME_rps (2xx responses per second), NAME_p99 (ms) and NAME_errors
# (non-2xx responses, socket errors, timeouts).
measure_h1() {
  local name=$1 url=$2 connections=$3 log=$APPS_WORK/$1.wrk
  # --timeout: a slow response is still a response, not a timeout left out of the latencies.
  local wrk_command=(ip netns exec "$WGN_NS1" wrk -t"$WRK_THREADS" -c"$connections" --timeout "${DURATION}s" -H "Cookie: $COOKIE")
  "${wrk_command[@]}" -d"${WARMUP}s" "$url" >/dev/null
  "${wrk_command[@]}" -d"${DURATION}s" --latency "$url" >"$log"
  result "${name}_rps" "$(awk '/ requests in / {n = $1} /Non-2xx/ {bad = $NF} /^Requests\/sec:/ {rps = $2}
    END { printf "%.2f", n ? rps * (n - bad) / n : 0 }' "$log")" req/s
  # wrk prints latencies as 812.00us, 3.41ms or 1.02s (of every response, 2xx or not).
  result "${name}_p99" "$(awk '/ requests in / && $1 == 0 {print "nan"; exit}
    $1 == "99%" { v = $2; f = 1; if (v ~ /us$/) f = 0.001; else if (v ~ /ms$/) f = 1; else if (v ~ /s$/) f = 1000
    sub(/[a-z]+$/, "", v); printf "%.3f", v * f }' "$log")" ms
  result "${name}_errors" "$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$log")" requests
}

measure_h2() {
  local name=$1 url=$2 connections=$3 log=$APPS_WORK/$1.h2load
  rm -f "$log.requests"  # h2load appends to its log
  ip netns exec "$WGN_NS1" h2load -t1 -c"$connections" -m"$H2_STREAMS" -H "Cookie: $COOKIE" \
    --warm-up-time="${WARMUP}s" -D "${DURATION}s" --log-file="$log.requests" "$url" >"$log"
  # h2load counts a non-2xx response as failed, and its req/s counts every response: the succeeded share of it
  # is what served the app. Its log has one line per request completed after the warm-up: start (µs since
  # epoch), status, µs until the end of the response. The status is 0 for those whose head came during the
  # warm-up, successes and failures alike: they count towards p99 only in a run without failures.
  local errors answered='^2'
  errors=$(awk '/^requests:/ { print $10 + $12 + $14 }' "$log")
  [ "$errors" != 0 ] || answered='^(2|0$)'
  result "${name}_rps" "$(awk '/^finished in/ {rps = $4} /^requests:/ {done = $6; ok = $8}
    END { printf "%.2f", done ? rps * ok / done : 0 }' "$log")" req/s
  result "${name}_p99" "$(awk -F'\t' -v answered="$answered" '$2 ~ answered { print $3 }' "$log.requests" | sort -n | awk '{ t[NR] = $1 }
    END { i = int(NR * 0.99); if (i < NR * 0.99) i++; if (NR == 0) print "nan"; else printf "%.3f", t[i] / 1000 }')" ms
  result "${name}_errors" "$errors" requests
}

# Waits (up to 15 s) until the machine is nearly idle: a target left with requests in flight when the load
# generator stopped (wireguard-go's queues drain for seconds after a 1 MiB run) must not run on into the next
# target's measurement.
settle() {
  local deadline=$((SECONDS + 15)) idle
  while [ "$SECONDS" -lt "$deadline" ]; do
    # Idle share of the CPU over half a second, from /proc/stat's aggregate line.
    idle=$(awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; sleep 0.5;
      awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    idle=$(echo "$idle" | awk 'NR == 1 {i = $1; t = $2} NR == 2 {printf "%d", 100 * ($1 - i) / ($2 - t + 1)}')
    [ "$idle" -lt 85 ] || return 0
  done
}

# The session cookie and the signed app token meshgate sets on an app's response, as a browser sends them back:
# with the token a request skips the store. It lasts 60 s, so it is fetched afresh for each case.
browser_cookie() {
  local session="meshgate_session_token=$SESSION" token
  token=$(wgn_in "$WGN_NS1" curl -sk -o /dev/null -D - -H "Cookie: $session" "${BASE_URL[meshgate]}/small.txt" \
    | sed -n 's/^set-cookie: \(meshgate_signed_app_token=[^;]*\);.*/\1/Ip')
  echo "$session${token:+; $token}"
}

if [ "$ANCHORS_ONLY" != 1 ]; then
  case $(browser_cookie) in *meshgate_signed_app_token=*) result meshgate_app_token 1 cookie ;; *) result meshgate_app_token 0 cookie ;; esac
fi
for protocol in h1 h2; do
  for file in small.txt large.bin; do
    for connections in $CONNECTIONS; do
      if [ "$ANCHORS_ONLY" != 1 ]; then COOKIE=$(browser_cookie); fi
      for target in $TARGETS; do
        name="${target}_${protocol}_${file%%.*}_c$connections"
        echo "== $name"
        settle
        "measure_$protocol" "$name" "${BASE_URL[$target]}/$file" "$connections"
      done
    done
  done
done
if [ "$ANCHORS_ONLY" != 1 ]; then result meshgate_path_after "$(meshgate_path)" kind; fi

version() { "$@" 2>&1 | head -1 || true; }
machine="$(bench_machine); $(version nginx -v); $(version wrk -v | cut -d' ' -f1-2); h2load $(h2load --version | awk '{print $2}'); wireguard-go $(dpkg-query -W -f='${Version}' wireguard-go 2>/dev/null); meshgate $(git rev-parse --short HEAD); run on $(date -u +%Y-%m-%d), load average $load at the start"
section=$("$PYTHON" bench/lib/apps_report.py "$RESULTS" "$machine" "$command_line" "$DURATION" "$WARMUP" "$H2_STREAMS" "$WRK_THREADS")
"$PYTHON" bench/lib/replace_section.py "Workspace apps" "$section"
echo "== BENCHMARKS.md updated"

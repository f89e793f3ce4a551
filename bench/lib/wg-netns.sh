# Two wireguard-go peers in network namespaces, for benchmarks of kernel TCP over WireGuard (sourced by
# bench/kernel-tcp.sh; needs root, iproute2, wireguard-go and wireguard-tools).
#
#   root namespace                 $WGN_NS1                          $WGN_NS2
#   $WGN_HOST1 10.219.1.1 ──veth── 10.219.1.2
#   $WGN_HOST2 10.219.2.1 ──veth──────────────────────────────────── 10.219.2.2
#                                  10.219.3.1 ──────── veth ──────── 10.219.3.2      (the direct path)
#                                  wg: $WGN_WG1 10.219.4.1/24  ⇄  $WGN_WG2 10.219.4.2/24, MTU 1280
#
# Peer 1's endpoint for peer 2 is either peer 2's direct address (wgn_use_direct) or an impairment relay in the
# root namespace (wgn_use_relay HOST:PORT) whose upstream is peer 2's veth address; peer 2 roams to whatever
# address peer 1's packets come from. The namespaces are not routed to each other through the root namespace:
# the relay is the only way across, so no traffic can bypass it.
#
# Functions: wgn_setup, wgn_use_direct, wgn_use_relay, wgn_spawn (background process, killed at cleanup),
# wgn_cleanup (idempotent; call it from an EXIT trap). Everything is named with a per-run id, so a run never
# touches another's namespaces; a lock keeps two runs from fighting over the 10.219.0.0/16 addresses.

WGN_ID=${WGN_ID:-$(printf '%04x' $(($$ & 0xffff)))}
WGN_NS1=mgk1$WGN_ID
WGN_NS2=mgk2$WGN_ID
WGN_HOST1=mgk1h$WGN_ID
WGN_HOST2=mgk2h$WGN_ID
WGN_WG1=wgk1$WGN_ID
WGN_WG2=wgk2$WGN_ID
WGN_PORT1=51821
WGN_PORT2=51822
WGN_TUNNEL1=10.219.4.1
WGN_TUNNEL2=10.219.4.2
WGN_RELAY_HOST=10.219.1.1          # where a relay listens, reachable from peer 1
WGN_UPSTREAM=10.219.2.2:$WGN_PORT2  # a relay's upstream: peer 2 on its root-side veth
WGN_MTU=1280
WGN_PIDS=()
WGN_WORK=""
WGN_LOCK_FD=""

wgn_require() {
  [ "$(id -u)" = 0 ] || { echo "wg-netns: needs root (network namespaces, TUN devices)" >&2; return 1; }
  local tool
  for tool in ip wg wireguard-go; do
    command -v "$tool" >/dev/null || { echo "wg-netns: $tool not found (make deps-bench installs it)" >&2; return 1; }
  done
  [ -c /dev/net/tun ] || { echo "wg-netns: no /dev/net/tun" >&2; return 1; }
}

# Runs a command in namespace $1.
wgn_in() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Starts "$@" in the background and remembers its PID for cleanup; the PID is in WGN_LAST_PID.
wgn_spawn() {
  "$@" &
  WGN_LAST_PID=$!
  WGN_PIDS+=("$WGN_LAST_PID")
}

# Sends SIGTERM to one spawned process, waits for it (its exit status is ignored) and forgets its PID, so
# cleanup never signals a reused one.
wgn_stop() {
  local pid=$1 kept=() other
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for other in "${WGN_PIDS[@]}"; do [ "$other" = "$pid" ] || kept+=("$other"); done
  WGN_PIDS=("${kept[@]}")
}

# Waits up to $2 tenths of a second for file $1 to contain the pattern $3; gives up at once if the process
# $4 (optional) has exited.
wgn_wait_for() {
  local file=$1 tenths=$2 pattern=$3 pid=${4:-} _
  for _ in $(seq "$tenths"); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "wg-netns: no '$pattern' in $file:" >&2
  cat "$file" >&2 2>/dev/null || true
  return 1
}

# A veth pair from the root namespace into namespace $3: root end $1 with $4/24, namespace end $2 with $5/24.
wgn_veth() {
  ip link add "$1" type veth peer name "$2" netns "$3"
  ip addr add "$4/24" dev "$1"
  ip link set "$1" up
  wgn_in "$3" ip addr add "$5/24" dev "$2"
  wgn_in "$3" ip link set "$2" up
}

wgn_wireguard() {  # namespace, interface, tunnel address, listen port, private key file
  local ns=$1 interface=$2
  mkdir -p /run/wireguard
  # ip netns exec execs, so the PID is wireguard-go's own.
  wgn_spawn ip netns exec "$ns" wireguard-go -f "$interface" >>"$WGN_WORK/$interface.log" 2>&1
  local _
  for _ in $(seq 100); do wgn_in "$ns" wg show "$interface" >/dev/null 2>&1 && break; sleep 0.1; done
  wgn_in "$ns" wg show "$interface" >/dev/null
  wgn_in "$ns" wg set "$interface" listen-port "$4" private-key "$5"
  wgn_in "$ns" ip addr add "$3/24" dev "$interface"
  wgn_in "$ns" ip link set "$interface" mtu "$WGN_MTU" up
}

wgn_setup() {
  wgn_require
  exec {WGN_LOCK_FD}>/run/meshgate-wg-netns.lock
  flock -n "$WGN_LOCK_FD" || { echo "wg-netns: another run holds /run/meshgate-wg-netns.lock" >&2; return 1; }
  WGN_WORK=$(mktemp -d /tmp/meshgate-wg-netns.XXXXXX)

  ip netns add "$WGN_NS1"
  ip netns add "$WGN_NS2"
  wgn_in "$WGN_NS1" ip link set lo up
  wgn_in "$WGN_NS2" ip link set lo up
  wgn_veth "$WGN_HOST1" mgk1n "$WGN_NS1" 10.219.1.1 10.219.1.2
  wgn_veth "$WGN_HOST2" mgk2n "$WGN_NS2" 10.219.2.1 10.219.2.2
  # The direct path: both ends created inside the namespaces, never in the root one.
  ip link add mgk3a netns "$WGN_NS1" type veth peer name mgk3b netns "$WGN_NS2"
  wgn_in "$WGN_NS1" ip addr add 10.219.3.1/24 dev mgk3a
  wgn_in "$WGN_NS1" ip link set mgk3a up
  wgn_in "$WGN_NS2" ip addr add 10.219.3.2/24 dev mgk3b
  wgn_in "$WGN_NS2" ip link set mgk3b up

  (umask 077 && wg genkey >"$WGN_WORK/key1" && wg genkey >"$WGN_WORK/key2")
  local public1 public2
  public1=$(wg pubkey <"$WGN_WORK/key1")
  public2=$(wg pubkey <"$WGN_WORK/key2")
  wgn_wireguard "$WGN_NS1" "$WGN_WG1" "$WGN_TUNNEL1" "$WGN_PORT1" "$WGN_WORK/key1"
  wgn_wireguard "$WGN_NS2" "$WGN_WG2" "$WGN_TUNNEL2" "$WGN_PORT2" "$WGN_WORK/key2"
  wgn_in "$WGN_NS1" wg set "$WGN_WG1" peer "$public2" allowed-ips "$WGN_TUNNEL2/32"
  wgn_in "$WGN_NS2" wg set "$WGN_WG2" peer "$public1" allowed-ips "$WGN_TUNNEL1/32"
  WGN_PUBLIC1=$public1
  WGN_PUBLIC2=$public2
}

# Peer 1 reaches peer 2 over the direct veth, and peer 2 answers there.
wgn_use_direct() {
  wgn_in "$WGN_NS1" wg set "$WGN_WG1" peer "$WGN_PUBLIC2" endpoint "10.219.3.2:$WGN_PORT2"
  wgn_in "$WGN_NS2" wg set "$WGN_WG2" peer "$WGN_PUBLIC1" endpoint "10.219.3.1:$WGN_PORT1"
  wgn_check_tunnel
}

# Peer 1 reaches peer 2 through the relay at $1 (HOST:PORT); peer 2 roams to the relay once peer 1's packets
# arrive from it (the ping below sends the first).
wgn_use_relay() {
  wgn_in "$WGN_NS1" wg set "$WGN_WG1" peer "$WGN_PUBLIC2" endpoint "$1"
  wgn_check_tunnel
}

# A ping through the tunnel (up to 5 s, which covers a handshake through a lossy relay).
wgn_check_tunnel() {
  local _
  for _ in $(seq 10); do
    wgn_in "$WGN_NS1" ping -c 1 -W 0.5 -q "$WGN_TUNNEL2" >/dev/null 2>&1 && return 0
  done
  echo "wg-netns: no ping through the tunnel" >&2
  wgn_in "$WGN_NS1" wg show >&2 || true
  wgn_in "$WGN_NS2" wg show >&2 || true
  return 1
}

# Kills every spawned process, then removes the namespaces (and with them the veths and TUN devices).
wgn_cleanup() {
  local pid
  for pid in "${WGN_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${WGN_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  WGN_PIDS=()
  ip netns del "$WGN_NS1" 2>/dev/null || true
  ip netns del "$WGN_NS2" 2>/dev/null || true
  # Root-side veth ends go with their peers; these only matter if setup stopped halfway.
  ip link del "$WGN_HOST1" 2>/dev/null || true
  ip link del "$WGN_HOST2" 2>/dev/null || true
  rm -f "/run/wireguard/$WGN_WG1.sock" "/run/wireguard/$WGN_WG2.sock"
  if [ -n "$WGN_WORK" ]; then rm -rf "$WGN_WORK"; WGN_WORK=""; fi
  if [ -n "$WGN_LOCK_FD" ]; then exec {WGN_LOCK_FD}>&-; WGN_LOCK_FD=""; fi
}

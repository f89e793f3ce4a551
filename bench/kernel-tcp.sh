#!/usr/bin/env bash
# The kernel-TCP anchor for meshgate's mesh streams: Linux TCP between two wireguard-go peers (MTU 1280) in
# network namespaces (bench/lib/wg-netns.sh), with `meshgate-bench impair` (release) as the UDP link between them.
#
#   0. the relay itself on loopback: delivered share and packets/s at 50k and 100k offered packets/s
#   1. bulk: one iperf3 TCP stream (cubic, then bbr), direct (veth between the namespaces) and through the
#      relay, no impairment
#   2. the same through the relay with IMPAIRMENT (default --delay 25ms --loss 0.01 each way: 50 ms RTT, 1 % loss)
#   3. request/response: 64-byte request → 64-byte response, sequential on one connection (bench/lib/tcp_rr.py),
#      direct, relay, impaired
#
# Every figure is printed as `result name=… value=… unit=…` (grep '^result ' for a later script computing ratios
# against meshgate's own streams in the same run) and the section "Kernel TCP over wireguard-go" of
# BENCHMARKS.md is replaced. Needs root. Usage: bash bench/kernel-tcp.sh (make bench-kernel-tcp);
# BULK_SECONDS, IMPAIRED_BULK_SECONDS, RR_COUNT, IMPAIRED_RR_COUNT, IMPAIRMENT and CONGESTION override.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/machine.sh
source bench/lib/machine.sh
BULK_SECONDS=${BULK_SECONDS:-10}
IMPAIRED_BULK_SECONDS=${IMPAIRED_BULK_SECONDS:-20}
RR_COUNT=${RR_COUNT:-2000}
IMPAIRED_RR_COUNT=${IMPAIRED_RR_COUNT:-500}  # each round trip takes ≥ 50 ms there
read -r -a IMPAIRMENT <<<"${IMPAIRMENT:---delay 25ms --loss 0.01}"
# Bulk runs once per algorithm: cubic is the loss-based peer of meshgate's RFC 9002 controller; bbr is this
# kernel's default and shrugs off random loss.
CONGESTION=${CONGESTION:-cubic bbr}
PYTHON=/usr/bin/python3
load=$(cut -d' ' -f1-3 /proc/loadavg)  # at the start, before the build: other jobs on the machine show here

# shellcheck source=lib/wg-netns.sh
source bench/lib/wg-netns.sh
wgn_require
for tool in iperf3 ping "$PYTHON"; do
  command -v "$tool" >/dev/null || { echo "kernel-tcp: $tool not found (make deps-bench installs it)" >&2; exit 1; }
done
trap wgn_cleanup EXIT
trap 'exit 130' INT TERM  # through the EXIT trap, so cleanup runs on ^C and kill too

# MESHGATE_BENCH_BIN: a meshgate-bench already built in release (skips the build).
if [ -z "${MESHGATE_BENCH_BIN:-}" ]; then
  echo "== building meshgate-bench (release)"
  swift build -c release --product meshgate-bench >/dev/null
fi
BENCH=${MESHGATE_BENCH_BIN:-$PWD/.build/release/meshgate-bench}

echo "== namespaces $WGN_NS1 and $WGN_NS2, wireguard-go $WGN_WG1 ⇄ $WGN_WG2 (MTU $WGN_MTU)"
wgn_setup
RESULTS=$WGN_WORK/results

result() {
  echo "result name=$1 value=$2 unit=$3" | tee -a "$RESULTS"
}

# Starts the relay in the root namespace on $2:0 towards $3 with the flags after them. Sets RELAY_PID,
# RELAY_PORT and RELAY_LOG ($1 names the log).
start_relay() {
  local label=$1 listen=$2 upstream=$3
  shift 3
  RELAY_LOG=$WGN_WORK/relay-$label.log
  wgn_spawn "$BENCH" impair --listen "$listen:0" --upstream "$upstream" "$@" >"$RELAY_LOG" 2>&1
  RELAY_PID=$WGN_LAST_PID
  wgn_wait_for "$RELAY_LOG" 100 "^impair: listening on" "$RELAY_PID"
  RELAY_PORT=$(sed -n 's/^impair: listening on [^ ]*:\([0-9]*\) upstream.*/\1/p' "$RELAY_LOG")
}

# Stops the relay (SIGTERM) and shows its counters.
stop_relay() {
  wgn_stop "$RELAY_PID"
  grep -v "listening on" "$RELAY_LOG" | sed 's/^/   /'
}

# A counter from the relay's exit lines: relay_counter DIRECTION NAME.
relay_counter() {
  awk -v direction="$1" -v name="$2" '$1 == "impair:" && $2 == direction {
    for (i = 3; i <= NF; i++) { split($i, pair, "="); if (pair[1] == name) print pair[2] } }' "$RELAY_LOG"
}

# Offers RATE packets/s of 1280 bytes for 5 s through a zero-impairment relay on loopback to a sink.
relay_loopback() {
  local rate=$1 label=$(($1 / 1000))k log=$WGN_WORK/load-$(($1 / 1000))k
  wgn_spawn "$PYTHON" bench/lib/udp_load.py sink 127.0.0.1 0 >"$log.sink" 2>&1
  local sink=$WGN_LAST_PID
  wgn_wait_for "$log.sink" 50 "^ready" "$sink"
  start_relay "loopback-$label" 127.0.0.1 "127.0.0.1:$(sed -n 's/^ready //p' "$log.sink")"
  "$PYTHON" bench/lib/udp_load.py send 127.0.0.1 "$RELAY_PORT" --rate "$rate" --seconds 5 >"$log.send"
  wgn_wait_for "$log.sink" 100 "^received"
  wgn_stop "$sink"
  stop_relay
  local sent received seconds
  read -r _ sent _ <"$log.send"
  read -r _ received seconds < <(grep '^received' "$log.sink")
  result "relay_loopback_${label}_offered" "$sent" packets
  result "relay_loopback_${label}_delivered" "$(awk -v r="$received" -v s="$sent" 'BEGIN { printf "%.2f", 100 * r / s }')" %
  result "relay_loopback_${label}_rate" "$(awk -v r="$received" -v t="$seconds" 'BEGIN { printf "%.0f", r / t }')" packets/s
}

# One iperf3 TCP stream from namespace 1 to namespace 2 through the tunnel for $2 seconds, once per congestion
# control in CONGESTION (the sender's decides); results are named ${1}_${algorithm}_….
bulk() {
  local algorithm
  for algorithm in $CONGESTION; do bulk_once "${1}_$algorithm" "$2" "$algorithm"; done
}

bulk_once() {
  local name=$1 seconds=$2 algorithm=$3 log=$WGN_WORK/iperf-$1
  wgn_spawn ip netns exec "$WGN_NS2" iperf3 --server --one-off --forceflush --bind "$WGN_TUNNEL2" --port 5201 >"$log.server" 2>&1
  local server=$WGN_LAST_PID
  wgn_wait_for "$log.server" 50 "Server listening" "$server"
  ip netns exec "$WGN_NS1" iperf3 --client "$WGN_TUNNEL2" --port 5201 --time "$seconds" --congestion "$algorithm" --json >"$log.json"
  wgn_stop "$server"
  local mbits retransmits
  read -r mbits retransmits < <("$PYTHON" -c '
import json, sys
end = json.load(open(sys.argv[1]))["end"]
print("%.1f %d" % (end["sum_received"]["bits_per_second"] / 1e6, end["sum_sent"].get("retransmits", 0)))' "$log.json")
  result "${name}_throughput" "$mbits" Mbit/s
  result "${name}_retransmits" "$retransmits" segments
}

# $2 sequential 64-byte request/response round trips on one TCP connection through the tunnel.
request_response() {
  local name=$1 count=$2 log=$WGN_WORK/rr-$1
  wgn_spawn ip netns exec "$WGN_NS2" "$PYTHON" bench/lib/tcp_rr.py server "$WGN_TUNNEL2" 7001 >"$log.server" 2>&1
  local server=$WGN_LAST_PID
  wgn_wait_for "$log.server" 50 "^ready" "$server"
  ip netns exec "$WGN_NS1" "$PYTHON" bench/lib/tcp_rr.py client "$WGN_TUNNEL2" 7001 --name "$name" --count "$count" | tee -a "$RESULTS"
  wgn_stop "$server"
}

echo "== the relay on loopback (1280-byte datagrams, no impairment)"
relay_loopback 50000
relay_loopback 100000

echo "== direct: wireguard-go over a veth between the namespaces"
wgn_use_direct
bulk bulk_direct "$BULK_SECONDS"
request_response rr_direct "$RR_COUNT"

echo "== through the relay, no impairment"
start_relay plain "$WGN_RELAY_HOST" "$WGN_UPSTREAM"
wgn_use_relay "$WGN_RELAY_HOST:$RELAY_PORT"
bulk bulk_relay "$BULK_SECONDS"
request_response rr_relay "$RR_COUNT"
stop_relay
result relay_overflowed $(($(relay_counter forward overflowed) + $(relay_counter backward overflowed))) packets

echo "== through the relay, ${IMPAIRMENT[*]} each way"
start_relay impaired "$WGN_RELAY_HOST" "$WGN_UPSTREAM" "${IMPAIRMENT[@]}"
wgn_use_relay "$WGN_RELAY_HOST:$RELAY_PORT"
bulk bulk_impaired "$IMPAIRED_BULK_SECONDS"
request_response rr_impaired "$IMPAIRED_RR_COUNT"
stop_relay
for direction in forward backward; do
  result "impaired_${direction}_lost" "$(awk -v l="$(relay_counter "$direction" lost)" -v r="$(relay_counter "$direction" received)" \
    'BEGIN { printf "%.2f", 100 * l / r }')" %
done

machine="$(bench_machine); $(swift --version 2>/dev/null | head -1); $(iperf3 --version | head -1); wireguard-go $(dpkg-query -W -f='${Version}' wireguard-go 2>/dev/null); default TCP congestion control $(cat /proc/sys/net/ipv4/tcp_congestion_control); run on $(date -u +%Y-%m-%d), load average $load at the start"
section=$("$PYTHON" bench/lib/kernel_tcp_report.py "$RESULTS" "$machine" "${IMPAIRMENT[*]}" "$CONGESTION" "$BULK_SECONDS" "$IMPAIRED_BULK_SECONDS")
"$PYTHON" bench/lib/replace_section.py "Kernel TCP over wireguard-go" "$section"
echo "== BENCHMARKS.md updated"

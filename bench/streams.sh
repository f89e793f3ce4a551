#!/usr/bin/env bash
# Mesh streams against their anchors, in one run (make bench-streams, root for the kernel anchor):
#   (a) bulk throughput of one stream between two MeshNodes on loopback, against libsodium's seal speed (the
#       crypto limit, measured in the same process) and against kernel TCP over two wireguard-go peers in
#       network namespaces (bench/kernel-tcp.sh, run first);
#   (b) the same at 50 ms RTT and 1 % loss each way through the impairment relay, for both;
#   (c) 64-byte request/response latency, direct and impaired.
# Writes the section "Mesh streams" of BENCHMARKS.md. ALGORITHMS, BULK_BYTES, IMPAIRED_BYTES (loss-based
# controllers) and IMPAIRED_BYTES_BBR override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=/usr/bin/python3
ALGORITHMS=${ALGORITHMS:-newreno cubic bbr}
BULK_BYTES=${BULK_BYTES:-400000000}
IMPAIRED_BYTES=${IMPAIRED_BYTES:-5000000}
IMPAIRED_BYTES_BBR=${IMPAIRED_BYTES_BBR:-100000000}
load=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# MESHGATE_BENCH_BIN: a meshgate-bench already built in release (skips the build).
if [ -z "${MESHGATE_BENCH_BIN:-}" ]; then
  echo "== building meshgate-bench (release)"
  swift build -c release --product meshgate-bench >/dev/null
fi
BENCH=${MESHGATE_BENCH_BIN:-$PWD/.build/release/meshgate-bench}

echo "== kernel TCP over wireguard-go (bench/kernel-tcp.sh)"
bash bench/kernel-tcp.sh | tee "$work/kernel.log"
grep '^result ' "$work/kernel.log" >"$work/kernel.results"

for algorithm in $ALGORITHMS; do
  if ! "$BENCH" streams --congestion "$algorithm" --bytes 1 --rr-count 1 >/dev/null 2>&1; then
    echo "== $algorithm: not available in this build, skipped"
    continue
  fi
  echo "== meshgate streams, $algorithm, loopback"
  "$BENCH" streams --congestion "$algorithm" --bytes "$BULK_BYTES" --rr-count 2000 | tee "$work/direct-$algorithm.json"
  impaired=$IMPAIRED_BYTES
  [ "$algorithm" = bbr ] && impaired=$IMPAIRED_BYTES_BBR
  echo "== meshgate streams, $algorithm, through the relay with --delay 25ms --loss 0.01 each way"
  "$BENCH" streams --congestion "$algorithm" --bytes "$impaired" --rr-count 300 --delay 25ms --loss 0.01 --timeout 600s \
    | tee "$work/impaired-$algorithm.json"
done

machine="$(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -sr); $(swift --version 2>/dev/null | head -1); run on $(date -u +%Y-%m-%d), load average $load at the start"
section=$("$PYTHON" bench/lib/streams_report.py "$work" "$machine")
"$PYTHON" bench/lib/replace_section.py "Mesh streams" "$section"
echo "== BENCHMARKS.md updated"

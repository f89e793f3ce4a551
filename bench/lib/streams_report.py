"""Builds the "Mesh streams" section of BENCHMARKS.md from one bench/streams.sh run.

Usage: streams_report.py WORKDIR MACHINE. WORKDIR holds kernel.results (`result name=… value=… unit=…` lines
from bench/kernel-tcp.sh) and direct-ALGORITHM.json / impaired-ALGORITHM.json from `meshgate-bench streams`.
"""
import glob
import json
import os
import sys

work, machine = sys.argv[1], sys.argv[2]
kernel = {}
for line in open(os.path.join(work, "kernel.results")):
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    kernel[fields["name"]] = float(fields["value"])


def load(kind):
    runs = {}
    for path in sorted(glob.glob(os.path.join(work, f"{kind}-*.json"))):
        runs[os.path.basename(path)[len(kind) + 1:-5]] = json.load(open(path))
    return runs


direct, impaired = load("direct"), load("impaired")
mb = lambda mbit: mbit / 8  # Mbit/s → MB/s
k_direct = {cc: mb(kernel.get(f"bulk_direct_{cc}_throughput", 0)) for cc in ("cubic", "bbr")}
k_impaired = {cc: mb(kernel.get(f"bulk_impaired_{cc}_throughput", 0)) for cc in ("cubic", "bbr")}
ratio = lambda a, b: f"{a / b:.2f}×" if b else "n/a"

out = ["## Mesh streams", ""]
out.append("`bash bench/streams.sh` (`make bench-streams`, root): one mesh stream between two MeshNodes in one process "
           "(an event loop each, WireGuard over loopback UDP, release build) against libsodium's ChaCha20-Poly1305 seal of "
           "1280-byte datagrams on one core (the crypto limit) and against kernel TCP over two wireguard-go peers "
           "(`bench/kernel-tcp.sh`, run first in the same invocation; its own section above is from that run). "
           "Impaired: the nodes talk through MeshgateTesting's impairment relay in-process with `--delay 25ms --loss 0.01` "
           "each way (50 ms RTT), the same relay code the kernel anchor goes through. Request/response: 64-byte request → "
           "64-byte response, sequential on one stream (Swift client; the kernel anchor's client is Python, so its "
           "latencies include Python's per-call overhead).")
out.append("")
out.append(f"Machine: {machine}.")
out.append("")
out.append("(a) bulk, loopback / veth:")
out.append("")
out.append("| controller | meshgate | ÷ libsodium seal | ÷ kernel TCP cubic | ÷ kernel TCP bbr | lost packets |")
out.append("|---|---:|---:|---:|---:|---:|")
for cc, run in direct.items():
    out.append(f"| {cc} | {run['bulk_mb_s']:.1f} MB/s ({run['bulk_bytes'] / 1e6:.0f} MB) | {ratio(run['bulk_mb_s'], run['seal_mb_s'])} "
               f"(seal {run['seal_mb_s']:.0f} MB/s) | {ratio(run['bulk_mb_s'], k_direct['cubic'])} ({k_direct['cubic']:.1f} MB/s) | "
               f"{ratio(run['bulk_mb_s'], k_direct['bbr'])} ({k_direct['bbr']:.1f} MB/s) | {run.get('bulk_packets_lost', 0)} |")
out.append("")
out.append("(b) bulk at 50 ms RTT, 1 % loss each way:")
out.append("")
out.append("| controller | meshgate | ÷ kernel TCP cubic | ÷ kernel TCP bbr | retransmitted |")
out.append("|---|---:|---:|---:|---:|")
for cc, run in impaired.items():
    out.append(f"| {cc} | {run['bulk_mb_s'] * 8:.1f} Mbit/s ({run['bulk_bytes'] / 1e6:.0f} MB in {run['bulk_seconds']:.1f} s) | "
               f"{ratio(run['bulk_mb_s'], k_impaired['cubic'])} ({k_impaired['cubic'] * 8:.1f} Mbit/s) | "
               f"{ratio(run['bulk_mb_s'], k_impaired['bbr'])} ({k_impaired['bbr'] * 8:.1f} Mbit/s) | "
               f"{run.get('bulk_bytes_retransmitted', 0) / 1e6:.2f} MB |")
out.append("")
out.append("(c) request/response, p50 / p99:")
out.append("")
out.append("| path | meshgate (controller) | kernel TCP (Python client) | p50 ratio |")
out.append("|---|---:|---:|---:|")
for label, runs, key in (("loopback / direct", direct, "rr_direct"), ("50 ms RTT, 1 % loss", impaired, "rr_impaired")):
    kp50, kp99 = kernel.get(f"{key}_p50", 0), kernel.get(f"{key}_p99", 0)
    for cc, run in runs.items():
        if "rr_p50_us" in run:
            out.append(f"| {label} | {run['rr_p50_us'] / 1000:.3f} / {run['rr_p99_us'] / 1000:.3f} ms ({cc}, {run['rr_count']} round trips) | "
                       f"{kp50 / 1000:.3f} / {kp99 / 1000:.3f} ms | {ratio(run['rr_p50_us'], kp50)} |")
out.append("")
out.append("Choice of controller: BBR is the default. Under random loss a loss-based controller is held to the Mathis bound (CUBIC and NewReno land at kernel CUBIC's 2.5 Mbit/s), while BBR keeps its rate; on loopback it gives up some throughput to pacing and its smaller window. p99 under loss is one RTT plus a probe timeout (~180 ms) for meshgate and a TCP RTO (≥ 200 ms) for the kernel.")
print("\n".join(out))

"""The BENCHMARKS.md section of bench/kernel-tcp.sh, from its `result name=… value=… unit=…` lines.

  kernel_tcp_report.py RESULTS MACHINE IMPAIRMENT CONGESTION BULK_SECONDS IMPAIRED_BULK_SECONDS
"""

import sys

from results import read


def main() -> None:
    path, machine, impairment, congestion, bulk_seconds, impaired_seconds = sys.argv[1:7]
    algorithms = congestion.split()
    r = read(path)

    def bulk(path: str) -> str:
        return " | ".join(f"{r[f'{path}_{a}_throughput']:.1f} Mbit/s ({r[f'{path}_{a}_retransmits']:.0f} retransmits)"
                          for a in algorithms)

    def rr(name: str) -> str:
        return f"{r[name + '_p50'] / 1000:.3f} / {r[name + '_p99'] / 1000:.3f} ms ({r[name + '_round_trips']:.0f} round trips)"

    # Mathis et al. (1997): a loss-based TCP's ceiling is MSS/RTT · 1.22/√p. MSS at MTU 1280: 1280 − 20 (IPv4)
    # − 20 (TCP) − 12 (timestamps) = 1228 bytes.
    words = impairment.split()
    delay = next((words[i + 1] for i, w in enumerate(words[:-1]) if w == "--delay"), None)
    loss = next((float(words[i + 1]) for i, w in enumerate(words[:-1]) if w == "--loss"), 0.0)
    mathis = ""
    if delay and delay.endswith("ms") and loss > 0:
        rtt = 2 * float(delay[:-2]) / 1000
        mathis = (f" The Mathis bound for that path (MSS 1228 bytes, RTT {rtt * 1000:.0f} ms, p = {loss}) is "
                  f"{1228 * 8 / rtt * 1.22 / loss ** 0.5 / 1e6:.2f} Mbit/s: a loss-based stream should land near it.")
    overflow = (f"{r['relay_overflowed']:.0f}" if r["relay_overflowed"] else
                "none, so the retransmits without impairment come from drops in wireguard-go's or the kernel's queues (CPU-bound)")
    loopback = "\n".join(
        f"| {label} packets/s offered | {r[f'relay_loopback_{label}_delivered']:.2f} % "
        f"| {r[f'relay_loopback_{label}_rate']:.0f} packets/s |"
        for label in ("50k", "100k")
    )
    print(f"""## Kernel TCP over wireguard-go

`bash bench/kernel-tcp.sh` (`make bench-kernel-tcp`, root): the anchor for meshgate's mesh streams. Linux TCP
between two namespaces joined by Debian's wireguard-go (MTU 1280), either over a veth between them
(direct) or through `meshgate-bench impair` (MeshgateTesting's UDP impairment relay, release) in the root
namespace. Bulk: one `iperf3` stream ({bulk_seconds} s, {impaired_seconds} s impaired), once per congestion
control. Request/response: 64-byte request → 64-byte response, sequential on one connection
(`bench/lib/tcp_rr.py`, Python, TCP_NODELAY, the default congestion control).
Impaired: `{impairment}` on each direction. Both wireguard-go processes, the relay and the load share the
machine's cores.

Machine: {machine}.

| path | {" | ".join(f"bulk, {a}" for a in algorithms)} | request/response p50 / p99 |
|---|{"---:|" * len(algorithms)}---:|
| direct (veth) | {bulk('bulk_direct')} | {rr('rr_direct')} |
| relay, no impairment | {bulk('bulk_relay')} | {rr('rr_relay')} |
| relay, `{impairment}` | {bulk('bulk_impaired')} | {rr('rr_impaired')} |

Loss the relay applied in the impaired run: {r['impaired_forward_lost']:.2f} % forward, {r['impaired_backward_lost']:.2f} % backward.{mathis}
Packets the relay itself could not send in the unimpaired run (queue full or socket unwritable): {overflow}.
With loss on both directions about 2 % of round trips lose a segment and wait for a retransmission (tail-loss
probe or RTO, ≥ 200 ms), so an impaired p99 over a few hundred round trips sits at that boundary and moves
between one RTT and an RTO from run to run; the maximum, {r['rr_impaired_max'] / 1000:.0f} ms here, shows the RTO.

The relay alone on loopback (1280-byte datagrams from a paced Python sender to a Python sink, 5 s, no impairment):

| load | delivered | delivered rate |
|---|---:|---:|
{loopback}
""")


if __name__ == "__main__":
    main()

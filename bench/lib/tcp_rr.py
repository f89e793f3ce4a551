"""TCP request/response latency: SIZE-byte requests answered by SIZE-byte responses, one at a time on one
connection (TCP_NODELAY on both ends), like netperf's TCP_RR. Used by bench/kernel-tcp.sh.

  tcp_rr.py server HOST PORT [--size 64]          prints "ready" once listening; serves one connection
  tcp_rr.py client HOST PORT --name NAME [--count 2000] [--warmup 50] [--size 64]

The client prints machine-readable lines: `result name=NAME_p50 value=… unit=us` (also _p99, _mean, _max)
and `result name=NAME_round_trips value=COUNT unit=count`. Figures include Python's own per-call overhead,
a few microseconds, which is far below any figure through a WireGuard tunnel.
"""

import socket
import sys
import time

from bench_cli import run
from results import percentile


def receive_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def serve(arguments) -> None:
    host, port, size = arguments.host, arguments.port, arguments.size
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(1)
    print("ready", flush=True)
    connection, _ = listener.accept()
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    response = bytes(size)
    while True:
        request = receive_exactly(connection, size)
        if len(request) < size:
            break
        connection.sendall(response)
    connection.close()
    listener.close()


def client(arguments) -> None:
    host, port, name, count, warmup, size = (arguments.host, arguments.port, arguments.name, arguments.count,
                                             arguments.warmup, arguments.size)
    connection = socket.create_connection((host, port), timeout=30)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = bytes(size)
    samples = []
    for index in range(warmup + count):
        start = time.perf_counter_ns()
        connection.sendall(request)
        if len(receive_exactly(connection, size)) < size:
            sys.exit(f"tcp_rr: server closed after {index} round trips")
        if index >= warmup:
            samples.append((time.perf_counter_ns() - start) / 1000)
    connection.close()
    samples.sort()
    for label, value in [("p50", percentile(samples, 0.50)), ("p99", percentile(samples, 0.99)),
                         ("mean", sum(samples) / len(samples)), ("max", samples[-1])]:
        print(f"result name={name}_{label} value={value:.1f} unit=us")
    print(f"result name={name}_round_trips value={len(samples)} unit=count")


def options(parser) -> None:
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--name", default="rr")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)


if __name__ == "__main__":
    run(__doc__, {"server": serve, "client": client}, options)

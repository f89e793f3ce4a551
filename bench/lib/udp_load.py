"""Paced UDP load through the impairment relay on loopback: does it keep up with a given packet rate?
Used by bench/kernel-tcp.sh before the namespaces exist.

  udp_load.py sink HOST PORT [--idle 1.0]   prints "ready PORT" (the bound one), counts datagrams until --idle seconds pass with
                                           none (after the first), then prints "received COUNT SECONDS"
  udp_load.py send HOST PORT --rate PACKETS_PER_S --seconds S [--size 1280]
                                           sends in 1 ms bursts, prints "sent COUNT SECONDS"
"""

import socket
import time

from bench_cli import run


def sink(arguments) -> None:
    host, port, idle = arguments.host, arguments.port, arguments.idle
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    receiver.bind((host, port))
    print(f"ready {receiver.getsockname()[1]}", flush=True)
    receiver.settimeout(None)
    receiver.recv(65536)
    count, first = 1, time.monotonic()
    last = first
    receiver.settimeout(idle)
    while True:
        try:
            receiver.recv(65536)
        except socket.timeout:
            break
        count += 1
        last = time.monotonic()
    print(f"received {count} {last - first:.3f}", flush=True)


def send(arguments) -> None:
    host, port, rate, seconds, size = arguments.host, arguments.port, arguments.rate, arguments.seconds, arguments.size
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sender.connect((host, port))
    payload = bytes(size)
    start = time.monotonic()
    sent = 0
    total = int(rate * seconds)
    while sent < total:
        # Catch up to where the schedule says we should be, then yield until the next millisecond.
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            try:
                sender.send(payload)
            except BlockingIOError:
                break
            sent += 1
        time.sleep(0.0005)
    print(f"sent {sent} {time.monotonic() - start:.3f}", flush=True)


def options(parser) -> None:
    parser.add_argument("--idle", type=float, default=1.0)
    parser.add_argument("--rate", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--size", type=int, default=1280)


if __name__ == "__main__":
    run(__doc__, {"sink": sink, "send": send}, options)

"""A steady UDP stream for the data-plane measurements: run in a namespace as a process of its own.

    python -m tests.router._stream send --to ADDR --port P --count N --rate R    ("started", then a JSON summary)
    python -m tests.router._stream recv --port P --out FILE                        (until SIGTERM; "ready" first)

Each datagram carries its sequence number and the sender's CLOCK_MONOTONIC time (one clock for every namespace
of the host), so the receiver can report what arrived, when, and how late. :func:`summarise` turns both sides
into packets lost, the longest gap and the largest delay.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_FORMAT = "!Id"  # sequence number, sent at (monotonic seconds)


def send(to: str, port: int, count: int, rate: float) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    interval = 1.0 / rate
    start = time.monotonic()
    first = last = start
    for seq in range(count):
        due = start + seq * interval
        while (left := due - time.monotonic()) > 0:
            time.sleep(left if left > 0.002 else 0)  # sleep coarsely, spin the last 2 ms
        last = time.monotonic()
        if seq == 0:
            first = last
        with contextlib.suppress(OSError):  # e.g. no route for a moment: the packet counts as lost
            sock.sendto(struct.pack(_FORMAT, seq, last) + bytes(52), (to, port))
        if seq == 0:
            print("started", flush=True)  # the harness times the handover from here
    return {"count": count, "first": first, "last": last}


def receive(port: int, out: Path) -> None:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: never lose packets in our own socket
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("::", port))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    arrivals: list[tuple[int, float, float]] = []
    print("ready", flush=True)
    while not stop:
        ready, _, _ = select.select([sock], [], [], 0.05)
        if not ready:
            continue
        while True:
            try:
                data = sock.recv(2048, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            now = time.monotonic()
            if len(data) >= struct.calcsize(_FORMAT):
                seq, sent = struct.unpack_from(_FORMAT, data)
                arrivals.append((seq, sent, now))
    out.write_text(json.dumps(arrivals), encoding="utf-8")


def summarise(sender: dict[str, Any], arrivals: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Lost, duplicated and reordered packets; the longest time without a packet at the node (the tail counts:
    a stream that never came back is one long gap up to its last send); the largest delay."""
    count = int(sender["count"])
    seen: set[int] = set()
    duplicates = reordered = 0
    highest = -1
    for seq, _sent, _at in arrivals:
        s = int(seq)
        if s in seen:
            duplicates += 1
            continue
        seen.add(s)
        if s < highest:
            reordered += 1
        highest = max(highest, s)
    times = sorted(float(a[2]) for a in arrivals)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    if times:
        gaps.append(max(0.0, float(sender["last"]) - times[-1]))
        gaps.append(max(0.0, times[0] - float(sender["first"])))
    delays = [float(a[2]) - float(a[1]) for a in arrivals]
    return {
        "sent": count,
        "received": len(seen),
        "lost": count - len(seen),
        "duplicates": duplicates,
        "reordered": reordered,
        "longest_gap_ms": round(max(gaps) * 1000, 1) if gaps else None,
        "max_delay_ms": round(max(delays) * 1000, 1) if delays else None,
        "last_received": max(seen) if seen else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="_stream")
    sub = parser.add_subparsers(dest="role", required=True)
    s = sub.add_parser("send")
    s.add_argument("--to", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--count", type=int, default=2000)
    s.add_argument("--rate", type=float, default=1000.0)
    r = sub.add_parser("recv")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.role == "send":
        print(json.dumps(send(args.to, args.port, args.count, args.rate)), flush=True)
    else:
        receive(args.port, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

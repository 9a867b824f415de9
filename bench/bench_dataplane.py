"""Packet loss across a handover: a 1,000 packets/s UDP stream to the node while it moves, FMIPv6 off or on.

    sudo python -m bench dataplane [--runs 3] [--packets 2000] [--rate 1000] [--switch-ms 50] [--json FILE]

Builds the namespace lab of tests/router/_dataplane_net.py (a correspondent behind the PAR, two routers running
``aaa-fmip router`` with the data plane on, ``aaa-fmip serve`` on a real redis-server) and, for each run and
mode, streams ``--packets`` UDP datagrams at ``--rate`` to the node's PCoA while the node moves from the PAR's
access link to the NAR's (``--switch-ms`` without a link in between). Modes: ``off`` (no FBU),
``predictive`` (FBU and FBack on the PAR's link, HI without U), ``predictive-buffered`` (HI with U: the NAR
buffers until the node's UNA), ``reactive`` (FBU from the new link). Every run is printed: packets lost, the
longest time without a packet at the node, the largest delay of a delivered packet.

Needs root (network namespaces).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.router._dataplane_net import MODES, Lab
from tests.support.redis_server import RedisServer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_dataplane", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="handovers per mode")
    parser.add_argument("--packets", type=int, default=2000, help="datagrams per stream")
    parser.add_argument("--rate", type=float, default=1000.0, help="datagrams per second")
    parser.add_argument("--switch-ms", type=float, default=50.0, help="time between leaving one link and the next")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
    parser.add_argument("--json", type=Path, help="also write every run to this file")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"unknown mode(s): {', '.join(unknown)}")
    if os.geteuid() != 0:
        print("bench_dataplane: needs root (network namespaces); skipped", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-dataplane-") as tmp:
        workdir = Path(tmp)
        redis = RedisServer(workdir / "redis")
        redis.start()
        lab = Lab(workdir, redis.url, switch_seconds=args.switch_ms / 1000)
        runs: list[dict[str, Any]] = []
        try:
            lab.up()
            # one mode after the other within a run (the PAR restarts only to change the HI's U flag)
            for run in range(1, args.runs + 1):
                for mode in modes:
                    result = lab.run(mode, count=args.packets, rate=args.rate)
                    result["run"] = run
                    runs.append(result)
                    print(_row(result), flush=True)
        finally:
            lab.down()
            redis.stop()
    print(
        f"\n{args.packets} packets at {args.rate:g}/s to the PCoA, the node {args.switch_ms:g} ms without a link; "
        "every run (lost / longest gap at the node / largest delay):"
    )
    for mode in modes:
        rows = [r for r in runs if r["mode"] == mode]
        cells = "   ".join(
            f"{r['lost']:>5} / {_ms(r['longest_gap_ms'], 7)} ms / {_ms(r['max_delay_ms'], 6)} ms" for r in rows
        )
        print(f"  {mode:<20} {cells}")
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": runs, "args": vars(args) | {"json": str(args.json)}}, indent=2) + "\n")
    return 0


def _ms(value: float | None, width: int) -> str:
    return f"{value:>{width}.1f}" if value is not None else f"{'-':>{width}}"  # None: nothing arrived


def _row(r: dict[str, Any]) -> str:
    return (
        f"run {r['run']} {r['mode']:<20} lost {r['lost']:>5}/{r['sent']}  gap {_ms(r['longest_gap_ms'], 7)} ms  "
        f"max delay {_ms(r['max_delay_ms'], 6)} ms  dup {r['duplicates']}  reordered {r['reordered']}  "
        f"switch {r['switch_ms']:.1f} ms  signalling {r['signalling_ms']:.1f} ms  FBack {r['fback_status']}"
    )


if __name__ == "__main__":
    sys.exit(main())

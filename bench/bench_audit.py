"""Whole-trail audit operations with and without slot chains (docs/api.md, "Slot chains").

Slot chains take an accepted FBU's audit entry off the main chain and put it in a chain of its writer's
(``store.writer``): on a Cluster the one of its session's hash slot, on one Redis the writer's one chain, in the
verification's one script. The price is paid by the operations that read the whole trail: they read the registry
of the chains with entries and merge those chains. This benchmark fills two trails with the same work
(``--sessions`` sessions, ``--fbus`` accepted FBUs each, through the service's own use cases, in process), the
baseline with slot chains off (every entry in the main chain) and the other with them on, its FBUs verified in
turn by ``--writers`` writers (as by that many worker processes), on one redis-server (or a 3-node Cluster,
``--cluster``), and times what an auditor and the exporter run on each: finding the chains, the first page of
``GET /v1/audit`` (100 entries), reading the whole trail in pages of 1,000, ``verify``, a checkpoint (the first
one seals every slot chain), the first export pass to a file (all of it) and an idle pass (nothing new), full (every
chain's head) and as the periodic passes run it (the chains writers said they moved only). Each
time is the median of ``--repeat`` runs (the first checkpoint and the first export pass run once); the last
column is the ratio on/off.

    python -m bench bench_audit [--sessions 2000] [--fbus 2] [--writers 1] [--repeat 5] [--cluster] [--json FILE]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aaa_fmip import keys, mn
from aaa_fmip.audit_export import AuditExporter, JsonLinesSink
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import Kek, KekRing
from aaa_fmip.model import AccessRouter, Caller, EapKeys, SessionRequest
from aaa_fmip.service import HandoverKeyService
from aaa_fmip.store.redis import RedisStore
from aaa_fmip.store.slots import WRITERS
from bench.bench_rest import AnyRedis, ClusterRedis
from tests.support.redis_server import RedisServer

PAR = ipaddress.IPv6Address("2001:db8:1::1")
PCOA = ipaddress.IPv6Address("2001:db8:1::100")
NCOA = ipaddress.IPv6Address("2001:db8:2::100")
AAA = Caller("radius", "aaa")
AUDITOR = Caller("auditor", "auditor")
AR = Caller("ar1", "ar", AccessRouter("ar1", frozenset({PAR})))


def fill(
    service: HandoverKeyService,
    sessions: int,
    fbus: int,
    progress: Callable[[str], None],
    verifiers: Sequence[HandoverKeyService] = (),
) -> int:
    """``sessions`` sessions and ``fbus`` accepted FBUs each, the FBUs verified in turn by ``verifiers`` (default:
    ``service``); returns how many entries that made."""
    turn = list(verifiers) or [service]
    done = 0
    for i in range(sessions):
        emsk, sid = os.urandom(64), b"\x0d" + os.urandom(64)
        service.ingest_session(AAA, SessionRequest(user_name=f"u{i}", keys=EapKeys(SecretBytes(emsk), sid)))
        master = keys.derive_hmk(emsk, sid)
        hk = keys.derive_hk(master.hmk, master.hmk_name, PAR, master.spi)
        for sequence in range(1, fbus + 1):
            mh = mn.build_fbu(hk, sequence=sequence, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR)
            verdict = turn[done % len(turn)].verify_fbu(AR, source=PCOA, destination=PAR, mh=mh)
            done += 1
            if verdict.verdict != "accepted":
                raise SystemExit(f"bench_audit: an FBU was not accepted: {verdict}")
        if (i + 1) % 500 == 0:
            progress(f"    {i + 1} of {sessions} sessions")
    return sessions * (1 + fbus)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The median wall time of ``repeat`` calls (ms), and the last result."""
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


def read_all(service: HandoverKeyService) -> int:
    count, cursor = 0, None
    while True:
        page, cursor = service.read_audit(AUDITOR, limit=1000, cursor=cursor)
        count += len(page)
        if cursor is None:
            return count


def measure(store: RedisStore, entries: int, workdir: Path, repeat: int) -> dict[str, float]:
    service = HandoverKeyService(store, clock=time.time)
    out: dict[str, float] = {}
    out["find the chains"], chains = timed(store.audit_chains, repeat)
    out["chains"] = len(chains)
    out["first page (100)"], _ = timed(lambda: service.read_audit(AUDITOR, limit=100), repeat)
    out["whole trail in pages of 1000"], count = timed(lambda: read_all(service), repeat)
    if count != entries:
        raise SystemExit(f"bench_audit: read {count} entries, expected {entries}")
    out["verify"], check = timed(store.verify_audit, repeat)
    if not check.ok or check.entries != entries:
        raise SystemExit(f"bench_audit: the trail does not verify: {check}")
    out["first checkpoint"], _ = timed(lambda: store.checkpoint(now=time.time()), 1)
    out["checkpoint"], _ = timed(lambda: store.checkpoint(now=time.time()), repeat)
    exporter = AuditExporter(store, [JsonLinesSink(workdir / "export.jsonl")], clock=time.time)
    out["first export pass"], exported = timed(exporter.export_once, 1)
    if exported < entries:
        raise SystemExit(f"bench_audit: exported {exported} entries, expected at least {entries}")
    out["idle export pass"], _ = timed(exporter.export_once, repeat)
    out["idle pass, moved chains only"], _ = timed(lambda: exporter.export_once(full=False), repeat)
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench bench_audit",
        description="Whole-trail audit operations (chains, reads, verify, checkpoint, export) with and without "
        "slot chains, on the same work.",
    )
    parser.add_argument("--sessions", type=int, default=2000, help="sessions (default 2000)")
    parser.add_argument("--fbus", type=int, default=2, help="accepted FBUs per session (default 2)")
    parser.add_argument(
        "--writers",
        type=int,
        default=1,
        help="writers (store.writer 0 to N-1) verifying the FBUs in turn, slot chains on (default 1)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of each operation, median taken (default 5)")
    parser.add_argument("--cluster", action="store_true", help="a 3-node Redis Cluster instead of one redis-server")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON ('-': stdout)")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.fbus < 1 or args.repeat < 1 or not 1 <= args.writers <= WRITERS:
        parser.error(f"--sessions, --fbus and --repeat must be at least 1, --writers 1-{WRITERS}")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    ring = KekRing(Kek("bench", SecretBytes(os.urandom(32))))
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        workdir = Path(tmp)
        redis: AnyRedis = ClusterRedis(workdir / "cluster") if args.cluster else RedisServer(workdir / "redis")
        redis.start()
        try:
            for name, slot_chains in (("off", False), ("on", True)):
                print(f"bench_audit: slot chains {name}", flush=True)
                writers = [
                    RedisStore.from_url(redis.url, ring, prefix=f"ba{name}", slot_chains=slot_chains, writer=w)
                    for w in range(args.writers if slot_chains else 1)
                ]
                store = writers[0]
                try:
                    service = HandoverKeyService(store, clock=time.time)
                    verifiers = [service, *(HandoverKeyService(w, clock=time.time) for w in writers[1:])]
                    entries = fill(service, args.sessions, args.fbus, lambda line: print(line, flush=True), verifiers)
                    (workdir / name).mkdir()
                    results[name] = measure(store, entries, workdir / name, args.repeat)
                finally:
                    for w in writers:
                        w.close()
        finally:
            redis.stop()
    topology = "3-node Cluster" if args.cluster else "one redis-server"
    print(
        f"{args.sessions} sessions, {args.fbus} FBUs each, {args.writers} writer(s), {topology}; ms, medians of "
        f"{args.repeat}"
    )
    print(f"  {'operation':<32} {'off':>10} {'on':>10} {'on/off':>8}")
    for op in results["off"]:
        off, on = results["off"][op], results["on"][op]
        ratio = f"{on / off:.1f}x" if off else "-"
        if op == "chains":
            print(f"  {'chains with entries':<32} {off:>10.0f} {on:>10.0f}")
        else:
            print(f"  {op:<32} {off:>10.1f} {on:>10.1f} {ratio:>8}")
    doc = {"benchmark": "bench_audit", "parameters": vars(args), "results": results, "failed": None}
    if args.json == "-":
        json.dump(doc, sys.stdout, indent=2)
        print()
    elif args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Local FBU verification at the access router, against the floor of one HMAC-SHA1-96, in one process on one core.

    python -m bench.bench_router [--count 20000] [--repeat 5] [--keys 64] [--json FILE]

What each line times (the FBUs are built before the timed loops; every FBU in a round is new, so each one is
accepted, none is a retransmission):

* ``hmac-sha1-96 floor``: :func:`aaa_fmip.crypto.badf.truncated_hmac` over the octets a BADF covers (NCoA, PAR,
  the MH without the authenticator): the least any verification of such an FBU can cost.
* ``verify (memory replay)``: :func:`aaa_fmip.router.verify.parse_fbu` (MH decode, checksum with the home
  address) + cache lookup by SPI + :func:`~aaa_fmip.router.verify.verify_with_key` (BADF, replay check and update).
* ``verify (journalled replay)``: the same, with the replay state written to its append-only journal (one
  ``write`` per accepted FBU; no fsync), as ``aaa-fmip router`` runs it.
* ``par core: FBU to HI``: the PAR state machine around it: ``receive_mh`` → verification → ``fbu_verified`` →
  the HI encoded for the NAR.

The process is pinned to one CPU when the OS allows (``os.sched_setaffinity``). Results are the best of
``--repeat`` rounds; the ratios to the floor are from the same run.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from aaa_fmip import mn
from aaa_fmip.crypto import badf
from aaa_fmip.router import core
from aaa_fmip.router.keycache import HandoverKeyCache
from aaa_fmip.router.neighbours import Neighbour, NeighbourTable
from aaa_fmip.router.verify import (
    FileReplayJournal,
    ReceivedMh,
    ReplayState,
    RouterKey,
    parse_fbu,
    verify_with_key,
)
from aaa_fmip.wire import mh as mhwire

PAR = ipaddress.IPv6Address("2001:db8:1::1")
NAR = ipaddress.IPv6Address("2001:db8:2::1")
NCOA = ipaddress.IPv6Address("2001:db8:2::100")
EXPIRES = 4_000_000_000.0
NOW = 1_800_000_000.0


def build(keys: int, per_key_rounds: int, per_round: int) -> tuple[list[RouterKey], list[list[ReceivedMh]]]:
    """``keys`` sessions; for each round, ``per_round`` FBUs spread over the keys with rising sequence numbers."""
    router_keys = []
    nodes = []
    for k in range(keys):
        master = mn.derive_master_key(emsk=bytes([k % 256]) * 64, eap_session_id=b"\x0d" + k.to_bytes(4, "big") * 16)
        hk = mn.derive_handover_key(master, PAR)
        router_keys.append(RouterKey(hk.hk, hk.hk_name, hk.spi, PAR, EXPIRES, "bench"))
        nodes.append((hk, ipaddress.IPv6Address(f"2001:db8:1::1:{k:x}")))
    rounds = []
    sequence = [0] * keys
    for _ in range(per_key_rounds):
        batch = []
        for i in range(per_round):
            k = i % keys
            hk, pcoa = nodes[k]
            sequence[k] += 1
            p = mn.build_fbu_packet(
                hk, sequence=sequence[k], lifetime_seconds=60, pcoa=pcoa, ncoa=NCOA, par=PAR, home_address_option=True
            )
            batch.append(ReceivedMh(p.source, p.destination, p.home_address, p.mh))
        rounds.append(batch)
    return router_keys, rounds


def best_rate(rounds: list[list[ReceivedMh]], run: Callable[[ReceivedMh], object]) -> float:
    best = 0.0
    for batch in rounds:
        started = time.perf_counter()
        for item in batch:
            run(item)
        elapsed = time.perf_counter() - started
        best = max(best, len(batch) / elapsed)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_router", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000, help="FBUs per timed round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per measurement (best is reported)")
    parser.add_argument("--keys", type=int, default=64, help="sessions (handover keys) the FBUs are spread over")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.count < 1 or args.repeat < 1 or args.keys < 1 or args.count // args.keys * args.repeat * 3 > 30000:
        parser.error("need count, repeat, keys >= 1 and at most 30000 sequence numbers per key over the run")

    pinned = None
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        pinned = cpu

    keys, rounds = build(args.keys, args.repeat * 3, args.count)
    memory_rounds, journal_rounds, core_rounds = (
        rounds[: args.repeat],
        rounds[args.repeat : 2 * args.repeat],
        rounds[2 * args.repeat :],
    )

    sample = parse_fbu(memory_rounds[0][0])
    covered = NCOA.packed + PAR.packed + sample.auth.mh_data
    key = keys[0].hk
    floor = best_rate(memory_rounds, lambda _item: badf.truncated_hmac(key, covered, badf.Algorithm.HMAC_SHA1_96))

    def verifier(replay: ReplayState) -> Callable[[ReceivedMh], object]:
        cache = HandoverKeyCache()
        for k in keys:
            cache.put(k)

        def run(item: ReceivedMh) -> object:
            parsed = parse_fbu(item)
            verdict = verify_with_key(parsed, cache.candidates(parsed.auth.spi, item.destination, NOW), replay, now=NOW)
            if verdict.outcome != "accepted":
                raise AssertionError(f"FBU not accepted: {verdict.reason}")
            return verdict

        return run

    memory = best_rate(memory_rounds, verifier(ReplayState()))
    with tempfile.TemporaryDirectory(prefix="bench-router-") as tmp:
        journal = FileReplayJournal(Path(tmp) / "replay.journal", now=NOW)
        journalled = best_rate(journal_rounds, verifier(ReplayState(journal)))
        journal.close()

    table = NeighbourTable([Neighbour(b"\x02\xbb\x00\x00\x00\x01", NAR, ipaddress.IPv6Network("2001:db8:2::/64"))])
    par = core.RouterCore(
        core.RouterParameters((PAR,), (ipaddress.IPv6Network("2001:db8:1::/64"),), table, max_par_handovers=10**9)
    )
    replay = ReplayState()
    cache = HandoverKeyCache()
    for k in keys:
        cache.put(k)

    def signalling(item: ReceivedMh) -> object:
        for effect in par.receive_mh(item, NOW):
            if isinstance(effect, core.VerifyFbu):
                fbu = effect.fbu
                verdict = verify_with_key(fbu, cache.candidates(fbu.auth.spi, PAR, NOW), replay, now=NOW)
                out = par.fbu_verified(effect.token, verdict, NOW)
                if not any(isinstance(e, core.SendMh) and e.mh[2] == mhwire.MHType.HANDOVER_INITIATE for e in out):
                    raise AssertionError("no HI")
        return None

    core_rate = best_rate(core_rounds, signalling)

    results = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "pinned_cpu": pinned,
        "count": args.count,
        "repeat": args.repeat,
        "keys": args.keys,
        "hmac_sha1_96_floor_per_s": round(floor),
        "verify_memory_per_s": round(memory),
        "verify_journal_per_s": round(journalled),
        "par_core_fbu_to_hi_per_s": round(core_rate),
        "verify_memory_us": round(1e6 / memory, 2),
        "verify_journal_us": round(1e6 / journalled, 2),
        "floor_us": round(1e6 / floor, 2),
        "verify_to_floor_ratio": round(floor / memory, 2),
    }
    width = 28
    print(f"router FBU verification, one core{f' (cpu {pinned})' if pinned is not None else ''}, best of {args.repeat}")
    for label, rate in (
        ("hmac-sha1-96 floor", floor),
        ("verify (memory replay)", memory),
        ("verify (journalled replay)", journalled),
        ("par core: FBU to HI", core_rate),
    ):
        print(f"  {label:<{width}} {rate:>10,.0f} /s  {1e6 / rate:7.2f} us")
    print(f"  verify costs {floor / memory:.1f} x the floor HMAC")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

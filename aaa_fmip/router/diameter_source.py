"""The router's key source over Diameter: the Handover-Key application (``aaa_fmip.diameter.client``) instead
of REST, for operators whose routers already speak Diameter to the AAA side (architecture.md §6).

Same questions as :class:`aaa_fmip.router.keycache.RestKeyService` (the HK by SPI, by Calling-Station-Id, or
an FBU verified by the service), same answers. The client is python-diameter's threaded node, so each call runs
in a worker thread; its timeout bounds what an outage costs a handover. The revocation feed, verdict reports
and the FBack authenticator are REST routes: a router fetching keys over Diameter still gives ``[service] url``
for those.
"""

from __future__ import annotations

import asyncio
from ipaddress import IPv6Address
from typing import Literal

from aaa_fmip.diameter import results as rc
from aaa_fmip.diameter.client import FbuAnswer, HandoverKeyClient, KeyAnswer
from aaa_fmip.router.keycache import KeyServiceError, KeyUnknown, calling_station_id
from aaa_fmip.router.verify import FbuVerdict, ParsedFbu, RouterKey

__all__ = ["DiameterKeyService"]


class DiameterKeyService:
    def __init__(self, client: HandoverKeyClient) -> None:
        self.client = client

    def _key(self, answer: KeyAnswer, ar_address: IPv6Address, now: float, source: str) -> RouterKey:
        if answer.result_code == rc.USER_UNKNOWN:
            revoked = "revoked" in (answer.error_message or "")
            raise KeyUnknown("revoked" if revoked else "unknown-spi")
        if not answer.ok:
            raise KeyServiceError(f"Handover-Key answer {answer.result_code}")
        if answer.hk is None or answer.hk_name is None or answer.spi is None or answer.lifetime is None:
            raise KeyServiceError("Handover-Key answer without its key")
        return RouterKey(answer.hk, answer.hk_name, answer.spi, ar_address, now + answer.lifetime, source)

    async def _call(self, what: str, *args: object, **kwargs: object) -> object:
        try:
            return await asyncio.to_thread(getattr(self.client, what), *args, **kwargs)
        except (TimeoutError, OSError, RuntimeError) as exc:
            raise KeyServiceError(f"Diameter {what}: {type(exc).__name__}") from None

    async def key_by_spi(self, spi: int, ar_address: IPv6Address, now: float) -> RouterKey:
        answer = await self._call("handover_key", ar_address, spi=spi)
        assert isinstance(answer, KeyAnswer)
        return self._key(answer, ar_address, now, "fetched")

    async def key_by_lla(self, mn_lla: bytes, ar_address: IPv6Address, now: float) -> RouterKey:
        answer = await self._call("handover_key", ar_address, calling_station_id=calling_station_id(mn_lla))
        assert isinstance(answer, KeyAnswer)
        return self._key(answer, ar_address, now, "prefetched")

    async def verify(self, fbu: ParsedFbu) -> FbuVerdict:
        p = fbu.packet
        answer = await self._call(
            "verify_fbu", ar_address=p.destination, source=p.source, mh=p.mh, home_address=p.home_address
        )
        spi, sequence = fbu.auth.spi, fbu.fbu.sequence
        assert isinstance(answer, FbuAnswer)
        if answer.accepted and answer.verdict in ("accepted", "retransmission"):
            outcome: Literal["accepted", "retransmission"] = (
                "accepted" if answer.verdict == "accepted" else "retransmission"
            )
            return FbuVerdict(outcome, spi, sequence, None, answer.lifetime or 0)
        if answer.verdict == "rejected":  # a verdict, whatever the Result-Code that carries it
            return FbuVerdict("rejected", spi, sequence, answer.reason or "rejected")
        raise KeyServiceError(f"FBU-verify answer {answer.result_code}")

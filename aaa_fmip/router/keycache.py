"""The handover keys a router holds, where they come from, and the verifier that uses them (architecture §8).

Sources, in the order a key normally arrives:

1. **pushed**: the router is the RADIUS NAS and the Access-Accept carried its HK
   (:func:`aaa_fmip.radius.ar.decode_access_accept` → :meth:`HandoverKeyCache.put_pushed`);
2. **prefetched**: an RtSolPr names the node's link-layer address, so the router asks the service for the
   key by Calling-Station-Id (``POST /v1/handover-keys`` with ``calling_station_id``) before the FBU arrives;
3. **fetched**: the first FBU of a (node, router) pair whose SPI is not in the cache: one
   ``POST /v1/handover-keys`` with ``spi``;
4. **verify-as-a-service**: a router configured to hold no keys passes each FBU to ``POST /v1/fbu/verify``
   (also the path for SPI 0, the RFC 5269 SEND keys the service keeps, and for SPIs shared by two sessions).

Keys live in memory only, until their lifetime ends or a revocation removes them. The HTTP client is httpx;
every call is bounded by the client's timeout so a service outage costs a handover at most that long, and the
node then gets FBack 128.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv6Address
from typing import Any, Literal, Protocol

import httpx

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.radius.ar import PushedHandoverKey
from aaa_fmip.router.verify import FbuVerdict, ParsedFbu, ReplayState, RouterKey, verify_with_key

__all__ = [
    "HandoverKeyCache",
    "KeyService",
    "KeyServiceError",
    "KeyUnknown",
    "RestKeyService",
    "Verifier",
    "calling_station_id",
]


class KeyServiceError(Exception):
    """The key service could not answer (unreachable, timed out, 5xx, or an answer we cannot read)."""

    reason = "key-unavailable"


class KeyUnknown(Exception):
    """The service answered: no live session matches (``reason`` is ``unknown-spi`` or ``revoked``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HandoverKeyCache:
    """This router's HKs by SPI (a list: SPIs may collide) and the SPI of each node link-layer address."""

    def __init__(self, *, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._by_spi: dict[int, list[RouterKey]] = {}
        self._spi_by_lla: dict[bytes, int] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_spi.values())

    def put(self, key: RouterKey, *, mn_lla: bytes | None = None) -> None:
        if len(self) >= self.max_keys and key.spi not in self._by_spi:
            # evict the key nearest its end: the cache is bounded, a miss only costs one fetch
            victim = min((k for keys in self._by_spi.values() for k in keys), key=lambda k: k.expires_at)
            self.remove(hk_name=victim.hk_name)
        keys = [k for k in self._by_spi.get(key.spi, []) if k.hk_name != key.hk_name]
        keys.append(key)
        self._by_spi[key.spi] = keys
        if mn_lla:
            self._spi_by_lla[mn_lla] = key.spi

    def put_pushed(
        self, pushed: PushedHandoverKey, *, ar_address: IPv6Address, now: float, mn_lla: bytes | None = None
    ) -> RouterKey:
        """Cache the HK an Access-Accept pushed to this router (source 1)."""
        if pushed.ar_address is not None and pushed.ar_address != ar_address:
            raise ValueError("the pushed key is for another AR address")
        key = RouterKey(pushed.hk, pushed.hk_name, pushed.spi, ar_address, now + pushed.lifetime, "pushed")
        self.put(key, mn_lla=mn_lla)
        return key

    def candidates(self, spi: int, ar_address: IPv6Address, now: float) -> list[RouterKey]:
        keys = [k for k in self._by_spi.get(spi, []) if k.ar_address == ar_address and k.expires_at > now]
        if keys:
            self.hits += 1
        else:
            self.misses += 1
        return keys

    def knows_lla(self, mn_lla: bytes, now: float) -> bool:
        spi = self._spi_by_lla.get(mn_lla)
        return spi is not None and any(k.expires_at > now for k in self._by_spi.get(spi, []))

    def remove(self, *, spi: int | None = None, hk_name: bytes | None = None) -> int:
        """Drop keys by SPI or HK-Name (a revocation); the number dropped."""
        dropped = 0
        for s in list(self._by_spi):
            if spi is not None and s != spi:
                continue
            kept = [k for k in self._by_spi[s] if hk_name is not None and k.hk_name != hk_name]
            dropped += len(self._by_spi[s]) - len(kept)
            if kept:
                self._by_spi[s] = kept
            else:
                del self._by_spi[s]
        self._spi_by_lla = {lla: s for lla, s in self._spi_by_lla.items() if s in self._by_spi}
        return dropped

    def expire(self, now: float) -> int:
        dropped = 0
        for s in list(self._by_spi):
            kept = [k for k in self._by_spi[s] if k.expires_at > now]
            dropped += len(self._by_spi[s]) - len(kept)
            if kept:
                self._by_spi[s] = kept
            else:
                del self._by_spi[s]
        return dropped


class KeyService(Protocol):
    """What the router asks the key service (REST today; a Diameter client would fit the same shape)."""

    async def key_by_spi(self, spi: int, ar_address: IPv6Address, now: float) -> RouterKey: ...

    async def key_by_lla(self, mn_lla: bytes, ar_address: IPv6Address, now: float) -> RouterKey: ...

    async def verify(self, fbu: ParsedFbu) -> FbuVerdict: ...


def calling_station_id(lla: bytes) -> str:
    return "-".join(f"{b:02X}" for b in lla)  # the Calling-Station-Id notation of RFC 3580 §3.21


class RestKeyService:
    """The key service's REST API with this router's ``ar``-role bearer token."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise KeyServiceError(f"{path}: {type(exc).__name__}") from None
        if response.status_code == 404:
            try:
                reason = str(response.json().get("reason", "unknown-session"))
            except ValueError:
                reason = "unknown-session"
            raise KeyUnknown("revoked" if reason == "revoked" else "unknown-spi")
        if response.status_code != 200:
            raise KeyServiceError(f"{path}: HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise KeyServiceError(f"{path}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise KeyServiceError(f"{path}: the answer is not a JSON object")
        return data

    def _key(self, data: dict[str, Any], ar_address: IPv6Address, now: float, source: str) -> RouterKey:
        try:
            return RouterKey(
                SecretBytes(bytes.fromhex(data["hk"])),
                bytes.fromhex(data["hk_name"]),
                int(data["spi"]),
                ar_address,
                now + int(data["lifetime"]),
                source,
            )
        except (KeyError, TypeError, ValueError):
            raise KeyServiceError("/v1/handover-keys: not a handover key answer") from None

    async def key_by_spi(self, spi: int, ar_address: IPv6Address, now: float) -> RouterKey:
        data = await self._post("/v1/handover-keys", {"ar_address": str(ar_address), "spi": spi})
        return self._key(data, ar_address, now, "fetched")

    async def key_by_lla(self, mn_lla: bytes, ar_address: IPv6Address, now: float) -> RouterKey:
        body = {"ar_address": str(ar_address), "calling_station_id": calling_station_id(mn_lla)}
        return self._key(await self._post("/v1/handover-keys", body), ar_address, now, "prefetched")

    async def revocations(
        self, cursor: str | None, *, wait: float
    ) -> tuple[list[tuple[int, list[bytes]]], str | None, bool]:
        """One long poll of ``GET /v1/revocations``: [(SPI, HK-Names)], the next cursor, whether more follow."""
        params: dict[str, str | float] = {"wait": wait}
        if cursor is not None:
            params["cursor"] = cursor
        try:
            response = await self.client.get("/v1/revocations", params=params, timeout=wait + 5.0)
        except httpx.HTTPError as exc:
            raise KeyServiceError(f"/v1/revocations: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise KeyServiceError(f"/v1/revocations: HTTP {response.status_code}")
        try:
            data = response.json()
            items = [(int(r["spi"]), [bytes.fromhex(n) for n in r["hk_names"].values()]) for r in data["revocations"]]
            next_cursor = data["cursor"]
            return items, str(next_cursor) if next_cursor is not None else cursor, bool(data["more"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise KeyServiceError("/v1/revocations: not a revocation feed") from None

    async def report_verdicts(self, verdicts: list[dict[str, Any]]) -> None:
        """``POST /v1/fbu/verdicts`` (locally made verdicts, for the audit trail)."""
        await self._post("/v1/fbu/verdicts", {"verdicts": verdicts})

    async def fback_authenticator(self, source: IPv6Address, destination: IPv6Address, mh: bytes) -> bytes:
        """The FBack ``mh`` with its BADF authenticator filled in by the service (``POST /v1/fback/authenticator``)."""
        body = {"source": str(source), "destination": str(destination), "mh": mh.hex()}
        data = await self._post("/v1/fback/authenticator", body)
        try:
            return bytes.fromhex(data["mh"])
        except (KeyError, TypeError, ValueError):
            raise KeyServiceError("/v1/fback/authenticator: not a signed FBack") from None

    async def verify(self, fbu: ParsedFbu) -> FbuVerdict:
        p = fbu.packet
        body: dict[str, Any] = {"source": str(p.source), "destination": str(p.destination), "mh": p.mh.hex()}
        if p.home_address is not None:
            body["home_address"] = str(p.home_address)
        data = await self._post("/v1/fbu/verify", body)
        spi, sequence = fbu.auth.spi, fbu.fbu.sequence
        if data.get("valid") is True and data.get("verdict") in ("accepted", "retransmission"):
            return FbuVerdict(data["verdict"], spi, sequence, None, int(data.get("lifetime", 0)))
        if data.get("valid") is False:
            return FbuVerdict("rejected", spi, sequence, str(data.get("reason", "rejected")))
        raise KeyServiceError("/v1/fbu/verify: not a verdict")


class Verifier:
    """Decides FBUs: locally with a cached or freshly fetched key, or through the service (module docstring)."""

    def __init__(
        self,
        cache: HandoverKeyCache,
        replay: ReplayState,
        service: KeyService | None,
        *,
        mode: Literal["local", "service"] = "local",
        lifetime_unit: int = 4,
        clock: Callable[[], float] = time.time,
        on_fetch: Callable[[str, float, str], None] | None = None,
    ) -> None:
        if mode == "service" and service is None:
            raise ValueError("verify-as-a-service needs a key service")
        self.cache = cache
        self.replay = replay
        self.service = service
        self.mode = mode
        self.lifetime_unit = lifetime_unit
        self.clock = clock
        self.on_fetch = on_fetch or (lambda _kind, _seconds, _result: None)
        self._inflight: dict[int, asyncio.Future[RouterKey]] = {}

    async def verify(self, fbu: ParsedFbu) -> FbuVerdict:
        spi, par = fbu.auth.spi, fbu.packet.destination
        now = self.clock()
        if self.mode == "service" or spi == 0:
            return await self._via_service(fbu)
        keys = self.cache.candidates(spi, par, now)
        if not keys and self.service is not None:
            try:
                keys = [await self._fetch(spi, par, now)]
            except KeyUnknown as exc:
                return FbuVerdict("rejected", spi, fbu.fbu.sequence, exc.reason)
            except KeyServiceError:
                return FbuVerdict("rejected", spi, fbu.fbu.sequence, "key-unavailable")
        return verify_with_key(fbu, keys, self.replay, now=self.clock(), lifetime_unit=self.lifetime_unit)

    async def _via_service(self, fbu: ParsedFbu) -> FbuVerdict:
        assert self.service is not None
        started = time.perf_counter()
        try:
            verdict = await self.service.verify(fbu)
        except KeyUnknown as exc:
            verdict = FbuVerdict("rejected", fbu.auth.spi, fbu.fbu.sequence, exc.reason)
        except KeyServiceError:
            self.on_fetch("verify", time.perf_counter() - started, "error")
            return FbuVerdict("rejected", fbu.auth.spi, fbu.fbu.sequence, "key-unavailable")
        self.on_fetch("verify", time.perf_counter() - started, "ok")
        return verdict

    async def _fetch(self, spi: int, par: IPv6Address, now: float) -> RouterKey:
        """One fetch per SPI at a time: FBU retransmissions during a fetch wait for the same answer."""
        assert self.service is not None
        pending = self._inflight.get(spi)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[RouterKey] = asyncio.get_running_loop().create_future()
        self._inflight[spi] = future
        started = time.perf_counter()
        try:
            key = await self.service.key_by_spi(spi, par, now)
        except (KeyUnknown, KeyServiceError) as exc:
            self.on_fetch("spi", time.perf_counter() - started, "unknown" if isinstance(exc, KeyUnknown) else "error")
            future.set_exception(exc)
            future.exception()  # retrieved here, so a future nobody else awaited does not warn
            raise
        finally:
            self._inflight.pop(spi, None)
        self.on_fetch("spi", time.perf_counter() - started, "ok")
        self.cache.put(key)
        future.set_result(key)
        return key

    async def prefetch(self, mn_lla: bytes, addresses: Iterable[IPv6Address]) -> int:
        """Fetch the node's key for each of this router's addresses unless cached (source 2); how many came."""
        if self.service is None or self.mode == "service" or self.cache.knows_lla(mn_lla, self.clock()):
            return 0
        fetched = 0
        for address in addresses:
            started = time.perf_counter()
            try:
                key = await self.service.key_by_lla(mn_lla, address, self.clock())
            except (KeyUnknown, KeyServiceError) as exc:
                self.on_fetch(
                    "lla", time.perf_counter() - started, "unknown" if isinstance(exc, KeyUnknown) else "error"
                )
                continue
            self.on_fetch("lla", time.perf_counter() - started, "ok")
            self.cache.put(key, mn_lla=mn_lla)
            fetched += 1
        return fetched

"""Use cases for access-router agents that verify FBUs themselves (architecture.md §8): the revocation feed,
verdict reports for the audit trail, and the FBack authenticator for routers that hold no keys.

Each calls the existing store operations only:

* **Revocations** come from the audit stream (every revocation writes a ``session.revoked`` entry in the same
  step as the deletion). The feed is the stream read from a cursor (a stream id), filtered to those entries,
  and scoped: a router learns the SPI and the HK-Names *for its own addresses* (HK-Name = KDF(HMK-Name, label,
  AR-ID), computable from the public HMK-Name), which are exactly the names its key cache holds. It never
  learns the HMK-Name or anything about other routers' keys.
* **Verdict reports**: verdicts a router made locally are appended to the audit trail as ``fbu.verified`` /
  ``fbu.rejected`` entries attributed to the router (``reported: true``), so the trail stays complete.
* **FBack authenticator**: a router configured to hold no keys sends the FBack it built (BADF with a zeroed
  authenticator); the service fills in the authenticator with the HK for that router's own address (RFC 5568
  §6.4.5, architecture §3), and only for an FBack, so the call signs nothing else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from aaa_fmip import keys
from aaa_fmip.crypto import badf
from aaa_fmip.crypto.kdf import kdf
from aaa_fmip.errors import InvalidRequest, NotFound
from aaa_fmip.model import Caller
from aaa_fmip.service._access import audit_item, require, require_router
from aaa_fmip.store import AuditItem, Store
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire._buffer import internet_checksum, ipv6_pseudo_header

__all__ = ["FbackSignature", "ReportedVerdict", "Revocation", "RevocationPage", "RouterUseCases"]

IPv6 = ipaddress.IPv6Address
REVOKED_EVENT: Final = "session.revoked"
_SCAN_BATCH: Final = 500
_SCAN_LIMIT: Final = 5000  # audit entries examined per call: a call is bounded even far behind the stream
MAX_REPORTED: Final = 1000


@dataclass(frozen=True)
class Revocation:
    at: float
    spi: int
    hk_names: dict[IPv6, bytes]  # the HK-Name of the revoked session for each of the caller's addresses


@dataclass(frozen=True)
class RevocationPage:
    revocations: list[Revocation]
    cursor: str | None  # pass back to continue; None only when the stream is empty
    more: bool  # the scan stopped before the end of the stream: call again at once


@dataclass(frozen=True)
class ReportedVerdict:
    ar_address: IPv6
    spi: int
    sequence: int
    outcome: Literal["accepted", "retransmission", "rejected"]
    reason: str | None
    at: float


@dataclass(frozen=True)
class FbackSignature:
    spi: int
    authenticator: bytes
    mh: bytes  # the FBack with the authenticator in place (checksum for the given addresses)


class RouterUseCases:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    def revocations(self, caller: Caller, *, cursor: str | None, limit: int = 100) -> RevocationPage:
        """Revocations after ``cursor`` (None: from the start of the stream), scoped to the caller's addresses."""
        require(caller, "ar")
        assert caller.router is not None
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be in 1..1000", reason="bad-limit")
        addresses = sorted(caller.router.addresses)
        after = cursor
        out: list[Revocation] = []
        scanned = 0
        while scanned < _SCAN_LIMIT:
            try:
                rows = self.store.run(self.store.ops.read_audit_raw(after, _SCAN_BATCH), "revocations")
            except ValueError:
                raise InvalidRequest("cursor is not a position in the stream", reason="bad-cursor") from None
            for stored in rows:
                entry = stored.entry
                after = entry.id
                scanned += 1
                if entry.event == REVOKED_EVENT:
                    revocation = _revocation(entry.at, entry.fields, addresses)
                    if revocation is not None:
                        out.append(revocation)
                if len(out) >= limit:
                    return RevocationPage(out, after, True)
            if len(rows) < _SCAN_BATCH:
                return RevocationPage(out, after, False)
        return RevocationPage(out, after, True)

    def report_verdicts(self, caller: Caller, verdicts: Sequence[ReportedVerdict]) -> int:
        """Append locally made verdicts to the audit trail, attributed to the calling router."""
        if len(verdicts) > MAX_REPORTED:
            raise InvalidRequest(f"at most {MAX_REPORTED} verdicts per report", reason="too-many")
        require(caller, "ar")
        items: list[AuditItem] = []
        now = self.clock()
        for v in verdicts:
            router = require_router(caller, v.ar_address)
            if v.at > now + 60:
                raise InvalidRequest("a verdict from the future", reason="bad-time")
            items.append(
                audit_item(
                    "fbu.verified" if v.outcome != "rejected" else "fbu.rejected",
                    v.at,
                    actor=caller.name,
                    ar=router,
                    ar_address=str(v.ar_address),
                    spi=v.spi,
                    sequence=v.sequence,
                    verdict=v.outcome if v.outcome != "rejected" else None,
                    reason=v.reason,
                    reported=1,
                )
            )
        if items:
            self.store.append_audits(items)
        return len(items)

    def fback_authenticator(self, caller: Caller, *, par: IPv6, destination: IPv6, mh: bytes) -> FbackSignature:
        """The authenticator of an FBack from ``par`` (one of the caller's addresses) to ``destination``."""
        require_router(caller, par)
        message = mhwire.decode_mh(mh)
        if not isinstance(message, mhwire.FBack):
            raise InvalidRequest("the Mobility Header is not an FBack", reason="not-fback")
        auth = mhwire.badf_input(mh)
        algorithm = badf.algorithm_for_length(len(auth.authenticator))
        if auth.spi == 0:
            raise InvalidRequest("SPI 0 names an RFC 5269 key, which routers hold themselves", reason="bad-spi")
        now = self.clock()
        records = self.store.run(self.store.ops.find_by_spi(auth.spi, limit=2), "fback")
        live = [r for r in records if r.expires_at > now]
        if not live:
            raise NotFound("no live session has this SPI", reason="unknown-session")
        if len(live) > 1:
            raise InvalidRequest("two sessions share this SPI; the router must hold the key", reason="ambiguous-spi")
        hk = keys.derive_hk(live[0].hmk, live[0].hmk_name, par, live[0].spi)
        care_of = next(
            (o.address for o in message.options if isinstance(o, mhwire.AlternateCareOfAddress)), destination
        )
        authenticator = badf.compute_authenticator(hk.hk, care_of, par, auth.mh_data, algorithm)
        # The router's own octets with the authenticator in place (its layout is what was authenticated), and
        # the checksum for the addresses the FBack travels with.
        body = mh[:4] + b"\x00\x00" + mh[6 : len(mh) - len(authenticator)] + authenticator
        checksum = internet_checksum(ipv6_pseudo_header(par, destination, len(body), mhwire.MH_NEXT_HEADER) + body)
        signed = body[:4] + checksum.to_bytes(2, "big") + body[6:]
        self.store.append_audits(
            [
                audit_item(
                    "fback.signed",
                    now,
                    actor=caller.name,
                    ar=caller.router.name if caller.router else None,
                    ar_address=str(par),
                    spi=auth.spi,
                    sequence=message.sequence,
                    status=int(message.status),
                )
            ]
        )
        return FbackSignature(auth.spi, authenticator, signed)


def _revocation(at: float, fields: dict[str, str | int | bool], addresses: list[IPv6]) -> Revocation | None:
    try:
        hmk_name = bytes.fromhex(str(fields["hmk_name"]))
        spi = int(fields["spi"])
    except (KeyError, ValueError):
        return None
    if len(hmk_name) != keys.NAME_LENGTH:
        return None
    names = {a: kdf(hmk_name, keys.LABEL_HK, keys.ar_id_octets(a), keys.NAME_LENGTH) for a in addresses}
    return Revocation(at, spi, names)

"""The PAR side of the router core (aaa_fmip.router.core; RFC 5568 §6.2): FBU → verification → HI → HAck → FBack,
HI retransmission with ×2 backoff, FBU retransmissions answered from the record, an unsolicited HAck's fresh HI.

Sans-IO like the core that owns it: time is passed in, timers are handed to the core's heap (``schedule``) and
come back through :meth:`ParSide.on_timer`."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from ipaddress import IPv6Address

from aaa_fmip.crypto.secrets import constant_time_equal
from aaa_fmip.router.effects import (
    Effect,
    HandoverFinished,
    LocalProtocolError,
    Notice,
    SendMh,
    SharedState,
    VerifyFbu,
)
from aaa_fmip.router.par_handover import (
    DONE_LIFETIME,
    REJECT_STATUS,
    SILENT_REASONS,
    ParEvent,
    ParHandover,
    ParState,
    fback,
    hack_to_fback,
    par_key,
)
from aaa_fmip.router.verify import FbuVerdict, ParsedFbu, ReceivedMh
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire.icmpv6 import IPAddressPrefixCode, LinkLayerAddressCode
from aaa_fmip.wire.mh import FBackStatus, HAckCode, HICode

__all__ = ["ParSide"]


class ParSide:
    """The handovers of nodes leaving this router's links, one per (PCoA, SPI, FBU Sequence Number)."""

    def __init__(self, shared: SharedState, schedule: Callable[[float, ParHandover], None]) -> None:
        self._shared = shared
        self._params = shared.params
        self._schedule = schedule
        self._tokens = itertools.count(1)
        self._par: dict[tuple[IPv6Address, int, int], ParHandover] = {}
        self._par_by_token: dict[int, ParHandover] = {}
        self._par_by_hi: dict[tuple[IPv6Address, int], ParHandover] = {}

    def open_handovers(self) -> int:
        """Handovers waiting for a verdict or a HAck."""
        return len(self._par_by_token) + len(self._par_by_hi)

    # ---- FBU and its verdict

    def receive_fbu(self, fbu: ParsedFbu, now: float) -> list[Effect]:
        if fbu.packet.destination not in self._params.addresses:
            return [Notice("fbu.not-ours", {"destination": str(fbu.packet.destination)})]
        key = par_key(fbu)
        known = self._par.get(key)
        if known is not None and constant_time_equal(known.fbu.auth.authenticator, fbu.auth.authenticator):
            # §6.2.2 retransmission (FBU_RETRIES): answer as the same request, never as a new binding
            known.move(ParEvent.FBU_AGAIN)
            fields: dict[str, str | int | float | None] = {
                "spi": fbu.auth.spi,
                "sequence": fbu.fbu.sequence,
                "state": known.state.value,
            }
            effects: list[Effect] = [Notice("fbu.retransmission", fields)]
            if known.fback is not None:
                effects.append(known.fback)
            return effects
        if self.open_handovers() >= self._params.max_par_handovers:
            handover = ParHandover(next(self._tokens), fbu, now)
            return self._finish_rejected(handover, FbuVerdict("rejected", fbu.auth.spi, fbu.fbu.sequence, "busy"), now)
        handover = ParHandover(next(self._tokens), fbu, now)
        if known is None:
            self._par[key] = handover
        self._par_by_token[handover.token] = handover
        if fbu.mn_lla:
            self._shared.lla_by_address[fbu.pcoa] = fbu.mn_lla
        return [VerifyFbu(handover.token, fbu)]

    def fbu_verified(self, token: int, verdict: FbuVerdict, now: float) -> list[Effect]:
        """The verdict for a :class:`VerifyFbu` effect."""
        handover = self._par_by_token.pop(token, None)
        if handover is None:
            raise LocalProtocolError(f"no FBU waits for verdict {token}")
        handover.verdict = verdict
        fields: dict[str, str | int | float | None] = {
            "spi": verdict.spi,
            "sequence": verdict.sequence,
            "outcome": verdict.outcome,
            "reason": verdict.reason,
            "key_source": verdict.key.source if verdict.key else None,
        }
        effects: list[Effect] = [Notice("fbu.verified" if verdict.valid else "fbu.rejected", fields)]
        stored = self._par.get(par_key(handover.fbu))
        if stored is not handover:
            # Another FBU with the same number and another authenticator. A valid one replaces a forged or
            # rejected one (a forgery must not block the node's own FBU); otherwise only the verdict is reported.
            replace = verdict.valid and (stored is None or stored.verdict is None or not stored.verdict.valid)
            if not replace:
                return effects
            self._par[par_key(handover.fbu)] = handover
        if not verdict.valid:
            return effects + self._finish_rejected(handover, verdict, now)
        nar = self._params.neighbours.nar_for(handover.fbu.ncoa)
        if nar is None:
            unknown = FbuVerdict("rejected", verdict.spi, verdict.sequence, "unknown-nar", key=verdict.key)
            effects.append(Notice("fbu.unknown-nar", {"ncoa": str(handover.fbu.ncoa), "spi": verdict.spi}))
            return effects + self._finish_rejected(handover, unknown, now)
        handover.move(ParEvent.VERDICT_ACCEPTED)
        handover.nar = nar.nar_address
        return effects + self._send_hi(
            handover, now, code=HICode.FBU_FROM_PCOA if handover.fbu.predictive else HICode.FBU_NOT_FROM_PCOA
        )

    def _send_hi(self, handover: ParHandover, now: float, *, code: int, buffer: bool | None = None) -> list[Effect]:
        assert handover.nar is not None
        fbu = handover.fbu
        if handover.hi_sequence:
            self._par_by_hi.pop((handover.nar, handover.hi_sequence), None)
        handover.hi_sequence = self._shared.next_hi_sequence()
        self._par_by_hi[(handover.nar, handover.hi_sequence)] = handover
        options: list[mhwire.MobilityOption] = []
        mn_lla = fbu.mn_lla or self._shared.lla_by_address.get(fbu.pcoa)
        if mn_lla:
            options.append(mhwire.MHLinkLayerAddress(LinkLayerAddressCode.MOBILE_NODE, mn_lla))
        options.append(mhwire.MHIPv6AddressPrefix(IPAddressPrefixCode.OLD_CARE_OF_ADDRESS, 128, fbu.pcoa))
        options.append(mhwire.MHIPv6AddressPrefix(IPAddressPrefixCode.NEW_CARE_OF_ADDRESS, 128, fbu.ncoa))
        neighbour = self._params.neighbours.nar_for(fbu.ncoa)
        assigns = self._params.assigned_addressing or (neighbour is not None and neighbour.assigns_addresses)
        s_flag = assigns and code == HICode.FBU_FROM_PCOA  # §6.2.1.1: S=0 with Code 1; RFC 5271 §5.1: S=1
        hi = mhwire.HI(
            handover.hi_sequence,
            code,
            tuple(options),
            s_flag=s_flag,
            u_flag=self._params.request_buffering if buffer is None else buffer,
        )
        handover.hi_mh = mhwire.encode_mh(hi, source=self._shared.address, destination=handover.nar)
        handover.hi_sent = 1
        handover.deadline = now + self._params.hi_initial_timeout
        self._schedule(handover.deadline, handover)
        return [SendMh(self._shared.address, handover.nar, handover.hi_mh)]

    def _finish(
        self, handover: ParHandover, status: int | None, alternate: IPv6Address | None, now: float, outcome: str
    ) -> list[Effect]:
        verdict = handover.verdict
        lifetime = verdict.lifetime if verdict is not None and status is not None and status < 128 else 0
        effects: list[Effect] = []
        if status is not None:
            handover.fback = fback(handover, status, alternate, lifetime, self._params.lifetime_unit)
            effects.append(handover.fback)
        handover.deadline = None
        handover.forget_at = now + DONE_LIFETIME
        self._schedule(handover.forget_at, handover)
        effects.append(
            HandoverFinished(
                outcome,
                status,
                handover.fbu.auth.spi,
                handover.fbu.fbu.sequence,
                handover.fbu.pcoa,
                alternate or handover.fbu.ncoa,
                handover.nar,
                handover.hi_sent,
                now - handover.started,
                lifetime,
            )
        )
        return effects

    def _finish_rejected(self, handover: ParHandover, verdict: FbuVerdict, now: float) -> list[Effect]:
        handover.verdict = verdict
        if handover.state is ParState.VERIFYING:
            handover.move(ParEvent.VERDICT_REJECTED)
        reason = verdict.reason or "rejected"
        if reason in SILENT_REASONS:
            return self._finish(handover, None, None, now, reason)
        status = REJECT_STATUS.get(reason, FBackStatus.REASON_UNSPECIFIED)
        return self._finish(handover, status, None, now, reason)

    # ---- PAR: HAck

    # ---- HAck

    def receive_hack(self, packet: ReceivedMh, hack: mhwire.HAck, now: float) -> list[Effect]:
        if not self._params.neighbours.is_neighbour_router(packet.source):
            return [Notice("hack.unknown-router", {"source": str(packet.source), "sequence": hack.sequence})]
        if hack.code == HAckCode.UNSOLICITED:
            return self._unsolicited_hack(packet, hack, now)
        handover = self._par_by_hi.get((packet.source, hack.sequence))
        if handover is None or handover.state is not ParState.AWAITING_HACK:
            return [Notice("hack.unexpected", {"source": str(packet.source), "sequence": hack.sequence})]
        handover.move(ParEvent.HACK)
        del self._par_by_hi[(packet.source, hack.sequence)]
        status, alternate, outcome, notices = hack_to_fback(handover, packet.source, hack, self._params.neighbours)
        effects: list[Effect] = [Notice("hack.received", {"source": str(packet.source), "code": int(hack.code)})]
        return effects + notices + self._finish(handover, status, alternate, now, outcome)

    def _unsolicited_hack(self, packet: ReceivedMh, hack: mhwire.HAck, now: float) -> list[Effect]:
        pcoa = next(
            (
                o.address
                for o in hack.options
                if isinstance(o, mhwire.MHIPv6AddressPrefix)
                and o.option_code == IPAddressPrefixCode.OLD_CARE_OF_ADDRESS
            ),
            None,
        )
        candidates = [
            h
            for h in self._par.values()
            if h.state is ParState.DONE
            and h.nar == packet.source
            and h.fbu.pcoa == pcoa
            and h.fback is not None
            and h.verdict is not None
            and h.verdict.valid
        ]
        if not candidates:
            return [Notice("hack.unsolicited-ignored", {"source": str(packet.source), "pcoa": str(pcoa)})]
        handover = max(candidates, key=lambda h: h.started)
        handover.move(ParEvent.UNSOLICITED_HACK)
        notice = Notice("hack.unsolicited", {"source": str(packet.source), "pcoa": str(pcoa)})
        return [
            notice,
            *self._send_hi(
                handover,
                now,
                code=HICode.FBU_FROM_PCOA if handover.fbu.predictive else HICode.FBU_NOT_FROM_PCOA,
                buffer=True,
            ),
        ]

    # ---- NAR: HI

    # ---- timers

    def due(self, at: float, handover: ParHandover) -> bool:
        """Whether a timer entry of ``handover`` still stands (entries are left in the heap when plans change)."""
        if handover.state is ParState.DONE:
            return handover.forget_at == at and self._par.get(par_key(handover.fbu)) is handover
        return handover.deadline == at

    def on_timer(self, handover: ParHandover, now: float) -> list[Effect]:
        """A due timer entry: forget a finished handover, or retransmit its HI (×2 backoff, §6.2.1.1) and give up
        after HI_RETRIES (FBack 128)."""
        if handover.state is ParState.DONE:
            del self._par[par_key(handover.fbu)]
            return []
        return self._hi_timeout(handover, now)

    def _hi_timeout(self, handover: ParHandover, now: float) -> list[Effect]:
        assert handover.nar is not None
        fields: dict[str, str | int | float | None] = {"nar": str(handover.nar), "sequence": handover.hi_sequence}
        if handover.hi_sent <= self._params.hi_retries:
            handover.move(ParEvent.HI_TIMEOUT)
            timeout = self._params.hi_initial_timeout * (2**handover.hi_sent)
            handover.hi_sent += 1
            handover.deadline = now + timeout
            self._schedule(handover.deadline, handover)
            notice = Notice("hi.retransmit", {**fields, "attempt": handover.hi_sent})
            return [notice, SendMh(self._shared.address, handover.nar, handover.hi_mh)]
        handover.move(ParEvent.HI_GIVE_UP)
        self._par_by_hi.pop((handover.nar, handover.hi_sequence), None)
        notice = Notice("hi.no-hack", {**fields, "sent": handover.hi_sent})
        return [notice, *self._finish(handover, FBackStatus.REASON_UNSPECIFIED, None, now, "no-hack")]

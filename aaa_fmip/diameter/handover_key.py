"""The AR-facing Handover-Key application: Diameter request in, one service call, Diameter answer out.

No business logic lives here (architecture.md §7): the handler finds the calling AR, decodes the AVPs, calls
:meth:`HandoverKeyService.handover_key` or :meth:`~HandoverKeyService.verify_fbu`, and encodes the outcome.
Result-Codes come from one table (:mod:`aaa_fmip.diameter.results`).

Who is calling: the request's Origin-Host must be the ``diameter_identity`` of a registered access router. When
the request arrives straight from that AR, the connection's peer identity (authenticated by CER/CEA, and by TLS
or IPsec where deployed) must equal it; when it arrives through a configured Diameter agent (a relay such as
freeDiameter), the agent is trusted to forward Origin-Host unchanged, as RFC 6733 §6.1.9 requires of it.

Unknown AVPs: one with the M bit set that is neither in our dictionary nor a base protocol AVP makes the answer
5001 DIAMETER_AVP_UNSUPPORTED with that AVP in Failed-AVP and no key (RFC 6733 §4.1, §6.1.8, §7.1.5); one
without the M bit is ignored.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from diameter.message import MessageHeader

from aaa_fmip.diameter import results as rc
from aaa_fmip.diameter.avps import BASE_AVP_CODES, AvpCodec, AvpError, MissingAvp
from aaa_fmip.diameter.dictionary import DiameterDictionary
from aaa_fmip.diameter.messages import handover_key_classes
from aaa_fmip.diameter.node import received_from, wire_avps
from aaa_fmip.errors import AaaFmipError, DecodeError, InvalidRequest
from aaa_fmip.model import AccessRouter, Caller, FbuAccepted, FbuVerdict, HandoverKeyGrant

log = logging.getLogger("aaa_fmip.diameter")

INTERFACE = "diameter"  # the metrics label of this adapter
KEY_TYPE_HK = "FMIPv6-HK"  # the Key-Type value name for an FMIPv6 handover key (dictionary file)
_ALGORITHMS = {"HMAC-SHA1-96": "HMAC-SHA1-96", "HMAC-SHA-256-128": "HMAC-SHA-256-128"}
_VERDICTS = {"accepted": "ACCEPTED", "retransmission": "RETRANSMISSION"}


class _Refused(Exception):
    """Stop processing and answer with this Result-Code."""

    def __init__(self, result_code: int, message: str, failed: list[Any] | None = None) -> None:
        super().__init__(message)
        self.result_code = result_code
        self.failed = failed or []


@dataclass(frozen=True)
class HandoverKeyContext:
    """What the handler needs besides the request."""

    service: Any  # HandoverKeyService (typed loosely: the adapter needs only its two AR-side calls)
    dictionary: DiameterDictionary
    origin_host: str
    origin_realm: str
    router_by_identity: Callable[[str], AccessRouter | None]
    agents: frozenset[str] = frozenset()  # peers trusted to relay AR requests (lower case)
    metrics: Any = None  # aaa_fmip.metrics.Metrics, optional


class HandoverKeyApplication:
    """``handle(request) -> answer`` for the Handover-Key command (both modes)."""

    def __init__(self, context: HandoverKeyContext) -> None:
        self.ctx = context
        self.codec = AvpCodec(context.dictionary)
        d = context.dictionary
        _, self._request_class, self._answer_class = handover_key_classes(d.command_code, d.command_name)
        self._known = frozenset((a.code, a.vendor_id) for a in d.avps.values()) | {(code, 0) for code in BASE_AVP_CODES}

    # ---------------------------------------------------------------------------------------------- entry

    def handle(self, request: Any) -> Any:
        try:
            if request.header.command_code != self.ctx.dictionary.command_code:
                raise _Refused(rc.COMMAND_UNSUPPORTED, "unsupported command")
            self._check_realm(request)
            caller = self._caller(request)
            self._check_unsupported(request)
            avps = list(request.avps)
            mode = self._mode(avps)
            if mode == "FBU_VERIFY":
                return self._verify_fbu(request, caller, avps)
            return self._handover_key(request, caller, avps)
        except _Refused as refused:
            return self._error(request, refused.result_code, str(refused), refused.failed)
        except AvpError as exc:
            return self._error(request, exc.result_code, str(exc), [exc.failed])

    # ----------------------------------------------------------------------------------------------- modes

    def _handover_key(self, request: Any, caller: Caller, avps: list[Any]) -> Any:
        codec = self.codec
        ar_address = codec.ipv6(codec.required(avps, "FMIP-AR-Address"))
        selectors = [
            (name, avp) for name in ("Key-SPI", "Calling-Station-Id", "Key-Name") if (avp := codec.optional(avps, name))
        ]
        if not selectors:
            raise MissingAvp("one of Key-SPI, Calling-Station-Id or Key-Name is required", codec.missing("Key-SPI"))
        if len(selectors) > 1:
            raise _Refused(
                rc.CONTRADICTING_AVPS,
                "give exactly one of Key-SPI, Calling-Station-Id or Key-Name",
                [avp for _, avp in selectors],
            )
        name, selector = selectors[0]
        kwargs: dict[str, Any] = {}
        if name == "Key-SPI":
            kwargs["spi"] = codec.unsigned32(selector)
        elif name == "Calling-Station-Id":
            kwargs["calling_station_id"] = codec.utf8(selector)
        else:
            kwargs["hmk_name"] = codec.octets(selector)
        with self._service_call("handover_key", [selector]):
            grant: HandoverKeyGrant = self.ctx.service.handover_key(caller, ar_address=ar_address, **kwargs)
        log.info(
            "diameter handover key issued",
            extra={"ar": caller.name, "ar_address": str(ar_address), "spi": grant.spi, "hk_name": grant.hk_name.hex()},
        )
        key = codec.grouped(
            "Key",
            [
                codec.enum("Key-Type", KEY_TYPE_HK),
                codec.new("Keying-Material", grant.hk.reveal()),
                codec.new("Key-Lifetime", max(0, int(grant.lifetime))),
                codec.new("Key-Name", grant.hk_name),
                codec.new("Key-SPI", grant.spi),
            ],
        )
        extra = [codec.enum("FMIP-Request-Type", "HANDOVER_KEY"), key]
        if grant.algorithm in _ALGORITHMS:
            extra.append(codec.enum("FMIP-Auth-Algorithm", _ALGORITHMS[grant.algorithm]))
        return self._answer(request, rc.SUCCESS, extra)

    def _verify_fbu(self, request: Any, caller: Caller, avps: list[Any]) -> Any:
        codec = self.codec
        destination = codec.ipv6(codec.required(avps, "FMIP-AR-Address"))
        source = codec.ipv6(codec.required(avps, "FMIP-Source-Address"))
        mh_avp = codec.required(avps, "FMIP-Mobility-Header")
        home_avp = codec.optional(avps, "FMIP-Home-Address")
        home = codec.ipv6(home_avp) if home_avp is not None else None
        with self._service_call("verify_fbu", [mh_avp]):
            verdict: FbuVerdict = self.ctx.service.verify_fbu(
                caller, source=source, destination=destination, mh=codec.octets(mh_avp), home_address=home
            )
        if self.ctx.metrics is not None:
            self.ctx.metrics.observe_fbu(INTERFACE, verdict)
        log.info(
            "diameter fbu verified",
            extra={
                "ar": caller.name,
                "spi": verdict.spi,
                "sequence": verdict.sequence,
                "verdict": verdict.verdict if verdict.valid else "rejected",
                "reason": verdict.reason,
            },
        )
        extra = [codec.enum("FMIP-Request-Type", "FBU_VERIFY")]
        if isinstance(verdict, FbuAccepted):
            extra.append(codec.enum("FMIP-FBU-Verdict", _VERDICTS.get(verdict.verdict, "ACCEPTED")))
        else:
            extra.append(codec.enum("FMIP-FBU-Verdict", "REJECTED"))
            extra.append(codec.new("FMIP-Reject-Reason", verdict.reason))
        extra.append(codec.new("Key-SPI", verdict.spi))
        extra.append(codec.new("FMIP-FBU-Sequence", verdict.sequence))
        if isinstance(verdict, FbuAccepted):
            extra.append(codec.new("FMIP-NCoA", verdict.ncoa))
            extra.append(codec.new("FMIP-Binding-Lifetime", max(0, int(verdict.lifetime))))
        return self._answer(request, rc.SUCCESS if verdict.valid else rc.AUTHENTICATION_REJECTED, extra)

    # ------------------------------------------------------------------------------------------- checks

    def _check_realm(self, request: Any) -> None:
        realm = _text(request.destination_realm)
        if realm.lower() != self.ctx.origin_realm.lower():
            raise _Refused(rc.REALM_NOT_SERVED, f"realm {realm!r} is not served here")
        if request.auth_application_id != self.ctx.dictionary.application_id:
            avp = next((a for a in request.avps if a.code == 258 and a.vendor_id == 0), None)  # Auth-Application-Id
            raise _Refused(rc.INVALID_AVP_VALUE, "Auth-Application-Id does not match the header", [avp] if avp else [])

    def _check_unsupported(self, request: Any) -> None:
        # RFC 6733 §6.1.8, §7.1.5: an AVP with the M bit that we do not recognize fails the request with 5001 and
        # the AVP (as received) in Failed-AVP; one without the M bit may be ignored. AVPs inside a Grouped AVP
        # are the group's business (§4.1). The received octets are checked, not python-diameter's re-encoding.
        unsupported = [
            w.avp for w in wire_avps(request) if w.avp.flags & 0x40 and (w.avp.code, w.avp.vendor_id) not in self._known
        ]
        if unsupported:
            names = ", ".join(f"{a.code} (vendor {a.vendor_id})" if a.vendor_id else str(a.code) for a in unsupported)
            raise _Refused(rc.AVP_UNSUPPORTED, f"unsupported AVP with the M bit: {names}", unsupported)

    def _caller(self, request: Any) -> Caller:
        origin = _text(request.origin_host).lower()
        peer = received_from(request)
        router = self.ctx.router_by_identity(origin)
        if router is None:
            raise _Refused(rc.AUTHORIZATION_REJECTED, f"{origin} is not a registered access router")
        if peer and peer != origin and peer not in self.ctx.agents:
            # A directly connected AR may only speak for itself.
            raise _Refused(rc.AUTHORIZATION_REJECTED, "Origin-Host does not match the sending peer")
        return Caller(name=router.name, role="ar", router=router)

    def _mode(self, avps: list[Any]) -> str:
        avp = self.codec.optional(avps, "FMIP-Request-Type")
        return "HANDOVER_KEY" if avp is None else self.codec.enum_name(avp, "FMIP-Request-Type")

    @contextlib.contextmanager
    def _service_call(self, operation: str, blame: list[Any]) -> Iterator[None]:
        """Run a service call; its errors become Result-Codes (``blame`` goes in Failed-AVP for 5004)."""
        timer = self.ctx.metrics.operation(INTERFACE, operation) if self.ctx.metrics is not None else nullcontext()
        try:
            with timer:
                yield
        except AaaFmipError as exc:
            code = rc.result_for(exc)
            failed = blame if isinstance(exc, InvalidRequest | DecodeError) else []
            reason = getattr(exc, "reason", None) or type(exc).__name__
            message = rc.error_message_for(exc)
            extra: dict[str, Any] = {"operation": operation, "result_code": code, "reason": reason}
            if message != str(exc):
                extra["detail"] = str(exc)  # internals (a Redis address, a call name): the log only, never the wire
            log.info("diameter request refused", extra=extra)
            raise _Refused(code, message, failed) from None

    # ------------------------------------------------------------------------------------------ answers

    def _answer(self, request: Any, result_code: int, extra: list[Any]) -> Any:
        if isinstance(request, self._request_class):
            answer = request.to_answer()
        else:  # another command code under our Application-Id: python-diameter has no class to answer with
            answer = self._answer_class(
                MessageHeader(
                    command_code=request.header.command_code,
                    application_id=request.header.application_id,
                    hop_by_hop_identifier=request.header.hop_by_hop_identifier,
                    end_to_end_identifier=request.header.end_to_end_identifier,
                )
            )
            answer.header.command_code = request.header.command_code
        answer.session_id = getattr(request, "session_id", None)
        answer.auth_application_id = self.ctx.dictionary.application_id
        answer.result_code = result_code
        answer.origin_host = self.ctx.origin_host.encode()
        answer.origin_realm = self.ctx.origin_realm.encode()
        answer.proxy_info = list(getattr(request, "proxy_info", None) or [])
        for avp in extra:
            answer.append_avp(avp)
        return answer

    def _error(self, request: Any, result_code: int, message: str, failed: list[Any]) -> Any:
        answer = self._answer(request, result_code, [])
        answer.error_message = message[:200]
        if failed:
            from diameter.message.avp.grouped import FailedAvp

            answer.failed_avp = FailedAvp(additional_avps=list(failed))
        if rc.is_protocol_error(result_code):
            answer.header.is_error = True
        return answer


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)

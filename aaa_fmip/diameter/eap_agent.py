"""The Diameter EAP agent (RFC 4072): a proxy on the DER/DEA path between NASes and a home EAP server.

It forwards each DER to a home EAP server and the DEA back (RFC 6733 §6.1.9 proxy rules: same End-to-End
Identifier, our own Hop-by-Hop Identifier, a Route-Record naming the NAS). Relayed AVPs are sent as the octets
they arrived as (flags, Vendor-Ids, order, unknown AVPs included): the agent does not re-encode what it only
passes on, and it leaves unknown M-bit AVPs to the home server or NAS, the end points that must understand them
(RFC 6733 §4.1, §6.1.8). When a successful DEA carries an
RFC 6734 Key AVP of Key-Type DSRK (0) with the EMSKName in Key-Name, the agent derives and stores the
visited-domain HMK through :meth:`HandoverKeyService.ingest_session` (architecture.md §2) and removes that Key
AVP before the DEA reaches the NAS: the DSRK belongs to this domain's key service, never to the NAS. A store
failure is logged and counted but never changes the DEA (network access does not depend on handover keys).
A DEA that arrives after the NAS was answered 3002 (the home server took longer than ``answer_timeout``) matches
no waiting request: the node drops, logs and counts it, and its DSRK is not stored (the NAS treats that
authentication as failed).

STR from a NAS and ASR from the home server revoke the session's HMK (external id
``diameter-session:<Session-Id>``) and are forwarded like DERs.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from typing import Any, Final

from diameter.message import MessageHeader
from diameter.message import constants as c
from diameter.message.avp import Avp

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.diameter import results as rc
from aaa_fmip.diameter.avps import AvpCodec, AvpError, WireAvp
from aaa_fmip.diameter.dictionary import DiameterDictionary
from aaa_fmip.diameter.node import NotRoutable, VerbatimMessage, received_from, wire_avps
from aaa_fmip.errors import AaaFmipError
from aaa_fmip.model import Caller, SessionRequest, VisitedKeys

log = logging.getLogger("aaa_fmip.diameter")

INTERFACE: Final = "diameter"
EAP_APPLICATION_ID: Final = 5  # RFC 4072 §2
BASE_APPLICATION_ID: Final = 0  # STR/ASR may carry the base protocol's id in the header
CMD_DIAMETER_EAP: Final = 268  # RFC 4072 §3.1
CMD_SESSION_TERMINATION: Final = 275  # RFC 6733 §8.4
CMD_ABORT_SESSION: Final = 274  # RFC 6733 §8.5
KEY_TYPE_DSRK: Final = "DSRK"
EXTERNAL_ID_PREFIX: Final = "diameter-session:"
MAX_TRACKED_SESSIONS: Final = 100_000


def external_id(session_id: str) -> str:
    """The external id under which a Diameter session's HMK is stored (revocation selector)."""
    return f"{EXTERNAL_ID_PREFIX}{session_id}"


@dataclass(frozen=True)
class EapAgentContext:
    service: Any  # HandoverKeyService: ingest_session and revoke_matching
    dictionary: DiameterDictionary
    origin_host: str
    origin_realm: str
    nas_peers: frozenset[str]
    home_servers: tuple[str, ...]  # tried in order: the first with an open connection gets the DER
    answer_timeout: float = 5.0
    metrics: Any = None


@dataclass(frozen=True)
class _Route:
    nas: str
    home: str


class EapAgent:
    """``handle(request) -> answer`` for DER, STR and ASR. :meth:`bind` gives it the application to send with."""

    def __init__(self, context: EapAgentContext) -> None:
        self.ctx = context
        self.codec = AvpCodec(context.dictionary)
        self._app: Any = None
        self._routes: OrderedDict[str, _Route] = OrderedDict()  # Session-Id → who to send STR/ASR to
        self._lock = threading.Lock()
        self.caller = Caller(name=f"diameter-agent:{context.origin_host}", role="aaa")

    def bind(self, application: Any) -> None:
        self._app = application

    # --------------------------------------------------------------------------------------------- entry

    def handle(self, request: Any) -> Any:
        peer = received_from(request)
        code = request.header.command_code
        if code == CMD_DIAMETER_EAP and peer in self.ctx.nas_peers:
            return self._der(request, peer)
        if code == CMD_SESSION_TERMINATION and peer in self.ctx.nas_peers:
            return self._termination(request, peer, "session-termination")
        if code == CMD_ABORT_SESSION and peer in self.ctx.home_servers:
            return self._termination(request, peer, "abort-session")
        return self._local_error(request, rc.COMMAND_UNSUPPORTED, "command not supported from this peer")

    # ----------------------------------------------------------------------------------------------- DER

    def _der(self, request: Any, nas: str) -> Any:
        session_id = str(request.session_id)
        with self._lock:
            earlier = self._routes.get(session_id)
        # Later rounds of a multi-round exchange (1001) go to the server that holds the EAP state.
        home = earlier.home if earlier is not None and self._app_ready(earlier.home) else self._pick_home()
        if home is None:
            return self._local_error(request, rc.UNABLE_TO_DELIVER, "no home EAP server is connected")
        answer = self._forward(request, nas, home)
        if answer is None:
            return self._local_error(request, rc.UNABLE_TO_DELIVER, "the home EAP server did not answer")
        kept, dsrk_keys = self._split_keys(wire_avps(answer))
        if dsrk_keys:
            if answer.result_code == rc.SUCCESS:
                self._ingest(request, answer, session_id, home, dsrk_keys[0])
            else:
                log.warning("diameter DEA carried a DSRK without success; dropped", extra={"session_id": session_id})
        if answer.result_code == rc.SUCCESS or answer.result_code == rc.MULTI_ROUND_AUTH:
            self._remember(session_id, _Route(nas=nas, home=home))
        return _relayed_answer(request, answer, kept)

    def _split_keys(self, avps: Sequence[WireAvp]) -> tuple[list[WireAvp], list[Any]]:
        """(AVPs to relay, DSRK Key AVPs to consume). Other Key-Types (rMSK, rRK) pass through untouched; a Key
        AVP whose Key-Type cannot be read is dropped (it might hold a DSRK, which must never reach the NAS)."""
        key_def = self.codec.dictionary.avp("Key")
        dsrk = self.codec.dictionary.avp("Key-Type").value(KEY_TYPE_DSRK)
        kept: list[WireAvp] = []
        taken: list[Any] = []
        for wire in avps:
            avp = wire.avp
            if avp.code == key_def.code and avp.vendor_id == key_def.vendor_id:
                try:
                    key_type = self.codec.integer32(self.codec.required(self.codec.members(avp), "Key-Type"))
                except AvpError:
                    log.warning("diameter DEA carried an unreadable Key AVP; dropped")
                    self._count_error("relay", "invalid_key_avp")
                    continue
                if key_type == dsrk:
                    taken.append(avp)
                    continue
            kept.append(wire)
        return kept, taken

    def _ingest(self, request: Any, answer: Any, session_id: str, home: str, key: Any) -> None:
        codec = self.codec
        try:
            members = codec.members(key)
            dsrk = codec.octets(codec.required(members, "Keying-Material"))
            emsk_name = codec.octets(codec.required(members, "Key-Name"))
            lifetime_avp = codec.optional(members, "Key-Lifetime")
        except AvpError as exc:
            log.warning("diameter DSRK Key AVP unusable", extra={"session_id": session_id, "reason": str(exc)})
            self._count_error("ingest", "invalid_key_avp")
            return
        lifetimes = [v for v in (answer.session_timeout,) if isinstance(v, int) and v > 0]
        if lifetime_avp is not None:
            with suppress(AvpError):
                lifetimes.append(codec.unsigned32(lifetime_avp))
        user_name = answer.user_name or request.user_name or ""
        timer = self.ctx.metrics.operation(INTERFACE, "ingest") if self.ctx.metrics is not None else nullcontext()
        try:
            with timer:
                info = self.ctx.service.ingest_session(
                    Caller(name=f"diameter:{home}", role="aaa"),
                    SessionRequest(
                        user_name=str(user_name),
                        keys=VisitedKeys(SecretBytes(dsrk), emsk_name),
                        calling_station_id=request.calling_station_id or None,
                        nas_identifier=_text(request.origin_host) or None,
                        lifetime=min(lifetimes) if lifetimes else None,
                        external_ids=(external_id(session_id),),
                    ),
                )
        except AaaFmipError as exc:
            log.warning(
                "diameter DSRK not stored; the MN falls back to SEND",
                extra={"session_id": session_id, "error": type(exc).__name__, "reason": getattr(exc, "reason", "")},
            )
            return
        log.info(
            "diameter visited-domain HMK stored",
            extra={"session_id": session_id, "spi": info.spi, "hmk_name": info.hmk_name.hex(), "home": home},
        )

    # ------------------------------------------------------------------------------------------- STR/ASR

    def _termination(self, request: Any, peer: str, cause: str) -> Any:
        session_id = str(request.session_id)
        timer = self.ctx.metrics.operation(INTERFACE, "revoke") if self.ctx.metrics is not None else nullcontext()
        try:
            with timer:
                revoked = self.ctx.service.revoke_matching(
                    Caller(name=f"diameter:{peer}", role="aaa"), external_id=external_id(session_id), cause=cause
                )
            log.info("diameter session revoked", extra={"session_id": session_id, "revoked": revoked, "cause": cause})
        except AaaFmipError as exc:
            log.warning(
                "diameter session revocation failed",
                extra={"session_id": session_id, "error": type(exc).__name__, "cause": cause},
            )
        route = self._forget(session_id)
        if cause == "session-termination":
            target = route.home if route and self._app_ready(route.home) else self._pick_home()
        else:
            target = _text(request.destination_host).lower() or (route.nas if route else "")
            if target not in self.ctx.nas_peers:
                target = route.nas if route else ""
        if not target:
            return self._local_error(request, rc.UNABLE_TO_DELIVER, "no peer to deliver to")
        answer = self._forward(request, peer, target)
        if answer is None:
            return self._local_error(request, rc.UNABLE_TO_DELIVER, f"{target} did not answer")
        return _relayed_answer(request, answer, wire_avps(answer))

    # ------------------------------------------------------------------------------------------- helpers

    def _forward(self, request: Any, from_peer: str, to_peer: str) -> Any | None:
        header = MessageHeader(
            version=1,
            command_flags=request.header.command_flags,
            command_code=request.header.command_code,
            application_id=request.header.application_id,
            hop_by_hop_identifier=0,
            end_to_end_identifier=request.header.end_to_end_identifier,
        )
        # RFC 6733 §6.1.9: a proxy appends a Route-Record with the identity of the peer it received from; every
        # other AVP goes on as it arrived.
        route_record = Avp.new(c.AVP_ROUTE_RECORD, value=from_peer.encode())
        forwarded = VerbatimMessage(header, [*(w.raw for w in wire_avps(request)), route_record.as_bytes()])
        try:
            return self._app.request_to(forwarded, to_peer, self.ctx.answer_timeout)
        except (NotRoutable, TimeoutError) as exc:
            log.warning("diameter forward failed", extra={"peer": to_peer, "reason": str(exc)})
            return None

    def _pick_home(self) -> str | None:
        return next((h for h in self.ctx.home_servers if self._app_ready(h)), None)

    def _app_ready(self, identity: str) -> bool:
        return bool(self._app is not None and self._app.node.peer_ready(identity))

    def _remember(self, session_id: str, route: _Route) -> None:
        with self._lock:
            self._routes[session_id] = route
            self._routes.move_to_end(session_id)
            while len(self._routes) > MAX_TRACKED_SESSIONS:
                self._routes.popitem(last=False)

    def _forget(self, session_id: str) -> _Route | None:
        with self._lock:
            return self._routes.pop(session_id, None)

    def _local_error(self, request: Any, result_code: int, message: str) -> Any:
        answer = request.to_answer()
        answer.session_id = request.session_id
        answer.origin_host = self.ctx.origin_host.encode()
        answer.origin_realm = self.ctx.origin_realm.encode()
        answer.result_code = result_code
        answer.error_message = message
        if hasattr(answer, "auth_application_id") and request.auth_application_id is not None:
            answer.auth_application_id = request.auth_application_id
        if hasattr(answer, "auth_request_type") and getattr(request, "auth_request_type", None) is not None:
            answer.auth_request_type = request.auth_request_type
        if rc.is_protocol_error(result_code):
            answer.header.is_error = True
            answer.error_reporting_host = self.ctx.origin_host.encode()
        return answer

    def _count_error(self, operation: str, error: str) -> None:
        if self.ctx.metrics is not None:
            self.ctx.metrics.operation_errors.labels(INTERFACE, operation, error).inc()


def _relayed_answer(request: Any, answer: Any, avps: Iterable[WireAvp]) -> Any:
    """The upstream answer, re-addressed to the request we received (its Hop-by-Hop and End-to-End ids), its
    AVPs sent as the octets they arrived as."""
    header = MessageHeader(
        version=1,
        command_flags=answer.header.command_flags,
        command_code=answer.header.command_code,
        application_id=answer.header.application_id,
        hop_by_hop_identifier=request.header.hop_by_hop_identifier,
        end_to_end_identifier=request.header.end_to_end_identifier,
    )
    return VerbatimMessage(header, [w.raw for w in avps])


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

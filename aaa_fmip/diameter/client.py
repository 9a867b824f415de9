"""AR-side client of the Handover-Key application: ask for this AR's HK, or have an FBU verified.

::

    with HandoverKeyClient(origin_host="ar1.example.net", origin_realm="example.net",
                           peer="keys.example.net", host="192.0.2.10", destination_realm="example.net") as client:
        answer = client.handover_key(IPv6Address("2001:db8:1::1"), spi=0x1234ABCD)
        if answer.ok:
            install(answer.hk.reveal(), answer.spi, answer.lifetime)

``peer`` is the Diameter identity the client connects to: the key service itself, or a relay (freeDiameter)
in front of it; ``destination_realm`` is the key service's realm. The client runs its own python-diameter node
(started by ``start()`` or ``with``) and stops it promptly.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from diameter.message import MessageHeader

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.diameter import results as rc
from aaa_fmip.diameter.avps import AvpCodec, AvpError
from aaa_fmip.diameter.dictionary import DiameterDictionary, load_dictionary, register
from aaa_fmip.diameter.handover_key import KEY_TYPE_HK
from aaa_fmip.diameter.messages import handover_key_classes
from aaa_fmip.diameter.node import Node, PooledApplication

IPv6 = ipaddress.IPv6Address
_VERDICTS: Final = {"ACCEPTED": "accepted", "RETRANSMISSION": "retransmission", "REJECTED": "rejected"}


@dataclass(frozen=True)
class KeyAnswer:
    """A Handover-Key answer. ``hk`` is set only with Result-Code 2001."""

    result_code: int
    hk: SecretBytes | None = None
    hk_name: bytes | None = None
    spi: int | None = None
    lifetime: int | None = None  # seconds from receipt (RFC 6734 §3.4)
    key_type: int | None = None
    algorithm: str | None = None
    error_message: str | None = None
    failed_avps: tuple[tuple[int, int], ...] = ()  # (code, vendor id) of each AVP in Failed-AVP

    @property
    def ok(self) -> bool:
        return self.result_code == rc.SUCCESS


@dataclass(frozen=True)
class FbuAnswer:
    """An FBU-verify answer: ``verdict`` is "accepted", "retransmission" or "rejected" (then ``reason``)."""

    result_code: int
    verdict: str | None = None
    reason: str | None = None
    spi: int | None = None
    sequence: int | None = None
    ncoa: IPv6 | None = None
    lifetime: int | None = None  # seconds
    error_message: str | None = None
    failed_avps: tuple[tuple[int, int], ...] = ()

    @property
    def accepted(self) -> bool:
        return self.result_code == rc.SUCCESS and self.verdict in ("accepted", "retransmission")


class HandoverKeyClient:
    """A python-diameter node that speaks the Handover-Key application to one peer."""

    def __init__(
        self,
        *,
        origin_host: str,
        origin_realm: str,
        peer: str,
        host: str,
        port: int = 3868,
        destination_realm: str | None = None,
        destination_host: str | None = None,
        dictionary: DiameterDictionary | None = None,
        dictionary_path: Path | None = None,
        application_id: int | None = None,
        vendor_id: int | None = None,
        command_code: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        base = dictionary or load_dictionary(dictionary_path)
        self.dictionary = base.with_overrides(
            application_id=application_id, vendor_id=vendor_id, command_code=command_code
        )
        self.codec = AvpCodec(self.dictionary)
        self.origin_host = origin_host
        self.origin_realm = origin_realm
        self.peer = peer.lower()
        self.host = host
        self.port = port
        self.destination_realm = destination_realm or origin_realm
        self.destination_host = destination_host
        self.timeout = timeout
        self.node: Node | None = None
        self._app: PooledApplication | None = None
        _, self._request_class, _ = handover_key_classes(self.dictionary.command_code, self.dictionary.command_name)

    # ---------------------------------------------------------------------------------------------- life

    def start(self, wait: float = 10.0) -> HandoverKeyClient:
        """Connect (CER/CEA) to the peer; raises TimeoutError if it is not open within ``wait`` seconds."""
        if self.node is not None:
            raise RuntimeError("the client is already started")
        register(self.dictionary)
        node = Node(self.origin_host, self.origin_realm, vendor_ids=[self.dictionary.vendor_id])
        node.vendor_id = self.dictionary.vendor_id
        node.vendor_applications[self.dictionary.application_id] = self.dictionary.vendor_id  # RFC 6733 §6.11
        node.product_name = "aaa-fmip-ar"
        self.node = node
        try:
            peer = node.add_peer(
                f"aaa://{self.peer}:{self.port};transport=tcp",
                self.destination_realm,
                ip_addresses=[self.host],
                is_persistent=True,
            )
            peer.reconnect_wait = 2
            app = PooledApplication(self.dictionary.application_id, self._refuse, workers=2, name="ar")
            node.add_application(app, [peer])
            node.serve(app, [self.peer])
            self._app = app
            node.start()
            if not node.wait_for_peer(self.peer, wait):
                raise TimeoutError(f"{self.peer} at {self.host}:{self.port} did not complete CER/CEA in {wait:g} s")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        node, self.node = self.node, None
        if node is not None:
            node.stop()

    def __enter__(self) -> HandoverKeyClient:
        return self if self.node is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _refuse(self, request: Any) -> Any:
        answer = request.to_answer()
        answer.session_id = request.session_id
        answer.origin_host = self.origin_host.encode()
        answer.origin_realm = self.origin_realm.encode()
        answer.result_code = rc.COMMAND_UNSUPPORTED
        answer.header.is_error = True
        return answer

    # ------------------------------------------------------------------------------------------- requests

    def new_request(self, mode: str | None = "HANDOVER_KEY") -> Any:
        """An empty Handover-Key request with the base AVPs set (for callers that add AVPs themselves)."""
        if self.node is None:
            raise RuntimeError("the client is not started")
        request = self._request_class(
            MessageHeader(command_code=self.dictionary.command_code, application_id=self.dictionary.application_id)
        )
        request.session_id = self.node.session_generator.next_id()
        request.auth_application_id = self.dictionary.application_id
        request.origin_host = self.origin_host.encode()
        request.origin_realm = self.origin_realm.encode()
        request.destination_realm = self.destination_realm.encode()
        if self.destination_host:
            request.destination_host = self.destination_host.encode()
        if mode is not None:
            request.append_avp(self.codec.enum("FMIP-Request-Type", mode))
        return request

    def send(self, request: Any, timeout: float | None = None) -> Any:
        """Send a request and return the raw answer message."""
        if self._app is None or self.node is None:
            raise RuntimeError("the client is not started")
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        # A relay may still be opening its own connection onward; our side must at least be open.
        self.node.wait_for_peer(self.peer, max(0.0, deadline - time.monotonic()))
        return self._app.request_to(request, self.peer, max(0.1, deadline - time.monotonic()))

    def handover_key(
        self,
        ar_address: IPv6,
        *,
        spi: int | None = None,
        calling_station_id: str | None = None,
        hmk_name: bytes | None = None,
    ) -> KeyAnswer:
        """This AR's HK for the session selected by exactly one of ``spi``, ``calling_station_id``, ``hmk_name``."""
        request = self.new_request("HANDOVER_KEY")
        request.append_avp(self.codec.new("FMIP-AR-Address", ar_address))
        if spi is not None:
            request.append_avp(self.codec.new("Key-SPI", spi))
        if calling_station_id is not None:
            request.append_avp(self.codec.new("Calling-Station-Id", calling_station_id))
        if hmk_name is not None:
            request.append_avp(self.codec.new("Key-Name", hmk_name))
        return self.decode_key_answer(self.send(request))

    def verify_fbu(self, *, ar_address: IPv6, source: IPv6, mh: bytes, home_address: IPv6 | None = None) -> FbuAnswer:
        """Have the FBU (its whole Mobility Header, the packet's source, the PAR address) verified."""
        request = self.new_request("FBU_VERIFY")
        request.append_avp(self.codec.new("FMIP-AR-Address", ar_address))
        request.append_avp(self.codec.new("FMIP-Source-Address", source))
        if home_address is not None:
            request.append_avp(self.codec.new("FMIP-Home-Address", home_address))
        request.append_avp(self.codec.new("FMIP-Mobility-Header", bytes(mh)))
        return self.decode_fbu_answer(self.send(request))

    # -------------------------------------------------------------------------------------------- answers

    def decode_key_answer(self, answer: Any) -> KeyAnswer:
        codec = self.codec
        avps = list(answer.avps)
        common = _common(answer)
        if answer.result_code != rc.SUCCESS:
            return KeyAnswer(answer.result_code, **common)
        try:
            members = codec.members(codec.required(avps, "Key"))
            key_type = codec.integer32(codec.required(members, "Key-Type"))
            algorithm_avp = codec.optional(avps, "FMIP-Auth-Algorithm")
            return KeyAnswer(
                answer.result_code,
                hk=SecretBytes(codec.octets(codec.required(members, "Keying-Material"))),
                hk_name=codec.octets(codec.required(members, "Key-Name")),
                spi=codec.unsigned32(codec.required(members, "Key-SPI")),
                lifetime=codec.unsigned32(codec.required(members, "Key-Lifetime")),
                key_type=key_type,
                algorithm=codec.enum_name(algorithm_avp, "FMIP-Auth-Algorithm") if algorithm_avp else None,
                **common,
            )
        except AvpError as exc:
            raise ValueError(f"malformed Handover-Key answer: {exc}") from None

    def decode_fbu_answer(self, answer: Any) -> FbuAnswer:
        codec = self.codec
        avps = list(answer.avps)
        common = _common(answer)
        try:
            verdict_avp = codec.optional(avps, "FMIP-FBU-Verdict")
            reason_avp = codec.optional(avps, "FMIP-Reject-Reason")
            spi_avp = codec.optional(avps, "Key-SPI")
            seq_avp = codec.optional(avps, "FMIP-FBU-Sequence")
            ncoa_avp = codec.optional(avps, "FMIP-NCoA")
            lifetime_avp = codec.optional(avps, "FMIP-Binding-Lifetime")
            return FbuAnswer(
                answer.result_code,
                verdict=_VERDICTS[codec.enum_name(verdict_avp, "FMIP-FBU-Verdict")] if verdict_avp else None,
                reason=codec.utf8(reason_avp) if reason_avp else None,
                spi=codec.unsigned32(spi_avp) if spi_avp else None,
                sequence=codec.unsigned32(seq_avp) if seq_avp else None,
                ncoa=codec.ipv6(ncoa_avp) if ncoa_avp else None,
                lifetime=codec.unsigned32(lifetime_avp) if lifetime_avp else None,
                **common,
            )
        except AvpError as exc:
            raise ValueError(f"malformed FBU-verify answer: {exc}") from None

    @property
    def key_type_hk(self) -> int:
        return self.dictionary.avp("Key-Type").value(KEY_TYPE_HK)


def _common(answer: Any) -> dict[str, Any]:
    failed: tuple[tuple[int, int], ...] = ()
    if answer.failed_avp is not None:
        failed = tuple((a.code, a.vendor_id) for a in answer.failed_avp.additional_avps)
    message = answer.error_message
    return {"error_message": message if isinstance(message, str) else None, "failed_avps": failed}

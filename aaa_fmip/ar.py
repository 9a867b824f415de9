"""AR-side library of the RFC 5269 SEND fallback: from a received RtSolPr to the signed PrRtAdv.

The access router forwards the RtSolPr to the key service and signs the answer itself, with its own router key,
which never leaves the router (architecture.md §4)::

    received = ar.ReceivedRtSolPr.from_packet(ipv6_packet)            # or ReceivedRtSolPr(source, dest, icmpv6)
    response = http.post("/v1/send/handover-key", json=received.service_request())
    reply = ar.ServiceReply.from_json(response.json())
    prrtadv = ar.build_prrtadv(received, reply, router, timestamp=now, options=neighbourhood)
    send(prrtadv.ipv6_packet())

The PrRtAdv (RFC 5568 §6.1.2) copies the RtSolPr's Identifier and carries, in this order: the caller's
neighbourhood options (New Access Point LLA, NAR LLA / IP address / prefix), the Handover Key Reply from the
service (ND 28), the router's CGA option (ND 11), a Timestamp (ND 13), the RtSolPr's Nonce echoed (ND 14) and the
RSA Signature (ND 12) last (RFC 3971 §5.2). It is sent from the router's CGA (its link-local address) to the
MN's CGA. The signature covers the checksum of the message without the signature option, then the final
checksum covers everything (architecture.md §3).

No IO and no clock: the time is passed in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aaa_fmip import keys
from aaa_fmip.crypto import cga, rsa
from aaa_fmip.crypto.certificates import certificate_public_key
from aaa_fmip.crypto.secrets import SecretBytes, constant_time_equal
from aaa_fmip.errors import DecodeError
from aaa_fmip.keys import HandoverKey
from aaa_fmip.mn import generate_cga_identity
from aaa_fmip.send_policy import sign_send_message
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire import ipv6 as ipv6wire
from aaa_fmip.wire.send import CGAParameters

__all__ = [
    "LINK_LOCAL_PREFIX",
    "ReceivedRtSolPr",
    "RouterIdentity",
    "ServiceReply",
    "SignedPrRtAdv",
    "build_prrtadv",
    "router_identity",
]

LINK_LOCAL_PREFIX: Final = ipaddress.IPv6Network("fe80::/64")  # RFC 5568 §6.1.2: PrRtAdv from the link-local address

IPv6 = ipaddress.IPv6Address


@dataclass(frozen=True)
class RouterIdentity:
    """The AR's SEND identity: its router key, the CGA it sends PrRtAdvs from, and the X.509 certificate (PEM
    or DER) that certifies the key for the MNs' trust anchor (RFC 3971 §6). Checked on construction."""

    private_key: rsa.RSAPrivateKey = field(repr=False)
    address: IPv6  # a CGA for ``parameters``, normally on fe80::/64
    parameters: CGAParameters
    certificate: bytes = field(repr=False)

    def __post_init__(self) -> None:
        public = rsa.public_key_der(self.private_key)
        if self.parameters.public_key != public:
            raise ValueError("the CGA parameters do not hold the router key")
        cga.verify_cga(self.address, self.parameters)
        if certificate_public_key(self.certificate) != public:
            raise ValueError("the certificate does not certify the router key")

    @property
    def public_key(self) -> bytes:
        """DER SubjectPublicKeyInfo of the router key."""
        return self.parameters.public_key


def router_identity(
    private_key: rsa.RSAPrivateKey,
    certificate: bytes,
    *,
    prefix: ipaddress.IPv6Network = LINK_LOCAL_PREFIX,
    sec: int = 1,
) -> RouterIdentity:
    """A :class:`RouterIdentity` with a freshly generated CGA on ``prefix`` (RFC 3972 §4). A router keeps its
    CGA across restarts by storing ``address`` and ``parameters`` and constructing the identity directly."""
    generated = generate_cga_identity(prefix, sec=sec, private_key=private_key)
    return RouterIdentity(private_key, generated.address, generated.parameters, certificate)


@dataclass(frozen=True)
class ReceivedRtSolPr:
    """An RtSolPr as the router received it: the IPv6 addresses and the ICMPv6 message."""

    source: IPv6  # the MN's CGA
    destination: IPv6  # the router address it was sent to
    icmpv6: bytes

    @classmethod
    def from_packet(cls, packet: bytes) -> ReceivedRtSolPr:
        """From a whole IPv6 packet; raises DecodeError if it is malformed or does not carry ICMPv6."""
        parsed = ipv6wire.parse_ipv6_packet(packet)
        if parsed.upper_next_header != icmpv6.ICMPV6_NEXT_HEADER:
            raise DecodeError("the packet does not carry ICMPv6", field="ipv6.next_header", offset=6)
        return cls(parsed.source, parsed.destination, parsed.payload)

    def service_request(self) -> dict[str, str]:
        """The JSON body of ``POST /v1/send/handover-key``."""
        return {"source": str(self.source), "destination": str(self.destination), "icmpv6": self.icmpv6.hex()}


@dataclass(frozen=True)
class ServiceReply:
    """The key service's answer to ``POST /v1/send/handover-key``, decoded."""

    handover_key_reply: icmpv6.HandoverKeyReply  # the ND 28 option to put in the PrRtAdv
    nonce: bytes  # the RtSolPr's Nonce, echoed in the PrRtAdv
    identifier: int  # the RtSolPr's Identifier, copied into the PrRtAdv
    lifetime: int  # seconds
    hk: SecretBytes = field(repr=False)  # for the router's own check of SPI 0 FBUs
    hk_expires_at: str  # RFC 3339

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ServiceReply:
        """Decode the JSON response body; raises ValueError (or DecodeError for a malformed option)."""
        try:
            option_octets = bytes.fromhex(body["handover_key_reply_option"])
            nonce = bytes.fromhex(body["nonce"])
            identifier, lifetime = int(body["identifier"]), int(body["lifetime"])
            hk = SecretBytes(bytes.fromhex(body["hk"]))
            expires_at = str(body["hk_expires_at"])
        except (KeyError, TypeError, ValueError):
            raise ValueError("not a response of POST /v1/send/handover-key") from None
        options = icmpv6.decode_nd_options(option_octets)
        if len(options) != 1 or not isinstance(options[0], icmpv6.HandoverKeyReply):
            raise ValueError("handover_key_reply_option is not exactly one Handover Key Reply option")
        return cls(options[0], nonce, identifier, lifetime, hk, expires_at)

    def handover_key(self) -> HandoverKey:
        """The HK as a :class:`HandoverKey` with SPI 0, for :func:`aaa_fmip.crypto.badf.verify_authenticator`."""
        return HandoverKey(self.hk, b"", keys.SPI_RFC5269)


@dataclass(frozen=True)
class SignedPrRtAdv:
    """A signed PrRtAdv and its IPv6 addresses."""

    message: bytes  # the ICMPv6 message (type 154, subtype 3), checksum and RSA Signature included
    source: IPv6  # the router's CGA
    destination: IPv6  # the MN's CGA

    def ipv6_packet(self) -> bytes:
        """The whole IPv6 packet (Hop Limit 255, RFC 5568 §6.1)."""
        return ipv6wire.build_ipv6_packet(self.source, self.destination, icmpv6.ICMPV6_NEXT_HEADER, self.message)


def _signed_values(message: bytes) -> tuple[int, bytes | None]:
    """The RtSolPr's Identifier and its first Nonce before the RSA Signature option (the signed one)."""
    decoded = icmpv6.decode_icmpv6(message)
    if not isinstance(decoded, icmpv6.RtSolPr):
        raise ValueError("the received message is not an RtSolPr")
    for option in decoded.options:
        if isinstance(option, icmpv6.RSASignature):
            break
        if isinstance(option, icmpv6.Nonce):
            return decoded.identifier, option.nonce
    return decoded.identifier, None


def build_prrtadv(
    received: ReceivedRtSolPr,
    reply: ServiceReply,
    router: RouterIdentity,
    *,
    timestamp: float,
    code: int = icmpv6.PrRtAdvCode.NEW_ROUTER_INFO,
    options: Sequence[icmpv6.NDOption] = (),
) -> SignedPrRtAdv:
    """The signed PrRtAdv answering ``received`` with the service's ``reply`` (module docstring for the layout).

    ``options`` are the router's [AP-ID, AR-Info] options for this ``code`` (RFC 5568 §6.1.2), placed first;
    ``timestamp`` (POSIX seconds) goes in the Timestamp option. Raises ValueError when ``reply`` does not
    answer ``received`` (another Identifier or Nonce) and DecodeError for a malformed RtSolPr.
    """
    identifier, nonce = _signed_values(received.icmpv6)
    if identifier != reply.identifier or nonce is None or not constant_time_equal(nonce, reply.nonce):
        raise ValueError("the service's reply does not answer this RtSolPr (Identifier or Nonce differ)")
    body: list[icmpv6.NDOption] = [
        *options,
        reply.handover_key_reply,
        icmpv6.CGAOption(router.parameters),
        icmpv6.Timestamp.from_seconds(timestamp),
        icmpv6.Nonce(reply.nonce),
    ]
    source, destination = router.address, received.source
    message = sign_send_message(
        lambda opts: icmpv6.PrRtAdv(code, identifier, opts),
        body,
        private_key=router.private_key,
        public_key=router.public_key,
        source=source,
        destination=destination,
    )
    return SignedPrRtAdv(message, source, destination)

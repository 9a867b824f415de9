"""The mobile node's RFC 5269 SEND fallback: a signed RtSolPr with a Handover Key Request, the Handover Key Reply,
and the router's authority over its PrRtAdv (RFC 3971 §5.1.2, §6)."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

from aaa_fmip import keys
from aaa_fmip.crypto import certificates, cga, rsa
from aaa_fmip.crypto.badf import Algorithm
from aaa_fmip.crypto.secrets import SecretBytes, constant_time_equal
from aaa_fmip.errors import BadSignature, VerificationError
from aaa_fmip.keys import HandoverKey
from aaa_fmip.mn.fbu import _MAX_U16
from aaa_fmip.send_policy import sign_send_message
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire import ipv6 as ipv6wire
from aaa_fmip.wire import send as sendwire
from aaa_fmip.wire.icmpv6 import LinkLayerAddressCode
from aaa_fmip.wire.send import CGAParameters

# --- RFC 5269 SEND fallback: signed RtSolPr with a Handover Key Request, and the Handover Key Reply ------------


class NonceMismatch(VerificationError):
    """The PrRtAdv does not echo the RtSolPr's Nonce (RFC 3971 §5.3.2, RFC 5269 §3.2)."""

    reason = "nonce-mismatch"


class NoHandoverKeyReply(VerificationError):
    """The PrRtAdv carries no usable Handover Key Reply option (RFC 5269 §4.2)."""

    reason = "no-handover-key-reply"


@dataclass(frozen=True)
class CgaIdentity:
    """The MN's SEND identity: its CGA key pair and the CGA with its parameters (RFC 3972)."""

    private_key: rsa.RSAPrivateKey = field(repr=False)
    address: ipaddress.IPv6Address
    parameters: CGAParameters

    @property
    def public_key(self) -> bytes:
        """DER SubjectPublicKeyInfo, as in the CGA Parameters."""
        return self.parameters.public_key


def generate_cga_identity(
    subnet_prefix: bytes | ipaddress.IPv6Network,
    *,
    sec: int = 1,
    private_key: rsa.RSAPrivateKey | None = None,
    key_bits: int = rsa.DEFAULT_KEY_BITS,
) -> CgaIdentity:
    """A CGA on ``subnet_prefix`` (8 octets or a /64 network) for ``private_key`` (a fresh RSA key if None).

    Sec 1 costs about 2^16 SHA-1 computations, Sec 2 about 2^32 (RFC 3972 §4).
    """
    if isinstance(subnet_prefix, ipaddress.IPv6Network):
        if subnet_prefix.prefixlen != 64:
            raise ValueError("a CGA subnet prefix is 64 bits (RFC 3972 §3)")
        subnet_prefix = subnet_prefix.network_address.packed[:8]
    key = private_key if private_key is not None else rsa.generate_private_key(key_bits)
    address, params = cga.generate_cga(rsa.public_key_der(key), bytes(subnet_prefix), sec)
    return CgaIdentity(key, address, params)


@dataclass(frozen=True)
class SignedRtSolPr:
    """A SEND-signed RtSolPr carrying a Handover Key Request, and what the MN keeps to read the reply."""

    message: bytes  # the ICMPv6 message (type 154, subtype 2), checksum and RSA Signature included
    source: ipaddress.IPv6Address  # the MN's CGA
    destination: ipaddress.IPv6Address  # the AR
    identifier: int
    nonce: bytes
    algorithm: Algorithm
    encryption_key: rsa.RSAPrivateKey = field(repr=False)  # the handover-key-encryption private key

    def ipv6_packet(self) -> bytes:
        """The whole IPv6 packet (Hop Limit 255, RFC 5568 §6.1)."""
        return ipv6wire.build_ipv6_packet(self.source, self.destination, icmpv6.ICMPV6_NEXT_HEADER, self.message)


def build_signed_rtsolpr(
    identity: CgaIdentity,
    *,
    destination: ipaddress.IPv6Address,
    identifier: int,
    encryption_key: rsa.RSAPrivateKey,
    timestamp: float,
    new_ap_lla: bytes | None = None,
    source_lla: bytes | None = None,
    nonce: bytes | None = None,
    algorithm: Algorithm = Algorithm.HMAC_SHA1_96,
) -> SignedRtSolPr:
    """Build the RtSolPr of RFC 5269 §3.1 from the MN's CGA ``identity.address`` to the AR ``destination``.

    Options, in order: the MN's LLA (ND 19 code 4) if ``source_lla`` is given, the New Access Point LLA (ND 19
    code 1, or the wildcard code 0 when ``new_ap_lla`` is None; RFC 5568 §6.1.1 makes it mandatory), the
    Handover Key Request (ND 27) with the public half of ``encryption_key`` and the preferred ``algorithm``,
    CGA (11), Timestamp (13, ``timestamp`` in POSIX seconds), Nonce (14; 6 random octets when None) and the
    RSA Signature (12) last (RFC 3971 §5.2). ``encryption_key`` must not be the CGA key (RFC 5269 §3.1).
    """
    if isinstance(identifier, bool) or not isinstance(identifier, int) or not 0 <= identifier <= _MAX_U16:
        raise ValueError("RtSolPr identifier must be an integer in 0..65535")
    encryption_public = rsa.public_key_der(encryption_key)
    if encryption_public == identity.public_key:
        raise ValueError("the handover-key-encryption key must differ from the CGA key (RFC 5269 §3.1)")
    if nonce is None:
        nonce = secrets.token_bytes(6)
    alg = Algorithm(algorithm)
    options: list[icmpv6.NDOption] = []
    if source_lla is not None:
        options.append(icmpv6.LinkLayerAddress(LinkLayerAddressCode.SENDER, bytes(source_lla)))
    if new_ap_lla is None:
        options.append(icmpv6.LinkLayerAddress(LinkLayerAddressCode.WILDCARD, b""))
    else:
        options.append(icmpv6.LinkLayerAddress(LinkLayerAddressCode.NEW_ACCESS_POINT, bytes(new_ap_lla)))
    options += [
        icmpv6.HandoverKeyRequest(int(alg), encryption_public),
        icmpv6.CGAOption(identity.parameters),
        icmpv6.Timestamp.from_seconds(timestamp),
        icmpv6.Nonce(bytes(nonce)),
    ]
    source = identity.address
    message = sign_send_message(
        lambda opts: icmpv6.RtSolPr(identifier, opts),
        options,
        private_key=identity.private_key,
        public_key=identity.public_key,
        source=source,
        destination=destination,
    )
    return SignedRtSolPr(message, source, destination, identifier, bytes(nonce), alg, encryption_key)


@dataclass(frozen=True)
class SendHandoverKey:
    """A handover key received in an RFC 5269 Handover Key Reply; FBUs authenticated with it carry SPI 0."""

    hk: SecretBytes = field(repr=False)
    lifetime: int  # seconds (Key Lifetime, RFC 5269 §4.2)
    algorithm: Algorithm  # the AT the AR chose

    def handover_key(self) -> HandoverKey:
        """As a :class:`HandoverKey` for :func:`build_fbu` (SPI 0, no name; send it with the CGA in a Home
        Address option, by which the PAR finds the key: RFC 5269 §3.4)."""
        return HandoverKey(self.hk, b"", keys.SPI_RFC5269)


def decrypt_handover_key_reply(
    request: SignedRtSolPr,
    prrtadv: bytes,
    *,
    source: ipaddress.IPv6Address,
    router_public_key: bytes | None,
    expected_key_length: int | None = rsa.HANDOVER_KEY_LENGTH,
) -> SendHandoverKey:
    """Read the PrRtAdv (raw ICMPv6 from ``source``, the AR) answering ``request`` (RFC 5269 §3.3).

    Checks the ICMPv6 checksum, the Identifier and the echoed Nonce; with ``router_public_key`` (the DER key
    of the AR's certificate, whose path the caller validated) also the Key Hash and the SEND signature. Pass
    None only when the signature is checked elsewhere. Then decrypts the Encrypted Handover Key with the
    request's handover-key-encryption private key. The Timestamp is not checked here: the Nonce binds the
    reply to the request.

    Raises DecodeError (malformed), NonceMismatch, NoHandoverKeyReply, BadSignature or the errors of
    :func:`aaa_fmip.crypto.rsa.send_verify` and :func:`aaa_fmip.crypto.rsa.decrypt_handover_key`.
    """
    message = icmpv6.decode_icmpv6(prrtadv, source=source, destination=request.source)
    if not isinstance(message, icmpv6.PrRtAdv):
        raise NoHandoverKeyReply("the ICMPv6 message is not a PrRtAdv")
    if message.identifier != request.identifier:
        raise NoHandoverKeyReply(f"PrRtAdv identifier {message.identifier} does not answer {request.identifier}")
    nonces = [o.nonce for o in message.options if isinstance(o, icmpv6.Nonce)]
    if not nonces or not constant_time_equal(nonces[0], request.nonce):
        raise NonceMismatch("the PrRtAdv does not echo the RtSolPr's nonce")
    if router_public_key is not None:
        _verify_router_signature(prrtadv, source, request.source, router_public_key)
    replies = [o for o in message.options if isinstance(o, icmpv6.HandoverKeyReply)]
    if not replies:
        raise NoHandoverKeyReply("the PrRtAdv carries no Handover Key Reply option")
    reply = replies[0]
    try:
        algorithm = Algorithm(int(reply.algorithm_type))
    except ValueError:
        raise NoHandoverKeyReply(f"unsupported handover key algorithm (AT {int(reply.algorithm_type)})") from None
    hk = rsa.decrypt_handover_key(request.encryption_key, reply.encrypted_key, expected_length=expected_key_length)
    return SendHandoverKey(hk, reply.key_lifetime, algorithm)


def _verify_router_signature(
    icmp: bytes, source: ipaddress.IPv6Address, destination: ipaddress.IPv6Address, public_key: bytes
) -> None:
    option = sendwire.find_rsa_signature(icmp)
    if option is None:
        raise BadSignature("the PrRtAdv has no RSA Signature option (RFC 3971 §5.2)")
    if not constant_time_equal(option.key_hash, cga.key_hash(public_key)):
        raise BadSignature("the RSA Signature's Key Hash does not name the router's key")
    signature = option.signature_for_modulus((rsa.key_bits(public_key) + 7) // 8)
    data = sendwire.signature_input(icmp, source=source, destination=destination)
    rsa.send_verify(public_key, data, signature)


# --- the router's authority over its PrRtAdv (RFC 3971 §5.1.2, §6) --------------------------------------------


class UntrustedRouter(VerificationError):
    """The PrRtAdv's CGA option does not bind its source address to the certified router key."""

    reason = "untrusted-router"


def verify_router(
    prrtadv: bytes,
    *,
    source: ipaddress.IPv6Address,
    destination: ipaddress.IPv6Address,
    certificate: bytes,
    trust_anchor: bytes,
    now: float,
) -> bytes:
    """The router key (DER SubjectPublicKeyInfo) a PrRtAdv from ``source`` to ``destination`` must be signed with.

    Checks that ``certificate`` (the router's, PEM or DER) is issued by ``trust_anchor`` and valid at ``now``
    (:func:`aaa_fmip.crypto.certificates.verify_router_certificate`: a path of length one, no revocation or
    RFC 3779 prefix checks), and that the PrRtAdv's CGA option, before its RSA Signature option, holds that same
    key and verifies ``source`` as its CGA (RFC 3972 §5). The signature itself is checked with the returned key
    by :func:`decrypt_handover_key_reply`. How the MN obtained the certificate (configuration, or RFC 3971 §6
    certification path discovery) is outside this library.

    Raises UntrustedCertificate, CertificateNotValidNow, UntrustedRouter, a BadCGA subclass or DecodeError.
    """
    router_key = certificates.verify_router_certificate(certificate, trust_anchor, now=now)
    message = icmpv6.decode_icmpv6(prrtadv, source=source, destination=destination)
    parameters: CGAParameters | None = None
    for option in message.options if isinstance(message, icmpv6.PrRtAdv) else ():
        if isinstance(option, icmpv6.RSASignature):
            break
        if isinstance(option, icmpv6.CGAOption):
            parameters = option.parameters
            break
    if parameters is None:
        raise UntrustedRouter("the PrRtAdv carries no CGA option before its RSA Signature option")
    if not constant_time_equal(parameters.public_key, router_key):
        raise UntrustedRouter("the PrRtAdv's CGA option does not hold the certified router key")
    cga.verify_cga(source, parameters)
    return router_key


def accept_prrtadv(
    request: SignedRtSolPr,
    prrtadv: bytes,
    *,
    source: ipaddress.IPv6Address,
    certificate: bytes,
    trust_anchor: bytes,
    now: float,
    expected_key_length: int | None = rsa.HANDOVER_KEY_LENGTH,
) -> SendHandoverKey:
    """:func:`verify_router`, then :func:`decrypt_handover_key_reply` with the router key it returns: the whole
    MN-side check of a PrRtAdv from ``source`` answering ``request`` (RFC 5269 §3.3)."""
    router_key = verify_router(
        prrtadv, source=source, destination=request.source, certificate=certificate, trust_anchor=trust_anchor, now=now
    )
    return decrypt_handover_key_reply(
        request, prrtadv, source=source, router_public_key=router_key, expected_key_length=expected_key_length
    )

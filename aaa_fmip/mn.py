"""MN-side library: the mobile node's half of the key hierarchy and the messages it authenticates.

An MN that authenticated to the network with EAP holds the EMSK and the EAP Session-Id; it derives the same
HMK, SPI and per-AR handover keys as the key service (architecture.md §2, docs/key-hierarchy.md) and builds
Fast Binding Updates whose BADF option carries that SPI and authenticator (RFC 5568 §6.2.2, §6.4.5)::

    master = mn.derive_master_key(emsk=emsk, eap_session_id=session_id)
    hk = mn.derive_handover_key(master, par)
    packet = mn.build_fbu_packet(hk, sequence=1, lifetime_seconds=60, pcoa=pcoa, ncoa=ncoa, par=par)
    send(packet.ipv6_packet())          # or packet.mh with packet.source / destination / home_address
    psk = mn.derive_mih_psk(master, "mos1.example.net")   # DTLS/TLS-PSK with that MoS (aaa_fmip.mih.psk)

The MIH session with that MoS is opened by :func:`aaa_fmip.mih.secure.open_session` (``master`` and the MoS's
MIHF-ID in; the key derived here, never fetched), which does the IO this module does not::

    session = await open_session(master, "mos1.example.net", host, 4551, transport="udp", node_mihf_id=b"mn1@...")
    answer = await session.get_information(mih.LinkAddress.mac(current_poa))

MNs whose EAP method exports no EMSK use the RFC 5269 SEND fallback (second half of this module): a signed
RtSolPr carrying a Handover Key Request, and the decryption of the Handover Key Reply; the key obtained there
is used with SPI 0::

    identity = mn.generate_cga_identity(pcoa_prefix)            # CGA key pair and the CGA (the PCoA)
    encryption_key = rsa.generate_private_key()                 # a separate handover-key-encryption key
    request = mn.build_signed_rtsolpr(identity, destination=par, identifier=1,
                                      encryption_key=encryption_key, timestamp=now)
    send(request.ipv6_packet()); prrtadv, router = receive()
    key = mn.accept_prrtadv(request, prrtadv, source=router, certificate=router_cert,
                            trust_anchor=anchor, now=now)       # certificate path, router CGA, signature
    packet = mn.build_fbu_packet(key.handover_key(), sequence=1, lifetime_seconds=60, pcoa=identity.address,
                                 ncoa=ncoa, par=par, home_address_option=True)

No IO and no clock: the time is passed in. Nonces, fresh RSA keys and CGA modifiers come from the operating
system's generator unless the caller gives them.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
from dataclasses import dataclass, field
from typing import Final

from aaa_fmip import keys
from aaa_fmip.crypto import badf, certificates, cga, rsa
from aaa_fmip.crypto.badf import Algorithm
from aaa_fmip.crypto.secrets import SecretBytes, constant_time_equal
from aaa_fmip.errors import BadAuthenticator, BadSignature, VerificationError
from aaa_fmip.keys import HandoverKey, HandoverMasterKey, MihPsk
from aaa_fmip.send_policy import sign_send_message
from aaa_fmip.wire import icmpv6
from aaa_fmip.wire import ipv6 as ipv6wire
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire import send as sendwire
from aaa_fmip.wire.icmpv6 import LinkLayerAddressCode
from aaa_fmip.wire.send import CGAParameters

DEFAULT_LIFETIME_UNIT: Final = 4  # seconds per FBU Lifetime unit on the wire (architecture.md §3)
DEFAULT_HOP_LIMIT: Final = 64
_MAX_U16: Final = 0xFFFF

__all__ = [
    "Algorithm",
    "CgaIdentity",
    "FbuPacket",
    "HandoverKey",
    "HandoverMasterKey",
    "MihPsk",
    "NoHandoverKeyReply",
    "NonceMismatch",
    "SendHandoverKey",
    "SignedRtSolPr",
    "UntrustedRouter",
    "accept_prrtadv",
    "build_fbu",
    "build_fbu_packet",
    "build_signed_rtsolpr",
    "decrypt_handover_key_reply",
    "derive_handover_key",
    "derive_master_key",
    "derive_mih_psk",
    "fbu_lifetime_units",
    "generate_cga_identity",
    "verify_fback",
    "verify_router",
]


# --- AAA-derived keys (architecture.md §2) ---------------------------------------------------------------------


def derive_master_key(
    *,
    emsk: bytes | SecretBytes | None = None,
    eap_session_id: bytes | None = None,
    dsrk: bytes | SecretBytes | None = None,
    emsk_name: bytes | None = None,
) -> HandoverMasterKey:
    """The HMK, HMK-Name and SPI: from the EMSK and EAP Session-Id (home domain), or from the DSRK and EMSKName
    (visited domain, RFC 5295 §4). Exactly one of the two pairs must be given."""
    home = emsk is not None or eap_session_id is not None
    visited = dsrk is not None or emsk_name is not None
    if home == visited:
        raise ValueError("give either emsk and eap_session_id, or dsrk and emsk_name")
    if home:
        if emsk is None or eap_session_id is None:
            raise ValueError("emsk and eap_session_id must be given together")
        return keys.derive_hmk(emsk, eap_session_id)
    if dsrk is None or emsk_name is None:
        raise ValueError("dsrk and emsk_name must be given together")
    return keys.derive_hmk_visited(dsrk, emsk_name)


def derive_handover_key(master: HandoverMasterKey, par: ipaddress.IPv6Address) -> HandoverKey:
    """The HK for the PAR address the MN sends its FBU to (the AR-ID)."""
    return keys.derive_hk(master.hmk, master.hmk_name, par, master.spi)


def derive_mih_psk(master: HandoverMasterKey, mihf_id: str) -> MihPsk:
    """The DTLS/TLS pre-shared key and PSK identity for the MoS whose MIHF-ID is ``mihf_id`` (architecture.md
    §10): the node derives it itself, the MoS obtains the same key from the key service."""
    return keys.derive_mih_psk(master.hmk, master.hmk_name, mihf_id)


# --- Fast Binding Update (RFC 5568 §6.2.2) ---------------------------------------------------------------------


@dataclass(frozen=True)
class FbuPacket:
    """An FBU and the IPv6 packet fields it was authenticated for."""

    source: ipaddress.IPv6Address  # IPv6 source: the PCoA (predictive) or the NCoA (reactive)
    destination: ipaddress.IPv6Address  # the PAR address (also the authenticator's PAR and the AR-ID)
    home_address: ipaddress.IPv6Address | None  # address in the Home Address destination option, if any
    care_of: ipaddress.IPv6Address  # the CoA the authenticator covers: Alternate CoA, else the source
    mh: bytes  # the Mobility Header (IPv6 Next Header 135), checksum and BADF filled in

    def ipv6_packet(self, *, hop_limit: int = DEFAULT_HOP_LIMIT) -> bytes:
        """The whole IPv6 packet (with the Home Address destination option when there is one)."""
        return ipv6wire.build_ipv6_packet(
            self.source,
            self.destination,
            mhwire.MH_NEXT_HEADER,
            self.mh,
            hop_limit=hop_limit,
            home_address=self.home_address,
        )


def fbu_lifetime_units(lifetime_seconds: int, unit: int = DEFAULT_LIFETIME_UNIT) -> int:
    """The FBU Lifetime field for a lifetime in seconds: rounded up, so a non-zero lifetime never becomes 0."""
    if unit not in (1, 4):
        raise ValueError("the FBU Lifetime unit is 4 seconds (RFC 6275 §6.1.7) or 1 second (RFC 5568 §6.2.2)")
    if isinstance(lifetime_seconds, bool) or not isinstance(lifetime_seconds, int) or lifetime_seconds < 0:
        raise ValueError("FBU lifetime must be a non-negative number of seconds")
    units = math.ceil(lifetime_seconds / unit)
    if units > _MAX_U16:
        raise ValueError(f"FBU lifetime of {lifetime_seconds} s exceeds the {_MAX_U16 * unit} s the field can hold")
    return units


def build_fbu_packet(
    hk: HandoverKey,
    *,
    sequence: int,
    lifetime_seconds: int,
    pcoa: ipaddress.IPv6Address,
    ncoa: ipaddress.IPv6Address,
    par: ipaddress.IPv6Address,
    alternate_coa: bool = True,
    home_address_option: bool = False,
    mh_lla: bytes | None = None,
    algorithm: Algorithm = Algorithm.HMAC_SHA1_96,
    source: ipaddress.IPv6Address | None = None,
    lifetime_unit: int = DEFAULT_LIFETIME_UNIT,
) -> FbuPacket:
    """Build an authenticated FBU to ``par`` (RFC 5568 §6.2.2, BADF per §6.4.5 and architecture.md §3).

    * ``alternate_coa`` True (predictive mode, sent from the PAR link): IPv6 source = ``pcoa`` and the NCoA goes
      in an Alternate Care-of Address option. False (reactive mode): IPv6 source = ``ncoa``, no option.
      ``source`` overrides the IPv6 source for other cases.
    * ``home_address_option``: put ``pcoa`` in a Home Address destination option (RFC 5269 keys, SPI 0, are
      looked up by it); the MH checksum then uses it as the pseudo-header source.
    * ``mh_lla``: the MN's link-layer address, sent in an MH Link-Layer Address option (code 2).
    * ``lifetime_seconds`` is rounded up to the ``lifetime_unit`` (4 s by default) of the Lifetime field.
    * The authenticator covers the Alternate CoA if present, else the IPv6 source, then the PAR address and the
      MH with checksum 0 minus the authenticator octets; it is computed over the encoded header, then the
      header is re-encoded with it.
    """
    for name, value in (("pcoa", pcoa), ("ncoa", ncoa), ("par", par)):
        if not isinstance(value, ipaddress.IPv6Address):
            raise ValueError(f"{name} must be an IPv6Address")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not 0 <= sequence <= _MAX_U16:
        raise ValueError("FBU sequence number must be an integer in 0..65535")
    if not 0 <= hk.spi <= keys.MAX_SPI:
        raise ValueError("SPI must be a 32-bit value")
    alg = Algorithm(algorithm)
    lifetime = fbu_lifetime_units(lifetime_seconds, lifetime_unit)
    ip_source = source if source is not None else (pcoa if alternate_coa else ncoa)
    home_address = pcoa if home_address_option else None
    checksum_source = home_address if home_address is not None else ip_source
    care_of = ncoa if alternate_coa else ip_source

    options: list[mhwire.MobilityOption] = []
    if alternate_coa:
        options.append(mhwire.AlternateCareOfAddress(ncoa))
    if mh_lla is not None:
        options.append(mhwire.MHLinkLayerAddress(LinkLayerAddressCode.MOBILE_NODE, bytes(mh_lla)))

    def encode(authenticator: bytes) -> bytes:
        badf_option = mhwire.BindingAuthorizationDataForFMIPv6(hk.spi, authenticator)
        fbu = mhwire.FBU(sequence, lifetime, (*options, badf_option))
        return mhwire.encode_mh(fbu, source=checksum_source, destination=par)

    placeholder = encode(bytes(alg.authenticator_length))
    authenticator = badf.compute_authenticator(hk.hk, care_of, par, mhwire.badf_input(placeholder).mh_data, alg)
    return FbuPacket(ip_source, par, home_address, care_of, encode(authenticator))


def build_fbu(
    hk: HandoverKey,
    *,
    sequence: int,
    lifetime_seconds: int,
    pcoa: ipaddress.IPv6Address,
    ncoa: ipaddress.IPv6Address,
    par: ipaddress.IPv6Address,
    alternate_coa: bool = True,
    home_address_option: bool = False,
    mh_lla: bytes | None = None,
    algorithm: Algorithm = Algorithm.HMAC_SHA1_96,
    source: ipaddress.IPv6Address | None = None,
    lifetime_unit: int = DEFAULT_LIFETIME_UNIT,
) -> bytes:
    """The Mobility Header of :func:`build_fbu_packet` (same arguments). The IPv6 source is ``pcoa`` when
    ``alternate_coa`` is True, else ``ncoa``; the destination is ``par``; the home address ``pcoa`` when
    ``home_address_option`` is True."""
    return build_fbu_packet(
        hk,
        sequence=sequence,
        lifetime_seconds=lifetime_seconds,
        pcoa=pcoa,
        ncoa=ncoa,
        par=par,
        alternate_coa=alternate_coa,
        home_address_option=home_address_option,
        mh_lla=mh_lla,
        algorithm=algorithm,
        source=source,
        lifetime_unit=lifetime_unit,
    ).mh


def verify_fback(
    key: HandoverKey | SecretBytes | bytes,
    mh: bytes,
    *,
    par: ipaddress.IPv6Address,
    destination: ipaddress.IPv6Address,
) -> mhwire.FBack:
    """Check an FBack from ``par`` sent to ``destination`` (the NCoA, or the PCoA) and return it decoded.

    The PAR authenticates the FBack as the FBU (architecture.md §3): CoA = the Alternate CoA if present, else
    the IPv6 destination. Raises :class:`~aaa_fmip.errors.DecodeError` for a malformed header or checksum and
    :class:`~aaa_fmip.errors.BadAuthenticator` for a wrong authenticator or SPI.
    """
    message = mhwire.decode_mh(mh, source=par, destination=destination)
    if not isinstance(message, mhwire.FBack):
        raise ValueError("the Mobility Header is not a Fast Binding Acknowledgment")
    auth = mhwire.badf_input(mh)
    secret = key.hk if isinstance(key, HandoverKey) else key
    if isinstance(key, HandoverKey) and auth.spi != key.spi:
        raise BadAuthenticator(f"FBack SPI {auth.spi} is not the SPI of this handover key")
    care_of = next((o.address for o in message.options if isinstance(o, mhwire.AlternateCareOfAddress)), destination)
    badf.verify_authenticator(secret, care_of, par, auth.mh_data, auth.authenticator)
    return message


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

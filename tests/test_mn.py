"""MN-side library: key derivation, authenticated FBUs, FBack checks and the RFC 5269 SEND exchange."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa_fmip import keys, mn
from aaa_fmip.crypto import badf, cga, rsa
from aaa_fmip.crypto.badf import Algorithm
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import BadAuthenticator, BadSignature, DecodeError, VerificationError
from aaa_fmip.wire import icmpv6, ipv6
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire import send as sendwire

VECTORS = json.loads((Path(__file__).resolve().parent / "vectors" / "key-hierarchy.json").read_text(encoding="utf-8"))
H1 = VECTORS["home"][0]
V1 = VECTORS["visited"][0]
PAR = ipaddress.IPv6Address("2001:db8:1::1")
PCOA = ipaddress.IPv6Address("2001:db8:1::100")
NCOA = ipaddress.IPv6Address("2001:db8:2::100")
MN_LLA = bytes.fromhex("020000000001")


@pytest.fixture(scope="module")
def hk() -> keys.HandoverKey:
    master = mn.derive_master_key(emsk=bytes.fromhex(H1["emsk"]), eap_session_id=bytes.fromhex(H1["eap_session_id"]))
    return mn.derive_handover_key(master, PAR)


# --- key derivation ---------------------------------------------------------------------------------------------


def test_derive_matches_the_published_vectors(hk: keys.HandoverKey) -> None:
    entry = next(e for e in H1["handover_keys"] if e["ar_address"] == str(PAR))
    assert (hk.hk.hex(), hk.hk_name.hex(), hk.spi) == (entry["hk"], entry["hk_name"], H1["spi"])
    visited = mn.derive_master_key(dsrk=bytes.fromhex(V1["dsrk"]), emsk_name=bytes.fromhex(V1["emsk_name"]))
    assert (visited.hmk_name.hex(), visited.spi) == (V1["hmk_name"], V1["spi"])
    assert mn.derive_handover_key(visited, PAR).hk.hex() == V1["handover_keys"][0]["hk"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"emsk": bytes(64)},
        {"eap_session_id": b"\x0d"},
        {"dsrk": bytes(64)},
        {"emsk": bytes(64), "eap_session_id": b"\x0d", "dsrk": bytes(64), "emsk_name": bytes(8)},
    ],
)
def test_derive_master_key_needs_one_pair(kwargs: dict[str, bytes]) -> None:
    with pytest.raises(ValueError, match=r"given together|either"):
        mn.derive_master_key(**kwargs)


# --- FBU ----------------------------------------------------------------------------------------------------------


def independent_authenticator(key: bytes, care_of: ipaddress.IPv6Address, mh: bytes, auth_len: int) -> bytes:
    """RFC 5568 §6.4.5 computed from the raw octets with the standard library: checksum zeroed, the trailing
    authenticator cut off (the BADF is last), HMAC over CoA | PAR | that."""
    data = mh[:4] + b"\x00\x00" + mh[6 : len(mh) - auth_len]
    digest = hashlib.sha1 if auth_len == 12 else hashlib.sha256
    return hmac.new(key, care_of.packed + PAR.packed + data, digest).digest()[:auth_len]


def test_predictive_fbu(hk: keys.HandoverKey) -> None:
    packet = mn.build_fbu_packet(hk, sequence=7, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR)
    assert (packet.source, packet.destination, packet.home_address, packet.care_of) == (PCOA, PAR, None, NCOA)
    assert packet.mh == mn.build_fbu(hk, sequence=7, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR)
    msg = mhwire.decode_mh(packet.mh, source=PCOA, destination=PAR)  # checksum verified
    assert isinstance(msg, mhwire.FBU)
    assert (msg.sequence, msg.lifetime, msg.a_flag, msg.h_flag, msg.l_flag, msg.k_flag) == (
        7,
        15,
        True,
        True,
        False,
        False,
    )
    assert msg.options[0] == mhwire.AlternateCareOfAddress(NCOA)
    badf_option = msg.options[-1]
    assert isinstance(badf_option, mhwire.BindingAuthorizationDataForFMIPv6)
    assert badf_option.spi == hk.spi and len(badf_option.authenticator) == 12
    assert len(packet.mh) % 8 == 0 and (len(packet.mh) - 18) % 8 == 6  # BADF type octet at 8n+6
    auth = mhwire.badf_input(packet.mh)
    assert badf.verify_authenticator(hk.hk, NCOA, PAR, auth.mh_data, auth.authenticator) is Algorithm.HMAC_SHA1_96
    assert auth.authenticator == independent_authenticator(hk.hk.reveal(), NCOA, packet.mh, 12)


def test_golden_fbu(hk: keys.HandoverKey) -> None:
    """Regression: the FBU of vector H1 to 2001:db8:1::1 (sequence 1, 60 s, MH-LLA of six zero octets)."""
    mh = mn.build_fbu(hk, sequence=1, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR, mh_lla=bytes(6))
    assert mh.hex() == (
        "3b070800dc6d"  # Payload Proto 59, Header Len 7 (64 octets), MH Type 8 (FBU), Reserved, Checksum
        "0001c000000f"  # Sequence 1, A and H set, Lifetime 15 (x 4 s)
        "0100"  # PadN(2): Alternate CoA at 8n+6
        "031020010db8000200000000000000000100"  # Alternate Care-of Address: the NCoA
        "070702000000000000"  # MH Link-Layer Address, Option-Code 2 (no alignment)
        "0103000000"  # PadN(5): BADF Type octet at offset 46 = 8n+6
        "150c371f190e"  # BADF: Type 21, Length 12 (authenticator only), SPI 0x371f190e (vector H1)
        "5ec577d043021444c0a930ab"  # HMAC-SHA1-96 authenticator
    )
    assert mh[-18] == 21 and (len(mh) - 18) % 8 == 6


def test_reactive_fbu_uses_the_source_as_care_of(hk: keys.HandoverKey) -> None:
    packet = mn.build_fbu_packet(hk, sequence=1, lifetime_seconds=8, pcoa=PCOA, ncoa=NCOA, par=PAR, alternate_coa=False)
    assert (packet.source, packet.care_of) == (NCOA, NCOA)
    msg = mhwire.decode_mh(packet.mh, source=NCOA, destination=PAR)
    assert isinstance(msg, mhwire.FBU)
    assert not any(isinstance(o, mhwire.AlternateCareOfAddress) for o in msg.options)
    assert mhwire.badf_input(packet.mh).authenticator == independent_authenticator(hk.hk.reveal(), NCOA, packet.mh, 12)


def test_home_address_option_changes_the_checksum_source(hk: keys.HandoverKey) -> None:
    packet = mn.build_fbu_packet(
        hk, sequence=2, lifetime_seconds=8, pcoa=PCOA, ncoa=NCOA, par=PAR, alternate_coa=False, home_address_option=True
    )
    assert (packet.source, packet.home_address) == (NCOA, PCOA)
    mhwire.decode_mh(packet.mh, source=PCOA, destination=PAR)
    with pytest.raises(DecodeError):
        mhwire.decode_mh(packet.mh, source=NCOA, destination=PAR)
    parsed = ipv6.parse_ipv6_packet(packet.ipv6_packet())
    assert (parsed.source, parsed.destination, parsed.home_address) == (NCOA, PAR, PCOA)
    assert (parsed.upper_next_header, parsed.payload) == (135, packet.mh)


def test_mh_lla_and_sha256(hk: keys.HandoverKey) -> None:
    packet = mn.build_fbu_packet(
        hk,
        sequence=3,
        lifetime_seconds=60,
        pcoa=PCOA,
        ncoa=NCOA,
        par=PAR,
        mh_lla=MN_LLA,
        algorithm=Algorithm.HMAC_SHA256_128,
    )
    msg = mhwire.decode_mh(packet.mh, source=PCOA, destination=PAR)
    assert isinstance(msg, mhwire.FBU)
    assert mhwire.MHLinkLayerAddress(2, MN_LLA) in msg.options
    assert (len(packet.mh) - 22) % 8 == 2  # 16-octet authenticator: BADF type octet at 8n+2
    auth = mhwire.badf_input(packet.mh)
    assert badf.verify_authenticator(hk.hk, NCOA, PAR, auth.mh_data, auth.authenticator) is Algorithm.HMAC_SHA256_128
    assert auth.authenticator == independent_authenticator(hk.hk.reveal(), NCOA, packet.mh, 16)


def test_ipv6_packet_of_a_predictive_fbu(hk: keys.HandoverKey) -> None:
    packet = mn.build_fbu_packet(hk, sequence=1, lifetime_seconds=4, pcoa=PCOA, ncoa=NCOA, par=PAR)
    parsed = ipv6.parse_ipv6_packet(packet.ipv6_packet(hop_limit=32))
    assert (parsed.source, parsed.destination, parsed.home_address, parsed.payload) == (PCOA, PAR, None, packet.mh)
    assert packet.ipv6_packet(hop_limit=32)[7] == 32


def test_other_ar_key_fails(hk: keys.HandoverKey) -> None:
    """A key derived for another AR-ID does not authenticate an FBU to this PAR (RFC 4962 key scoping)."""
    master = mn.derive_master_key(emsk=bytes.fromhex(H1["emsk"]), eap_session_id=bytes.fromhex(H1["eap_session_id"]))
    other = mn.derive_handover_key(master, ipaddress.IPv6Address("2001:db8:2::1"))
    mh = mn.build_fbu(other, sequence=1, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR)
    auth = mhwire.badf_input(mh)
    with pytest.raises(BadAuthenticator):
        badf.verify_authenticator(hk.hk, NCOA, PAR, auth.mh_data, auth.authenticator)


@pytest.mark.parametrize(
    ("seconds", "unit", "units"), [(0, 4, 0), (1, 4, 1), (4, 4, 1), (5, 4, 2), (60, 4, 15), (60, 1, 60)]
)
def test_lifetime_units(seconds: int, unit: int, units: int) -> None:
    assert mn.fbu_lifetime_units(seconds, unit) == units


def test_lifetime_unit_seconds(hk: keys.HandoverKey) -> None:
    mh = mn.build_fbu(hk, sequence=1, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR, lifetime_unit=1)
    msg = mhwire.decode_mh(mh)
    assert isinstance(msg, mhwire.FBU) and msg.lifetime == 60


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sequence": 65536}, "sequence"),
        ({"sequence": -1}, "sequence"),
        ({"lifetime_seconds": -1}, "lifetime"),
        ({"lifetime_seconds": 4 * 65536}, "exceeds"),
        ({"lifetime_unit": 2}, "unit"),
        ({"par": "2001:db8:1::1"}, "par must be an IPv6Address"),
    ],
)
def test_build_fbu_rejects_bad_input(hk: keys.HandoverKey, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"sequence": 1, "lifetime_seconds": 60, "pcoa": PCOA, "ncoa": NCOA, "par": PAR, **kwargs}
    with pytest.raises(ValueError, match=message):
        mn.build_fbu(hk, **args)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    sequence=st.integers(0, 65535),
    lifetime=st.integers(0, 4 * 65535),
    alternate=st.booleans(),
    hao=st.booleans(),
    lla=st.none() | st.binary(min_size=0, max_size=16),
    alg=st.sampled_from(list(Algorithm)),
    bit=st.integers(min_value=0),
)
def test_fbu_round_trip_and_bit_flips(
    hk: keys.HandoverKey,
    sequence: int,
    lifetime: int,
    alternate: bool,
    hao: bool,
    lla: bytes | None,
    alg: Algorithm,
    bit: int,
) -> None:
    packet = mn.build_fbu_packet(
        hk,
        sequence=sequence,
        lifetime_seconds=lifetime,
        pcoa=PCOA,
        ncoa=NCOA,
        par=PAR,
        alternate_coa=alternate,
        home_address_option=hao,
        mh_lla=lla,
        algorithm=alg,
    )
    msg = mhwire.decode_mh(packet.mh, source=packet.home_address or packet.source, destination=PAR)
    assert isinstance(msg, mhwire.FBU) and msg.sequence == sequence
    auth = mhwire.badf_input(packet.mh)
    assert badf.verify_authenticator(hk.hk, packet.care_of, PAR, auth.mh_data, auth.authenticator) is alg
    # Any single-bit change outside the checksum field breaks the FBU: a decode error or a bad authenticator.
    positions = [i for i in range(8 * len(packet.mh)) if not 32 <= i < 48]
    i = positions[bit % len(positions)]
    tampered = bytearray(packet.mh)
    tampered[i // 8] ^= 0x80 >> (i % 8)
    with pytest.raises((DecodeError, VerificationError)):
        changed = mhwire.badf_input(bytes(tampered))
        badf.verify_authenticator(hk.hk, packet.care_of, PAR, changed.mh_data, changed.authenticator)


# --- FBack --------------------------------------------------------------------------------------------------------


def make_fback(key: SecretBytes, *, spi: int, ncoa: ipaddress.IPv6Address = NCOA) -> bytes:
    """What the PAR sends: an FBack to the NCoA authenticated like the FBU (architecture.md §3)."""

    def encode(authenticator: bytes) -> bytes:
        options = (mhwire.BindingAuthorizationDataForFMIPv6(spi, authenticator),)
        return mhwire.encode_mh(mhwire.FBack(0, 7, 15, options), source=PAR, destination=ncoa)

    auth = badf.compute_authenticator(key, ncoa, PAR, mhwire.badf_input(encode(bytes(12))).mh_data)
    return encode(auth)


def test_verify_fback(hk: keys.HandoverKey) -> None:
    fback = make_fback(hk.hk, spi=hk.spi)
    msg = mn.verify_fback(hk, fback, par=PAR, destination=NCOA)
    assert (msg.status, msg.sequence, msg.lifetime) == (0, 7, 15)
    mn.verify_fback(hk.hk, fback, par=PAR, destination=NCOA)
    with pytest.raises(BadAuthenticator, match="SPI"):
        mn.verify_fback(hk, make_fback(hk.hk, spi=hk.spi + 1), par=PAR, destination=NCOA)
    with pytest.raises(BadAuthenticator):
        mn.verify_fback(hk, make_fback(SecretBytes(bytes(32)), spi=hk.spi), par=PAR, destination=NCOA)
    with pytest.raises(DecodeError):
        mn.verify_fback(hk, fback, par=PAR, destination=PCOA)  # checksum covers the destination
    with pytest.raises(ValueError, match="not a Fast Binding Acknowledgment"):
        mn.verify_fback(
            hk,
            mn.build_fbu(hk, sequence=1, lifetime_seconds=4, pcoa=PCOA, ncoa=NCOA, par=PAR),
            par=PCOA,
            destination=PAR,
        )


# --- RFC 5269 SEND fallback ----------------------------------------------------------------------------------------

AR = ipaddress.IPv6Address("fe80::1")
NOW = 1_700_000_000.25


@pytest.fixture(scope="module")
def identity() -> mn.CgaIdentity:
    return mn.generate_cga_identity(ipaddress.IPv6Network("fe80::/64"), sec=1, key_bits=1024)


@pytest.fixture(scope="module")
def encryption_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(1024)


@pytest.fixture(scope="module")
def router_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(1024)


@pytest.fixture
def request_(identity: mn.CgaIdentity, encryption_key: rsa.RSAPrivateKey) -> mn.SignedRtSolPr:
    return mn.build_signed_rtsolpr(
        identity,
        destination=AR,
        identifier=0x1234,
        encryption_key=encryption_key,
        timestamp=NOW,
        new_ap_lla=bytes.fromhex("020000000002"),
        source_lla=MN_LLA,
        nonce=bytes.fromhex("0102030405060708090a0b0c0d0e"),
    )


def ar_verifies(request: mn.SignedRtSolPr) -> icmpv6.RtSolPr:
    """What the AR / key service checks (RFC 3971 §5, RFC 5269 §3.2), from the raw octets."""
    msg = icmpv6.decode_icmpv6(request.message, source=request.source, destination=request.destination)
    assert isinstance(msg, icmpv6.RtSolPr)
    (cga_option,) = (o for o in msg.options if isinstance(o, icmpv6.CGAOption))
    cga.verify_cga(request.source, cga_option.parameters)
    signature = sendwire.find_rsa_signature(request.message)
    assert signature is not None
    public_key = cga_option.parameters.public_key
    assert signature.key_hash == cga.key_hash(public_key)
    data = sendwire.signature_input(request.message, source=request.source, destination=request.destination)
    rsa.send_verify(public_key, data, signature.signature_for_modulus(rsa.key_bits(public_key) // 8))
    return msg


def make_prrtadv(
    request: mn.SignedRtSolPr,
    router_key: rsa.RSAPrivateKey,
    hk: bytes,
    *,
    nonce: bytes | None = None,
    identifier: int | None = None,
    reply: bool = True,
    at: int = 1,
) -> bytes:
    """The AR's answer: Handover Key Reply encrypted to the MN's key, the nonce echoed, signed by the router."""
    msg = ar_verifies(request)
    (hkr,) = (o for o in msg.options if isinstance(o, icmpv6.HandoverKeyRequest))
    options: list[icmpv6.NDOption] = [icmpv6.LinkLayerAddress(icmpv6.LinkLayerAddressCode.NEW_ACCESS_POINT, bytes(6))]
    if reply:
        options.append(icmpv6.HandoverKeyReply(at, 43200, rsa.encrypt_handover_key(hkr.public_key, hk)))
    options += [icmpv6.Timestamp.from_seconds(NOW + 1), icmpv6.Nonce(request.nonce if nonce is None else nonce)]
    ident = request.identifier if identifier is None else identifier
    unsigned = icmpv6.encode_icmpv6(icmpv6.PrRtAdv(0, ident, tuple(options)), source=AR, destination=request.source)
    data = sendwire.signature_input(unsigned, source=AR, destination=request.source)
    options.append(icmpv6.RSASignature(cga.key_hash(rsa.public_key_der(router_key)), rsa.send_sign(router_key, data)))
    return icmpv6.encode_icmpv6(icmpv6.PrRtAdv(0, ident, tuple(options)), source=AR, destination=request.source)


def test_identity(identity: mn.CgaIdentity) -> None:
    cga.verify_cga(identity.address, identity.parameters)
    assert cga.cga_sec(identity.address) == 1
    assert identity.address in ipaddress.IPv6Network("fe80::/64")
    assert identity.public_key == rsa.public_key_der(identity.private_key)
    with pytest.raises(ValueError, match="64 bits"):
        mn.generate_cga_identity(ipaddress.IPv6Network("2001:db8::/48"), private_key=identity.private_key)


def test_signed_rtsolpr_is_what_an_ar_accepts(request_: mn.SignedRtSolPr, encryption_key: rsa.RSAPrivateKey) -> None:
    msg = ar_verifies(request_)
    assert msg.identifier == 0x1234
    kinds = [type(o).__name__ for o in msg.options]
    assert kinds == [
        "LinkLayerAddress",
        "LinkLayerAddress",
        "HandoverKeyRequest",
        "CGAOption",
        "Timestamp",
        "Nonce",
        "RSASignature",
    ]
    assert msg.options[0] == icmpv6.LinkLayerAddress(icmpv6.LinkLayerAddressCode.SENDER, MN_LLA)
    assert msg.options[1] == icmpv6.LinkLayerAddress(
        icmpv6.LinkLayerAddressCode.NEW_ACCESS_POINT, bytes.fromhex("020000000002")
    )
    (hkr,) = (o for o in msg.options if isinstance(o, icmpv6.HandoverKeyRequest))
    assert (int(hkr.algorithm_type), hkr.public_key) == (1, rsa.public_key_der(encryption_key))
    (ts,) = (o for o in msg.options if isinstance(o, icmpv6.Timestamp))
    assert ts.seconds == NOW
    parsed = ipv6.parse_ipv6_packet(request_.ipv6_packet())
    assert (parsed.source, parsed.destination, parsed.payload) == (request_.source, AR, request_.message)
    assert request_.ipv6_packet()[7] == 255


def test_tampered_rtsolpr_fails_the_ar(request_: mn.SignedRtSolPr) -> None:
    tampered = bytearray(request_.message)
    tampered[9] ^= 0x01  # inside the first option, before the signature
    forged = dataclasses.replace(request_, message=bytes(tampered))
    with pytest.raises((DecodeError, BadSignature)):
        ar_verifies(forged)


def test_wildcard_and_random_nonce(identity: mn.CgaIdentity, encryption_key: rsa.RSAPrivateKey) -> None:
    a = mn.build_signed_rtsolpr(identity, destination=AR, identifier=1, encryption_key=encryption_key, timestamp=NOW)
    b = mn.build_signed_rtsolpr(identity, destination=AR, identifier=1, encryption_key=encryption_key, timestamp=NOW)
    assert len(a.nonce) == 6 and a.nonce != b.nonce
    msg = ar_verifies(a)
    assert msg.options[0] == icmpv6.LinkLayerAddress(icmpv6.LinkLayerAddressCode.WILDCARD, b"")
    with pytest.raises(ValueError, match="must differ from the CGA key"):
        mn.build_signed_rtsolpr(
            identity, destination=AR, identifier=1, encryption_key=identity.private_key, timestamp=NOW
        )
    with pytest.raises(ValueError, match="identifier"):
        mn.build_signed_rtsolpr(
            identity, destination=AR, identifier=70000, encryption_key=encryption_key, timestamp=NOW
        )


def test_handover_key_reply_round_trip(
    request_: mn.SignedRtSolPr, router_key: rsa.RSAPrivateKey, identity: mn.CgaIdentity
) -> None:
    hk = bytes(range(200, 232))
    reply = mn.decrypt_handover_key_reply(
        request_, make_prrtadv(request_, router_key, hk), source=AR, router_public_key=rsa.public_key_der(router_key)
    )
    assert reply.hk.reveal() == hk
    assert (reply.lifetime, reply.algorithm) == (43200, Algorithm.HMAC_SHA1_96)
    key = reply.handover_key()
    assert (key.spi, key.hk) == (0, reply.hk)
    # The FBU the MN then sends: SPI 0, its CGA in the Home Address option (RFC 5269 §3.4).
    packet = mn.build_fbu_packet(
        key, sequence=1, lifetime_seconds=60, pcoa=identity.address, ncoa=NCOA, par=AR, home_address_option=True
    )
    auth = mhwire.badf_input(packet.mh)
    assert auth.spi == 0 and packet.home_address == identity.address
    badf.verify_authenticator(SecretBytes(hk), NCOA, AR, auth.mh_data, auth.authenticator)


def test_reply_without_signature_check(request_: mn.SignedRtSolPr, router_key: rsa.RSAPrivateKey) -> None:
    reply = mn.decrypt_handover_key_reply(
        request_, make_prrtadv(request_, router_key, bytes(32), at=2), source=AR, router_public_key=None
    )
    assert reply.algorithm is Algorithm.HMAC_SHA256_128


def test_reply_rejections(
    request_: mn.SignedRtSolPr, router_key: rsa.RSAPrivateKey, encryption_key: rsa.RSAPrivateKey
) -> None:
    router = rsa.public_key_der(router_key)
    good = make_prrtadv(request_, router_key, bytes(32))
    with pytest.raises(mn.NonceMismatch) as nonce_error:
        mn.decrypt_handover_key_reply(
            request_, make_prrtadv(request_, router_key, bytes(32), nonce=bytes(6)), source=AR, router_public_key=router
        )
    assert nonce_error.value.reason == "nonce-mismatch"
    with pytest.raises(mn.NoHandoverKeyReply):
        mn.decrypt_handover_key_reply(
            request_, make_prrtadv(request_, router_key, bytes(32), reply=False), source=AR, router_public_key=router
        )
    with pytest.raises(mn.NoHandoverKeyReply, match="identifier"):
        mn.decrypt_handover_key_reply(
            request_, make_prrtadv(request_, router_key, bytes(32), identifier=9), source=AR, router_public_key=router
        )
    with pytest.raises(mn.NoHandoverKeyReply, match="AT 7"):
        mn.decrypt_handover_key_reply(
            request_, make_prrtadv(request_, router_key, bytes(32), at=7), source=AR, router_public_key=router
        )
    with pytest.raises(BadSignature, match="Key Hash"):
        mn.decrypt_handover_key_reply(request_, good, source=AR, router_public_key=rsa.public_key_der(encryption_key))
    with pytest.raises(DecodeError):
        mn.decrypt_handover_key_reply(request_, good, source=PAR, router_public_key=router)  # checksum: wrong source
    with pytest.raises(mn.NoHandoverKeyReply, match="not a PrRtAdv"):
        mn.decrypt_handover_key_reply(request_, request_.message, source=request_.destination, router_public_key=None)


def test_reply_with_a_forged_signature(request_: mn.SignedRtSolPr, router_key: rsa.RSAPrivateKey) -> None:
    good = bytearray(make_prrtadv(request_, router_key, bytes(32)))
    good[-10] ^= 0x01  # inside the signature: the checksum no longer matches either
    msg = icmpv6.decode_icmpv6(bytes(good))
    assert isinstance(msg, icmpv6.PrRtAdv)
    fixed = icmpv6.encode_icmpv6(msg, source=AR, destination=request_.source)  # a forger can fix the checksum
    with pytest.raises(BadSignature):
        mn.decrypt_handover_key_reply(request_, fixed, source=AR, router_public_key=rsa.public_key_der(router_key))


def test_reprs_hide_keys(
    hk: keys.HandoverKey, identity: mn.CgaIdentity, request_: mn.SignedRtSolPr, router_key: rsa.RSAPrivateKey
) -> None:
    reply = mn.decrypt_handover_key_reply(
        request_, make_prrtadv(request_, router_key, bytes(range(32))), source=AR, router_public_key=None
    )
    packet = mn.build_fbu_packet(hk, sequence=1, lifetime_seconds=4, pcoa=PCOA, ncoa=NCOA, par=PAR)
    for obj in (identity, request_, reply, packet, hk):
        text = repr(obj) + str(obj)
        assert "SecretBytes" not in text and "PrivateKey" not in text and "private_key" not in text
        assert "encryption_key" not in text
    assert bytes(range(32)).hex() not in repr(reply) and hk.hk.hex() not in repr(packet)

"""SEND options and the RFC 3971 §5.2 signed data."""

from __future__ import annotations

import hashlib
from ipaddress import IPv6Address

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire._buffer import internet_checksum, ipv6_pseudo_header
from aaa_fmip.wire.icmpv6 import LinkLayerAddress, RtSolPr, UnknownNDOption, decode_icmpv6, encode_icmpv6
from aaa_fmip.wire.send import (
    SEND_MESSAGE_TYPE_TAG,
    CGAOption,
    CGAParameters,
    Nonce,
    RSASignature,
    Timestamp,
    find_rsa_signature,
    signature_input,
)
from tests.wire._vectors import build, load, wire

MN = IPv6Address("fe80::3c4a:5bf6:ffb4:ca6c")
AR = IPv6Address("fe80::1")
VECTOR = next(v for v in load("wire-icmpv6.json")["vectors"] if v["name"] == "rtsolpr-send-handover-key-request")


def test_signature_input_layout_on_the_vector() -> None:
    """src | dst | Type Code Checksum | header | options before the RSA option; checksum of that prefix."""
    data = wire(VECTOR)
    rsa_at = len(data) - 88  # the vector's RSA Signature option is 88 octets, and last
    assert data[rsa_at] == 12
    prefix = data[:rsa_at]
    checksum = internet_checksum(ipv6_pseudo_header(MN, AR, len(prefix), 58) + prefix[:2] + b"\0\0" + prefix[4:])
    expected = MN.packed + AR.packed + prefix[:2] + checksum.to_bytes(2, "big") + prefix[4:]
    assert signature_input(data, source=MN, destination=AR) == expected
    # the transmitted checksum covers the RSA option too, so it differs from the signed one
    assert data[2:4] != checksum.to_bytes(2, "big")


def test_options_after_the_first_rsa_signature_are_ignored() -> None:
    """RFC 3971 §5.2.2: ignored for verification, so even a malformed trailing option is not an error."""
    data = wire(VECTOR)
    second = RSASignature(bytes(16), bytes(8)).encode()
    trailing = bytes((250, 0))  # length 0: malformed, but after the RSA Signature option
    assert signature_input(data + second + trailing, source=MN, destination=AR) == signature_input(
        data, source=MN, destination=AR
    )
    first = find_rsa_signature(data + second + trailing)
    assert first is not None
    assert first.key_hash.hex() == "2ccba7cb07398e018b791e06b9f72c6f"


def test_find_rsa_signature_absent() -> None:
    msg = RtSolPr(1, (LinkLayerAddress(0, b""),))
    assert find_rsa_signature(encode_icmpv6(msg, source=MN, destination=AR)) is None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\x9a\x00", "icmpv6.checksum"),
        (bytes((1, 0, 0, 0, 0, 0, 0, 0)), "icmpv6.type"),  # Destination Unreachable: no ND options
        (bytes((154, 0, 0, 0, 2, 0)), "icmpv6.header"),
        (bytes((154, 0, 0, 0, 2, 0, 0, 1, 19, 0)), "nd.option.length"),
        (bytes((154, 0, 0, 0, 2, 0, 0, 1, 12, 3)) + bytes(6), "nd.option.length"),
    ],
)
def test_signature_input_malformed(data: bytes, field: str) -> None:
    with pytest.raises(DecodeError) as caught:
        signature_input(data, source=MN, destination=AR)
    assert caught.value.field == field
    with pytest.raises(DecodeError):
        find_rsa_signature(data)


def test_signature_input_other_nd_messages() -> None:
    """A Router Solicitation (RFC 4861 §4.1) has 4 octets of header after the checksum."""
    rs = bytes((133, 0, 0, 0, 0, 0, 0, 0)) + bytes((1, 1)) + bytes(6)
    out = signature_input(rs, source=MN, destination=AR)
    assert out[32:34] == b"\x85\x00" and out[36:] == rs[4:]


def test_sign_and_verify_with_a_real_key() -> None:
    """End to end with an RSA key: sign the signer's input, append the option, verify from the received octets."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    cga = CGAOption(CGAParameters(bytes(16), bytes.fromhex("fe80000000000000"), 0, public_der))
    unsigned = RtSolPr(7, (LinkLayerAddress(0, b""), cga, Timestamp(123 << 16), Nonce(bytes(range(6)))))
    data_to_sign = signature_input(encode_icmpv6(unsigned, source=MN, destination=AR), source=MN, destination=AR)
    signature = key.sign(SEND_MESSAGE_TYPE_TAG + data_to_sign, padding.PKCS1v15(), hashes.SHA1())
    key_hash = hashlib.sha1(public_der).digest()[:16]
    sent = encode_icmpv6(RtSolPr(7, (*unsigned.options, RSASignature(key_hash, signature))), source=MN, destination=AR)

    received = decode_icmpv6(sent, source=MN, destination=AR)
    assert isinstance(received, RtSolPr)
    option = find_rsa_signature(sent)
    assert option is not None and option.key_hash == key_hash
    assert option.signature == signature  # 128 octets + 4 of padding: the decoder drops the padding
    key.public_key().verify(
        option.signature,
        SEND_MESSAGE_TYPE_TAG + signature_input(sent, source=MN, destination=AR),
        padding.PKCS1v15(),
        hashes.SHA1(),
    )


def test_rsa_signature_padding_rules() -> None:
    sig = bytes(range(1, 129))  # 128 octets: 20 + 128 = 148, so 4 octets of padding
    option = RSASignature(bytes(16), sig)
    encoded = option.encode()
    assert len(encoded) == 152 and encoded[1] == 19 and encoded[-4:] == bytes(4)
    assert RSASignature.decode_body(encoded[2:], offset=2) == option
    # a signature that ends in zero octets keeps them: only the 4 padding octets go
    zero_tail = RSASignature(bytes(16), bytes(120) + bytes(8))
    assert RSASignature.decode_body(zero_tail.encode()[2:], offset=2) == zero_tail
    # a sender with non-zero padding: the field is kept whole, signature_for_modulus cuts it to the key size
    foreign = encoded[:-4] + b"\xff" * 4
    decoded = RSASignature.decode_body(foreign[2:], offset=2)
    assert decoded.signature == sig + b"\xff" * 4
    assert decoded.signature_for_modulus(128) == sig
    # a signature of 8n+4 octets fills the option exactly; if it ended in 4 zero octets the decoder would
    # take them for padding, and signature_for_modulus puts them back
    odd = RSASignature(bytes(16), b"\x01" * 8 + bytes(4))
    decoded = RSASignature.decode_body(odd.encode()[2:], offset=2)
    assert decoded.signature_for_modulus(12) == odd.signature


def test_timestamp_fixed_point() -> None:
    ts = Timestamp.from_seconds(1700000000.5)
    assert ts.value == 1700000000 * 65536 + 32768
    assert ts.seconds == 1700000000.5
    assert ts.encode() == bytes((13, 2)) + bytes(6) + ts.value.to_bytes(8, "big")
    assert Timestamp.from_seconds(3).value == 3 << 16


def test_option_encoders_reject_values_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="Nonce"):
        Nonce(bytes(7)).encode()
    with pytest.raises(ValueError, match="Timestamp"):
        Timestamp(1 << 64).encode()
    with pytest.raises(ValueError, match="key hash"):
        RSASignature(bytes(15), b"").encode()
    with pytest.raises(ValueError, match="2040"):
        UnknownNDOption(200, bytes(2046)).encode()
    with pytest.raises(ValueError, match="multiple of 8"):
        UnknownNDOption(200, bytes(5)).encode()


def test_cga_option_layout() -> None:
    params = build(VECTOR["message"]["options"][2]["parameters"])
    encoded = CGAOption(params).encode()
    assert encoded[:4] == bytes((11, 16, 5, 0))  # 4 + 119 octets of parameters + 5 of padding = 128
    assert encoded[4:-5] == params.encode() and encoded[-5:] == bytes(5)

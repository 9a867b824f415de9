"""CGA (RFC 3972): the Appendix A vector (verify and regenerate), a Sec 2 vector, each rejection reason."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from cryptography.hazmat.primitives import hashes
from hypothesis import given, settings
from hypothesis import strategies as st

from aaa_fmip.crypto.cga import (
    BadCGACollisionCount,
    CGAHash1Mismatch,
    CGAHash2Mismatch,
    CGAPrefixMismatch,
    cga_sec,
    generate_cga,
    hash1,
    hash2,
    key_hash,
    verify_cga,
)
from aaa_fmip.errors import BadCGA, VerificationError
from aaa_fmip.wire.send import CGAParameters
from tests.crypto._vectors import load

APPENDIX_A = load("rfc3972-appendix-a.json")
SEC2 = load("cga-sec2.json")
PUBLIC_KEY = bytes.fromhex(APPENDIX_A["public_key"])
PREFIX = bytes.fromhex(APPENDIX_A["subnet_prefix"])
ADDRESS = ipaddress.IPv6Address(APPENDIX_A["address"])
PARAMS = CGAParameters(bytes.fromhex(APPENDIX_A["final_modifier"]), PREFIX, 0, PUBLIC_KEY)


def sha1(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA1())
    h.update(data)
    return h.finalize()


def test_appendix_a_intermediate_values() -> None:
    assert len(PUBLIC_KEY) == 94
    initial = bytes.fromhex(APPENDIX_A["initial_modifier"])
    assert hash2(initial, PUBLIC_KEY).hex() == APPENDIX_A["hash2_initial_modifier"]
    assert hash2(PARAMS.modifier, PUBLIC_KEY).hex() == APPENDIX_A["hash2_final_modifier"]
    assert len(PARAMS.encode()) == 119
    assert hash1(PARAMS).hex() == APPENDIX_A["hash1"]
    assert ADDRESS.packed[8:].hex() == APPENDIX_A["interface_identifier"]


def test_appendix_a_verifies() -> None:
    verify_cga(ADDRESS, PARAMS)
    verify_cga(ADDRESS, CGAParameters.decode(PARAMS.encode()))
    assert cga_sec(ADDRESS) == APPENDIX_A["sec"] == 1


def test_appendix_a_regenerates_from_the_initial_modifier() -> None:
    address, params = generate_cga(
        PUBLIC_KEY, PREFIX, APPENDIX_A["sec"], modifier=bytes.fromhex(APPENDIX_A["initial_modifier"])
    )
    assert address == ADDRESS
    assert params == PARAMS


def test_key_hash() -> None:
    assert key_hash(PUBLIC_KEY).hex() == APPENDIX_A["derived"]["key_hash"]
    assert key_hash(PUBLIC_KEY) == sha1(PUBLIC_KEY)[:16]


def test_sec2_vector() -> None:
    modifier = bytes.fromhex(SEC2["modifier"])
    # Independent of the package: Hash2 = SHA-1(modifier | 9 zero octets | key) has 32 leading zero bits.
    assert sha1(modifier + bytes(9) + PUBLIC_KEY)[:4] == bytes(4)
    start = int(SEC2["search_start_modifier"], 16)
    assert int(SEC2["modifier"], 16) - start == SEC2["increments_from_search_start"]
    address = ipaddress.IPv6Address(SEC2["address"])
    prefix = bytes.fromhex(SEC2["subnet_prefix"])
    verify_cga(address, CGAParameters(modifier, prefix, 0, PUBLIC_KEY))
    assert cga_sec(address) == 2
    # Regenerate from a modifier 1000 increments earlier: the search must walk to the same modifier.
    earlier = (int(SEC2["modifier"], 16) - 1000).to_bytes(16, "big")
    generated, params = generate_cga(PUBLIC_KEY, prefix, 2, modifier=earlier)
    assert (generated, params.modifier) == (address, modifier)


@pytest.mark.parametrize("sec", [0, 1])
def test_generated_addresses_verify(sec: int) -> None:
    prefix = bytes.fromhex("20010db8000a000b")
    address, params = generate_cga(PUBLIC_KEY, prefix, sec)
    verify_cga(address, params)
    assert cga_sec(address) == sec
    assert address.packed[:8] == prefix
    assert address.packed[8] & 0x03 == 0  # u and g bits cleared (RFC 3972 §4 step 6)
    assert params.collision_count == 0


def test_random_modifiers_differ() -> None:
    a, _ = generate_cga(PUBLIC_KEY, PREFIX, 0)
    b, _ = generate_cga(PUBLIC_KEY, PREFIX, 0)
    assert a != b


@pytest.mark.parametrize("count", [1, 2])
def test_collision_count_changes_the_address(count: int) -> None:
    modifier = PARAMS.modifier
    address, params = generate_cga(PUBLIC_KEY, PREFIX, 1, modifier=modifier, collision_count=count)
    assert params.modifier == modifier and params.collision_count == count
    assert address != ADDRESS
    verify_cga(address, params)


def test_modifier_wraps_at_2_pow_128() -> None:
    _, params = generate_cga(PUBLIC_KEY, PREFIX, 0, modifier=b"\xff" * 16)
    assert params.modifier == b"\xff" * 16  # Sec 0: no search


def test_extension_fields_are_hashed() -> None:
    address, params = generate_cga(PUBLIC_KEY, PREFIX, 0, modifier=bytes(16), extensions=b"\x00\x01\x00\x00")
    verify_cga(address, params)
    with pytest.raises(CGAHash1Mismatch):
        verify_cga(address, dataclasses.replace(params, extensions=b""))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sec": 3}, "Sec"),
        ({"sec": -1}, "Sec"),
        ({"subnet_prefix": bytes(7)}, "prefix"),
        ({"modifier": bytes(15)}, "modifier"),
        ({"collision_count": 3}, "collision"),
        ({"public_key_der": b""}, "public key"),
    ],
)
def test_generate_rejects_bad_input(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"public_key_der": PUBLIC_KEY, "subnet_prefix": PREFIX, "sec": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate_cga(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "params", "error", "reason"),
    [
        (ADDRESS, dataclasses.replace(PARAMS, collision_count=3), BadCGACollisionCount, "bad-cga-collision-count"),
        (ADDRESS, dataclasses.replace(PARAMS, subnet_prefix=bytes(8)), CGAPrefixMismatch, "bad-cga-prefix"),
        (ipaddress.IPv6Address("2001:db8::3c4a:5bf6:ffb4:ca6c"), PARAMS, CGAPrefixMismatch, "bad-cga-prefix"),
        (ADDRESS + 1, PARAMS, CGAHash1Mismatch, "bad-cga-hash1"),
        (ADDRESS, dataclasses.replace(PARAMS, public_key=PUBLIC_KEY[:-1] + b"\x03"), CGAHash1Mismatch, "bad-cga-hash1"),
        # Same Hash1 bits, but Sec raised to 2 in the address: Hash2 has only 16 zero bits.
        (ipaddress.IPv6Address(int(ADDRESS) ^ (0b011 << 61)), PARAMS, CGAHash2Mismatch, "bad-cga-hash2"),
    ],
)
def test_verify_rejections(
    address: ipaddress.IPv6Address, params: CGAParameters, error: type[BadCGA], reason: str
) -> None:
    with pytest.raises(error) as info:
        verify_cga(address, params)
    assert isinstance(info.value, BadCGA)
    assert info.value.reason == reason


def test_verify_hash2_with_the_initial_modifier() -> None:
    """The Appendix A initial modifier fails Sec 1 (Hash2 436b...): a CGA built from it must be refused."""
    params = dataclasses.replace(PARAMS, modifier=bytes.fromhex(APPENDIX_A["initial_modifier"]))
    iid = int.from_bytes(hash1(params), "big") & 0x1CFFFFFFFFFFFFFF | (1 << 61)
    address = ipaddress.IPv6Address(PREFIX + iid.to_bytes(8, "big"))
    with pytest.raises(CGAHash2Mismatch):
        verify_cga(address, params)
    verify_cga(ipaddress.IPv6Address(int(address) & ~(0b111 << 61)), params)  # the same with Sec 0 is a CGA


@settings(max_examples=300, deadline=None)
@given(bit=st.integers(min_value=0, max_value=127))
def test_address_bit_flips(bit: int) -> None:
    """Flipping any address bit breaks verification except u/g (ignored, RFC 3972 §5 step 3) and Sec downgrades."""
    flipped = ipaddress.IPv6Address(int(ADDRESS) ^ (1 << (127 - bit)))
    iid_bit = bit - 64
    if iid_bit in (6, 7):
        verify_cga(flipped, PARAMS)
    elif iid_bit in (0, 1, 2):
        new_sec = cga_sec(flipped)
        if any(hash2(PARAMS.modifier, PUBLIC_KEY)[: 2 * new_sec]):
            with pytest.raises(CGAHash2Mismatch):
                verify_cga(flipped, PARAMS)
        else:
            verify_cga(flipped, PARAMS)  # Sec 0: no Hash2 condition
    else:
        with pytest.raises(VerificationError):
            verify_cga(flipped, PARAMS)


@settings(max_examples=200, deadline=None)
@given(bit=st.integers(min_value=0), field=st.sampled_from(["modifier", "public_key", "subnet_prefix"]))
def test_parameter_bit_flips_fail(bit: int, field: str) -> None:
    value: bytes = getattr(PARAMS, field)
    i = bit % (8 * len(value))
    changed = bytearray(value)
    changed[i // 8] ^= 0x80 >> (i % 8)
    with pytest.raises(BadCGA):
        verify_cga(ADDRESS, dataclasses.replace(PARAMS, **{field: bytes(changed)}))  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(modifier=st.binary(min_size=16, max_size=16), prefix=st.binary(min_size=8, max_size=8))
def test_generate_then_verify_sec0(modifier: bytes, prefix: bytes) -> None:
    address, params = generate_cga(PUBLIC_KEY, prefix, 0, modifier=modifier)
    verify_cga(address, params)
    assert CGAParameters.decode(params.encode()) == params

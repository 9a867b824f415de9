"""Hypothesis: round trips, any input gives a value or DecodeError, truncation fails cleanly."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire import icmpv6, mh
from aaa_fmip.wire.ipv6 import build_ipv6_packet, parse_ipv6_packet
from aaa_fmip.wire.send import CGAParameters, find_rsa_signature, signature_input
from tests.wire import strategies as strat

# No deadline: tests never depend on wall-clock time.
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEAVY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SRC = IPv6Address("fe80::3c4a:5bf6:ffb4:ca6c")
DST = IPv6Address("fe80::1")


def _value_or_decode_error(decode: Callable[[bytes], Any], data: bytes) -> None:
    try:
        decode(data)
    except DecodeError as exc:
        assert exc.field
        assert exc.offset >= 0


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """Valid octets with a few octets overwritten, inserted or removed: reaches the deep decoding paths."""

    def apply(edits: list[tuple[int, int, int]]) -> bytes:
        out = bytearray(data)
        for kind, position, value in edits:
            at = position % (len(out) + 1)
            if kind == 0 and out:
                out[at % len(out)] = value
            elif kind == 1:
                out.insert(at, value)
            elif out:
                del out[at % len(out)]
        return bytes(out)

    return st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4096), strat.u8), min_size=1, max_size=4).map(apply)


# --- ICMPv6 ----------------------------------------------------------------------------------------------------


@FAST
@given(strat.icmpv6_messages, strat.addresses, strat.addresses)
def test_icmpv6_round_trip(msg: Any, src: IPv6Address, dst: IPv6Address) -> None:
    data = icmpv6.encode_icmpv6(msg, source=src, destination=dst)
    assert icmpv6.decode_icmpv6(data, source=src, destination=dst) == msg
    assert icmpv6.encode_icmpv6(icmpv6.decode_icmpv6(data), source=src, destination=dst) == data


@FAST
@given(strat.nd_messages, strat.addresses, strat.addresses)
def test_nd_message_round_trip(msg: Any, src: IPv6Address, dst: IPv6Address) -> None:
    data = icmpv6.encode_nd_message(msg, source=src, destination=dst)
    assert icmpv6.decode_nd_message(data, source=src, destination=dst) == msg


@FAST
@given(st.binary(max_size=256))
def test_nd_message_any_octets(data: bytes) -> None:
    _value_or_decode_error(icmpv6.decode_nd_message, data)
    if len(data) >= 1:
        _value_or_decode_error(icmpv6.decode_nd_message, bytes((134,)) + data[1:])
        _value_or_decode_error(icmpv6.decode_nd_message, bytes((136,)) + data[1:])


@FAST
@given(strat.nd_option_lists)
def test_nd_options_round_trip(options: tuple[Any, ...]) -> None:
    data = icmpv6.encode_nd_options(options)
    assert len(data) % 8 == 0
    assert icmpv6.decode_nd_options(data) == options


@FAST
@given(st.binary(max_size=256))
def test_icmpv6_any_octets(data: bytes) -> None:
    _value_or_decode_error(icmpv6.decode_icmpv6, data)
    _value_or_decode_error(lambda d: icmpv6.decode_icmpv6(d, source=SRC, destination=DST), data)
    _value_or_decode_error(icmpv6.decode_nd_options, data)
    _value_or_decode_error(find_rsa_signature, data)
    _value_or_decode_error(lambda d: signature_input(d, source=SRC, destination=DST), data)
    _value_or_decode_error(CGAParameters.decode, data)


@FAST
@given(st.data())
def test_icmpv6_mutated_octets(data: st.DataObject) -> None:
    msg = data.draw(strat.icmpv6_messages)
    mutated = data.draw(_mutations(icmpv6.encode_icmpv6(msg, source=SRC, destination=DST)))
    _value_or_decode_error(icmpv6.decode_icmpv6, mutated)
    _value_or_decode_error(find_rsa_signature, mutated)
    _value_or_decode_error(lambda d: signature_input(d, source=SRC, destination=DST), mutated)


def _option_boundaries(msg: Any) -> dict[int, Any]:
    """Cut offset -> the message a cut there leaves (a valid shorter message)."""
    if isinstance(msg, icmpv6.UnknownIcmpv6Message):
        first = 5 if msg.type == 154 else 4  # a type-154 message needs its Subtype octet
        return {4 + n: dataclasses.replace(msg, body=msg.body[:n]) for n in range(first - 4, len(msg.body) + 1)}
    cuts, offset = {8: dataclasses.replace(msg, options=())}, 8
    for index, option in enumerate(msg.options):
        offset += len(option.encode())
        cuts[offset] = dataclasses.replace(msg, options=msg.options[: index + 1])
    return cuts


@HEAVY
@given(strat.icmpv6_messages)
def test_icmpv6_truncation(msg: Any) -> None:
    """Every cut raises DecodeError, except at an option boundary, which leaves the shorter message."""
    data = icmpv6.encode_icmpv6(msg, source=SRC, destination=DST)
    boundaries = _option_boundaries(msg)
    for cut in range(len(data)):
        try:
            got = icmpv6.decode_icmpv6(data[:cut])
        except DecodeError:
            assert cut not in boundaries
        else:
            assert got == boundaries[cut]


@FAST
@given(
    strat.nd_option_lists, strat.addresses, strat.addresses, st.binary(min_size=16, max_size=16), st.binary(max_size=64)
)
def test_signature_input_is_the_same_for_signer_and_verifier(
    options: tuple[Any, ...], src: IPv6Address, dst: IPv6Address, key_hash: bytes, signature: bytes
) -> None:
    """Signer: the message before the RSA option is appended; verifier: the message with it (architecture §3)."""
    unsigned = [o for o in options if not isinstance(o, icmpv6.RSASignature)]
    before = icmpv6.RtSolPr(1, tuple(unsigned))
    signed = dataclasses.replace(before, options=(*unsigned, icmpv6.RSASignature(key_hash, signature)))
    before_octets = icmpv6.encode_icmpv6(before, source=src, destination=dst)
    signer = signature_input(before_octets, source=src, destination=dst)
    assert signer == src.packed + dst.packed + before_octets
    verifier_octets = icmpv6.encode_icmpv6(signed, source=src, destination=dst)
    assert signature_input(verifier_octets, source=src, destination=dst) == signer
    found = find_rsa_signature(verifier_octets)
    assert found is not None
    assert found.key_hash == key_hash
    assert found.signature_for_modulus(len(signature)) == signature


# --- Mobility Header -------------------------------------------------------------------------------------------


def _walk_mh_options(data: bytes, start: int) -> list[tuple[int, int, int]]:
    """(type, offset, length of data) of every option, padding included, by a walker written for this test."""
    out, pos = [], start
    while pos < len(data):
        if data[pos] == 0:
            out.append((0, pos, 0))
            pos += 1
            continue
        length = data[pos + 1] + (4 if data[pos] == 21 else 0)
        out.append((data[pos], pos, length))
        pos += 2 + length
    assert pos == len(data)
    return out


@FAST
@given(strat.mobility_messages, strat.addresses, strat.addresses)
def test_mh_round_trip(msg: Any, src: IPv6Address, dst: IPv6Address) -> None:
    data = mh.encode_mh(msg, source=src, destination=dst)
    assert len(data) % 8 == 0
    assert mh.decode_mh(data, source=src, destination=dst) == msg
    assert mh.encode_mh(mh.decode_mh(data), source=src, destination=dst) == data


@FAST
@given(strat.mobility_messages)
def test_mh_alignment(msg: Any) -> None:
    """Alternate CoA at 8n+6, MH IPv6 Address/Prefix at 8n+4, BADF last with its SPI 4-aligned if it can be."""
    if isinstance(msg, mh.UnknownMobilityMessage):
        return
    data = mh.encode_mh(msg, source=SRC, destination=DST)
    start = 10 if isinstance(msg, mh.HI | mh.HAck) else 12
    options = _walk_mh_options(data, start)
    for option_type, offset, length in options:
        if option_type == 3:
            assert offset % 8 == 6
        if option_type == 34:
            assert offset % 8 == 4
        if option_type == 21:
            assert (option_type, offset, length) == options[-1]
            assert offset + 2 + length == len(data)
            if length % 4 == 0:
                assert (offset + 2) % 4 == 0
            if length == 12 + 4:
                assert offset % 8 == 6
            if length == 16 + 4:
                assert offset % 8 == 2
    # padding is only ever what the next option or the end needs: never 8 octets or more in a row
    run = 0
    for option_type, _offset, length in options:
        run = run + (1 if option_type == 0 else 2 + length) if option_type in (0, 1) else 0
        assert run < 8


@FAST
@given(strat.fbus_with_badf)
def test_badf_input_cuts_only_the_authenticator(msg: mh.FBU) -> None:
    data = mh.encode_mh(msg, source=SRC, destination=DST)
    badf = msg.options[-1]
    assert isinstance(badf, mh.BADF)
    got = mh.badf_input(data)
    assert (got.spi, got.authenticator) == (badf.spi, badf.authenticator)
    assert got.mh_data + got.authenticator == data[:4] + b"\x00\x00" + data[6:]


@FAST
@given(st.binary(max_size=256))
def test_mh_any_octets(data: bytes) -> None:
    _value_or_decode_error(mh.decode_mh, data)
    _value_or_decode_error(lambda d: mh.decode_mh(d, source=SRC, destination=DST), data)
    _value_or_decode_error(mh.badf_input, data)


@FAST
@given(st.data())
def test_mh_mutated_octets(data: st.DataObject) -> None:
    msg = data.draw(strat.mobility_messages)
    mutated = data.draw(_mutations(mh.encode_mh(msg, source=SRC, destination=DST)))
    # keep Header Len consistent half of the time, so the option walker sees the mutation
    if data.draw(st.booleans()) and len(mutated) >= 8 and len(mutated) % 8 == 0:
        mutated = mutated[:1] + bytes((len(mutated) // 8 - 1,)) + mutated[2:]
    _value_or_decode_error(mh.decode_mh, mutated)
    _value_or_decode_error(mh.badf_input, mutated)


@HEAVY
@given(strat.mobility_messages)
def test_mh_truncation(msg: Any) -> None:
    data = mh.encode_mh(msg, source=SRC, destination=DST)
    for cut in range(len(data)):
        for decode in (mh.decode_mh, mh.badf_input):
            try:
                decode(data[:cut])
            except DecodeError:
                continue
            raise AssertionError(f"{decode.__name__} accepted {cut} of {len(data)} octets")


# --- IPv6 ------------------------------------------------------------------------------------------------------


@FAST
@given(strat.addresses, strat.addresses, strat.u8, st.binary(max_size=128), strat.u8, st.none() | strat.addresses)
def test_ipv6_round_trip(
    src: IPv6Address, dst: IPv6Address, next_header: int, payload: bytes, hop_limit: int, home: IPv6Address | None
) -> None:
    if next_header in (0, 43, 44, 60):
        next_header = 59
    packet = build_ipv6_packet(src, dst, next_header, payload, hop_limit=hop_limit, home_address=home)
    assert packet[7] == hop_limit
    assert tuple(parse_ipv6_packet(packet)) == (src, dst, home, next_header, payload)
    for cut in range(len(packet)):
        try:
            parse_ipv6_packet(packet[:cut])
        except DecodeError:
            continue
        raise AssertionError(f"accepted {cut} of {len(packet)} octets")


@FAST
@given(st.binary(max_size=160))
def test_ipv6_any_octets(data: bytes) -> None:
    _value_or_decode_error(parse_ipv6_packet, data)
    # the same octets behind a valid fixed header: exercises the extension-header walker
    for next_header in (0, 43, 60):
        header = bytes((0x60, 0, 0, 0)) + len(data).to_bytes(2, "big") + bytes((next_header, 64)) + bytes(32)
        _value_or_decode_error(parse_ipv6_packet, header + data)

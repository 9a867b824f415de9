"""The MIH codec against hand-assembled vectors, and Hypothesis: round trips, any input gives a value or
DecodeError, truncation at every offset fails cleanly."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aaa_fmip.errors import DecodeError
from aaa_fmip.wire import mih
from aaa_fmip.wire._buffer import Reader
from tests.mih import strategies as strat

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VECTORS = json.loads((Path(__file__).resolve().parent.parent / "vectors" / "wire-mih.json").read_text("utf-8"))
MN = b"mn1@example.org"
MOS = b"mos.example.org"


def wire(vector: dict[str, Any]) -> bytes:
    out = b""
    for _label, piece in vector["wire"]:
        if piece.startswith("REPEAT:"):
            _, octet, count = piece.split(":")
            out += bytes.fromhex(octet) * int(count)
        else:
            out += bytes.fromhex(piece.replace(" ", ""))
    return out


NEIGHBOUR = mih.PoAContainer(
    mih.LinkAddress.mac("02:00:00:00:00:02"),
    (ipaddress.IPv6Network("2001:db8:2::/64"),),
    (ipaddress.IPv6Address("2001:db8:2::1"),),
)

# One table: each vector's message; the test encodes it and decodes the vector's octets.
EXPECTED: dict[str, mih.MIHMessage] = {
    "capability-discover-request-ack-req": mih.CapabilityDiscoverRequest(
        source=MN, destination=MOS, transaction_id=1, ack_req=True
    ),
    "get-information-request-neighbours": mih.GetInformationRequest(
        source=MN,
        destination=MOS,
        transaction_id=2,
        queries=(
            mih.IQBinData(
                querier_link_address=mih.LinkAddress.mac("02:00:00:00:00:01"),
                report_template=(mih.IEType.POA_LINK_ADDR, mih.IEType.POA_SUBNET_INFO, mih.IEType.POA_IP_ADDR),
            ),
        ),
        max_response_size=1200,
    ),
    "get-information-response-one-neighbour": mih.GetInformationResponse(
        source=MOS, destination=MN, transaction_id=2, results=((NEIGHBOUR.to_ie(),),)
    ),
    "unknown-tlv-long-length": mih.DeRegisterRequest(
        source=MN, destination=MOS, transaction_id=4095, extra_tlvs=(mih.TLV(mih.TLVType(99), b"\xab" * 200),)
    ),
}


@pytest.mark.parametrize("vector", VECTORS["frames"], ids=lambda v: v["name"])
def test_frame_vectors(vector: dict[str, Any]) -> None:
    data = wire(vector)
    frame = mih.decode_frame(data)
    assert mih.encode_frame(frame) == data
    expected = EXPECTED.get(vector["name"])
    if expected is not None:
        assert mih.encode_message(expected) == data
        assert mih.decode_message(data) == expected


def test_ack_vector_header() -> None:
    (vector,) = [v for v in VECTORS["frames"] if v["name"] == "ack-for-tid-1"]
    frame = mih.decode_frame(wire(vector))
    assert frame.header.ack_rsp and not frame.header.ack_req
    assert frame.header.transaction_id == 1
    assert frame.header.message_id == 0x1401
    assert frame.source == MOS


def test_poa_container_vector_decodes_to_the_neighbour() -> None:
    (vector,) = [v for v in VECTORS["frames"] if v["name"] == "get-information-response-one-neighbour"]
    msg = mih.decode_message(wire(vector))
    assert isinstance(msg, mih.GetInformationResponse) and msg.results is not None
    assert mih.PoAContainer.from_ie(msg.results[0][0]) == NEIGHBOUR
    assert str(NEIGHBOUR.link_address) == "02:00:00:00:00:02"


@pytest.mark.parametrize("case", VECTORS["lengths"], ids=lambda c: str(c["length"]))
def test_length_rule(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["wire"])
    assert mih.encode_length(case["length"]) == data
    r = Reader(data)
    assert mih.decode_length(r, "L") == case["length"]
    assert r.at_end()


@pytest.mark.parametrize("case", VECTORS["non_canonical_lengths"], ids=lambda c: c["why"])
def test_non_canonical_length_is_a_decode_error(case: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        mih.decode_length(Reader(bytes.fromhex(case["wire"])), "L")


def test_unknown_code_points_are_kept() -> None:
    header = mih.Header(mih.ServiceId(9), mih.Opcode.INDICATION, 77, 5)
    data = mih.encode_frame(mih.Frame(header, (mih.TLV(mih.TLVType(200), b"x"),)))
    frame = mih.decode_frame(data)
    assert frame.header.service_id == 9 and frame.header.service_id.name == "UNKNOWN_9"
    assert frame.tlvs[0].type == 200
    assert mih.encode_frame(frame) == data


def test_unknown_message_keeps_its_tlvs() -> None:
    header = mih.Header(mih.ServiceId.EVENT, mih.Opcode.INDICATION, 2, 9)
    tlvs = (
        mih.TLV(mih.TLVType.SOURCE_MIHF_ID, b"\x01a"),
        mih.TLV(mih.TLVType.DESTINATION_MIHF_ID, b"\x01b"),
        mih.TLV(mih.TLVType.LINK_IDENTIFIER, b"\x00\x01\x02"),
    )
    data = mih.encode_frame(mih.Frame(header, tlvs))
    msg = mih.decode_message(data)
    assert isinstance(msg, mih.UnknownMessage)
    assert msg.service_id == mih.ServiceId.EVENT and msg.action_id == 2
    assert mih.encode_message(msg) == data


@pytest.mark.parametrize(
    ("tlvs", "why"),
    [
        ((), "no Source MIHF-ID"),
        (((1, b"\x01a"),), "no Destination MIHF-ID"),
        (((2, b"\x01a"), (1, b"\x01b")), "MIHF-IDs swapped"),
        (((1, b"\x02a"), (2, b"\x01b")), "MIHF_ID octet string overruns"),
        (((1, b"\x81\x7e" + bytes(254)), (2, b"\x01b")), "MIHF_ID of 254 octets"),
        (((1, b"\x01a"), (2, b"\x01b"), (3, b"\x00"), (3, b"\x00")), "Status repeated"),
        (((1, b"\x01a"), (2, b"\x01b"), (3, b"\x00\x00")), "Status too long"),
        (((1, b"\x01a"), (2, b"\x01b"), (1, b"\x01c"), (3, b"\x00")), "a second Source MIHF-ID"),
        (((1, b"\x01a"), (2, b"\x01b")), "required Status missing"),
    ],
)
def test_malformed_messages(tlvs: tuple[tuple[int, bytes], ...], why: str) -> None:
    header = mih.Header(mih.ServiceId.SERVICE_MANAGEMENT, mih.Opcode.RESPONSE, 3, 1)  # DeRegister.response
    data = mih.encode_frame(mih.Frame(header, tuple(mih.TLV(mih.TLVType(t), v) for t, v in tlvs)))
    with pytest.raises(DecodeError):
        mih.decode_message(data)


def test_fragment_is_not_a_message() -> None:
    msg = mih.DeRegisterRequest(source=MN, destination=MOS)
    frame = mih.decode_frame(mih.encode_message(msg))
    fragment = mih.Frame(mih.Header(**{**frame.header.__dict__, "more_fragments": True}), frame.tlvs)
    with pytest.raises(DecodeError, match="fragment"):
        mih.decode_message(mih.encode_frame(fragment))


def test_querier_location_is_refused_with_decode_error() -> None:
    # QUERIER_LOC present, LOCATION present (selector 1): not supported.
    iq = bytes.fromhex("01" + "01" + "01" + "01")
    tlvs = (
        mih.TLV(mih.TLVType.SOURCE_MIHF_ID, b"\x01a"),
        mih.TLV(mih.TLVType.DESTINATION_MIHF_ID, b"\x01b"),
        mih.TLV(mih.TLVType.INFO_QUERY_BINARY_DATA_LIST, iq),
    )
    data = mih.encode_frame(mih.Frame(mih.Header(mih.ServiceId.INFORMATION, mih.Opcode.REQUEST, 1, 1), tlvs))
    with pytest.raises(DecodeError, match="LOCATION"):
        mih.decode_message(data)


def test_zero_length_mihf_id_for_an_unknown_destination() -> None:
    # 802.21-2008 clause 8: MIH_Capability_Discover.request may go to a destination whose MIHF-ID is not known yet
    msg = mih.CapabilityDiscoverRequest(source=MN, destination=b"", transaction_id=1)
    data = mih.encode_message(msg)
    assert data[8 + 2 + 16 :] == b"\x02\x01\x00"  # TLV 2, length 1, OCTET_STRING of length 0
    assert mih.decode_message(data) == msg


def test_query_type_bits_follow_the_bitmap_order() -> None:
    bitmap = mih.ISQueryType.bitmap([mih.ISQueryType.BINARY_DATA, mih.ISQueryType.IE_POA_IP_ADDR])
    assert bitmap.to_bytes(8, "big").hex() == "8000000800000000"


def test_encoder_refuses_out_of_range_fields() -> None:
    with pytest.raises(ValueError):
        mih.encode_frame(mih.Frame(mih.Header(mih.ServiceId.EVENT, mih.Opcode.REQUEST, 1, 0x1000)))
    with pytest.raises(ValueError):
        mih.encode_message(mih.DeRegisterRequest(source=bytes(254), destination=MOS))


# --- properties ----------------------------------------------------------------------------------------------


@FAST
@given(strat.messages)
def test_message_round_trip(msg: mih.MIHMessage) -> None:
    data = mih.encode_message(msg)
    assert mih.decode_message(data) == msg
    assert mih.frame_length(data) == len(data)


@FAST
@given(strat.frames)
def test_frame_round_trip(frame: mih.Frame) -> None:
    data = mih.encode_frame(frame)
    decoded = mih.decode_frame(data)
    assert decoded == frame
    assert mih.encode_frame(decoded) == data


@FAST
@given(strat.poa_containers)
def test_poa_container_round_trip(poa: mih.PoAContainer) -> None:
    assert mih.PoAContainer.from_ie(poa.to_ie()) == poa


@FAST
@given(st.integers(0, 2**32 - 1))
def test_length_round_trip(n: int) -> None:
    data = mih.encode_length(n)
    r = Reader(data)
    assert mih.decode_length(r, "L") == n and r.at_end()


def _value_or_decode_error(data: bytes) -> None:
    try:
        frame = mih.decode_frame(data)
    except DecodeError as exc:
        assert exc.offset >= 0
        return
    assert mih.encode_frame(frame) == data or data[1] & 1 or data[4] & 0xF0  # reserved bits are not kept
    with contextlib.suppress(DecodeError):
        mih.decode_message(frame)
    for tlv in frame.tlvs:
        with contextlib.suppress(DecodeError):
            mih.PoAContainer.from_ie(mih.InformationElement(mih.IEType.CONTAINER_POA, tlv.value))


@FAST
@given(st.binary(max_size=300))
def test_any_bytes_give_a_value_or_decode_error(data: bytes) -> None:
    _value_or_decode_error(data)


@FAST
@given(strat.messages, st.data())
def test_mutated_messages_give_a_value_or_decode_error(msg: mih.MIHMessage, data: st.DataObject) -> None:
    raw = bytearray(mih.encode_message(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    _value_or_decode_error(bytes(raw))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strat.messages)
def test_truncation_at_every_offset(msg: mih.MIHMessage) -> None:
    data = mih.encode_message(msg)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            mih.decode_message(data[:cut])

"""tshark's ``mih`` dissector (UDP/TCP 4551) is the independent oracle for the frames we write.

Its limits, asserted here so a change on either side shows (docs/mih.md, "tshark"):

* A TLV value longer than 128 octets: tshark shows only the raw extension octet(s) of the Length
  (``mih.tlv_length_ext`` = length - 128) and leaves the value undissected.
* Only the first MIH PDU of a TCP segment is decoded; a second PDU in the same segment is not shown.
* IQ/IR binary data (TLVs 43 and 48) are shown as opaque strings: the Information Elements inside are checked
  by our vectors (tests/vectors/wire-mih.json). Their building blocks are checked where tshark dissects them in
  another TLV: LINK_ADDR in the PoA TLV (60) and the Link identifier TLV (13).
* IP_ADDR (TRANSPORT_ADDR: 2-octet family, OCTET_STRING) in e.g. the Access router address TLV (35): tshark 4.0
  reads the OCTET_STRING's length one octet late (after the first address octet) and reports the packet as
  malformed; ODTONE reads the same octets as we write them.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from aaa_fmip.wire import mih
from tests.mih._packets import tcp6, udp6
from tests.mih.test_wire_mih import EXPECTED, VECTORS, wire
from tests.support.pcap import tshark_fields, write_pcap

FIELDS = [
    "mih.version",
    "mih.acq_req",
    "mih.acq_resp",
    "mih.uir",
    "mih.more_frag",
    "mih.frag_no",
    "mih.service_id",
    "mih.opcode",
    "mih.action_id",
    "mih.tid",
    "mih.pay_len",
    "mih.tlv_type",
    "mih.tlv_length",
    "mih.tlv_length_ext",
    "mih.mihf_id",
    "mih.status",
    "mih.max_resp_size",
    "mih.trans_list",
    "mih.iq_type_list",
    "mih.valid_time_interval",
    "mih.reg_request_code",
]

MN = b"mn1@example.org"
MOS = b"mos.example.org"

EXTRA: list[mih.MIHMessage] = [
    mih.CapabilityDiscoverResponse(
        source=MOS,
        destination=MN,
        transaction_id=1,
        transports=mih.TransportSupport.UDP | mih.TransportSupport.TCP,
        query_types=mih.ISQueryType.bitmap(
            [mih.ISQueryType.BINARY_DATA, mih.ISQueryType.IE_POA_LINK_ADDR, mih.ISQueryType.IE_POA_IP_ADDR]
        ),
    ),
    mih.RegisterRequest(source=MN, destination=MOS, transaction_id=3, request_code=mih.RegisterRequestCode(1)),
    mih.RegisterResponse(source=MOS, destination=MN, transaction_id=3, valid_time_interval=3600),
    mih.DeRegisterResponse(source=MOS, destination=MN, transaction_id=5, status=mih.Status.REJECTED),
]


def _decode(tmp_path: Path, packets: list[bytes]) -> list[dict[str, list[str]]]:
    pcap = write_pcap(tmp_path / "mih.pcap", packets)
    return tshark_fields(pcap, FIELDS, display_filter="mih")


def _header_matches(row: dict[str, list[str]], data: bytes) -> None:
    frame = mih.decode_frame(data)
    h = frame.header
    assert set(row["mih.version"]) == {str(h.version)}  # tshark 4.0 prints the version field twice
    assert row["mih.acq_req"] == [str(int(h.ack_req))]
    assert row["mih.acq_resp"] == [str(int(h.ack_rsp))]
    assert row["mih.uir"] == [str(int(h.uir))]
    assert row["mih.more_frag"] == [str(int(h.more_fragments))]
    assert row["mih.frag_no"] == [str(h.fragment_number)]
    assert [int(v, 0) for v in row["mih.service_id"]] == [int(h.service_id)]  # printed in hex
    assert [int(v, 0) for v in row["mih.opcode"]] == [int(h.opcode)]
    assert [int(v, 0) for v in row["mih.action_id"]] == [h.action_id]
    assert row["mih.tid"] == [str(h.transaction_id)]
    assert row["mih.pay_len"] == [str(len(data) - mih.HEADER_LENGTH)]
    assert row["mih.tlv_type"] == [str(int(t.type)) for t in frame.tlvs]


def test_vectors_and_messages_over_udp(tmp_path: Path) -> None:
    datas = [wire(v) for v in VECTORS["frames"]] + [mih.encode_message(m) for m in EXTRA]
    rows = _decode(tmp_path, [udp6(d) for d in datas])
    assert len(rows) == len(datas)
    by_name: dict[str, dict[str, list[str]]] = {}
    for vector, row in zip(VECTORS["frames"], rows, strict=False):
        by_name[vector["name"]] = row
    for data, row in zip(datas, rows, strict=True):
        _header_matches(row, data)
        frame = mih.decode_frame(data)
        ids = [mih.decode_message(frame).source, mih.decode_message(frame).destination]
        assert row["mih.mihf_id"] == [i.decode() for i in ids]

    ack = by_name["ack-for-tid-1"]
    assert ack["mih.acq_resp"] == ["1"] and ack["mih.acq_req"] == ["0"]
    request = by_name["get-information-request-neighbours"]
    assert request["mih.max_resp_size"] == ["1200"]
    response = by_name["get-information-response-one-neighbour"]
    assert response["mih.status"] == ["0"]
    # Long TLV length: tshark shows only the extension (200 - 128 = 72).
    long_tlv = by_name["unknown-tlv-long-length"]
    assert long_tlv["mih.tlv_length_ext"] == ["72"]
    assert long_tlv["mih.tid"] == ["4095"]

    capability, register, registered, deregistered = rows[len(VECTORS["frames"]) :]
    assert [int(v, 0) for v in capability["mih.trans_list"]] == [0xC000]
    # tshark reads the first 32 of the 64 bits of IQ_TYPE_LST: binary data, IE_POA_LINK_ADDR, IE_POA_IP_ADDR.
    assert [int(v, 0) for v in capability["mih.iq_type_list"]] == [0x80000108]
    assert register["mih.reg_request_code"] == ["1"]
    assert registered["mih.valid_time_interval"] == ["3600"]
    assert deregistered["mih.status"] == ["2"]


def test_tcp_first_pdu_of_a_segment_only(tmp_path: Path) -> None:
    first = mih.encode_message(EXPECTED["get-information-request-neighbours"])
    second = mih.encode_message(EXTRA[0])
    rows = _decode(tmp_path, [tcp6(first), tcp6(first + second, seq=1 + len(first))])
    assert len(rows) == 2
    for row in rows:
        _header_matches(row, first)  # the second PDU of the segment is not shown


def test_response_with_many_neighbours_has_a_long_tlv(tmp_path: Path) -> None:
    neighbours = tuple(
        mih.PoAContainer(
            mih.LinkAddress.mac(bytes([2, 0, 0, 0, 0, i])),
            (ipaddress.IPv6Network(f"2001:db8:{i}::/64"),),
            (ipaddress.IPv6Address(f"2001:db8:{i}::1"),),
        ).to_ie()
        for i in range(1, 5)
    )
    msg = mih.GetInformationResponse(source=MOS, destination=MN, transaction_id=9, results=(neighbours,))
    data = mih.encode_message(msg)
    (row,) = _decode(tmp_path, [udp6(data)])
    _header_matches(row, data)
    value_length = len(mih.decode_frame(data).tlvs[-1].value)
    assert value_length > 128
    assert row["mih.tlv_length_ext"] == [str(value_length - 128)]


def test_link_addr_and_ip_addr_encodings(tmp_path: Path) -> None:
    link = mih.PoAContainer(link_address=mih.LinkAddress.mac("02:00:00:00:00:07")).to_ie()
    (link_ie,) = mih.decode_information_elements(link.value)  # IE_POA_LINK_ADDR: the LINK_ADDR our IEs carry
    router = mih.PoAContainer(ip_addresses=(ipaddress.IPv6Address("2001:db8:2::1"),)).to_ie()
    (router_ie,) = mih.decode_information_elements(router.value)  # IE_POA_IP_ADDR: an IP_ADDR
    cases = [
        (mih.TLVType.POA, link_ie.value),
        (mih.TLVType.LINK_IDENTIFIER, b"\x13" + link_ie.value),  # LINK_TYPE 19 (802.11) + LINK_ADDR
        (mih.TLVType.ACCESS_ROUTER_ADDRESS, router_ie.value),
    ]
    packets = [
        udp6(mih.encode_message(mih.DeRegisterRequest(source=MN, destination=MOS, extra_tlvs=(mih.TLV(t, v),))))
        for t, v in cases
    ]
    pcap = write_pcap(tmp_path / "addr.pcap", packets)
    fields = ["mih.link_type", "mih.link_addr_type", "mih.link_transport_addr_type", "mih.mac_addr", "_ws.expert"]
    poa, link_id, access_router = tshark_fields(pcap, fields, display_filter="mih")
    for row in (poa, link_id):
        assert row["mih.link_addr_type"] == ["0"]  # MAC_ADDR
        assert row["mih.link_transport_addr_type"] == ["6"]  # IANA address family 802
        assert row["mih.mac_addr"] == ["02:00:00:00:00:07"]
        assert row["_ws.expert"] == []
    assert link_id["mih.link_type"] == ["19"]
    assert any("Malformed" in e for e in access_router["_ws.expert"])  # the tshark 4.0 IP_ADDR quirk above


@pytest.fixture(autouse=True)
def _tshark_present() -> Any:
    from tests.support.pcap import tshark_binary

    tshark_binary()  # raises with a clear message when scripts/install-deps has not run

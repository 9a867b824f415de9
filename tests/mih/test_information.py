"""The Information Server and the neighbour table (pure: no sockets, the clock is a variable)."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aaa_fmip.errors import ConfigError
from aaa_fmip.mih.information import InformationServer, neighbours_from_response
from aaa_fmip.mih.neighbours import NeighbourTable, load_neighbour_table
from aaa_fmip.mih.transport import PeerInfo
from aaa_fmip.wire import mih

MN = b"mn1@example.org"
MOS = b"mos.example.org"

TABLE = """
[[poa]]
name = "ap1"
link_address = "02:00:00:00:00:01"
router = "2001:db8:1::1"
prefix = "2001:db8:1::/64"
router_link_address = "02:00:00:00:01:01"
neighbours = ["ap2", "ap3"]

[[poa]]
name = "ap2"
link_address = "02:00:00:00:00:02"
router = "2001:db8:2::1"
prefix = "2001:db8:2::/64"
neighbours = ["ap1"]

[[poa]]
name = "ap3"
link_address = "02-00-00-00-00-03"
router = "2001:db8:3::1"
prefix = "2001:db8:3::/64"
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> InformationServer:
    return InformationServer(MOS, NeighbourTable.from_toml(TABLE), clock=clock, valid_time_interval=60)


def ask(server: InformationServer, query: mih.IQBinData, **kw: object) -> mih.GetInformationResponse:
    req = mih.GetInformationRequest(source=MN, destination=MOS, transaction_id=7, queries=(query,), **kw)  # type: ignore[arg-type]
    resp = server.handle(req)
    assert isinstance(resp, mih.GetInformationResponse)
    assert resp.destination == MN and resp.source == MOS and resp.transaction_id == 7
    return resp


def at(link: str, **kw: object) -> mih.IQBinData:
    return mih.IQBinData(querier_link_address=mih.LinkAddress.mac(link), **kw)  # type: ignore[arg-type]


def test_neighbour_table_from_toml() -> None:
    table = NeighbourTable.from_toml(TABLE)
    ap1 = table.by_name("ap1")
    assert ap1 is not None and ap1.router_link_address == bytes.fromhex("020000000101")
    assert [p.name for p in table.neighbours_of(ap1)] == ["ap2", "ap3"]
    ap3 = table.by_link_address(bytes.fromhex("020000000003"))
    assert ap3 is not None and table.neighbours_of(ap3) == ()
    symmetric = NeighbourTable.from_toml("symmetric = true\n" + TABLE)
    ap3s = symmetric.by_name("ap3")
    assert ap3s is not None and [p.name for p in symmetric.neighbours_of(ap3s)] == ["ap1"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (TABLE.replace('"ap3"]', '"ap9"]'), "poa[0].neighbours[1]"),
        (TABLE.replace('name = "ap3"', 'name = "ap2"'), "poa[2].name"),
        (TABLE.replace("02-00-00-00-00-03", "02:00:00:00:00:02"), "poa[2].link_address"),
        (TABLE.replace("02-00-00-00-00-03", "zz"), "poa[2].link_address"),
        (TABLE.replace('prefix = "2001:db8:3::/64"', 'prefix = "2001:db8:3::1/64"'), "poa[2].prefix"),
        (TABLE.replace('router = "2001:db8:3::1"', ""), "poa[2].router"),
        (TABLE + "\n[[poa]]\nname='x'\nspeed=3\n", "poa[3].link_address"),
        (
            TABLE + "\n[[poa]]\nname='x'\nlink_address='02:00:00:00:00:09'\nrouter='2001:db8:9::1'\n"
            "prefix='2001:db8:9::/64'\nspeed=3\n",
            "poa[3].speed",
        ),
        (TABLE.replace('name = "ap2"', "name = 2"), "poa[1].name"),  # strict: a name is a string
        (TABLE.replace('["ap1"]', '"ap1"'), "poa[1].neighbours"),
        ("colour = 1\n" + TABLE, "colour"),
        ("[[poa]\n", "neighbours"),
    ],
)
def test_neighbour_table_errors_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        NeighbourTable.from_toml(text)
    assert info.value.key == key


def test_load_neighbour_table(tmp_path: Path) -> None:
    path = tmp_path / "neighbours.toml"
    path.write_text(TABLE, "utf-8")
    assert len(load_neighbour_table(path).poas) == 3
    with pytest.raises(ConfigError):
        load_neighbour_table(tmp_path / "missing.toml")


def test_capability_discover(server: InformationServer) -> None:
    resp = server.handle(mih.CapabilityDiscoverRequest(source=MN, destination=b"anyone", transaction_id=1))
    assert isinstance(resp, mih.CapabilityDiscoverResponse)
    assert resp.status == mih.Status.SUCCESS
    assert resp.transports == mih.TransportSupport.UDP | mih.TransportSupport.TCP
    assert resp.query_types is not None
    assert resp.query_types >> 63 == 1  # binary queries
    assert resp.query_types & (1 << (63 - mih.ISQueryType.IE_POA_IP_ADDR))


def test_register_reregister_deregister_and_expiry(server: InformationServer, clock: Clock) -> None:
    re = mih.RegisterRequest(source=MN, destination=MOS, request_code=mih.RegisterRequestCode.RE_REGISTRATION)
    assert server.handle(re) == mih.RegisterResponse(source=MOS, destination=MN, status=mih.Status.REJECTED)
    resp = server.handle(mih.RegisterRequest(source=MN, destination=MOS, transaction_id=2))
    assert isinstance(resp, mih.RegisterResponse)
    assert resp.status == mih.Status.SUCCESS and resp.valid_time_interval == 60
    assert server.is_registered(MN)
    resp = server.handle(re)
    assert isinstance(resp, mih.RegisterResponse) and resp.status == mih.Status.SUCCESS
    clock.now += 61
    assert not server.is_registered(MN)
    server.handle(mih.RegisterRequest(source=MN, destination=MOS))
    resp = server.handle(mih.DeRegisterRequest(source=MN, destination=MOS))
    assert isinstance(resp, mih.DeRegisterResponse) and resp.status == mih.Status.SUCCESS
    resp = server.handle(mih.DeRegisterRequest(source=MN, destination=MOS))
    assert isinstance(resp, mih.DeRegisterResponse) and resp.status == mih.Status.REJECTED


def test_registrations_are_bounded(clock: Clock) -> None:
    server = InformationServer(MOS, NeighbourTable.from_toml(TABLE), clock=clock, max_registrations=10)
    for i in range(100):
        server.handle(mih.RegisterRequest(source=f"mn{i}".encode(), destination=MOS))
    assert sum(server.is_registered(f"mn{i}".encode()) for i in range(100)) == 10
    assert server.is_registered(b"mn99") and not server.is_registered(b"mn0")


def test_neighbours_of_the_current_poa(server: InformationServer) -> None:
    resp = ask(server, at("02:00:00:00:00:01"))
    assert resp.status == mih.Status.SUCCESS
    (result,) = neighbours_from_response(resp)
    assert result == [
        mih.PoAContainer(
            mih.LinkAddress.mac("02:00:00:00:00:02"),
            (IPv6Network("2001:db8:2::/64"),),
            (IPv6Address("2001:db8:2::1"),),
        ),
        mih.PoAContainer(
            mih.LinkAddress.mac("02:00:00:00:00:03"),
            (IPv6Network("2001:db8:3::/64"),),
            (IPv6Address("2001:db8:3::1"),),
        ),
    ]


def test_report_template_and_limit(server: InformationServer) -> None:
    resp = ask(server, at("02:00:00:00:00:01", report_template=(mih.IEType.POA_IP_ADDR, mih.IEType.COST)))
    (result,) = neighbours_from_response(resp)
    assert [(c.link_address, c.subnets, [str(a) for a in c.ip_addresses]) for c in result] == [
        (None, (), ["2001:db8:2::1"]),
        (None, (), ["2001:db8:3::1"]),
    ]
    resp = ask(server, at("02:00:00:00:00:01", report_limit=(1, 1)))
    (result,) = neighbours_from_response(resp)
    assert [str(c.link_address) for c in result] == ["02:00:00:00:00:03"]
    resp = ask(server, at("02:00:00:00:00:01", report_template=(mih.IEType.COST,)))
    assert resp.results == ((),)


def test_unknown_poa_and_no_location(server: InformationServer) -> None:
    assert ask(server, at("02:00:00:00:00:99")).results == ((),)
    resp = ask(server, mih.IQBinData())
    (result,) = neighbours_from_response(resp)
    assert len(result) == 3


def test_answer_is_trimmed_to_the_max_response_size(server: InformationServer) -> None:
    full = ask(server, mih.IQBinData())
    full_size = len(mih.encode_message(full))
    resp = ask(server, mih.IQBinData(), max_response_size=full_size - 1)
    assert len(mih.encode_message(resp)) <= full_size - 1
    (result,) = neighbours_from_response(resp)
    assert len(result) == 2


def test_rdf_only_query_fails_cleanly(server: InformationServer) -> None:
    req = mih.GetInformationRequest(
        source=MN, destination=MOS, extra_tlvs=(mih.TLV(mih.TLVType.INFO_QUERY_RDF_DATA_LIST, b"\x00"),)
    )
    resp = server.handle(req)
    assert isinstance(resp, mih.GetInformationResponse) and resp.status == mih.Status.UNSPECIFIED_FAILURE


def test_requests_for_another_mihf_are_ignored(server: InformationServer) -> None:
    assert server.handle(mih.RegisterRequest(source=MN, destination=b"other")) is None
    assert server.counters["wrong-destination"] == 1


def test_undecodable_request_gets_a_failure_status(server: InformationServer) -> None:
    iq = bytes.fromhex("01010101")  # a querier LOCATION: not supported
    tlvs = (
        mih.TLV(mih.TLVType.SOURCE_MIHF_ID, b"\x0f" + MN),
        mih.TLV(mih.TLVType.DESTINATION_MIHF_ID, b"\x0f" + MOS),
        mih.TLV(mih.TLVType.INFO_QUERY_BINARY_DATA_LIST, iq),
    )
    frame = mih.Frame(mih.Header(mih.ServiceId.INFORMATION, mih.Opcode.REQUEST, 1, 33), tlvs)
    answer = server.handle_frame(frame, PeerInfo("tcp", ("::1", 1)))
    assert answer is not None
    resp = mih.decode_message(answer)
    assert isinstance(resp, mih.GetInformationResponse)
    assert resp.status == mih.Status.UNSPECIFIED_FAILURE and resp.transaction_id == 33 and resp.destination == MN
    # no source MIHF-ID: nobody to answer
    assert server.handle_frame(mih.Frame(frame.header, tlvs[2:]), PeerInfo("udp", ("::1", 1))) is None


# --- bad input through the whole receive path (UDP core + Information Server) ------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_requests_never_crash_the_server(data: st.DataObject) -> None:
    from aaa_fmip.mih.transport import DatagramCore, MessageReceived

    server = InformationServer(MOS, NeighbourTable.from_toml(TABLE), clock=Clock())
    core = DatagramCore(MOS)
    base = data.draw(
        st.sampled_from(
            [
                mih.GetInformationRequest(source=MN, destination=MOS, queries=(at("02:00:00:00:00:01"),)),
                mih.RegisterRequest(source=MN, destination=MOS, ack_req=True),
                mih.CapabilityDiscoverRequest(source=MN, destination=b""),
                mih.DeRegisterRequest(source=MN, destination=MOS),
            ]
        )
    )
    raw = bytearray(mih.encode_message(base))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    for event in core.receive(bytes(raw), ("::1", 1), 0.0):
        if isinstance(event, MessageReceived):
            answer = server.handle_frame(event.frame, PeerInfo("udp", ("::1", 1)))
            if answer is not None:  # whatever is answered re-encodes and fits a datagram
                core.send(answer, ("::1", 1), 0.0)
    for datagram, _peer in core.datagrams_to_send():
        mih.decode_frame(datagram)

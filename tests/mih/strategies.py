"""Hypothesis strategies for MIH frames and messages."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import strategies as st

from aaa_fmip.wire import mih

mihf_ids = st.binary(max_size=253)  # zero length allowed (802.21-2008 clause 8)
tids = st.integers(0, 0xFFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)

link_addresses = st.one_of(
    st.binary(min_size=6, max_size=6).map(mih.LinkAddress.mac),
    st.builds(
        mih.LinkAddress,
        st.sampled_from([mih.LinkAddressKind.CELL_ID_3G, mih.LinkAddressKind.CELL_ID_2G]),
        st.binary(min_size=7, max_size=7),
    ),
    st.builds(
        mih.LinkAddress,
        st.sampled_from([mih.LinkAddressKind.ADDR_3GPP, mih.LinkAddressKind.ADDR_3GPP2, mih.LinkAddressKind.OTHER_L2]),
        st.binary(max_size=40),
    ),
)
ipv6 = st.integers(0, (1 << 128) - 1).map(ipaddress.IPv6Address)
ipv4 = st.integers(0, (1 << 32) - 1).map(ipaddress.IPv4Address)
ip_addresses = st.one_of(ipv6, ipv4)


@st.composite
def networks(draw: Any) -> Any:
    address = draw(ip_addresses)
    length = draw(st.integers(0, address.max_prefixlen))
    return ipaddress.ip_network((address, length), strict=False)


other_ies = st.builds(
    mih.InformationElement,
    st.integers(0, 0xFFFFFFFF).filter(lambda t: t not in (0x10000200, 0x10000204, 0x10000205)).map(mih.IEType),
    st.binary(max_size=300),
)
poa_containers = st.builds(
    mih.PoAContainer,
    st.none() | link_addresses,
    st.lists(networks(), max_size=3).map(tuple),
    st.lists(ip_addresses, max_size=3).map(tuple),
    st.lists(other_ies, max_size=2).map(tuple),
)
iq_bin_data = st.builds(
    mih.IQBinData,
    st.none() | link_addresses,
    st.none() | u32,
    st.none() | u32,
    st.none() | st.lists(st.binary(max_size=20), max_size=3).map(tuple),
    st.none() | st.lists(st.sampled_from(list(mih.IEType)), max_size=5).map(tuple),
    st.none() | st.tuples(u16, u16),
    st.none() | st.binary(min_size=3, max_size=3),
)
unknown_tlvs = st.lists(
    st.builds(mih.TLV, st.integers(64, 99).map(mih.TLVType), st.binary(max_size=300)), max_size=2
).map(tuple)


def _common() -> dict[str, Any]:
    return {
        "source": mihf_ids,
        "destination": mihf_ids,
        "transaction_id": tids,
        "ack_req": st.booleans(),
        "ack_rsp": st.booleans(),
        "uir": st.booleans(),
        "extra_tlvs": unknown_tlvs,
    }


ir_results = st.none() | st.lists(
    st.lists(st.one_of(poa_containers.map(lambda p: p.to_ie()), other_ies), max_size=3).map(tuple), max_size=3
).map(tuple)

messages = st.one_of(
    st.builds(
        mih.CapabilityDiscoverRequest,
        link_addresses=st.none() | st.binary(max_size=30),
        events=st.none() | u32,
        commands=st.none() | u32,
        query_types=st.none() | u64,
        transports=st.none() | u16,
        **_common(),
    ),
    st.builds(
        mih.CapabilityDiscoverResponse,
        status=st.sampled_from(list(mih.Status)),
        transports=st.none() | u16,
        query_types=st.none() | u64,
        **_common(),
    ),
    st.builds(
        mih.RegisterRequest,
        link_identifiers=st.binary(max_size=20),
        request_code=st.sampled_from(list(mih.RegisterRequestCode)),
        **_common(),
    ),
    st.builds(mih.RegisterResponse, valid_time_interval=st.none() | u32, **_common()),
    st.builds(mih.DeRegisterRequest, **_common()),
    st.builds(mih.DeRegisterResponse, status=st.sampled_from(list(mih.Status)), **_common()),
    st.builds(
        mih.GetInformationRequest,
        queries=st.none() | st.lists(iq_bin_data, max_size=3).map(tuple),
        max_response_size=st.none() | u16,
        **_common(),
    ),
    st.builds(mih.GetInformationResponse, results=ir_results, **_common()),
)

headers = st.builds(
    mih.Header,
    service_id=st.integers(0, 15).map(mih.ServiceId),
    opcode=st.integers(0, 3).map(mih.Opcode),
    action_id=st.integers(0, 0x3FF),
    transaction_id=tids,
    ack_req=st.booleans(),
    ack_rsp=st.booleans(),
    uir=st.booleans(),
    more_fragments=st.booleans(),
    fragment_number=st.integers(0, 127),
    version=st.integers(0, 15),
)
frames = st.builds(
    mih.Frame,
    headers,
    st.lists(st.builds(mih.TLV, st.integers(0, 255).map(mih.TLVType), st.binary(max_size=400)), max_size=4).map(tuple),
)

"""tshark as the independent oracle: it decodes pcaps of everything our encoders write.

Known tshark 4.0 quirks, asserted here so a change in either side shows (docs/protocol.md, "tshark"):

* ND options 27/28 with Pad Length >= 2: the dissector steps over one padding octet only and flags the rest
  "Unknown Data (not interpreted)" (Error/Malformed), although every field decodes.
* NAACK (ND 20) with Status 2: the dissector reads the supplied NCoA right after Status, where RFC 5568 §6.4.6
  has 4 Reserved octets, so it shows a shifted address and flags the last 4 octets as Unknown Data.
* BADF (MH 21): the dissector frames the option as if Option Length counted the SPI, so it shows a short
  Authenticator and warns that a following (phantom) option "goes past end of options".
* The MH checksum is shown but never verified; ICMPv6 checksums are verified.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from aaa_fmip.wire.icmpv6 import (
    NAACK,
    HandoverKeyReply,
    IPAddressPrefix,
    LinkLayerAddress,
    PrRtAdv,
    encode_icmpv6,
)
from aaa_fmip.wire.ipv6 import build_ipv6_packet
from aaa_fmip.wire.mh import BADF, FBU, HI, FBack, HAck, encode_mh
from tests.support.pcap import LINKTYPE_ETHERNET, ethernet_frame, tshark_fields, tshark_json, write_pcap
from tests.wire._vectors import build, load, wire

ICMPV6 = {v["name"]: v for v in load("wire-icmpv6.json")["vectors"]}
MH = {v["name"]: v for v in load("wire-mh.json")["vectors"]}

MN = IPv6Address("fe80::3c4a:5bf6:ffb4:ca6c")
AR = IPv6Address("fe80::1")
PCOA = IPv6Address("2001:db8:1::3c4a:5bf6:ffb4:ca6c")
NCOA = IPv6Address("2001:db8:2::3c4a:5bf6:ffb4:ca6c")
PAR = IPv6Address("2001:db8:1::1")
NAR = IPv6Address("2001:db8:2::1")
MAC_MN = "02:00:00:00:00:01"

HKR_QUIRK = "Unknown Data (not interpreted)"
BADF_QUIRK = "goes past end of options"
ERROR, WARNING = "8388608", "6291456"  # tshark's PI_ERROR, PI_WARN

COMMON = ["frame.number", "_ws.expert.message", "_ws.expert.severity", "_ws.malformed"]
ICMP_FIELDS = [
    *COMMON,
    "ipv6.hlim",
    "icmpv6.type",
    "icmpv6.code",
    "icmpv6.checksum.status",
    "icmpv6.fmip6.subtype",
    "icmpv6.fmip6.identifier",
    "icmpv6.opt.type",
    "icmpv6.opt.length",
    "icmpv6.opt.src_linkaddr",
    "icmpv6.opt.lla.option_code",
    "icmpv6.opt.lla.bytes",
    "icmpv6.opt.ipa.option_code",
    "icmpv6.opt.ipa.prefix_len",
    "icmpv6.opt.ipa.ipv6_address",
    "icmpv6.opt.nrpi.option_code",
    "icmpv6.opt.nrpi.prefix_len",
    "icmpv6.opt.nrpi.prefix",
    "icmpv6.opt.naack.option_code",
    "icmpv6.opt.naack.status",
    "icmpv6.opt.naack.supplied_ncoa",
    "icmpv6.opt.cga.pad_length",
    "icmpv6.opt.cga.modifier",
    "icmpv6.opt.cga.subnet_prefix",
    "icmpv6.opt.cga.count",
    "icmpv6.opt.rsa.key_hash",
    "icmpv6.opt.timestamp",
    "icmpv6.opt.nonce",
    "icmpv6.opt.hkr.pad_length",
    "icmpv6.opt.hkr.at",
    "icmpv6.opt.hkr.encryption_public_key",
    "icmpv6.opt.hkr.lifetime",
    "icmpv6.opt.hkr.encrypted_handover_key",
]
MH_FIELDS = [
    *COMMON,
    "ipv6.src",
    "ipv6.dst",
    "ipv6.opt.type",
    "ipv6.opt.mipv6.home_address",
    "mip6.proto",
    "mip6.hlen",
    "mip6.mhtype",
    "mip6.csum",
    "mip6.fbu.seqnr",
    "mip6.fbu.a_flag",
    "mip6.fbu.h_flag",
    "mip6.fbu.l_flag",
    "mip6.fbu.k_flag",
    "mip6.fbu.lifetime",
    "mip6.fback.status",
    "mip6.fback.k_flag",
    "mip6.fback.seqnr",
    "mip6.fback.lifetime",
    "mip6.hi.seqnr",
    "mip6.hi.s_flag",
    "mip6.hi.u_flag",
    "mip6.hi.code",
    "mip6.hack.seqnr",
    "mip6.hack.code",
    "mip6.acoa.acoa",
    "mip6.lla.optcode",
    "mip6.lla",
    "mip6.mnid.subtype",
    "mip6.mnid.identifier",
    "mip6.mhipv6ap.opt_code",
    "mip6.mhipv6ap.len",
    "mip6.mhipv6ap.ipv6_address",
    "mip6.badff.spi",
    "mip6.badff.auth",
]


def _icmp_packet(msg: Any, src: IPv6Address, dst: IPv6Address) -> bytes:
    return build_ipv6_packet(src, dst, 58, encode_icmpv6(msg, source=src, destination=dst))


@pytest.fixture(scope="module")
def pcap_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("pcaps")


# --- ICMPv6: RtSolPr -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rtsolpr_frames(pcap_dir: Path) -> list[dict[str, list[str]]]:
    """Over Ethernet, to exercise that framing too."""
    messages = [build(ICMPV6[name]["message"]) for name in ("rtsolpr-send-handover-key-request", "rtsolpr-wildcard")]
    frames = [ethernet_frame(_icmp_packet(m, MN, AR)) for m in messages]
    return tshark_fields(write_pcap(pcap_dir / "rtsolpr.pcap", frames, linktype=LINKTYPE_ETHERNET), ICMP_FIELDS)


def test_rtsolpr_with_send_and_handover_key_request(rtsolpr_frames: list[dict[str, list[str]]]) -> None:
    f = rtsolpr_frames[0]
    msg = build(ICMPV6["rtsolpr-send-handover-key-request"]["message"])
    assert f["ipv6.hlim"] == ["255"]
    assert (f["icmpv6.type"], f["icmpv6.code"], f["icmpv6.fmip6.subtype"]) == (["154"], ["0"], ["2"])
    assert f["icmpv6.fmip6.identifier"] == ["4660"]
    assert f["icmpv6.checksum.status"] == ["1"]
    assert f["icmpv6.opt.type"] == ["19", "1", "11", "13", "14", "27", "12"]
    assert f["icmpv6.opt.lla.option_code"] == ["1"]
    assert f["icmpv6.opt.lla.bytes"] == ["020000000009" + "00" * 7]  # tshark keeps the padding in the LLA
    assert f["icmpv6.opt.src_linkaddr"] == [MAC_MN]
    cga = msg.options[2].parameters
    assert f["icmpv6.opt.cga.pad_length"] == ["5"]
    assert f["icmpv6.opt.cga.modifier"] == [cga.modifier.hex()]
    assert f["icmpv6.opt.cga.subnet_prefix"] == [cga.subnet_prefix.hex()]
    assert f["icmpv6.opt.cga.count"] == ["00"]
    assert f["icmpv6.opt.timestamp"] == ["Nov 14, 2023 22:13:20.500000000 UTC"]  # 1700000000.5 in 48.16
    assert f["icmpv6.opt.nonce"] == ["a1a2a3a4a5a6"]
    assert f["icmpv6.opt.hkr.at"] == ["1"]
    assert f["icmpv6.opt.hkr.pad_length"] == ["6"]  # RSA-2048 SPKI: 4 + 294 octets, 6 of padding
    assert f["icmpv6.opt.hkr.encryption_public_key"] == [msg.options[5].public_key.hex()]
    assert f["icmpv6.opt.rsa.key_hash"] == ["2ccba7cb07398e018b791e06b9f72c6f"]
    # the option 27 quirk, and nothing else
    assert f["_ws.expert.message"] == [HKR_QUIRK]
    assert f["_ws.expert.severity"] == [ERROR]


def test_rtsolpr_wildcard_is_clean(rtsolpr_frames: list[dict[str, list[str]]]) -> None:
    f = rtsolpr_frames[1]
    assert f["icmpv6.checksum.status"] == ["1"]
    assert (f["icmpv6.fmip6.subtype"], f["icmpv6.fmip6.identifier"]) == (["2"], ["1"])
    assert f["icmpv6.opt.type"] == ["19", "1"]
    assert (f["icmpv6.opt.lla.option_code"], f["icmpv6.opt.lla.bytes"]) == (["0"], ["0000000000"])
    assert f["_ws.expert.message"] == [] and f["_ws.malformed"] == []


# --- ICMPv6: PrRtAdv -------------------------------------------------------------------------------------------

PRRTADV_VECTORS = [
    "prrtadv-code0-tuple",
    "prrtadv-code1-unsolicited-ncoa",
    "prrtadv-code2-outcomes",
    "prrtadv-code4-naack",
    "prrtadv-code3-and-5",
    "prrtadv-handover-key-reply",
]
CODE3 = PrRtAdv(
    3,
    0x0102,
    (
        LinkLayerAddress(1, bytes.fromhex("020000000009")),
        IPAddressPrefix(3, 128, NAR),
        LinkLayerAddress(6, bytes.fromhex("02000000000a")),
    ),
)
PAD_ONE = PrRtAdv(0, 3, (HandoverKeyReply(2, 600, bytes(129)),))  # 6 + 129: one octet of padding


@pytest.fixture(scope="module")
def prrtadv_frames(pcap_dir: Path) -> list[tuple[Any, dict[str, list[str]]]]:
    messages = [build(ICMPV6[name]["message"]) for name in PRRTADV_VECTORS] + [CODE3, PAD_ONE]
    pcap = write_pcap(pcap_dir / "prrtadv.pcap", [_icmp_packet(m, AR, MN) for m in messages])
    return list(zip(messages, tshark_fields(pcap, ICMP_FIELDS), strict=True))


def test_prrtadv_every_code(prrtadv_frames: list[tuple[Any, dict[str, list[str]]]]) -> None:
    codes = set()
    for msg, f in prrtadv_frames:
        assert f["icmpv6.checksum.status"] == ["1"]
        assert (f["icmpv6.type"], f["icmpv6.fmip6.subtype"]) == (["154"], ["3"])
        assert f["icmpv6.code"] == [str(msg.code)]
        assert f["icmpv6.fmip6.identifier"] == [str(msg.identifier)]
        assert f["icmpv6.opt.type"] == [str(o.option_type) for o in msg.options]
        lla = [o for o in msg.options if isinstance(o, LinkLayerAddress)]
        assert f["icmpv6.opt.lla.option_code"] == [str(o.option_code) for o in lla]
        assert [b[:12] for b in f["icmpv6.opt.lla.bytes"]] == [o.address.hex() for o in lla]
        ipa = [o for o in msg.options if isinstance(o, IPAddressPrefix)]
        assert f["icmpv6.opt.ipa.option_code"] == [str(o.option_code) for o in ipa]
        assert f["icmpv6.opt.ipa.prefix_len"] == [str(o.prefix_length) for o in ipa]
        assert f["icmpv6.opt.ipa.ipv6_address"] == [str(o.address) for o in ipa]
        codes.add(msg.code)
    assert codes == {0, 1, 2, 3, 4, 5}


def test_prrtadv_new_router_prefix(prrtadv_frames: list[tuple[Any, dict[str, list[str]]]]) -> None:
    _, f = prrtadv_frames[0]
    assert f["icmpv6.opt.type"] == ["19", "19", "19", "17", "18"]
    assert (f["icmpv6.opt.nrpi.option_code"], f["icmpv6.opt.nrpi.prefix_len"]) == (["0"], ["64"])
    assert f["icmpv6.opt.nrpi.prefix"] == ["2001:db8:2::"]
    assert f["_ws.expert.message"] == []


def test_prrtadv_naack(prrtadv_frames: list[tuple[Any, dict[str, list[str]]]]) -> None:
    msg, f = prrtadv_frames[3]
    assert f["icmpv6.opt.type"] == ["20", "20"]
    assert f["icmpv6.opt.length"] == ["1", "3"]
    assert f["icmpv6.opt.naack.option_code"] == ["0", "0"]
    assert f["icmpv6.opt.naack.status"] == ["1", "2"]
    # quirk: tshark reads the NCoA 4 octets early (over the Reserved field) and flags the last 4 octets
    ncoa = msg.options[1].new_coa
    assert isinstance(msg.options[1], NAACK) and ncoa is not None
    assert f["icmpv6.opt.naack.supplied_ncoa"] == [str(IPv6Address(bytes(4) + ncoa.packed[:12]))]
    assert f["_ws.expert.message"] == [HKR_QUIRK]


def test_prrtadv_handover_key_reply(prrtadv_frames: list[tuple[Any, dict[str, list[str]]]]) -> None:
    msg, f = prrtadv_frames[5]
    reply = msg.options[-1]
    assert isinstance(reply, HandoverKeyReply)
    assert f["icmpv6.opt.type"] == ["19", "13", "14", "28"]
    assert f["icmpv6.opt.hkr.at"] == ["1"]
    assert f["icmpv6.opt.hkr.lifetime"] == ["43200"]  # tshark labels this field "Padding"
    assert f["icmpv6.opt.hkr.pad_length"] == ["2"]
    assert f["icmpv6.opt.hkr.encrypted_handover_key"] == [reply.encrypted_key.hex()]
    assert f["icmpv6.opt.nonce"] == ["a1a2a3a4a5a6"]
    assert f["_ws.expert.message"] == [HKR_QUIRK]  # Pad Length 2: the option 28 quirk


def test_handover_key_reply_with_one_octet_of_padding_is_clean(
    prrtadv_frames: list[tuple[Any, dict[str, list[str]]]],
) -> None:
    """The quirk needs Pad Length >= 2: with 1 octet tshark has no complaint."""
    _, f = prrtadv_frames[-1]
    assert (f["icmpv6.opt.hkr.pad_length"], f["icmpv6.opt.hkr.at"], f["icmpv6.opt.hkr.lifetime"]) == (
        ["1"],
        ["2"],
        ["600"],
    )
    assert f["_ws.expert.message"] == [] and f["_ws.malformed"] == []


# --- Mobility Header -------------------------------------------------------------------------------------------

AUTH12, AUTH16 = bytes(range(0x41, 0x41 + 12)), bytes(range(0x61, 0x61 + 16))


@pytest.fixture(scope="module")
def mh_frames(pcap_dir: Path) -> list[tuple[Any, dict[str, list[str]]]]:
    fbu12 = build(MH["fbu-predictive-badf12"]["message"])
    fbu16 = build(MH["fbu-predictive-badf16"]["message"])
    fbu12 = dataclasses.replace(fbu12, options=(*fbu12.options[:-1], BADF(0x5EED0001, AUTH12)))
    fbu16 = dataclasses.replace(fbu16, options=(*fbu16.options[:-1], BADF(0x5EED0002, AUTH16)))
    reactive = build(MH["fbu-reactive-spi0"]["message"])
    packets: list[tuple[Any, bytes]] = [
        (fbu12, build_ipv6_packet(PCOA, PAR, 135, encode_mh(fbu12, source=PCOA, destination=PAR), home_address=PCOA)),
        (fbu16, build_ipv6_packet(PCOA, PAR, 135, encode_mh(fbu16, source=PCOA, destination=PAR), home_address=PCOA)),
        (
            reactive,
            build_ipv6_packet(NCOA, PAR, 135, encode_mh(reactive, source=PCOA, destination=PAR), home_address=PCOA),
        ),
    ]
    for name, src, dst in (
        ("fback-accepted", PAR, NCOA),
        ("fback-ncoa-invalid-badf16", PAR, NCOA),
        ("hi-predictive", PAR, NAR),
        ("hack-ncoa-assigned", NAR, PAR),
        ("hack-rejected-no-options", NAR, PAR),
    ):
        msg = build(MH[name]["message"])
        packets.append((msg, build_ipv6_packet(src, dst, 135, encode_mh(msg, source=src, destination=dst))))
    pcap = write_pcap(pcap_dir / "mh.pcap", [p for _, p in packets])
    return list(zip([m for m, _ in packets], tshark_fields(pcap, MH_FIELDS), strict=True))


def _assert_badf_quirk(f: dict[str, list[str]], badf: BADF) -> None:
    """tshark gets the SPI right, shows the authenticator short by the SPI's 4 octets plus 2, then warns."""
    assert f["mip6.badff.spi"] == [str(badf.spi)]
    (shown,) = f["mip6.badff.auth"]
    assert badf.authenticator.hex().startswith(shown) and len(shown) == 2 * (len(badf.authenticator) - 6)
    assert len(f["_ws.expert.message"]) == 1 and BADF_QUIRK in f["_ws.expert.message"][0]
    assert f["_ws.expert.severity"] == [WARNING]
    assert f["_ws.malformed"] == []


@pytest.mark.parametrize("index", [0, 1])
def test_fbu_with_alternate_coa_mh_lla_badf_and_home_address(
    mh_frames: list[tuple[Any, dict[str, list[str]]]], index: int
) -> None:
    msg, f = mh_frames[index]
    assert isinstance(msg, FBU)
    assert f["ipv6.src"] == [str(PCOA)] and f["ipv6.dst"] == [str(PAR)]
    assert f["ipv6.opt.type"] == ["0x01", "0xc9"]  # PadN, Home Address (201)
    assert f["ipv6.opt.mipv6.home_address"] == [str(PCOA)]
    assert (f["mip6.proto"], f["mip6.hlen"], f["mip6.mhtype"]) == (["59"], ["7"], ["8"])
    assert f["mip6.fbu.seqnr"] == ["7"]
    assert [f[k] for k in ("mip6.fbu.a_flag", "mip6.fbu.h_flag", "mip6.fbu.l_flag", "mip6.fbu.k_flag")] == [
        ["1"],
        ["1"],
        ["0"],
        ["0"],
    ]
    assert f["mip6.fbu.lifetime"] == ["10"]  # tshark also reads it in 4-second units: "10 (40 seconds)"
    assert f["mip6.acoa.acoa"] == [str(NCOA)]
    assert (f["mip6.lla.optcode"], f["mip6.lla"]) == (["2"], [MAC_MN])
    badf = msg.options[-1]
    assert isinstance(badf, BADF)
    _assert_badf_quirk(f, badf)


def test_reactive_fbu(mh_frames: list[tuple[Any, dict[str, list[str]]]]) -> None:
    msg, f = mh_frames[2]
    assert f["ipv6.src"] == [str(NCOA)] and f["ipv6.opt.mipv6.home_address"] == [str(PCOA)]
    assert (f["mip6.mhtype"], f["mip6.fbu.seqnr"], f["mip6.fbu.k_flag"], f["mip6.fbu.lifetime"]) == (
        ["8"],
        ["8"],
        ["1"],
        ["0"],
    )
    _assert_badf_quirk(f, msg.options[-1])


def test_fback(mh_frames: list[tuple[Any, dict[str, list[str]]]]) -> None:
    for index, status, k_flag, lifetime in ((3, "0", "1", "10"), (4, "1", "0", "5")):
        msg, f = mh_frames[index]
        assert isinstance(msg, FBack)
        assert f["mip6.mhtype"] == ["9"]
        assert (f["mip6.fback.status"], f["mip6.fback.k_flag"]) == ([status], [k_flag])
        assert (f["mip6.fback.seqnr"], f["mip6.fback.lifetime"]) == (["7"], [lifetime])
        badf = msg.options[-1]
        assert isinstance(badf, BADF)
        _assert_badf_quirk(f, badf)
    assert mh_frames[4][1]["mip6.acoa.acoa"] == ["2001:db8:2::99"]


def test_hi(mh_frames: list[tuple[Any, dict[str, list[str]]]]) -> None:
    msg, f = mh_frames[5]
    assert isinstance(msg, HI)
    assert f["mip6.mhtype"] == ["14"]
    assert (f["mip6.hi.seqnr"], f["mip6.hi.s_flag"], f["mip6.hi.u_flag"], f["mip6.hi.code"]) == (
        ["99"],
        ["1"],
        ["1"],
        ["0"],
    )
    assert (f["mip6.lla.optcode"], f["mip6.lla"]) == (["2"], [MAC_MN])
    assert f["mip6.mhipv6ap.opt_code"] == ["1", "2"]
    assert f["mip6.mhipv6ap.len"] == ["128", "128"]
    assert f["mip6.mhipv6ap.ipv6_address"] == [str(PCOA), str(NCOA)]
    assert (f["mip6.mnid.subtype"], f["mip6.mnid.identifier"]) == (["1"], ["alice@example.org"])
    assert f["_ws.expert.message"] == [] and f["_ws.malformed"] == []


def test_hack(mh_frames: list[tuple[Any, dict[str, list[str]]]]) -> None:
    for index, sequence, code, addresses in ((6, "99", "2", ["2001:db8:2::99"]), (7, "100", "128", [])):
        msg, f = mh_frames[index]
        assert isinstance(msg, HAck)
        assert (f["mip6.mhtype"], f["mip6.hack.seqnr"], f["mip6.hack.code"]) == (["15"], [sequence], [code])
        assert f["mip6.mhipv6ap.ipv6_address"] == addresses
        assert f["_ws.expert.message"] == [] and f["_ws.malformed"] == []


# --- ND messages of the per-node links: RS, UNA, RA with PIO and NAACK (RFC 4861 §4; RFC 5568 §6.3) ------------


def test_per_node_link_nd_messages(pcap_dir: Path) -> None:
    from aaa_fmip.wire.icmpv6 import (
        NAACKStatus,
        NDMessage,
        NeighborAdvertisement,
        PrefixInformation,
        RouterAdvertisement,
        RouterSolicitation,
        SourceLinkLayerAddress,
        TargetLinkLayerAddress,
        encode_nd_message,
    )

    mac = bytes.fromhex("020000000001")
    ncoa = IPv6Address("2001:db8:2:100::ff:fe00:1")
    all_nodes, all_routers = IPv6Address("ff02::1"), IPv6Address("ff02::2")
    prefix = IPv6Address("2001:db8:2:100::")
    messages: list[tuple[NDMessage, IPv6Address, IPv6Address]] = [
        (RouterSolicitation((SourceLinkLayerAddress(mac),)), MN, all_routers),
        (NeighborAdvertisement(NCOA, (TargetLinkLayerAddress(mac),)), NCOA, all_nodes),
        (
            RouterAdvertisement(
                1800,
                (PrefixInformation(64, prefix, 86400, 14400), NAACK(NAACKStatus.NCOA_INVALID_USE_SUPPLIED, ncoa)),
                cur_hop_limit=64,
            ),
            AR,
            all_nodes,
        ),
    ]
    packets = [
        build_ipv6_packet(src, dst, 58, encode_nd_message(m, source=src, destination=dst)) for m, src, dst in messages
    ]
    fields = [
        "icmpv6.type",
        "icmpv6.checksum.status",
        "icmpv6.opt.linkaddr",
        "icmpv6.nd.na.target_address",
        "icmpv6.nd.na.flag.s",
        "icmpv6.nd.ra.router_lifetime",
        "icmpv6.nd.ra.cur_hop_limit",
        "icmpv6.opt.prefix",
        "icmpv6.opt.prefix.length",
        "icmpv6.opt.prefix.flag.l",
        "icmpv6.opt.prefix.flag.a",
        "icmpv6.opt.prefix.valid_lifetime",
        "icmpv6.opt.prefix.preferred_lifetime",
        "icmpv6.opt.naack.status",
        "icmpv6.opt.naack.supplied_ncoa",
    ]
    rs, una, ra = tshark_fields(write_pcap(pcap_dir / "per-node-nd.pcap", packets), fields)
    assert all(f["icmpv6.checksum.status"] == ["1"] for f in (rs, una, ra))
    assert rs["icmpv6.type"] == ["133"] and rs["icmpv6.opt.linkaddr"] == ["02:00:00:00:00:01"]
    assert una["icmpv6.type"] == ["136"] and una["icmpv6.nd.na.target_address"] == [str(NCOA)]
    assert una["icmpv6.nd.na.flag.s"] == ["0"] and una["icmpv6.opt.linkaddr"] == ["02:00:00:00:00:01"]
    assert ra["icmpv6.type"] == ["134"] and ra["icmpv6.nd.ra.router_lifetime"] == ["1800"]
    assert ra["icmpv6.nd.ra.cur_hop_limit"] == ["64"]
    assert (ra["icmpv6.opt.prefix"], ra["icmpv6.opt.prefix.length"]) == ([str(prefix)], ["64"])
    assert (ra["icmpv6.opt.prefix.flag.l"], ra["icmpv6.opt.prefix.flag.a"]) == (["1"], ["1"])
    assert ra["icmpv6.opt.prefix.valid_lifetime"] == ["86400"]
    assert ra["icmpv6.opt.prefix.preferred_lifetime"] == ["14400"]
    assert ra["icmpv6.opt.naack.status"] == ["2"]
    assert ra["icmpv6.opt.naack.supplied_ncoa"] == [str(IPv6Address(bytes(4) + ncoa.packed[:12]))]  # 4 octets early


# --- the vector tables, as written in the files ----------------------------------------------------------------


def test_vector_table_checksums_and_types(pcap_dir: Path) -> None:
    """tshark confirms the ICMPv6 checksum of every ICMPv6 vector and the type of every MH vector."""
    icmp = list(ICMPV6.values())
    packets = [
        build_ipv6_packet(IPv6Address(v["ipv6_source"]), IPv6Address(v["ipv6_destination"]), 58, wire(v)) for v in icmp
    ]
    mh = list(MH.values())
    packets += [
        build_ipv6_packet(IPv6Address(v["checksum_source"]), IPv6Address(v["checksum_destination"]), 135, wire(v))
        for v in mh
    ]
    fields = ["icmpv6.type", "icmpv6.checksum.status", "mip6.mhtype", "mip6.csum"]
    frames = tshark_fields(write_pcap(pcap_dir / "vectors.pcap", packets), fields)
    for vector, f in zip(icmp, frames[: len(icmp)], strict=True):
        assert f["icmpv6.checksum.status"] == ["1"], vector["name"]
        assert f["icmpv6.type"] == [str(wire(vector)[0])], vector["name"]
    for vector, f in zip(mh, frames[len(icmp) :], strict=True):
        assert f["mip6.mhtype"] == [str(wire(vector)[2])], vector["name"]
        assert f["mip6.csum"] == [f"0x{wire(vector)[4:6].hex()}"], vector["name"]


def test_pcap_helper_json_mode(pcap_dir: Path) -> None:
    """The ``-T json`` runner other tests reuse: one layers dict per frame; the MH nests under ipv6."""
    ipv6_vector = next(v for v in load("wire-ipv6.json")["vectors"] if v["name"] == "fbu-with-home-address-option")
    layers = tshark_json(write_pcap(pcap_dir / "json.pcap", [wire(ipv6_vector)]))
    assert len(layers) == 1
    assert layers[0]["frame"]["frame.protocols"] == "raw:ipv6:ipv6.dstopts:mipv6"
    assert layers[0]["ipv6"]["mipv6"]["mip6.mhtype"] == "8"

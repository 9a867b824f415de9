"""The Diameter dictionary file, its registration in python-diameter, and our messages as tshark sees them."""

from __future__ import annotations

import ipaddress
import struct
import tomllib
from pathlib import Path
from typing import Any

import pytest
from diameter.message import Message, MessageHeader

from aaa_fmip.diameter.avps import AvpCodec, InvalidAvp, MissingAvp
from aaa_fmip.diameter.dictionary import DiameterDictionary, default_dictionary_path, parse_dictionary, register
from aaa_fmip.diameter.messages import handover_key_classes
from aaa_fmip.errors import ConfigError
from tests.support.pcap import tshark_fields, write_pcap

PAR = ipaddress.IPv6Address("2001:db8:1::1")


def test_shipped_dictionary(dictionary: DiameterDictionary) -> None:
    assert dictionary.source == default_dictionary_path()
    assert dictionary.vendor_id == 32473  # RFC 5612 documentation enterprise number
    assert dictionary.command_code == 16777214  # RFC 6733 §11.2.1 experimental
    assert dictionary.application_id == 0x7ED90001
    rfc6734 = {
        n: (d.code, d.vendor_id, d.mandatory, d.type) for n, d in dictionary.avps.items() if 581 <= d.code <= 586
    }
    assert rfc6734 == {
        "Key": (581, 0, True, "Grouped"),
        "Key-Type": (582, 0, True, "Enumerated"),
        "Keying-Material": (583, 0, True, "OctetString"),
        "Key-Lifetime": (584, 0, True, "Unsigned32"),
        "Key-SPI": (585, 0, True, "Unsigned32"),
        "Key-Name": (586, 0, True, "OctetString"),
    }
    key_type = dictionary.avp("Key-Type")
    assert (key_type.value("DSRK"), key_type.value("rRK"), key_type.value("rMSK")) == (0, 1, 2)  # RFC 6734 §6.2
    assert key_type.value("FMIPv6-HK") == 32473
    ours = [d for d in dictionary.avps.values() if d.name.startswith("FMIP-")]
    assert ours and all(d.vendor_id == 32473 and d.mandatory for d in ours)
    assert dictionary.avp("FMIP-AR-Address").type == "Address"


def test_overrides_move_vendor_avps(dictionary: DiameterDictionary) -> None:
    other = dictionary.with_overrides(application_id=16777999 + 1, vendor_id=99999, command_code=16777215)
    assert (other.application_id, other.vendor_id, other.command_code) == (16778000, 99999, 16777215)
    assert other.avp("FMIP-AR-Address").vendor_id == 99999
    assert other.avp("Key").vendor_id == 0
    with pytest.raises(ConfigError, match=r"diameter\.command_code"):
        dictionary.with_overrides(command_code=2**24)
    with pytest.raises(ConfigError, match=r"diameter\.application_id"):
        dictionary.with_overrides(application_id=0xFFFFFFFF)


def _doc() -> dict[str, Any]:
    return tomllib.loads(default_dictionary_path().read_text())


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d.pop("application"), "[application]"),
        (lambda d: d["command"].update(code=2**24), "command.code"),
        (lambda d: d["avp"][0].update(type="Float128"), "avp[0].type"),
        (lambda d: d["avp"][1].update(code=581), "avp[1].code"),
        (lambda d: d["avp"][2].update(flags="MX"), "avp[2].flags"),
        (lambda d: d["avp"][0].update(members=["Nope"]), "avp"),
        (lambda d: d["avp"][3].update(values={"A": 1}), "avp[3].values"),
    ],
)
def test_bad_dictionary_names_the_key(mutate: Any, key: str) -> None:
    doc = _doc()
    mutate(doc)
    with pytest.raises(ConfigError) as info:
        parse_dictionary(doc)
    assert info.value.key == key


def test_registration_refuses_a_code_python_diameter_knows_otherwise() -> None:
    doc = _doc()
    doc["avp"].append({"name": "Not-User-Name", "code": 1, "type": "OctetString", "flags": "M"})
    with pytest.raises(ConfigError, match="User-Name"):
        register(parse_dictionary(doc))


def test_request_and_answer_round_trip(dictionary: DiameterDictionary) -> None:
    codec = AvpCodec(dictionary)
    _, request_class, _ = handover_key_classes(dictionary.command_code)
    request = request_class(MessageHeader(application_id=dictionary.application_id, hop_by_hop_identifier=7))
    request.session_id = "ar1.fmip.test;1;2"
    request.auth_application_id = dictionary.application_id
    request.origin_host = b"ar1.fmip.test"
    request.origin_realm = b"fmip.test"
    request.destination_realm = b"fmip.test"
    request.append_avp(codec.enum("FMIP-Request-Type", "HANDOVER_KEY"))
    request.append_avp(codec.new("FMIP-AR-Address", PAR))
    request.append_avp(codec.new("Key-SPI", 0xDEADBEEF))

    decoded = Message.from_bytes(request.as_bytes())
    assert type(decoded).__name__ == "HandoverKeyRequest"
    assert decoded.header.is_request and decoded.header.is_proxyable
    avps = list(decoded.avps)
    assert codec.ipv6(codec.required(avps, "FMIP-AR-Address")) == PAR
    assert codec.unsigned32(codec.required(avps, "Key-SPI")) == 0xDEADBEEF
    assert codec.enum_name(codec.required(avps, "FMIP-Request-Type"), "FMIP-Request-Type") == "HANDOVER_KEY"
    with pytest.raises(MissingAvp):
        codec.required(avps, "Key-Name")

    answer = decoded.to_answer()
    assert type(answer).__name__ == "HandoverKeyAnswer"
    answer.session_id, answer.result_code = decoded.session_id, 2001
    answer.origin_host, answer.origin_realm = b"keys.fmip.test", b"fmip.test"
    answer.append_avp(_key_avp(codec))
    again = Message.from_bytes(answer.as_bytes())
    members = codec.members(codec.required(list(again.avps), "Key"))
    assert codec.octets(codec.required(members, "Keying-Material")) == b"\x11" * 32
    assert codec.integer32(codec.required(members, "Key-Type")) == 32473


def test_address_avp_must_be_ipv6(dictionary: DiameterDictionary) -> None:
    codec = AvpCodec(dictionary)
    avp = codec.new("FMIP-AR-Address", PAR)
    assert avp.payload == struct.pack("!H", 2) + PAR.packed  # RFC 6733 §4.3.1: family 2, 16 octets
    avp.payload = struct.pack("!H", 1) + bytes(4)
    with pytest.raises(InvalidAvp):
        codec.ipv6(avp)


def _key_avp(codec: AvpCodec) -> Any:
    return codec.grouped(
        "Key",
        [
            codec.enum("Key-Type", "FMIPv6-HK"),
            codec.new("Keying-Material", b"\x11" * 32),
            codec.new("Key-Lifetime", 600),
            codec.new("Key-Name", b"\x22" * 8),
            codec.new("Key-SPI", 0x01020304),
        ],
    )


def _ipv4_tcp(payload: bytes, sport: int = 40000, dport: int = 3868) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, 0x18, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0, bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    return ip + tcp + payload


def test_tshark_decodes_our_answer(dictionary: DiameterDictionary, tmp_path: Path) -> None:
    codec = AvpCodec(dictionary)
    _, _, answer_class = handover_key_classes(dictionary.command_code)
    answer = answer_class(MessageHeader(application_id=dictionary.application_id, hop_by_hop_identifier=1))
    answer.session_id = "ar1.fmip.test;1;2"
    answer.auth_application_id = dictionary.application_id
    answer.result_code = 2001
    answer.origin_host, answer.origin_realm = b"keys.fmip.test", b"fmip.test"
    answer.append_avp(codec.enum("FMIP-Request-Type", "HANDOVER_KEY"))
    answer.append_avp(_key_avp(codec))
    answer.append_avp(codec.new("FMIP-NCoA", PAR))
    pcap = write_pcap(tmp_path / "hka.pcap", [_ipv4_tcp(answer.as_bytes())])
    fields = ["diameter.cmd.code", "diameter.applicationId", "diameter.flags.request", "diameter.Result-Code"]
    fields += ["diameter.avp.code", "diameter.avp.vendorId", "diameter.avp.len", "_ws.malformed", "_ws.expert.severity"]
    (frame,) = tshark_fields(pcap, fields)
    assert frame["diameter.cmd.code"] == ["16777214"]
    assert frame["diameter.applicationId"] == [str(dictionary.application_id)]
    assert frame["diameter.flags.request"] in (["0"], ["False"])
    assert frame["diameter.Result-Code"] == ["2001"]
    codes = frame["diameter.avp.code"]
    assert codes[:4] == ["263", "258", "268", "264"]
    assert "581" in codes and codes[-1] == "9" and "1" in codes
    assert frame["diameter.avp.vendorId"] == ["32473", "32473"]  # FMIP-Request-Type and FMIP-NCoA
    assert frame["_ws.malformed"] == []

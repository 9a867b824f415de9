"""The publication generator: dnsmasq lines whose option values decode back to the MoS described, and a zone
snippet that dnspython's zone parser (an independent reader of RFC 1035 master files) accepts with the records
RFC 5679 needs. dnsmasq serving the generated lines is exercised in test_discovery_dnsmasq.py."""

from __future__ import annotations

import ipaddress

import dns.rdatatype
import dns.zone
import pytest

from aaa_fmip.mih import discovery as d
from aaa_fmip.mih.publish import MosPublication, dhcp_option_values, dnsmasq_config, zone_snippet

PUB = MosPublication(
    domain="example.net",
    host="mos1.example.net",
    addresses=(ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("2001:db8::1")),
    services=(d.ServiceType.IS, d.ServiceType.CS),
    transports=("tcp",),
    port=4600,
)


def _option_lines(text: str) -> dict[str, bytes]:
    out = {}
    for line in text.splitlines():
        if line.startswith("dhcp-option="):
            code, value = line[len("dhcp-option=") :].split(",", 1)
            out[code] = bytes.fromhex(value.replace(":", ""))
    return out


def test_dnsmasq_options_decode_to_the_publication() -> None:
    options = _option_lines(dnsmasq_config([PUB]))
    assert options == dhcp_option_values(PUB)
    v4 = (ipaddress.IPv4Address("192.0.2.1"),)
    v6 = (ipaddress.IPv6Address("2001:db8::1"),)
    assert d.decode_dhcpv4_mos_addresses(options["139"]) == tuple(d.MosAddresses(s, v4) for s in PUB.services)
    assert d.decode_dhcpv6_mos_addresses(options["option6:54"]) == tuple(d.MosAddresses(s, v6) for s in PUB.services)
    names = tuple(d.MosDomains(s, ("example.net",)) for s in PUB.services)
    assert d.decode_dhcpv4_mos_domains(options["140"]) == names == d.decode_dhcpv6_mos_domains(options["option6:55"])


def test_dnsmasq_dns_lines() -> None:
    text = dnsmasq_config([PUB])
    assert "naptr-record=example.net,10,10,s,MIHIS+M2T,,_MIHIS._tcp.example.net" in text
    assert "naptr-record=example.net,20,10,s,MIHCS+M2T,,_MIHCS._tcp.example.net" in text
    assert "srv-host=_MIHIS._tcp.example.net,mos1.example.net,4600,10,0" in text
    assert "host-record=mos1.example.net,192.0.2.1,2001:db8::1" in text


def test_zone_snippet_parses_and_resolves_by_the_rfc5679_rules() -> None:
    zone = dns.zone.from_text("$ORIGIN .\n" + zone_snippet([PUB]), origin=".", relativize=False, check_origin=False)
    naptrs = zone.find_rdataset("example.net.", dns.rdatatype.NAPTR)
    found = sorted((r.order, r.flags, r.service, r.regexp, r.replacement.to_text()) for r in naptrs)
    assert found == [
        (10, b"s", b"MIHIS+M2T", b"", "_MIHIS._tcp.example.net."),
        (20, b"s", b"MIHCS+M2T", b"", "_MIHCS._tcp.example.net."),
    ]
    (srv,) = zone.find_rdataset("_MIHIS._tcp.example.net.", dns.rdatatype.SRV)
    assert (srv.port, srv.target.to_text()) == (4600, "mos1.example.net.")
    assert zone.find_rdataset("mos1.example.net.", dns.rdatatype.AAAA)[0].address == "2001:db8::1"

    # the resolution logic walking the parsed zone finds the MoS
    def answer(query: d.Query) -> list[object]:
        node = zone.get_node(query.name + ".")
        rdataset = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.from_text(query.rdtype)) if node else None
        if rdataset is None:
            return []
        if query.rdtype == "NAPTR":
            return [
                d.Naptr(
                    r.order,
                    r.preference,
                    r.flags.decode(),
                    r.service.decode(),
                    r.regexp.decode(),
                    r.replacement.to_text(omit_final_dot=True),
                )
                for r in rdataset
            ]
        if query.rdtype == "SRV":
            return [d.Srv(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True)) for r in rdataset]
        return [ipaddress.ip_address(r.address) for r in rdataset]

    flow = d.resolution("example.net", "MIHIS", ("tcp",))
    try:
        query = next(flow)
        while True:
            query = flow.send(answer(query))  # type: ignore[arg-type]
    except StopIteration as done:
        endpoints = done.value
    assert [(e.port, str(e.address)) for e in endpoints] == [(4600, "2001:db8::1"), (4600, "192.0.2.1")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"addresses": ()}, "at least one address"),
        ({"host": "bad host name"}, "not a host or domain name"),
        ({"transports": ("sctp",)}, "transports"),
        ({"port": 0}, "port"),
        ({"services": (d.ServiceType(9),)}, "services"),
    ],
)
def test_bad_publications(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"domain": "example.net", "host": "mos.example.net", "addresses": PUB.addresses}
    with pytest.raises(ValueError, match=message):
        MosPublication(**{**base, **kwargs})  # type: ignore[arg-type]


def test_too_many_servers_for_one_dhcpv4_option() -> None:
    many = tuple(ipaddress.IPv4Address(f"198.51.100.{i}") for i in range(1, 70))
    with pytest.raises(ValueError, match=r"at most 255|publish fewer"):
        dnsmasq_config([MosPublication(domain="example.net", host="mos.example.net", addresses=many)])

"""Run inside the client network namespace: our discovery through one path, printed as JSON on stdout.

python -m tests.mih_sec._probe dhcp4 <server> <client address> <mac>
python -m tests.mih_sec._probe dhcp6 <interface> <mac>
python -m tests.mih_sec._probe dns <domain> <nameserver>
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
from typing import Any

from aaa_fmip.mih import discovery as d


def _info(info: d.DhcpMosInfo) -> dict[str, Any]:
    return {
        "addresses": [[int(a.service), [str(x) for x in a.addresses]] for a in info.addresses],
        "domains": [[int(n.service), list(n.domains)] for n in info.domains],
    }


async def main(argv: list[str]) -> Any:
    kind = argv[0]
    if kind == "dhcp4":
        server, client, mac = ipaddress.IPv4Address(argv[1]), ipaddress.IPv4Address(argv[2]), bytes.fromhex(argv[3])
        return _info(await d.dhcpv4_inform(server, client, mac, timeout=3, attempts=3))
    if kind == "dhcp6":
        return _info(await d.dhcpv6_information_request(argv[1], bytes.fromhex(argv[2]), timeout=3, attempts=3))
    if kind == "dns":
        endpoints = await d.resolve_mos(argv[1], nameservers=[argv[2]], timeout=5)
        return [[e.service, e.transport, e.host, e.port, str(e.address), e.via] for e in endpoints]
    if kind == "chain":  # DHCPv6 gives the domain (option 55), RFC 5679 resolves it with the DNS server DHCP named
        info = await d.dhcpv6_information_request(argv[1], bytes.fromhex(argv[2]), timeout=3, attempts=3)
        (domain,) = info.domain_names(d.ServiceType.IS)
        endpoints = await d.resolve_mos(domain, nameservers=[argv[3]], timeout=5)
        return [domain, [[e.transport, e.host, e.port, str(e.address)] for e in endpoints]]
    if kind == "secure":  # discover as in "chain", then talk TLS-PSK and DTLS-PSK to the first endpoint of each
        from aaa_fmip import keys
        from aaa_fmip.mih import psk as mihpsk
        from tests.mih_sec._mos_echo import TEST_HMK, TEST_HMK_NAME

        info = await d.dhcpv6_information_request(argv[1], bytes.fromhex(argv[2]), timeout=3, attempts=3)
        endpoints = await d.resolve_mos(info.domain_names(d.ServiceType.IS)[0], nameservers=[argv[3]], timeout=5)
        out = []
        for transport in ("tcp", "udp"):
            e = next(e for e in endpoints if e.transport == transport)
            key = keys.derive_mih_psk(TEST_HMK, TEST_HMK_NAME, e.host)  # the MoS's MIHF-ID is its host name here
            connect = mihpsk.connect_tls if transport == "tcp" else mihpsk.connect_dtls
            channel = await connect(str(e.address), e.port, identity=key.identity, psk=key.psk.reveal())
            await channel.send(b"mih over " + transport.encode())
            out.append([transport, str(e.address), channel.cipher, (await channel.recv()).decode()])
            await channel.close()
        return out
    raise SystemExit(f"unknown probe {kind}")


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))))

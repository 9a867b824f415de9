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
    raise SystemExit(f"unknown probe {kind}")


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))))

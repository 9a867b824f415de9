"""What discovery finds: the MoS service types (RFC 5678 §3/§4 registries), addresses and domains per service."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from aaa_fmip.errors import AaaFmipError
from aaa_fmip.wire._buffer import OpenIntEnum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DiscoveryError(AaaFmipError):
    """A DNS query of the resolution failed (no server answered it, or every one refused): not "nothing published"."""


# RFC 5678 §3 / §4 and the IANA registries "IEEE 802.21 Service Type" / "... IPv6 Service Type"
DHCPV4_MOS_ADDRESS: Final = 139
DHCPV4_MOS_FQDN: Final = 140
DHCPV6_MOS_ADDRESS: Final = 54
DHCPV6_MOS_DOMAIN_LIST: Final = 55
MIH_PORT: Final = 4551  # RFC 5677 §6.1, used when no SRV record gives a port


class ServiceType(OpenIntEnum):
    """RFC 5678 §3: the MoS service a sub-option lists servers for (0 and 255 reserved)."""

    IS = 1  # Information Service
    CS = 2  # Command Service
    ES = 3  # Event Service


@dataclass(frozen=True)
class MosAddresses:
    """One sub-option of option 139/54: the servers of one service, most preferred first; () = none."""

    service: ServiceType
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True)
class MosDomains:
    """One sub-option of option 140/55: domain names (each the input of RFC 5679 resolution); () = none."""

    service: ServiceType
    domains: tuple[str, ...]

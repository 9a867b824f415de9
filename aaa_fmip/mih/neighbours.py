"""The neighbour table: points of attachment (PoAs), the access router behind each, and who neighbours whom.

One source of truth for two readers: the MIH Information Server answers MIH_Get_Information with these facts
(IE_POA_LINK_ADDR, IE_POA_SUBNET_INFO, IE_POA_IP_ADDR) and the FMIPv6 access-router agent advertises the same
in PrRtAdv (RFC 5568 §6.1.2: the new AP's link-layer address, the NAR's link-layer and IP addresses, the NAR's
prefix). Pure: parsing takes text, not a path; :func:`load_neighbour_table` is the one function that reads a file.

File format (TOML)::

    [[poa]]
    name = "ap1"                             # unique
    link_address = "02:00:00:00:00:01"       # the PoA's L2 address (e.g. the BSSID), 6 octets
    router = "2001:db8:1::1"                 # the access router serving it (IPv6)
    prefix = "2001:db8:1::/64"               # the prefix valid on that link
    router_link_address = "02:00:00:00:01:01"  # optional: the router's L2 address, for PrRtAdv
    neighbours = ["ap2"]                     # names of PoAs a node here may hand over to

Neighbour lists are taken as written (directed); ``symmetric = true`` at the top level adds the reverse edges.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from aaa_fmip.errors import ConfigError

__all__ = ["NeighbourTable", "PointOfAttachment", "load_neighbour_table", "parse_link_address"]


def parse_link_address(text: str, *, key: str) -> bytes:
    """``02:00:00:00:00:01`` (or with ``-``, or bare hex) as 6 octets."""
    try:
        raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    except ValueError:
        raw = b""
    if len(raw) != 6:
        raise ConfigError(f"{text!r} is not a 6-octet link-layer address", key=key)
    return raw


@dataclass(frozen=True)
class PointOfAttachment:
    name: str
    link_address: bytes
    router: IPv6Address
    prefix: IPv6Network
    router_link_address: bytes | None = None


@dataclass(frozen=True)
class NeighbourTable:
    poas: tuple[PointOfAttachment, ...]
    edges: Mapping[str, tuple[str, ...]]  # name -> neighbour names, in the order written

    def __post_init__(self) -> None:
        names = [p.name for p in self.poas]
        if len(set(names)) != len(names):
            raise ConfigError("PoA names must be unique", key="poa.name")
        addresses = [p.link_address for p in self.poas]
        if len(set(addresses)) != len(addresses):
            raise ConfigError("PoA link addresses must be unique", key="poa.link_address")
        for name, neighbours in self.edges.items():
            for other in (name, *neighbours):
                if other not in names:
                    raise ConfigError(f"unknown PoA {other!r}", key=f"poa.{name}.neighbours")

    def by_name(self, name: str) -> PointOfAttachment | None:
        return next((p for p in self.poas if p.name == name), None)

    def by_link_address(self, link_address: bytes) -> PointOfAttachment | None:
        return next((p for p in self.poas if p.link_address == link_address), None)

    def neighbours_of(self, poa: PointOfAttachment) -> tuple[PointOfAttachment, ...]:
        out = []
        for name in self.edges.get(poa.name, ()):
            found = self.by_name(name)
            if found is not None:
                out.append(found)
        return tuple(out)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> NeighbourTable:
        unknown_top = set(data) - {"poa", "symmetric"}
        if unknown_top:
            raise ConfigError(f"unknown keys {sorted(unknown_top)}", key="neighbours")
        entries = data.get("poa", [])
        if not isinstance(entries, list):
            raise ConfigError("must be an array of tables ([[poa]])", key="poa")
        poas: list[PointOfAttachment] = []
        edges: dict[str, tuple[str, ...]] = {}
        for index, entry in enumerate(entries):
            key = f"poa[{index}]"
            if not isinstance(entry, dict):
                raise ConfigError("must be a table", key=key)
            unknown = set(entry) - {"name", "link_address", "router", "prefix", "router_link_address", "neighbours"}
            if unknown:
                raise ConfigError(f"unknown keys {sorted(unknown)}", key=key)
            try:
                name = str(entry["name"])
                router = IPv6Address(entry["router"])
                prefix = IPv6Network(entry["prefix"])
                link = parse_link_address(str(entry["link_address"]), key=f"{key}.link_address")
            except KeyError as exc:
                raise ConfigError(f"{exc.args[0]} is required", key=key) from None
            except ValueError as exc:  # AddressValueError and NetmaskValueError are ValueErrors
                raise ConfigError(str(exc), key=key) from None
            router_link = entry.get("router_link_address")
            poas.append(
                PointOfAttachment(
                    name,
                    link,
                    router,
                    prefix,
                    None if router_link is None else parse_link_address(str(router_link), key=f"{key}.router_link"),
                )
            )
            neighbours = entry.get("neighbours", [])
            if not isinstance(neighbours, Sequence) or isinstance(neighbours, str):
                raise ConfigError("must be a list of PoA names", key=f"{key}.neighbours")
            edges[name] = tuple(str(n) for n in neighbours)
        if data.get("symmetric", False):
            for name, neighbours in list(edges.items()):
                for other in neighbours:
                    if other in edges and name not in edges[other]:
                        edges[other] = (*edges[other], name)
        return cls(tuple(poas), edges)

    @classmethod
    def from_toml(cls, text: str) -> NeighbourTable:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(exc), key="neighbours") from None
        return cls.from_mapping(data)


def load_neighbour_table(path: Path) -> NeighbourTable:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key="neighbours") from None
    return NeighbourTable.from_toml(text)

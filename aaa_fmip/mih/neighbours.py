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

The file is checked by strict models on the shared configuration machinery (:mod:`aaa_fmip.config`): unknown
keys, wrong types and unknown neighbours are one :class:`ConfigError` naming the key (``poa[2].link_address``,
``poa[0].neighbours[1]``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError, model_validator

from aaa_fmip.config.fields import SECTION, Invalid, IPv6, IPv6Prefix, Items, LinkAddress, Name, Tables
from aaa_fmip.config.sources import read_toml, translate
from aaa_fmip.errors import ConfigError

__all__ = [
    "NeighbourTable",
    "PoaEntry",
    "PointOfAttachment",
    "check_poas",
    "load_neighbour_table",
]


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
        """The table of a parsed TOML document (``[[poa]]`` tables, ``symmetric``); ConfigError naming the key."""
        try:
            model = NeighbourFile.model_validate(dict(data))
        except ValidationError as exc:
            raise translate(exc, NeighbourFile, {}) from None
        return model.table()

    @classmethod
    def from_toml(cls, text: str) -> NeighbourTable:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(exc), key="neighbours") from None
        return cls.from_mapping(data)


def load_neighbour_table(path: Path, *, key: str = "neighbours") -> NeighbourTable:
    """The table in ``path``; a file that cannot be read or is not TOML is a ConfigError naming ``key``."""
    return NeighbourTable.from_mapping(read_toml(path, key=key))


class PoaEntry(BaseModel):
    """One ``[[poa]]`` table."""

    model_config = SECTION

    name: Name  # unique
    link_address: LinkAddress
    router: IPv6
    prefix: IPv6Prefix
    router_link_address: LinkAddress | None = None
    neighbours: Annotated[tuple[Name, ...], Items] = ()

    def point_of_attachment(self) -> PointOfAttachment:
        return PointOfAttachment(self.name, self.link_address, self.router, self.prefix, self.router_link_address)


def check_poas(poas: Sequence[PoaEntry]) -> None:
    """Names and link addresses unique, every neighbour a PoA of the table; :class:`Invalid` at ``poa[i]...``."""
    names = [p.name for p in poas]
    for i, poa in enumerate(poas):
        if poa.name in names[:i]:
            raise Invalid("PoA names must be unique", "poa", i, "name")
        if any(p.link_address == poa.link_address for p in poas[:i]):
            raise Invalid("PoA link addresses must be unique", "poa", i, "link_address")
    for i, poa in enumerate(poas):
        for j, other in enumerate(poa.neighbours):
            if other not in names:
                raise Invalid(f"unknown PoA {other!r}", "poa", i, "neighbours", j)


def build_table(poas: Sequence[PoaEntry], symmetric: bool) -> NeighbourTable:
    edges = {p.name: p.neighbours for p in poas}
    if symmetric:
        for name, neighbours in list(edges.items()):
            for other in neighbours:
                if other in edges and name not in edges[other]:
                    edges[other] = (*edges[other], name)
    return NeighbourTable(tuple(p.point_of_attachment() for p in poas), edges)


class NeighbourFile(BaseModel):
    """A neighbour table on its own: ``[[poa]]`` tables and ``symmetric``."""

    model_config = SECTION

    poa: Annotated[tuple[PoaEntry, ...], Tables] = ()
    symmetric: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> NeighbourFile:
        check_poas(self.poa)
        return self

    def table(self) -> NeighbourTable:
        return build_table(self.poa, self.symmetric)

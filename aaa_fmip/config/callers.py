"""``[[access_routers]]`` and ``[[clients]]``: who may call the service, and the rules that keep keys scoped.

Each token maps to exactly one caller, each name to one entry, each AR-ID to one router, each MIHF-ID to one
Mobility Server: a shared address or MIHF-ID would let either holder obtain the other's keys (RFC 4962 key
scoping). Those rules span entries, so :class:`aaa_fmip.config.Settings` runs :func:`check_unique_callers`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, PlainValidator, model_validator

from aaa_fmip.config.fields import (
    IP,
    SECTION,
    Identity,
    Invalid,
    IPv6,
    Items,
    Name,
    OptionalName,
    TokenDigest,
    nonempty,
    unique,
)
from aaa_fmip.keys import MIHF_ID_MAX_LENGTH
from aaa_fmip.model import AccessRouter

ClientRole = Literal["aaa", "auditor", "admin", "mos"]


def _unicast(addresses: tuple[ipaddress.IPv6Address, ...]) -> tuple[ipaddress.IPv6Address, ...]:
    for j, address in enumerate(addresses):
        if address.is_multicast or address.is_unspecified:
            raise Invalid("not a unicast address", j)
    return addresses


class AccessRouterSettings(BaseModel):
    """One access router (role ar): its AR-IDs are the only addresses it can ever get keys for."""

    model_config = SECTION

    name: Name
    addresses: Annotated[
        tuple[IPv6, ...],
        Items,
        AfterValidator(nonempty("at least one IPv6 address is required")),
        AfterValidator(_unicast),
        AfterValidator(unique("duplicate address")),
    ]
    token_sha256: Annotated[TokenDigest | None, Field(repr=False)] = None  # None: Diameter only (no REST access)
    diameter_identity: Identity | None = None
    nas_identifier: OptionalName | None = None
    nas_address: IP | None = None

    @model_validator(mode="after")
    def _identified(self) -> AccessRouterSettings:
        if self.token_sha256 is None and self.diameter_identity is None:
            # A router that speaks only Diameter is identified by its diameter_identity; every other needs a token.
            raise Invalid(
                "required (only a router that speaks Diameter only, with a diameter_identity, may omit it)",
                "token_sha256",
            )
        return self

    def to_model(self) -> AccessRouter:
        return AccessRouter(
            name=self.name,
            addresses=frozenset(self.addresses),
            diameter_identity=self.diameter_identity,
            nas_identifier=self.nas_identifier,
            nas_address=self.nas_address,
            key_address=self.addresses[0] if self.addresses else None,
        )


def _role(value: Any) -> Any:
    if value == "ar":
        raise Invalid('expected "aaa", "auditor", "admin" or "mos" (access routers go in [[access_routers]])')
    return value


def _mihf_id(value: object) -> str:
    """RFC 5677 §4.2: an FQDN or NAI, each the exact text its MIH PSKs are derived with."""
    if not isinstance(value, str) or not value or len(value) > MIHF_ID_MAX_LENGTH or not value.isascii():
        raise Invalid("expected an MIHF-ID: 1..253 ASCII characters (an FQDN or NAI)")
    if not value.isprintable() or " " in value:
        raise Invalid("an MIHF-ID has no spaces or control characters")
    return value


class ClientSettings(BaseModel):
    """An AAA server, auditor, administrator or Mobility Server."""

    model_config = SECTION

    name: Name
    role: Annotated[ClientRole, BeforeValidator(_role)]
    token_sha256: Annotated[TokenDigest, Field(repr=False)]
    # role "mos" only: the MoS MIHF-IDs whose MIH PSKs it may fetch
    mihf_ids: Annotated[
        tuple[Annotated[str, PlainValidator(_mihf_id)], ...],
        Items,
        AfterValidator(unique("duplicate MIHF-ID", name_item=True)),
    ] = ()

    @model_validator(mode="after")
    def _mos_only(self) -> ClientSettings:
        if self.role != "mos":
            if "mihf_ids" in self.model_fields_set:
                raise Invalid('only a client of role "mos" has MIHF-IDs', "mihf_ids")
        elif "mihf_ids" not in self.model_fields_set:
            raise Invalid("required", "mihf_ids")
        elif not self.mihf_ids:
            raise Invalid("a mos client needs at least one MIHF-ID", "mihf_ids")
        return self


def check_unique_callers(routers: Sequence[AccessRouterSettings], clients: Sequence[ClientSettings]) -> None:
    """Raises :class:`Invalid` at the second entry that shares a name, token, AR-ID, Diameter identity or
    MIHF-ID with an earlier one."""
    seen_names: dict[str, str] = {}
    seen_tokens: dict[bytes, str] = {}
    entries: list[tuple[tuple[str, int], str, bytes | None]] = [
        (("access_routers", i), r.name, r.token_sha256) for i, r in enumerate(routers)
    ]
    entries += [(("clients", i), c.name, c.token_sha256) for i, c in enumerate(clients)]
    for at, name, digest in entries:
        if name in seen_names:
            raise Invalid(f"name {name!r} is already used by {seen_names[name]}", *at, "name")
        seen_names[name] = f"{at[0]}[{at[1]}]"
        if digest is None:
            continue
        if digest in seen_tokens:
            raise Invalid(f"same token as {seen_tokens[digest]}", *at, "token_sha256")
        seen_tokens[digest] = f"{at[0]}[{at[1]}]"
    owners: dict[ipaddress.IPv6Address, str] = {}
    identities: dict[str, str] = {}
    for i, router in enumerate(routers):
        for j, address in enumerate(router.addresses):
            if address in owners:
                raise Invalid(f"{address} already belongs to {owners[address]}", "access_routers", i, "addresses", j)
            owners[address] = f"access_routers[{i}] ({router.name})"
        if router.diameter_identity is not None:
            lowered = router.diameter_identity.lower()
            if lowered in identities:
                raise Invalid(f"already used by {identities[lowered]}", "access_routers", i, "diameter_identity")
            identities[lowered] = f"access_routers[{i}]"
    mihf_owners: dict[str, str] = {}
    for i, client in enumerate(clients):
        for j, mihf_id in enumerate(client.mihf_ids):
            if mihf_id in mihf_owners:
                raise Invalid(f"{mihf_id!r} already belongs to {mihf_owners[mihf_id]}", "clients", i, "mihf_ids", j)
            mihf_owners[mihf_id] = f"clients[{i}] ({client.name})"

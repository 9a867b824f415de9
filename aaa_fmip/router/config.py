"""Settings of the access-router agent: a TOML file, overridden by ``AAA_FMIP_ROUTER_*`` environment variables.

The shared configuration machinery of :mod:`aaa_fmip.config` reads both (its TOML source, its environment
source, its strict field types and its one-line errors naming the key, e.g. ``neighbours[0].ap``). Nested
fields use ``__`` in variable names, e.g. ``AAA_FMIP_ROUTER_SERVICE__TOKEN`` sets ``[service] token`` (the
usual way to keep the bearer token out of the file); a list is given comma-separated (or as a JSON array).
A minimal file::

    [router]
    addresses = ["2001:db8:1::1"]            # AR-IDs: the addresses nodes send FBUs to
    access_prefixes = ["2001:db8:1::/64"]    # prefixes of the access links (NCoAs this router accepts as NAR)
    access_interfaces = ["br0"]              # where RtSolPr arrive and PrRtAdv leave

    [service]
    url = "https://keys.example.net:8443"

    [[neighbours]]
    ap = "02:bb:00:00:00:01"                 # the AP's link-layer address, as nodes put it in RtSolPr
    nar_address = "2001:db8:2::1"
    nar_prefix = "2001:db8:2::/64"
    nar_lla = "02:cc:00:00:00:02"

A NAR on point-to-point links adds ``[prefixes]`` (``aggregate``, ``pool``, ``prefix_length``, ``interfaces``)
to hand every node a prefix of its own, and its neighbours set ``assigns_addresses = true`` on its entry.

docs/router.md describes every field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from ipaddress import IPv6Address
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from aaa_fmip.config.fields import (
    SECTION,
    FilePath,
    Invalid,
    IPv6,
    IPv6Prefix,
    Items,
    OptionalIPv6,
    OptionalIPv6Prefix,
    OptionalPath,
    Tables,
    Text,
    nonempty,
)
from aaa_fmip.config.sources import FileSettings, load
from aaa_fmip.errors import ConfigError
from aaa_fmip.router.core import HI_INITIAL_TIMEOUT, HI_RETRIES, RouterParameters
from aaa_fmip.router.dataplane import DataPlaneLimits
from aaa_fmip.router.neighbours import Neighbour, NeighbourTable, normalise_ap_id
from aaa_fmip.router.prefixes import PerNodePrefixes, PrefixPoolConfig

__all__ = ["ENV_PREFIX", "RouterSettings", "load_settings"]

ENV_PREFIX = "AAA_FMIP_ROUTER_"


def _lla(value: str) -> bytes:
    return normalise_ap_id(value) if value else b""


def _link_layer(value: str) -> str:
    """An AP identifier or link-layer address in hex (``02:bb:..``, ``02-bb-..``, ``02bb..``); empty: none."""
    try:
        _lla(value)
    except ValueError:
        raise Invalid("not a link-layer address in hex (02:bb:00:00:00:01)") from None
    return value


def _required_link_layer(value: str) -> str:
    if not value.strip():
        raise Invalid("must not be empty")
    return _link_layer(value)


def _global(addresses: tuple[IPv6Address, ...]) -> tuple[IPv6Address, ...]:
    for i, address in enumerate(addresses):
        if address.is_link_local or address.is_multicast or address.is_unspecified:
            raise Invalid("not a global unicast address", i)
    return addresses


def _own_table(value: int) -> int:
    if value in (253, 254, 255):
        raise Invalid("must not be the default, main or local table")
    return value


LinkLayer = Annotated[Text, AfterValidator(_link_layer)]
ApId = Annotated[Text, AfterValidator(_required_link_layer)]
Names = Annotated[tuple[Text, ...], Items]


class _Section(BaseModel):
    model_config = SECTION


class RouterSection(_Section):
    addresses: Annotated[
        tuple[IPv6, ...], Items, AfterValidator(nonempty("at least one address")), AfterValidator(_global)
    ]
    access_prefixes: Annotated[tuple[IPv6Prefix, ...], Items] = ()
    access_interfaces: Names = ()
    link_local: OptionalIPv6 = None  # default: the access interface's fe80:: address
    lla: LinkLayer = ""  # default: the access interface's MAC
    hi_retries: int = Field(default=HI_RETRIES, ge=0, le=10)
    hi_initial_timeout: float = Field(default=HI_INITIAL_TIMEOUT, gt=0, le=10)
    assigned_addressing: bool = False
    request_buffering: bool = False
    lifetime_unit: Literal[1, 4] = 4
    replay_state: FilePath = Path("/var/lib/aaa-fmip/router-replay.journal")
    replay_fsync: bool = False
    max_handovers: int = Field(default=4096, ge=1)


class KeysSection(_Section):
    mode: Literal["local", "service"] = "local"  # service: hold no keys, ask POST /v1/fbu/verify
    source: Literal["rest", "diameter"] = "rest"  # how keys are fetched and FBUs verified by the service
    prefetch: bool = True  # fetch a node's key when its RtSolPr arrives
    report_verdicts: bool = True  # report locally made verdicts to the service's audit trail (POST /v1/fbu/verdicts)
    max_keys: int = Field(default=100_000, ge=1)


class ServiceSection(_Section):
    url: Text = ""  # empty: no key service (only pushed keys; unknown SPIs get FBack 128)
    token: SecretStr = SecretStr("")
    timeout: float = Field(default=0.5, gt=0, le=30)  # seconds per call: bounds what a service outage costs a handover
    ca_file: OptionalPath = None


class DiameterSection(_Section):
    """The Handover-Key application's peer (``[keys] source = "diameter"``); docs/diameter.md."""

    origin_host: Text = ""  # this router's Diameter identity (the service's [[diameter.peers]] identity)
    origin_realm: Text = ""
    peer: Text = ""  # the key service's (or a relay's) Diameter identity
    host: Text = ""  # its IP address
    port: int = Field(default=3868, ge=1, le=65535)
    destination_realm: Text = ""  # default: origin_realm
    application_id: int | None = None
    vendor_id: int | None = None
    command_code: int | None = None
    timeout: float = Field(default=0.5, gt=0, le=30)


class MetricsSection(_Section):
    listen: Text = ""  # host:port for Prometheus; empty: no metrics endpoint


class LogSection(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class PrefixesSection(_Section):
    """Per-node prefixes on point-to-point links, as NAR (docs/router.md "Per-node prefixes"). Off unless
    ``aggregate`` is set."""

    aggregate: OptionalIPv6Prefix = None  # what neighbours advertise for this NAR in PrRtAdv (their nar_prefix)
    pool: OptionalIPv6Prefix = None  # where per-node prefixes come from; default: the aggregate
    prefix_length: int = Field(default=64, ge=1, le=64)  # each node's prefix
    interfaces: Annotated[Names, AfterValidator(nonempty("at least one interface pattern"))] = (
        "pnp*",
    )  # per-node links (shell patterns)
    hold: float = Field(default=60.0, gt=0)  # seconds a prefix given in a HAck waits for its node to attach
    lifetime: float = Field(default=600.0, gt=0)  # seconds a bound prefix outlives its link's last sighting
    valid_lifetime: int = Field(default=86_400, ge=1, le=0xFFFFFFFF)  # PIO, seconds
    preferred_lifetime: int = Field(default=14_400, ge=0, le=0xFFFFFFFF)  # PIO, seconds
    router_lifetime: int = Field(default=1_800, ge=12, le=9_000)  # RA Router Lifetime, seconds
    return_prefix: bool = True  # the node's prefix in the HAck too (MH option 34 code 4)
    radvd: bool = True  # run radvd to advertise each node's prefix on its link
    radvd_binary: Text = "radvd"
    radvd_directory: FilePath = Path("/run/aaa-fmip/radvd")  # radvd.conf, radvd.pid, radvd.log
    routes: bool = True  # route each node's prefix onto its link (netlink)
    state_file: OptionalPath = Path("/var/lib/aaa-fmip/router-prefixes.json")  # the pool across restarts ("": none)

    @model_validator(mode="after")
    def _consistent(self) -> PrefixesSection:
        if self.aggregate is None:
            if self.pool is not None:
                raise Invalid("a pool needs its aggregate", "pool")
            return self
        try:
            self.per_node()
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        return self

    def per_node(self) -> PerNodePrefixes | None:
        if self.aggregate is None:
            return None
        return PerNodePrefixes(
            PrefixPoolConfig(self.aggregate, self.pool or self.aggregate, self.prefix_length),
            interfaces=tuple(self.interfaces),
            hold=self.hold,
            lifetime=self.lifetime,
            valid_lifetime=self.valid_lifetime,
            preferred_lifetime=self.preferred_lifetime,
            router_lifetime=self.router_lifetime,
            return_prefix=self.return_prefix,
        )


class DataPlaneSection(_Section):
    """The handover data plane (docs/router.md "Data plane"): forwarding at the PAR, buffering at the NAR."""

    enable: bool = False  # needs CAP_NET_ADMIN and /dev/net/tun (userspace) or ip6tnl (kernel)
    mode: Literal["auto", "userspace", "kernel"] = "auto"  # auto: kernel ip6tnl where the kernel has it
    tun_name: str = Field(default="fmip0", min_length=1, max_length=15)  # the PAR's capture device
    route_table: Annotated[int, Field(ge=1, le=0xFFFFFFFF), AfterValidator(_own_table)] = (
        5568  # capture routes live here (not 253-255)
    )
    rule_priority: int = Field(default=5568, ge=1, le=32764)  # this and the next: the two policy rules
    buffer_packets: int = Field(default=1000, ge=0)  # per node, at the NAR
    total_buffer_packets: int = Field(default=20_000, ge=0)  # all nodes together
    buffer_seconds: float = Field(default=2.0, gt=0, le=60)  # longest a packet waits for its node
    drain_burst: int = Field(default=5, ge=1)  # RFC 5568 §5.4: back to back when the node attaches
    drain_factor: float = Field(default=2.0, ge=0)  # then this multiple of the arrival rate (0: all at once)
    nar_lifetime: float = Field(default=30.0, gt=0)  # seconds a NAR binding lives after its HI / last packet

    def limits(self) -> DataPlaneLimits:
        return DataPlaneLimits(
            buffer_packets=self.buffer_packets,
            total_buffer_packets=self.total_buffer_packets,
            buffer_seconds=self.buffer_seconds,
            drain_burst=self.drain_burst,
            drain_factor=self.drain_factor,
            nar_lifetime=self.nar_lifetime,
        )


class NeighbourEntry(_Section):
    ap: ApId
    nar_address: IPv6
    nar_prefix: IPv6Prefix
    nar_lla: LinkLayer = ""
    local: bool = False
    fast_handover: bool = True
    assigns_addresses: bool = False  # the NAR assigns NCoAs from per-node prefixes: HI with S=1

    def neighbour(self) -> Neighbour:
        return Neighbour(
            normalise_ap_id(self.ap),
            self.nar_address,
            self.nar_prefix,
            _lla(self.nar_lla),
            local=self.local,
            fast_handover=self.fast_handover,
            assigns_addresses=self.assigns_addresses,
        )


class RouterSettings(FileSettings):
    """The agent's whole configuration; build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        strict=True,
        frozen=True,
        hide_input_in_errors=True,
        arbitrary_types_allowed=True,
    )

    router: RouterSection
    keys: KeysSection = Field(default_factory=KeysSection)
    service: ServiceSection = Field(default_factory=ServiceSection)
    diameter: DiameterSection = Field(default_factory=DiameterSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    log: LogSection = Field(default_factory=LogSection)
    prefixes: PrefixesSection = Field(default_factory=PrefixesSection)
    dataplane: DataPlaneSection = Field(default_factory=DataPlaneSection)
    neighbours: Annotated[tuple[NeighbourEntry, ...], Tables] = ()

    @model_validator(mode="after")
    def _across_sections(self) -> RouterSettings:
        seen: set[bytes] = set()
        for i, entry in enumerate(self.neighbours):
            ap = normalise_ap_id(entry.ap)
            if ap in seen:
                raise Invalid("this access point is listed twice", "neighbours", i, "ap")
            seen.add(ap)
        d = self.diameter
        if self.keys.source == "diameter" and not (d.origin_host and d.origin_realm and d.peer and d.host):
            raise Invalid("source diameter needs origin_host, origin_realm, peer and host", "diameter")
        return self

    def parameters(self, *, link_local: IPv6Address | None = None, lla: bytes = b"") -> RouterParameters:
        r = self.router
        return RouterParameters(
            addresses=tuple(r.addresses),
            access_prefixes=tuple(r.access_prefixes),
            neighbours=NeighbourTable(n.neighbour() for n in self.neighbours),
            link_local=r.link_local or link_local,
            lla=_lla(r.lla) or lla,
            hi_retries=r.hi_retries,
            hi_initial_timeout=r.hi_initial_timeout,
            request_buffering=r.request_buffering,
            assigned_addressing=r.assigned_addressing,
            lifetime_unit=r.lifetime_unit,
            max_nar_handovers=r.max_handovers,
            max_par_handovers=r.max_handovers,
            per_node=self.prefixes.per_node(),
        )


def load_settings(path: Path | None, env: Mapping[str, str] | None = None) -> RouterSettings:
    """Settings from ``path`` (TOML), ``AAA_FMIP_ROUTER_*`` variables of ``env`` (default: the process's) over
    it; a ConfigError naming the key at fault (``neighbours[0].ap``, or the variable it came from)."""
    if path is not None and not path.is_file():
        raise ConfigError(f"no configuration file at {path}", key="--config")
    return load(RouterSettings, path, os.environ if env is None else env)

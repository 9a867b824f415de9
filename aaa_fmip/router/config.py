"""Settings of the access-router agent: a TOML file, overridden by ``AAA_FMIP_ROUTER_*`` environment variables.

pydantic-settings reads both; nested fields use ``__`` in variable names, e.g.
``AAA_FMIP_ROUTER_SERVICE__TOKEN`` sets ``[service] token`` (the usual way to keep the bearer token out of
the file). A minimal file::

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

from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from aaa_fmip.errors import ConfigError
from aaa_fmip.router.core import HI_INITIAL_TIMEOUT, HI_RETRIES, RouterParameters
from aaa_fmip.router.neighbours import Neighbour, NeighbourTable, normalise_ap_id
from aaa_fmip.router.prefixes import PerNodePrefixes, PrefixPoolConfig

__all__ = ["ENV_PREFIX", "RouterSettings", "load_settings"]

ENV_PREFIX = "AAA_FMIP_ROUTER_"


def _lla(value: str) -> bytes:
    return normalise_ap_id(value) if value else b""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RouterSection(_Section):
    addresses: list[IPv6Address] = Field(min_length=1)
    access_prefixes: list[IPv6Network] = Field(default_factory=list)
    access_interfaces: list[str] = Field(default_factory=list)
    link_local: IPv6Address | None = None  # default: the access interface's fe80:: address
    lla: str = ""  # default: the access interface's MAC
    hi_retries: int = Field(default=HI_RETRIES, ge=0, le=10)
    hi_initial_timeout: float = Field(default=HI_INITIAL_TIMEOUT, gt=0, le=10)
    assigned_addressing: bool = False
    request_buffering: bool = False
    lifetime_unit: Literal[1, 4] = 4
    replay_state: Path = Path("/var/lib/aaa-fmip/router-replay.journal")
    replay_fsync: bool = False
    max_handovers: int = Field(default=4096, ge=1)

    @field_validator("addresses")
    @classmethod
    def _global(cls, value: list[IPv6Address]) -> list[IPv6Address]:
        for address in value:
            if address.is_link_local or address.is_multicast or address.is_unspecified:
                raise ValueError(f"{address} is not a global unicast address")
        return value


class KeysSection(_Section):
    mode: Literal["local", "service"] = "local"  # service: hold no keys, ask POST /v1/fbu/verify
    source: Literal["rest", "diameter"] = "rest"  # how keys are fetched and FBUs verified by the service
    prefetch: bool = True  # fetch a node's key when its RtSolPr arrives
    report_verdicts: bool = True  # report locally made verdicts to the service's audit trail (POST /v1/fbu/verdicts)
    max_keys: int = Field(default=100_000, ge=1)


class ServiceSection(_Section):
    url: str = ""  # empty: no key service (only pushed keys; unknown SPIs get FBack 128)
    token: SecretStr = SecretStr("")
    timeout: float = Field(default=0.5, gt=0, le=30)  # seconds per call: bounds what a service outage costs a handover
    ca_file: Path | None = None


class DiameterSection(_Section):
    """The Handover-Key application's peer (``[keys] source = "diameter"``); docs/diameter.md."""

    origin_host: str = ""  # this router's Diameter identity (the service's [[diameter.peers]] identity)
    origin_realm: str = ""
    peer: str = ""  # the key service's (or a relay's) Diameter identity
    host: str = ""  # its IP address
    port: int = Field(default=3868, ge=1, le=65535)
    destination_realm: str = ""  # default: origin_realm
    application_id: int | None = None
    vendor_id: int | None = None
    command_code: int | None = None
    timeout: float = Field(default=0.5, gt=0, le=30)


class MetricsSection(_Section):
    listen: str = ""  # host:port for Prometheus; empty: no metrics endpoint


class LogSection(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class PrefixesSection(_Section):
    """Per-node prefixes on point-to-point links, as NAR (docs/router.md "Per-node prefixes"). Off unless
    ``aggregate`` is set."""

    aggregate: IPv6Network | None = None  # what neighbours advertise for this NAR in PrRtAdv (their nar_prefix)
    pool: IPv6Network | None = None  # where per-node prefixes come from; default: the aggregate
    prefix_length: int = Field(default=64, ge=1, le=64)  # each node's prefix
    interfaces: list[str] = Field(default_factory=lambda: ["pnp*"], min_length=1)  # per-node links (shell patterns)
    hold: float = Field(default=60.0, gt=0)  # seconds a prefix given in a HAck waits for its node to attach
    lifetime: float = Field(default=600.0, gt=0)  # seconds a bound prefix outlives its link's last sighting
    valid_lifetime: int = Field(default=86_400, ge=1, le=0xFFFFFFFF)  # PIO, seconds
    preferred_lifetime: int = Field(default=14_400, ge=0, le=0xFFFFFFFF)  # PIO, seconds
    router_lifetime: int = Field(default=1_800, ge=12, le=9_000)  # RA Router Lifetime, seconds
    return_prefix: bool = True  # the node's prefix in the HAck too (MH option 34 code 4)
    radvd: bool = True  # run radvd to advertise each node's prefix on its link
    radvd_binary: str = "radvd"
    radvd_directory: Path = Path("/run/aaa-fmip/radvd")  # radvd.conf, radvd.pid, radvd.log
    routes: bool = True  # route each node's prefix onto its link (netlink)
    state_file: Path | None = Path("/var/lib/aaa-fmip/router-prefixes.json")  # the pool across restarts

    @model_validator(mode="after")
    def _consistent(self) -> PrefixesSection:
        if self.aggregate is None:
            if self.pool is not None:
                raise ValueError("a pool needs its aggregate")
            return self
        try:
            self.per_node()
        except ValueError as exc:
            raise ValueError(str(exc)) from None
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


class NeighbourEntry(_Section):
    ap: str
    nar_address: IPv6Address
    nar_prefix: IPv6Network
    nar_lla: str = ""
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


class RouterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    router: RouterSection
    keys: KeysSection = Field(default_factory=KeysSection)
    service: ServiceSection = Field(default_factory=ServiceSection)
    diameter: DiameterSection = Field(default_factory=DiameterSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    log: LogSection = Field(default_factory=LogSection)
    prefixes: PrefixesSection = Field(default_factory=PrefixesSection)
    neighbours: list[NeighbourEntry] = Field(default_factory=list)

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


def load_settings(path: Path | None, **overrides: Any) -> RouterSettings:
    """Settings from ``path`` (TOML), environment variables over it; ConfigError naming the field at fault."""
    if path is not None and not path.is_file():
        raise ConfigError(f"no configuration file at {path}", key="--config")

    class _FromFile(RouterSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if path is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            return tuple(sources)

    try:
        settings = _FromFile(**overrides)
        NeighbourTable(n.neighbour() for n in settings.neighbours)  # duplicate APs, bad MACs
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(str(first["msg"]), key=key) from None
    except ValueError as exc:
        raise ConfigError(str(exc), key="neighbours") from None
    d = settings.diameter
    if settings.keys.source == "diameter" and not (d.origin_host and d.origin_realm and d.peer and d.host):
        raise ConfigError("source diameter needs origin_host, origin_realm, peer and host", key="diameter")
    return settings

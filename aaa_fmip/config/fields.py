"""The value types of the settings: each parses its text once and says what is wrong in words an operator reads.

The section models (:mod:`aaa_fmip.config.sections`) are strict: a TOML file must give an integer as an integer,
a list as a list. Values from the environment are text; :mod:`aaa_fmip.config.sources` converts them to the
field's base type first (the pydantic-settings rule for strict models), so both kinds meet the same validators.
A validator raises :class:`Invalid` (a ``ValueError``, which pydantic collects); :func:`~aaa_fmip.config.sources.
translate` turns it into the one-line :class:`~aaa_fmip.errors.ConfigError` that names the key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, TypeVar

from pydantic import BeforeValidator, ConfigDict, PlainValidator, ValidationInfo

from aaa_fmip.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_HOSTNAME: Final = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_SHA256_HEX: Final = re.compile(r"^[0-9a-fA-F]{64}$")
DIAMETER_IDENTITY: Final = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")  # RFC 6733 §4.3.1 (an FQDN)

# Every section: strict types, unknown keys are errors, values never echoed in pydantic's own errors.
SECTION: Final = ConfigDict(
    strict=True, extra="forbid", frozen=True, hide_input_in_errors=True, arbitrary_types_allowed=True
)


class Invalid(ValueError):
    """A value that fails a rule; ``at`` names the part at fault below the validated field or model."""

    def __init__(self, message: str, *at: str | int) -> None:
        super().__init__(message)
        self.message = message
        self.at = at


@dataclass(frozen=True)
class EnvOnly:
    """Field metadata: set only by the environment variable ``name`` (never in the file)."""

    name: str


@dataclass(frozen=True)
class HostPort:
    """A listen or peer address. ``host`` is an IP literal (without brackets) or a DNS name."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# --------------------------------------------------------------------------------------------- scalar parsers


def host_port(text: object, default_port: int | None = None) -> HostPort:
    """``host:port``, ``[v6]:port``; a bare host only when ``default_port`` is given. Raises :class:`Invalid`."""
    if not isinstance(text, str):
        raise Invalid("expected a string")
    if not text:
        raise Invalid("expected host:port (IPv6 as [::1]:8080)")
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise Invalid(f"{text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise Invalid(f"{text!r}: expected ':' after ']'")
        port_text = rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise Invalid(f"{text!r}: not an IPv6 address inside [ ]") from None
    else:
        if text.count(":") > 1:
            raise Invalid(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:8080")
        host, sep, port_text_raw = text.partition(":")
        port_text = port_text_raw if sep else None
        if not _is_ipv4(host) and not _HOSTNAME.match(host):
            raise Invalid(f"{text!r}: not an IP address or host name")
    if port_text is None:
        if default_port is None:
            raise Invalid(f"{text!r}: missing :port")
        return HostPort(host, default_port)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise Invalid(f"{text!r}: port must be 1..65535")
    return HostPort(host, int(port_text))


def parse_host_port(text: str, *, key: str, default_port: int | None = None) -> HostPort:
    """:func:`host_port` for command-line options: ConfigError naming ``key``."""
    try:
        return host_port(text, default_port)
    except Invalid as exc:
        raise ConfigError(exc.message, key=key) from None


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def token_sha256(token: str) -> bytes:
    """The digest stored in the configuration for a bearer token."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("expected a string")
    return value


def _name(value: object) -> str:
    if not _string(value).strip():
        raise Invalid("must not be empty")
    return str(value)


def _optional_name(value: object) -> str:
    if not _string(value).strip():
        raise Invalid("must not be empty (omit it instead)")
    return str(value)


def fqdn(what: str, *, blank: str = "must not be empty") -> PlainValidator:
    """A DiameterIdentity or realm (RFC 6733 §4.3.1: a fully qualified domain name)."""

    def check(value: object) -> str:
        if not _string(value).strip():
            raise Invalid(blank)
        if not DIAMETER_IDENTITY.match(str(value)):
            raise Invalid(f"not a valid {what}")
        return str(value)

    return PlainValidator(check)


def _path(value: object) -> Path | None:
    text = _string(value).strip()
    return Path(text) if text else None


def _required_path(value: object) -> Path:
    path = _path(value)
    if path is None:
        raise Invalid("must not be empty")
    return path


def _ipv6(value: object) -> ipaddress.IPv6Address:
    if isinstance(value, str):
        try:
            return ipaddress.IPv6Address(value)
        except ValueError:
            pass
    raise Invalid("not an IPv6 address")


def _optional_ipv6(value: object) -> ipaddress.IPv6Address | None:
    return None if value is None else _ipv6(value)


def _ipv6_prefix(value: object) -> ipaddress.IPv6Network:
    if isinstance(value, str):
        try:
            return ipaddress.IPv6Network(value)
        except ValueError:
            pass
    raise Invalid("not an IPv6 prefix (prefix/length, no host bits set)")


def _optional_ipv6_prefix(value: object) -> ipaddress.IPv6Network | None:
    return None if value is None else _ipv6_prefix(value)


def _file_path(value: object) -> Path:
    text = _string(value).strip()
    if not text:
        raise Invalid("must not be empty")
    return Path(text)


def _link_address(value: object) -> bytes:
    """A 6-octet link-layer address (IEEE 802 MAC): ``02:00:00:00:00:01``, with ``-``, or bare hex."""
    text = _string(value)
    try:
        raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    except ValueError:
        raw = b""
    if len(raw) != 6:
        raise Invalid("not a 6-octet link-layer address")
    return raw


def _ip(value: object) -> IPAddress:
    if isinstance(value, str):
        try:
            return ipaddress.ip_address(value)
        except ValueError:
            pass
    raise Invalid("not an IPv4 or IPv6 address")


def _network(value: object) -> IPNetwork:
    if isinstance(value, str):
        try:
            return ipaddress.ip_network(value, strict=False)
        except ValueError:
            pass
    raise Invalid("not an IP address or network (address/prefix-length)")


def _sha256_hex(value: object) -> bytes:
    if not isinstance(value, str) or not _SHA256_HEX.match(value):
        raise Invalid("expected the SHA-256 of the token: 64 hex digits (see `aaa-fmip token new`)")
    return bytes.fromhex(value)


def _items(value: object) -> tuple[object, ...]:
    if not isinstance(value, list | tuple):
        raise Invalid("expected a list")
    return tuple(value)


def _tables(value: object, info: ValidationInfo) -> tuple[object, ...]:
    if not isinstance(value, list | tuple):
        raise Invalid(f"expected an array of tables ([[{info.field_name}]])")
    return tuple(value)


T = TypeVar("T")


def unique(what: str, *, name_item: bool = False) -> Callable[[tuple[T, ...]], tuple[T, ...]]:
    """An after-validator: no item twice (``name_item``: the error names the second one, not the list)."""

    def check(items: tuple[T, ...]) -> tuple[T, ...]:
        for i, item in enumerate(items):
            if item in items[:i]:
                raise Invalid(what, *((i,) if name_item else ()))
        return items

    return check


def nonempty(message: str) -> Callable[[tuple[T, ...]], tuple[T, ...]]:
    def check(items: tuple[T, ...]) -> tuple[T, ...]:
        if not items:
            raise Invalid(message)
        return items

    return check


# ------------------------------------------------------------------------------------------------ field types

Text = Annotated[str, PlainValidator(_string)]
Name = Annotated[str, PlainValidator(_name)]  # required, not blank
OptionalName = Annotated[str, PlainValidator(_optional_name)]  # if given, not blank
Identity = Annotated[str, fqdn("identity (a fully qualified domain name)", blank="must not be empty (omit it instead)")]
OptionalPath = Annotated[Path | None, PlainValidator(_path)]  # "" → None
RequiredPath = Annotated[Path, PlainValidator(_required_path)]
Listen = Annotated[HostPort, PlainValidator(host_port)]
IPv6 = Annotated[ipaddress.IPv6Address, PlainValidator(_ipv6)]
OptionalIPv6 = Annotated[ipaddress.IPv6Address | None, PlainValidator(_optional_ipv6)]
IPv6Prefix = Annotated[ipaddress.IPv6Network, PlainValidator(_ipv6_prefix)]  # host bits must be clear
OptionalIPv6Prefix = Annotated[ipaddress.IPv6Network | None, PlainValidator(_optional_ipv6_prefix)]
FilePath = Annotated[Path, PlainValidator(_file_path)]  # required, not blank
LinkAddress = Annotated[bytes, PlainValidator(_link_address)]  # 6 octets
IP = Annotated[IPAddress, PlainValidator(_ip)]
Network = Annotated[IPNetwork, PlainValidator(_network)]
TokenDigest = Annotated[bytes, PlainValidator(_sha256_hex)]
Items = BeforeValidator(_items)  # a TOML array (or comma-separated text from the environment) as a tuple
Tables = BeforeValidator(_tables)  # an array of tables ([[name]]) as a tuple

"""Settings of the MIH Information Server (``aaa-fmip mih``): one TOML file, docs/mih.md and docs/mih-security.md.

Read by the shared configuration machinery of :mod:`aaa_fmip.config` (its TOML source, strict frozen models,
its field types and its one-line errors naming the key, e.g. ``mih.psk.revocation_poll: must be in 1..3600``).
The MoS takes no settings from the environment (``token_env`` names the variable that holds a token, read by
the command); the files a table names (``neighbours``, ``token_file``, ``ca_file``) are relative to the
configuration file and are read by the command, which knows where that file is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, Field, PlainValidator, model_validator
from pydantic_settings import SettingsConfigDict

from aaa_fmip.config.fields import (
    IP,
    SECTION,
    HostPort,
    Invalid,
    Items,
    OptionalName,
    Tables,
    Text,
    host_port,
    nonempty,
)
from aaa_fmip.config.sources import FileSettings, load
from aaa_fmip.mih.neighbours import NeighbourTable, PoaEntry, build_table, check_poas

__all__ = ["MIH_PORT", "MihSection", "MosSettings", "PskSection", "PublishSection", "load_settings"]

MIH_PORT: Final = 4551  # RFC 5677 §6.1 (IANA: ieee-mih)
U32: Final = 2**32 - 1


def mos_listen(value: object) -> HostPort:
    """``host:port`` or a bare host (port 4551); IPv6 in brackets."""
    return host_port(value, MIH_PORT)


def _mihf_id(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("expected a string")
    if not 1 <= len(value.encode()) <= 253:  # 802.21-2008 F.3.11: an FQDN or NAI of at most 253 octets
        raise Invalid("must be an FQDN or NAI of 1 to 253 octets")
    return value


def _service_url(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise Invalid("expected the key service's https:// URL")
    return value.rstrip("/")


class PskSection(BaseModel):
    """``[mih.psk]``: where the MoS gets its keys, and how it learns of revocations."""

    model_config = SECTION

    service_url: Annotated[str, PlainValidator(_service_url)]
    token_file: OptionalName | None = None  # relative to the configuration file
    token_env: OptionalName | None = None
    ca_file: OptionalName | None = None
    tls_verify: bool = True
    audit_token_file: OptionalName | None = None
    audit_token_env: OptionalName | None = None
    revocation_poll: int = Field(default=5, ge=1, le=3600)  # seconds
    key_timeout: int = Field(default=5, ge=1, le=60)  # seconds

    @model_validator(mode="after")
    def _one_source_per_token(self) -> PskSection:
        for prefix in ("token", "audit_token"):
            if getattr(self, f"{prefix}_file") is not None and getattr(self, f"{prefix}_env") is not None:
                raise Invalid(f"give {prefix}_file or {prefix}_env, not both", f"{prefix}_file")
        if self.token_file is None and self.token_env is None:
            raise Invalid("required: token_file or token_env", "token_file")
        return self


class PublishSection(BaseModel):
    """``[mih.publish]``: what ``--publish`` prints (RFC 5678 DHCP options, RFC 5679 DNS records)."""

    model_config = SECTION

    domain: Text = ""
    host: OptionalName | None = None  # SRV target; default: mihf_id
    addresses: Annotated[tuple[IP, ...], Items, AfterValidator(nonempty("required: a list of IP addresses"))]
    ttl: int = Field(default=3600, ge=0, le=2**31 - 1)


class MihSection(BaseModel):
    """``[mih]``."""

    model_config = SECTION

    mihf_id: Annotated[str, PlainValidator(_mihf_id)]
    listen: Annotated[HostPort, PlainValidator(mos_listen)] = mos_listen("[::]:4551")
    neighbours: OptionalName | None = None  # the [[poa]] tables in their own file (relative to this one)
    valid_time_interval: int = Field(default=3600, ge=0, le=U32)  # seconds; 0: until DeRegister
    max_udp_payload: int = Field(default=1232, ge=64, le=65507)  # octets (IPv6 minimum MTU - 48)
    udp_rate: int = Field(default=1000, ge=1, le=10**7)  # datagrams/s from one source
    udp_burst: int = Field(default=1000, ge=1, le=10**7)
    psk: PskSection | None = None
    publish: PublishSection | None = None


class MosSettings(FileSettings):
    """The whole file: ``[mih]`` and, unless ``mih.neighbours`` names another file, the ``[[poa]]`` tables."""

    model_config = SettingsConfigDict(
        extra="forbid", strict=True, frozen=True, hide_input_in_errors=True, arbitrary_types_allowed=True
    )

    mih: MihSection
    poa: Annotated[tuple[PoaEntry, ...], Tables] = ()
    symmetric: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> MosSettings:
        check_poas(self.poa)
        return self

    def table(self) -> NeighbourTable:
        """The neighbour table of this file's ``[[poa]]`` tables."""
        return build_table(self.poa, self.symmetric)


def load_settings(path: Path) -> MosSettings:
    """The MoS's settings from ``path``; a ConfigError naming the key at fault (``--config`` for the file)."""
    return load(MosSettings, path, {})

"""Settings: one TOML file, every scalar overridable from the environment (docs/configuration.md).

:func:`load_settings` is the only reader. :class:`Settings` is a pydantic-settings ``BaseSettings`` whose
sections are strict, frozen models (:mod:`.sections`, :mod:`.callers`): unknown keys are errors, a file must
give each value its TOML type, and every error is raised as one :class:`~aaa_fmip.errors.ConfigError` naming
the key (``access_routers[1].addresses[0]``, or the environment variable it came from) so that a bad file
stops the process with one clear line and never echoes the value.

Environment overrides (:mod:`.sources`): ``AAA_FMIP_<SECTION>_<KEY>`` (upper case, nested tables joined with
``_``), e.g. ``AAA_FMIP_STORE_URL``, ``AAA_FMIP_RADIUS_ACCOUNTING_SECRET``; they win over the file.
``AAA_FMIP_KEK`` carries the key-encryption key itself (hex) and wins over ``keys.kek_file``. Lists are given
comma-separated. Arrays of tables (``access_routers``, ``clients``, ``diameter.peers``) come from the file only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Final

from pydantic import Field, PrivateAttr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from aaa_fmip.api.settings import LimitSettings
from aaa_fmip.config.callers import AccessRouterSettings, ClientRole, ClientSettings, check_unique_callers
from aaa_fmip.config.fields import HostPort, Invalid, IPAddress, IPNetwork, Tables, parse_host_port, token_sha256
from aaa_fmip.config.sections import (
    DEFAULT_ACCOUNTING_LISTEN,
    DEFAULT_DATA_DIR,
    DEFAULT_DIAMETER_APPLICATION_ID,
    DEFAULT_DIAMETER_COMMAND_CODE,
    DEFAULT_DIAMETER_LISTEN,
    DEFAULT_LISTEN,
    DEFAULT_STORE_PREFIX,
    DEFAULT_VENDOR_ID,
    ENV_KEK,
    AuditSettings,
    DiameterPeer,
    DiameterSettings,
    KeysSettings,
    MinAppendfsync,
    RadiusAccountingSettings,
    RadiusSettings,
    RouterPairsSettings,
    SendSettings,
    ServerSettings,
    StoreSettings,
)
from aaa_fmip.config.sources import EnvironmentSource, TomlFile, translate
from aaa_fmip.errors import ConfigError
from aaa_fmip.keys import DEFAULT_MAX_LIFETIME
from aaa_fmip.model import LifetimeUnits, PeerRole

__all__ = [
    "DEFAULT_ACCOUNTING_LISTEN",
    "DEFAULT_DATA_DIR",
    "DEFAULT_DIAMETER_APPLICATION_ID",
    "DEFAULT_DIAMETER_COMMAND_CODE",
    "DEFAULT_DIAMETER_LISTEN",
    "DEFAULT_LISTEN",
    "DEFAULT_MAX_LIFETIME",
    "DEFAULT_STORE_PREFIX",
    "DEFAULT_VENDOR_ID",
    "ENV_CONFIG",
    "ENV_KEK",
    "ENV_PREFIX",
    "AccessRouterSettings",
    "AuditSettings",
    "ClientRole",
    "ClientSettings",
    "ConfigError",
    "DiameterPeer",
    "DiameterSettings",
    "HostPort",
    "IPAddress",
    "IPNetwork",
    "KeysSettings",
    "LifetimeUnits",
    "LimitSettings",
    "MinAppendfsync",
    "PeerRole",
    "RadiusAccountingSettings",
    "RadiusSettings",
    "RouterPairsSettings",
    "SendSettings",
    "ServerSettings",
    "Settings",
    "StoreSettings",
    "load_settings",
    "parse_host_port",
    "resolve_config_path",
    "token_sha256",
]

ENV_PREFIX: Final = "AAA_FMIP_"
ENV_CONFIG: Final = "AAA_FMIP_CONFIG"

# What load_settings reads: the file (None: none) and the environment (None: os.environ).
_INPUTS: ContextVar[tuple[Path | None, EnvironmentSource | None]] = ContextVar("_INPUTS", default=(None, None))


class Settings(BaseSettings):
    """The whole configuration; build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        hide_input_in_errors=True,
        strict=True,
        frozen=True,
        arbitrary_types_allowed=True,
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    keys: KeysSettings = Field(default_factory=KeysSettings)
    access_routers: Annotated[tuple[AccessRouterSettings, ...], Tables] = ()
    clients: Annotated[tuple[ClientSettings, ...], Tables] = ()
    diameter: DiameterSettings | None = None
    radius: RadiusSettings = Field(default_factory=RadiusSettings)
    send: SendSettings = Field(default_factory=SendSettings)
    router_pairs: RouterPairsSettings = Field(default_factory=RouterPairsSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file read, if any."""
        return self._source

    def with_listen(self, listen: str) -> Settings:
        """These settings with ``server.listen`` replaced (the ``--listen`` option)."""
        server = self.server.model_copy(update={"listen": parse_host_port(listen, key="--listen")})
        return self.model_copy(update={"server": server})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path, environment = _INPUTS.get()
        if environment is None:
            environment = EnvironmentSource(settings_cls, os.environ)
        return init_settings, environment, TomlFile(settings_cls, path, environment.origins)

    @model_validator(mode="after")
    def _across_sections(self) -> Settings:
        check_unique_callers(self.access_routers, self.clients)
        identities = {r.diameter_identity.lower() for r in self.access_routers if r.diameter_identity}
        for i, peer in enumerate(self.diameter.peers if self.diameter else ()):
            if peer.role == "ar" and peer.identity.lower() not in identities:
                # An AR peer is scoped by its [[access_routers]] entry; without one it could not be authorised.
                raise Invalid(
                    "no [[access_routers]] entry has this diameter_identity", "diameter", "peers", i, "identity"
                )
        if not self.store.embedded and self.keys.kek is None and self.keys.kek_file is None:
            raise Invalid(
                "an external Redis (store.url) needs an explicit key-encryption key, shared by every instance: "
                f"set keys.kek_file or {ENV_KEK}",
                "keys",
                "kek_file",
            )
        return self


def resolve_config_path(cli_value: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """``--config`` wins over ``AAA_FMIP_CONFIG``; neither → no file (all defaults)."""
    if cli_value:
        return Path(cli_value)
    value = env.get(ENV_CONFIG, "")
    return Path(value) if value else None


def load_settings(path: Path | None, env: Mapping[str, str]) -> Settings:
    """Read ``path`` (None → no file), overlay ``env``, validate; raises ConfigError naming the key."""
    environment = EnvironmentSource(Settings, env)  # raises on a misspelt variable before the file is read
    token = _INPUTS.set((path, environment))
    try:
        settings = Settings()
    except ValidationError as exc:
        raise translate(exc, Settings, environment.origins) from None
    finally:
        _INPUTS.reset(token)
    settings._source = path
    return settings

"""Where settings come from (pydantic-settings sources) and how a validation error becomes one line.

Sources, highest precedence first: the environment (:class:`EnvironmentSource`), then the TOML file
(:class:`TomlFile`), then the models' defaults. The environment source is ours rather than pydantic-settings'
``EnvSettingsSource`` because the documented variable names join every level with ``_``
(``AAA_FMIP_RADIUS_ACCOUNTING_SECRET``) while field names contain ``_`` too, because lists are given
comma-separated, and because an error must name the variable a bad value came from. Its table of variables is
derived from the models, so a field added to a section is settable from the environment with no other change.
"""

from __future__ import annotations

import tomllib
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource

from aaa_fmip.config.fields import EnvOnly, Invalid
from aaa_fmip.errors import ConfigError

Path_ = tuple[str, ...]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → ``X``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: itself, or the item of an array of tables."""
    annotation = _unwrap(annotation)
    if get_origin(annotation) is tuple:
        annotation = get_args(annotation)[0]
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def environment_names(model: type[BaseModel], prefix: str, path: Path_ = ()) -> Iterator[tuple[str, Path_, FieldInfo]]:
    """Every scalar field that a variable may set: ``PREFIX<SECTION>_<KEY>`` (nested tables joined with ``_``),
    or the name in its :class:`EnvOnly` mark. Arrays of tables come from the file only."""
    for name, field in model.model_fields.items():
        sub = _model(field.annotation)
        if sub is not None:
            if get_origin(_unwrap(field.annotation)) is not tuple:
                yield from environment_names(sub, prefix, (*path, name))
            continue
        alias = next((m.name for m in field.metadata if isinstance(m, EnvOnly)), None)
        yield alias or prefix + "_".join((*path, name)).upper(), (*path, name), field


def _convert(field: FieldInfo, text: str) -> object:
    """Environment text as the field's base type; left as text when it does not convert, so that the strict
    validation names the expected type."""
    base = _unwrap(field.annotation)
    try:
        if base is bool:
            lowered = text.strip().lower()
            return True if lowered in _TRUE else False if lowered in _FALSE else text
        if base is int:
            return int(text.strip(), 0)
        if base is float:
            return float(text)
    except ValueError:
        return text
    if get_origin(base) is tuple:
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


class EnvironmentSource(PydanticBaseSettingsSource):
    """``AAA_FMIP_*`` variables from ``environ``; a variable that names a section but no setting of it is an error
    (a typo must not silently fall back to a default)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        prefix = str(self.config.get("env_prefix", ""))
        known = {name: (path, field) for name, path, field in environment_names(settings_cls, prefix)}
        sections = tuple(f"{prefix}{path[0].upper()}_" for path, _ in known.values() if len(path) > 1)
        self.origins: dict[Path_, str] = {}
        self.values: dict[str, Any] = {}
        for name, text in environ.items():
            if name not in known:
                if name.startswith(sections):
                    raise ConfigError("unknown setting", key=name)
                continue
            path, field = known[name]
            node = self.values
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = _convert(field, text)
            self.origins[path] = name

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.values


class TomlFile(TomlConfigSettingsSource):
    """The configuration file; unreadable or invalid TOML is a ConfigError naming ``--config``. ``origins``: the
    settings the environment gives, whose tables the file must not have as other values (the environment would
    silently replace them)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None, origins: Mapping[Path_, str]) -> None:
        if path is not None and not path.is_file():
            self._read_file(path)  # raises, naming why (absent, a directory, ...)
        super().__init__(settings_cls, toml_file=path)
        prefix = str(self.config.get("env_prefix", ""))
        for name, where, field in environment_names(settings_cls, prefix):
            node: Any = self.toml_data
            for depth, part in enumerate(where):
                if node is not None and not isinstance(node, dict):
                    if where in origins:
                        raise ConfigError("expected a table", key=".".join(where[:depth]))
                    break
                node = node.get(part) if node is not None else None
            else:
                if node is not None and any(isinstance(m, EnvOnly) for m in field.metadata):
                    raise ConfigError(f"unknown setting (set {name} instead)", key=".".join(where))

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        try:
            raw = file_path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {file_path}: {exc.strerror or exc}", key="--config") from None
        try:
            return tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{file_path} is not UTF-8 text", key="--config") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file_path}: invalid TOML: {exc}", key="--config") from None


# ------------------------------------------------------------------------------------------ error translation

_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown setting",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "tuple_type": "expected a list",
}
_BOUNDS = ("greater_than_equal", "less_than_equal", "greater_than", "less_than")


def _field(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    field: FieldInfo | None = None
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        if current is None or part not in current.model_fields:
            return None
        field = current.model_fields[part]
        current = _model(field.annotation)
    return field


def _bound_text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _message(error: ErrorDetails, model: type[BaseModel]) -> tuple[str, tuple[int | str, ...]]:
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, Invalid):
        return cause.message, (*loc, *cause.at)
    if kind in _BOUNDS:
        field = _field(model, loc)
        metadata = field.metadata if field is not None else []
        low = next((getattr(m, "ge", None) for m in metadata if getattr(m, "ge", None) is not None), None)
        high = next((getattr(m, "le", None) for m in metadata if getattr(m, "le", None) is not None), None)
        if low is not None and high is not None:
            return f"must be in {_bound_text(low)}..{_bound_text(high)}", loc
    if kind == "literal_error":
        return f"expected {str(ctx.get('expected', '')).replace(chr(39), chr(34))}", loc
    if kind in _MESSAGES:
        return _MESSAGES[kind], loc
    return str(error["msg"]), loc


def key_of(loc: tuple[int | str, ...]) -> str:
    """``("access_routers", 1, "addresses", 0)`` → ``access_routers[1].addresses[0]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def translate(exc: ValidationError, model: type[BaseModel], origins: Mapping[Path_, str]) -> ConfigError:
    """The first error as a ConfigError naming the key, and the variable it came from (alone for a variable
    that is not named after its key, such as ``AAA_FMIP_KEK``). Input values are never included."""
    message, loc = _message(exc.errors(include_input=False)[0], model)
    key = key_of(loc)
    name = origins.get(tuple(str(p) for p in loc)) if all(isinstance(p, str) for p in loc) else None
    if name is not None:
        field = _field(model, loc)
        explicit = field is not None and any(isinstance(m, EnvOnly) for m in field.metadata)
        key = name if explicit else f"{key} (from {name})"
    return ConfigError(message, key=key)

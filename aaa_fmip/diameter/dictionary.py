"""The project's Diameter dictionary (``dictionaries/diameter-aaa-fmip.toml``): reading it and registering it.

:func:`load_dictionary` reads and validates the file into a frozen :class:`DiameterDictionary`;
:meth:`DiameterDictionary.with_overrides` applies the ``[diameter]`` configuration (application id, vendor id,
command code); :func:`register` teaches python-diameter our AVPs and the Handover-Key command. python-diameter
keeps its dictionaries in module globals, so registration is process-wide, idempotent, and refuses a code that
is already registered under another name.
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

from diameter.message.avp import avp as _avp_types
from diameter.message.avp.dictionary import AVP_DICTIONARY, AVP_VENDOR_DICTIONARY

from aaa_fmip.errors import ConfigError

AvpType = Literal["Grouped", "Enumerated", "OctetString", "UTF8String", "Unsigned32", "Integer32", "Address"]

DICTIONARY_FILE: Final = "diameter-aaa-fmip.toml"

# RFC 6733 §4.2, §4.3: the types our dictionary may use, and python-diameter's class for each.
_TYPE_CLASSES: Final[Mapping[str, Any]] = {
    "Grouped": _avp_types.AvpGrouped,
    "Enumerated": _avp_types.AvpEnumerated,
    "OctetString": _avp_types.AvpOctetString,
    "UTF8String": _avp_types.AvpUtf8String,
    "Unsigned32": _avp_types.AvpUnsigned32,
    "Integer32": _avp_types.AvpInteger32,
    "Address": _avp_types.AvpAddress,
}

# RFC 6733 §11.2.1 / §11.3: command codes are 24 bits; application ids 32 bits (0 and 0xffffffff are special).
MAX_COMMAND_CODE: Final = 2**24 - 1
RELAY_APPLICATION_ID: Final = 0xFFFFFFFF

_register_lock = threading.Lock()


@dataclass(frozen=True)
class AvpDef:
    """One AVP: its code, its vendor (0 for IETF AVPs), type, M bit and, for enumerations, named values."""

    name: str
    code: int
    vendor_id: int
    type: AvpType
    mandatory: bool
    values: Mapping[str, int] = field(default_factory=dict)
    members: tuple[str, ...] = ()

    def value(self, name: str) -> int:
        try:
            return self.values[name]
        except KeyError:
            raise KeyError(f"{self.name} has no value {name!r}") from None

    def value_name(self, value: int) -> str | None:
        return next((k for k, v in self.values.items() if v == value), None)


@dataclass(frozen=True)
class DiameterDictionary:
    """Everything the Handover-Key application puts on the wire, as read from the dictionary file."""

    vendor_id: int
    vendor_name: str
    application_id: int
    application_name: str
    command_code: int
    command_name: str
    avps: Mapping[str, AvpDef]
    source: Path | None = None

    def avp(self, name: str) -> AvpDef:
        try:
            return self.avps[name]
        except KeyError:
            raise KeyError(f"AVP {name!r} is not in the aaa-fmip Diameter dictionary") from None

    def with_overrides(
        self, *, application_id: int | None = None, vendor_id: int | None = None, command_code: int | None = None
    ) -> DiameterDictionary:
        """This dictionary with the configured ids; vendor-specific AVPs move to the new vendor id."""
        result = self
        if application_id is not None:
            _check_application_id(application_id, "diameter.application_id")
            result = replace(result, application_id=application_id)
        if command_code is not None:
            _check_command_code(command_code, "diameter.command_code")
            result = replace(result, command_code=command_code)
        if vendor_id is not None and vendor_id != self.vendor_id:
            _check_vendor_id(vendor_id, "diameter.vendor_id")
            avps = {
                name: replace(d, vendor_id=vendor_id) if d.vendor_id == self.vendor_id else d
                for name, d in result.avps.items()
            }
            result = replace(result, vendor_id=vendor_id, avps=avps)
        return result


def default_dictionary_path() -> Path:
    """The dictionary shipped with the package, else the one in a source checkout's ``dictionaries/``."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "data" / DICTIONARY_FILE, here.parents[2] / "dictionaries" / DICTIONARY_FILE):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{DICTIONARY_FILE} not found next to the package or in dictionaries/", key="diameter.dictionary")


def load_dictionary(path: Path | None = None) -> DiameterDictionary:
    """Read and validate the dictionary file (default: :func:`default_dictionary_path`)."""
    path = path or default_dictionary_path()
    key = f"diameter dictionary {path}"
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", key=key) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"invalid TOML: {exc}", key=key) from None
    return parse_dictionary(doc, source=path)


def parse_dictionary(doc: Mapping[str, Any], *, source: Path | None = None) -> DiameterDictionary:
    """Validate a parsed dictionary document (the structure of ``dictionaries/diameter-aaa-fmip.toml``)."""
    vendor = _table(doc, "vendor")
    application = _table(doc, "application")
    command = _table(doc, "command")
    vendor_id = _int(vendor, "id", "vendor")
    _check_vendor_id(vendor_id, "vendor.id")
    application_id = _int(application, "id", "application")
    _check_application_id(application_id, "application.id")
    command_code = _int(command, "code", "command")
    _check_command_code(command_code, "command.code")

    entries = doc.get("avp")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("expected [[avp]] entries", key="avp")
    avps: dict[str, AvpDef] = {}
    seen_codes: set[tuple[int, int]] = set()
    for i, entry in enumerate(entries):
        where = f"avp[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError("expected a table", key=where)
        definition = _avp_def(entry, where, vendor_id)
        if definition.name in avps:
            raise ConfigError(f"duplicate AVP name {definition.name!r}", key=f"{where}.name")
        if (definition.code, definition.vendor_id) in seen_codes:
            raise ConfigError(f"duplicate AVP code {definition.code}", key=f"{where}.code")
        seen_codes.add((definition.code, definition.vendor_id))
        avps[definition.name] = definition
    for definition in avps.values():
        for member in definition.members:
            if member not in avps:
                raise ConfigError(f"{definition.name}: member {member!r} is not defined", key="avp")
    return DiameterDictionary(
        vendor_id=vendor_id,
        vendor_name=_str(vendor, "name", "vendor"),
        application_id=application_id,
        application_name=_str(application, "name", "application"),
        command_code=command_code,
        command_name=_str(command, "name", "command"),
        avps=avps,
        source=source,
    )


def register(dictionary: DiameterDictionary) -> None:
    """Make python-diameter encode and decode our AVPs and the Handover-Key command. Idempotent."""
    from aaa_fmip.diameter.messages import register_handover_key_command

    with _register_lock:
        for definition in dictionary.avps.values():
            entry: dict[str, Any] = {
                "name": definition.name,
                "type": _TYPE_CLASSES[definition.type],
                "mandatory": definition.mandatory,
            }
            if definition.vendor_id:
                entry["vendor"] = definition.vendor_id
                table = AVP_VENDOR_DICTIONARY.setdefault(definition.vendor_id, {})
            else:
                table = AVP_DICTIONARY
            existing = table.get(definition.code)
            if existing is not None and (existing["name"], existing["type"]) != (entry["name"], entry["type"]):
                raise ConfigError(
                    f"AVP code {definition.code} (vendor {definition.vendor_id}) is already known to python-diameter "
                    f"as {existing['name']}",
                    key="diameter.vendor_id" if definition.vendor_id else "avp",
                )
            table[definition.code] = entry
        register_handover_key_command(dictionary.command_code, dictionary.command_name)


# ------------------------------------------------------------------------------------------------ validation


def _avp_def(entry: Mapping[str, Any], where: str, vendor_id: int) -> AvpDef:
    name = _str(entry, "name", where)
    code = _int(entry, "code", where)
    if not 1 <= code <= 0xFFFFFFFF:
        raise ConfigError("AVP codes are 1..2^32-1 (RFC 6733 §4.1)", key=f"{where}.code")
    type_name = _str(entry, "type", where)
    if type_name not in _TYPE_CLASSES:
        raise ConfigError(f"unsupported type {type_name!r} (one of {', '.join(_TYPE_CLASSES)})", key=f"{where}.type")
    flags = entry.get("flags", "")
    if not isinstance(flags, str) or set(flags) - {"V", "M"}:
        raise ConfigError('flags are a string of "V" and "M"', key=f"{where}.flags")
    values_doc = entry.get("values", {})
    if not isinstance(values_doc, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and -(2**31) <= v < 2**31 for v in values_doc.values()
    ):
        raise ConfigError("values are name = Integer32", key=f"{where}.values")
    if values_doc and type_name != "Enumerated":
        raise ConfigError("only an Enumerated AVP has values", key=f"{where}.values")
    members = entry.get("members", [])
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise ConfigError("members is a list of AVP names", key=f"{where}.members")
    if members and type_name != "Grouped":
        raise ConfigError("only a Grouped AVP has members", key=f"{where}.members")
    return AvpDef(
        name=name,
        code=code,
        vendor_id=vendor_id if "V" in flags else 0,
        type=type_name,  # type: ignore[arg-type]
        mandatory="M" in flags,
        values=dict(values_doc),
        members=tuple(members),
    )


def _table(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name)
    if not isinstance(value, dict):
        raise ConfigError("expected a table", key=f"[{name}]")
    return value


def _int(doc: Mapping[str, Any], name: str, where: str) -> int:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError("expected an integer", key=f"{where}.{name}")
    return value


def _str(doc: Mapping[str, Any], name: str, where: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise ConfigError("expected a non-empty string", key=f"{where}.{name}")
    return value


def _check_application_id(value: int, key: str) -> None:
    # RFC 6733 §2.4: 0 is the base protocol, 0xffffffff the relay application; neither can be ours.
    if not 1 <= value < RELAY_APPLICATION_ID:
        raise ConfigError("application ids are 1..4294967294", key=key)


def _check_command_code(value: int, key: str) -> None:
    if not 1 <= value <= MAX_COMMAND_CODE:
        raise ConfigError(f"command codes are 1..{MAX_COMMAND_CODE} (24 bits)", key=key)


def _check_vendor_id(value: int, key: str) -> None:
    if not 1 <= value <= 0xFFFFFFFF:
        raise ConfigError("vendor ids are 1..2^32-1 (an IANA enterprise number)", key=key)

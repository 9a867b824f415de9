"""Load tests/vectors/wire-*.json: JSON objects named by ``class`` become the codec's dataclasses."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from aaa_fmip.wire import icmpv6, mh, send

VECTORS = Path(__file__).resolve().parent.parent / "vectors"

_CLASSES: dict[str, type[Any]] = {
    name: obj
    for module in (icmpv6, mh, send)
    for name, obj in vars(module).items()
    if isinstance(obj, type) and dataclasses.is_dataclass(obj)
}


def load(name: str) -> dict[str, Any]:
    with (VECTORS / name).open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def wire(vector: dict[str, Any]) -> bytes:
    """The vector's octets: the concatenation of its labelled pieces (or one hex string)."""
    pieces = vector["wire"]
    if isinstance(pieces, str):
        return bytes.fromhex(pieces)
    return b"".join(bytes.fromhex(hex_octets) for _label, hex_octets in pieces)


def build(obj: dict[str, Any]) -> Any:
    """The dataclass named by ``obj["class"]``, its fields converted by their annotations."""
    cls = _CLASSES[obj["class"]]
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: _convert(hints[f.name], obj[f.name]) for f in dataclasses.fields(cls) if f.name in obj}
    unknown = set(obj) - {"class"} - set(kwargs)
    if unknown:
        raise KeyError(f"{obj['class']}: unknown fields {sorted(unknown)}")
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin is tuple:
        return tuple(build(item) for item in value)
    if origin in (typing.Union, types.UnionType):
        candidates = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(candidates) == 1:
            return _convert(candidates[0], value)
        return build(value)
    if hint is bytes:
        return bytes.fromhex(value)
    if hint is IPv6Address:
        return IPv6Address(value)
    if dataclasses.is_dataclass(hint):
        return build(value)
    return value

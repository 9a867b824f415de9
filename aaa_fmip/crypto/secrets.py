"""Secret values that never show themselves, and constant-time comparison."""

from __future__ import annotations

import hmac
from typing import Final, NoReturn


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare two byte strings in time independent of where they differ."""
    return hmac.compare_digest(a, b)


class SecretBytes:
    """Key material. ``repr``/``str`` are redacted; equality is constant-time; unhashable.

    Call :meth:`reveal` only at the point where the octets are fed to a primitive or a wire encoder.
    """

    __slots__ = ("_value",)
    _value: bytes

    def __init__(self, value: bytes | bytearray | memoryview) -> None:
        object.__setattr__(self, "_value", bytes(value))

    def reveal(self) -> bytes:
        return self._value

    def hex(self) -> str:
        """Hex of the value: for wire/JSON encoders that must carry the key, never for logs."""
        return self._value.hex()

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SecretBytes):
            return constant_time_equal(self._value, other._value)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("SecretBytes is immutable")

    def __repr__(self) -> str:
        return f"SecretBytes(<redacted {len(self._value)} octets>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("SecretBytes cannot be pickled")


REDACTED: Final = "<redacted>"

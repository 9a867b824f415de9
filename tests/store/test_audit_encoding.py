"""The canonical text of an audit entry's fields: exactly ``json.dumps``' canonical form, for any fields (the
MAC covers it, and ``aaa-fmip audit verify-export`` recomputes it from the parsed fields)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from aaa_fmip.store.audit import canonical_fields

FIELD_VALUES = st.one_of(st.text(max_size=40), st.integers(min_value=-(2**70), max_value=2**70), st.booleans())


@given(fields=st.dictionaries(st.text(max_size=12), FIELD_VALUES, max_size=9))
def test_canonical_fields_is_json_dumps_sorted(fields: dict[str, str | int | bool]) -> None:
    """The stored and authenticated text of an entry's fields is json.dumps' canonical form (``aaa-fmip audit
    verify-export`` recomputes it from parsed fields)."""
    expected = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_fields(fields) == expected


def test_canonical_fields_of_other_values_is_json_dumps_too() -> None:
    class Level(int):
        pass

    odd: dict[str, object] = {"b": 1.5, "a": [1, "x"], "c": None, "d": Level(3)}
    assert canonical_fields(odd) == json.dumps(odd, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

"""The audit entry's stream fields as sent to the append scripts: the hand-assembled JSON is exactly what
``json.dumps`` gives for the same list (the scripts decode it with cjson), for any text."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from aaa_fmip.store.audit import VERSION, canonical_fields, entry_items_json

TEXT = st.text(max_size=40)


@given(
    n=st.integers(min_value=1, max_value=2**64 - 1),
    at=TEXT,
    event=TEXT,
    fields=TEXT,
    prev=TEXT,
    kid=TEXT,
    mac=TEXT,
)
def test_entry_items_json_is_json_dumps_of_the_list(
    n: int, at: str, event: str, fields: str, prev: str, kid: str, mac: str
) -> None:
    flat = ["v", VERSION, "n", str(n), "at", at, "event", event, "f", fields, "prev", prev, "kid", kid, "mac", mac]
    expected = json.dumps(flat, ensure_ascii=False, separators=(",", ":"))
    assert entry_items_json(n, at, event, fields, prev, kid, mac) == expected
    assert json.loads(entry_items_json(n, at, event, fields, prev, kid, mac)) == flat


def test_control_characters_and_quotes_are_escaped() -> None:
    out = entry_items_json(7, '1.0"', "e\n", '{"a":"\\u0001"}', "0" * 64, "k\x00", "f" * 64)
    assert json.loads(out)[5] == '1.0"' and json.loads(out)[7] == "e\n" and json.loads(out)[13] == "k\x00"


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

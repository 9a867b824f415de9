"""The audit entry's stream fields as sent to the append scripts: the hand-assembled JSON is exactly what
``json.dumps`` gives for the same list (the scripts decode it with cjson), for any text."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from aaa_fmip.store.audit import VERSION, entry_items_json

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

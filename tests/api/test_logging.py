"""aaa_fmip.logging: JSON lines, and the redaction that keeps key material out of logs as a second line of
defence (callers log identifiers only)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from aaa_fmip.logging import configure_logging, redact

KEY_HEX = "a1" * 32  # 32 octets, the length of an HK or a KEK


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("DEBUG", stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_redact() -> None:
    assert redact(f"hk={KEY_HEX}") == "hk=<redacted>"
    assert redact(f"emsk 0x{KEY_HEX * 2} end") == "emsk <redacted> end"
    assert redact("Authorization: Bearer abc.def-ghi") == "Authorization: Bearer <redacted>"
    short = "0123456789abcdef"  # an 8-octet HMK-Name is an identifier, not a key
    assert redact(f"hmk_name={short}") == f"hmk_name={short}"


def test_json_lines_with_redacted_message_and_extra(captured: io.StringIO) -> None:
    log = logging.getLogger("aaa_fmip.test")
    log.info("issued %s", KEY_HEX, extra={"spi": 7, "blob": b"\x01" * 32, "note": f"k={KEY_HEX}"})
    (entry,) = lines(captured)
    assert entry["level"] == "info" and entry["logger"] == "aaa_fmip.test"
    assert entry["msg"] == "issued <redacted>"
    assert entry["spi"] == 7 and entry["blob"] == "<32 octets>" and entry["note"] == "k=<redacted>"
    assert KEY_HEX not in captured.getvalue()


def test_exceptions_are_logged_by_type_and_frames_only(captured: io.StringIO) -> None:
    try:
        raise ValueError(f"bad key {KEY_HEX} and b'\\x00secret'")
    except ValueError:
        logging.getLogger("aaa_fmip.test").exception("failed")
    (entry,) = lines(captured)
    assert entry["exc_type"] == "builtins.ValueError"
    assert isinstance(entry["exc_frames"], list) and entry["exc_frames"]
    assert "secret" not in captured.getvalue() and KEY_HEX not in captured.getvalue()

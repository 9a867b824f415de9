"""The audit trail kept outside Redis: JSON-lines export, RFC 5424 syslog to a real rsyslogd, retention with a
signed anchor, and offline verification of an exported copy."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import pytest
import redis

from aaa_fmip.audit_export import FULL_PASS_EVERY, AuditExporter, JsonLinesSink, Line, SyslogSink, verify_export
from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import StoreError
from aaa_fmip.store.redis import RedisStore
from tests.support.redis_server import RedisServer


def fill(store: RedisStore, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        store.append_audit("fbu.verified", {"spi": 1706538977, "seq": i, "ok": True}, at=3000.0 + i)


def exporter(store: RedisStore, path: Path, retain: int = 0) -> AuditExporter:
    return AuditExporter(store, [JsonLinesSink(path)], retain=retain, clock=time.time)


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_export_appends_each_entry_once_with_its_json_types(store: RedisStore, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    fill(store, 10)
    ex = exporter(store, path)
    assert ex.export_once() == 10
    assert ex.export_once() == 0
    fill(store, 3, start=10)
    assert ex.export_once() == 3
    got = lines(path)
    assert [x["n"] for x in got] == list(range(1, 14))
    assert got[0]["fields"] == {"spi": 1706538977, "seq": 0, "ok": True}
    assert store.audit_exported()[0] == 13
    assert [x["hash"] for x in got[-1:]] == [store.verify_audit().head]


def test_each_pass_reports_its_duration_and_a_pass_longer_than_the_interval_is_said_once(
    store: RedisStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What the operator watches as the chains grow (``audit_export_pass_duration_seconds``): each successful pass
    reports how long it took; one that took longer than the interval logs a warning, once until passes are short
    again."""
    took: list[float] = []
    fill(store, 5)
    ex = AuditExporter(
        store, [JsonLinesSink(tmp_path / "a.jsonl")], interval=60.0, clock=time.time, on_pass=took.append
    )
    caplog.set_level("WARNING", logger="aaa_fmip.audit")
    ex._pass()
    assert len(took) == 1 and 0 < took[0] < 60.0
    assert not [r for r in caplog.records if getattr(r, "event", None) == "audit-export-slow"]
    ex.interval = 1e-9  # every pass is now longer than the interval
    for _ in range(3):
        ex._pass()
    slow = [r for r in caplog.records if getattr(r, "event", None) == "audit-export-slow"]
    assert len(took) == 4 and len(slow) == 1 and getattr(slow[0], "interval", None) == 1e-9
    ex.interval = 60.0
    ex._pass()
    ex.interval = 1e-9
    ex._pass()  # slow again after a short one: said again
    assert len([r for r in caplog.records if getattr(r, "event", None) == "audit-export-slow"]) == 2


def test_retention_runs_with_the_full_passes_and_a_failed_pass_makes_the_next_full(
    store: RedisStore, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Retention verifies the whole trail before it trims: it runs with the full passes (the first, every
    FULL_PASS_EVERY-th, and the one after a failed pass), not every few seconds."""
    stream = f"{store.ops.p}:{{audit}}:stream"

    def kept() -> int:
        return int(redis.Redis.from_url(redis_server.url).xlen(stream))

    class FailOnce(JsonLinesSink):
        fail = False

        def write(self, lines: Sequence[Line]) -> None:
            if self.fail:
                self.fail = False
                raise OSError("no space left on device")
            super().write(lines)

    sink = FailOnce(tmp_path / "audit.jsonl")
    ex = AuditExporter(store, [sink], retain=2, clock=time.time)
    fill(store, 6)
    ex._pass()  # the first: full, exports and trims
    assert kept() == 2
    fill(store, 3, start=6)
    ex._pass()
    assert len(lines(tmp_path / "audit.jsonl")) == 9 and kept() == 5  # exported, not trimmed
    for _ in range(FULL_PASS_EVERY - 2):
        ex._pass()
    assert kept() == 5
    ex._pass()  # the FULL_PASS_EVERY-th
    assert kept() == 2
    ex._pass()
    fill(store, 2, start=9)
    sink.fail = True
    ex._pass()  # fails: nothing recorded
    assert kept() == 4 and len(lines(tmp_path / "audit.jsonl")) == 9
    ex._pass()  # full again
    assert kept() == 2 and len(lines(tmp_path / "audit.jsonl")) == 11


def test_a_crash_between_writing_and_recording_does_not_duplicate_lines(
    store: RedisStore, redis_server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    fill(store, 5)
    exporter(store, path).export_once()
    # As if the process died after the file's fsync, before the position reached Redis.
    redis.Redis.from_url(redis_server.url).delete(f"{store.prefix}:{{audit}}:exported")
    fill(store, 2, start=5)
    exporter(store, path).export_once()  # a new exporter reads the file's last line
    assert [x["n"] for x in lines(path)] == [1, 2, 3, 4, 5, 6, 7]


def test_a_forged_entry_stops_the_export_before_it(
    store: RedisStore, redis_server: RedisServer, tmp_path: Path
) -> None:
    raw = redis.Redis.from_url(redis_server.url)
    path = tmp_path / "audit.jsonl"
    fill(store, 3)
    stream = f"{store.prefix}:{{audit}}:stream"
    rows = cast(list[tuple[bytes, dict[bytes, bytes]]], raw.xrange(stream))
    body = dict(rows[-1][1])
    body[b"n"], body[b"prev"], body[b"mac"] = b"4", body[b"mac"], b"ab" * 32  # linked, but no MAC of ours
    raw.xadd(stream, body)  # type: ignore[arg-type]  # redis-py's stub: bytes keys are fine at run time
    with pytest.raises(StoreError, match="does not verify"):
        exporter(store, path).export_once()
    assert [x["n"] for x in lines(path)] == [1, 2, 3]


def test_verify_export_checks_macs_and_gaps(store: RedisStore, kek_ring: KekRing, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    fill(store, 6)
    exporter(store, path).export_once()
    text = path.read_text().splitlines()
    check = verify_export(text, kek_ring)
    assert check.ok and check.lines == 6 and check.n == 6
    assert verify_export(text[2:], kek_ring).ok  # a rotated file may start anywhere
    edited = json.loads(text[3])
    edited["fields"]["seq"] = 99
    bad = [*text[:3], json.dumps(edited), *text[4:]]
    assert verify_export(bad, kek_ring).line_number == 4
    gap = verify_export([*text[:2], *text[3:]], kek_ring)
    assert not gap.ok and gap.line_number == 3 and gap.problem and "gap" in gap.problem
    cp = store.checkpoint(now=time.time())
    assert verify_export(text, kek_ring, checkpoint=(cp.n, cp.head)).ok
    assert not verify_export(text[:4], kek_ring, checkpoint=(cp.n, cp.head)).ok


def test_retention_trims_only_exported_entries_and_the_rest_still_verifies(
    store: RedisStore, redis_server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    fill(store, 5)
    early = store.checkpoint(now=time.time())  # n = 5
    fill(store, 5, start=5)
    ex = exporter(store, path, retain=4)
    ex.export_once()
    fill(store, 3, start=10)  # not exported: never trimmed
    assert ex.trim() == 9  # the newest 4 of 13 stay, and only exported ones (1..10) may go: 1..9
    check = store.verify_audit()
    assert check.ok and check.first_n == 10 and check.n == 13 and check.entries == 4
    assert ex.trim() == 0
    older = store.verify_audit(early)
    assert older.ok and older.checkpoint and older.checkpoint.startswith("older than the retained trail")
    anchor_n = store.verify_audit().first_n - 1
    entries = [x for x in lines(path) if x["n"] == anchor_n]
    assert entries and store.verify_audit(store.sign_checkpoint(anchor_n, str(entries[0]["hash"]), 1.0)).ok
    # The anchor is signed: replacing it (say by a later one, to hide entries) breaks verification.
    raw = redis.Redis.from_url(redis_server.url)
    anchor_key = f"{store.prefix}:{{audit}}:anchor"
    doc = json.loads(raw.get(anchor_key))  # type: ignore[arg-type]
    doc["n"] = 7
    raw.set(anchor_key, json.dumps(doc))
    assert not store.verify_audit().ok


def test_nothing_is_trimmed_before_it_is_exported(store: RedisStore) -> None:
    fill(store, 10)
    assert store.trim_audit(keep=1, now=time.time()) == 0
    assert store.verify_audit().entries == 10


# --- syslog, to a real rsyslogd --------------------------------------------------------------------------------


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """rsyslogd in the foreground, UDP and TCP inputs on loopback, writing every message received in the RFC 5424
    format to a file."""
    binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    udp, tcp = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    out = tmp_path / "received.log"
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(
        f'global(workDirectory="{tmp_path}")\n'
        'module(load="imudp")\nmodule(load="imtcp")\n'
        f'input(type="imudp" address="127.0.0.1" port="{udp}")\n'
        f'input(type="imtcp" address="127.0.0.1" port="{tcp}")\n'
        f'action(type="omfile" file="{out}" template="RSYSLOG_SyslogProtocol23Format")\n'
    )
    proc = subprocess.Popen(
        [binary, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid")],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "rsyslog.err").open("wb"),
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", tcp), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("rsyslogd did not start: " + (tmp_path / "rsyslog.err").read_text()) from None
                time.sleep(0.05)
        yield udp, tcp, out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _received(out: Path, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
        if len(got) >= count:
            return got
        time.sleep(0.1)
    return out.read_text(encoding="utf-8").splitlines() if out.exists() else []


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_syslog_export_reaches_rsyslog_as_rfc5424(
    transport: str, store: RedisStore, kek_ring: KekRing, rsyslog: tuple[int, int, Path]
) -> None:
    udp, tcp, out = rsyslog
    port = udp if transport == "udp" else tcp
    fill(store, 4)
    sink = SyslogSink(f"{transport}://127.0.0.1:{port}")
    try:
        assert AuditExporter(store, [sink], clock=time.time).export_once() == 4
    finally:
        sink.close()
    got = _received(out, 4)
    assert len(got) == 4, got
    bodies = []
    for line in got:
        # <PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID SD MSG, as rsyslog parsed and re-rendered it
        head, _ts, _host, app, _procid, msgid, sd, msg = line.split(" ", 7)
        assert head == "<86>1"  # PRI: facility authpriv (10) * 8 + informational (6); VERSION 1
        assert (app, msgid, sd) == ("aaa-fmip", "audit", "-")
        bodies.append(msg.lstrip("\ufeff"))
    check = verify_export(bodies, kek_ring)  # the copy the syslog server keeps verifies on its own
    assert check.ok and check.n == 4

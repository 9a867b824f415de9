"""bench_mih runs end to end and every request gets its answer (it reports speed; this test never times it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.service_proc import REPO_ROOT, clean_env

TRANSPORTS = ("tcp", "udp", "tls-psk", "dtls-psk")


@pytest.mark.slow  # a redis-server, the key service and two MoS processes
def test_bench_mih_runs_and_every_answer_is_right() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "bench_mih", "--requests", "40", "--clients", "1", "3", "--first", "3"],
        cwd=REPO_ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    table, first = done.stdout.split("time to the first answer")
    rows = [line.split() for line in table.splitlines() if line.startswith(tuple(t + " " for t in TRANSPORTS))]
    assert [(r[0], r[1], r[2]) for r in rows] == [(t, c, "40") for t in TRANSPORTS for c in ("1", "3")]
    assert all(r[7] == "0" for r in rows)  # errors
    sessions = [line.split() for line in first.splitlines() if line.startswith(tuple(t + " " for t in TRANSPORTS))]
    assert [(s[0], s[1]) for s in sessions] == [(t, "3") for t in TRANSPORTS]
    assert any(line.startswith("key-fetch ") for line in first.splitlines())

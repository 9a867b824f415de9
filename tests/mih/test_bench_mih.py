"""bench_mih runs end to end and every request gets its answer (it reports speed; this test never times it)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.service_proc import REPO_ROOT, clean_env


def test_bench_mih_runs_and_every_answer_is_right() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "bench_mih", "--requests", "40", "--clients", "1", "3"],
        cwd=REPO_ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("tcp ", "udp "))]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("tcp", "1", "40"),
        ("tcp", "3", "40"),
        ("udp", "1", "40"),
        ("udp", "3", "40"),
    ]
    assert all(r[7] == "0" for r in rows)  # errors

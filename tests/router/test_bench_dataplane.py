"""bench/bench_dataplane.py runs end to end and reports every run (tests never look at how fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.service_proc import REPO_ROOT, clean_env


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs these as root)")
def test_bench_dataplane_reports_every_run(tmp_path: Path) -> None:
    out = tmp_path / "dataplane.json"
    args = ["--runs", "1", "--packets", "600", "--modes", "off,predictive-buffered", "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "dataplane", *args],
        cwd=REPO_ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert [r["mode"] for r in runs] == ["off", "predictive-buffered"]
    for run in runs:
        assert run["sent"] == 600 and run["received"] + run["lost"] == 600
        assert isinstance(run["longest_gap_ms"], float)
    assert "predictive-buffered" in proc.stdout and "every run" in proc.stdout

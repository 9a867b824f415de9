"""bench/bench_router.py runs end to end and reports every number (tests never look at how fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.service_proc import REPO_ROOT, clean_env


def test_bench_router_reports(tmp_path: Path) -> None:
    out = tmp_path / "router.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "router", "--count", "200", "--repeat", "2", "--keys", "8", "--json", str(out)],
        cwd=REPO_ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    for key in ("hmac_sha1_96_floor_per_s", "verify_memory_per_s", "verify_journal_per_s", "par_core_fbu_to_hi_per_s"):
        assert isinstance(doc[key], int) and doc[key] > 0
    assert "verify costs" in proc.stdout

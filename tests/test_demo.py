"""`aaa-fmip demo` plays the whole story against a real service it starts (embedded Redis)."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_every_step_as_designed() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aaa_fmip.cli", "demo"], capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "demo finished: all steps as expected" in out
    for verdict in ('"verdict": "accepted"', '"verdict": "retransmission"', '"reason": "replay"'):
        assert verdict in out
    assert '"reason": "bad-authenticator"' in out and "HTTP 403" in out and '"ok": true' in out
    assert "UNEXPECTED" not in out


def test_demo_help_explains_modes() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aaa_fmip.cli", "demo", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert "--write-config" in proc.stdout and "--url" in proc.stdout

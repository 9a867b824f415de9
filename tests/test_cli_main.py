"""``python -m aaa_fmip`` is the ``aaa-fmip`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import aaa_fmip

ROOT = Path(aaa_fmip.__file__).resolve().parent.parent


def test_python_m_runs_the_command_line() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "aaa_fmip", "--version"], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0 and done.stdout.strip() == f"aaa-fmip {aaa_fmip.__version__}"
    unknown = subprocess.run(
        [sys.executable, "-m", "aaa_fmip", "no-such-command"], capture_output=True, text=True, timeout=60, env=env
    )
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr

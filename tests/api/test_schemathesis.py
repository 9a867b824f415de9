"""Property-based checks of the whole OpenAPI description with schemathesis, against the real service: for each
role, generated requests (valid, boundary and malformed) never get a 5xx, and every answer has a status code and
content type the description declares (errors: application/problem+json)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.api._deploy import Deployment

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance"


@pytest.mark.slow
@pytest.mark.parametrize("role", ["ar1", "aaa", "auditor", "admin"])
def test_openapi_fuzzed_per_role(deployment: Deployment, role: str, tmp_path: Path) -> None:
    credential = getattr(deployment, role)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{deployment.service.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {credential.token}",
            "--checks",
            CHECKS,
            "--max-examples",
            "30",
            "--seed",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "10",
        ],
        cwd=tmp_path,  # schemathesis keeps its example database in the working directory
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
    assert credential.token not in deployment.service.logs()

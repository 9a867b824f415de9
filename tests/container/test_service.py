"""The image as an operator runs it: embedded store and KEK in the volume, /readyz, the health check, the whole
demo over the published port, a clean stop on SIGTERM, and the same KEK and data after the container is replaced."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from aaa_fmip.commands.demo import write_config
from aaa_fmip.commands.rest import GRACEFUL_SHUTDOWN_SECONDS
from tests.container._podman import REPO, Cleanup, Podman, free_port, log_events, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# `podman stop --time`: SIGTERM, then SIGKILL after this many seconds. The service promises to be gone within its
# graceful-shutdown time (the HTTP drain's bound; closing the store and the embedded Redis's save take
# milliseconds), well inside the engines' default of 10 s.
STOP_TIMEOUT = GRACEFUL_SHUTDOWN_SECONDS


def _start(podman: Podman, image: str, name: str, volume: str, config_dir: Path, port: int) -> None:
    podman.run(
        "run", "--detach", "--name", name,
        "--publish", f"127.0.0.1:{port}:8080",
        "--volume", f"{volume}:/var/lib/aaa-fmip",
        "--volume", f"{config_dir}:/etc/aaa-fmip:ro",
        "--env", "AAA_FMIP_CONFIG=/etc/aaa-fmip/config.toml",
        image,
    )  # fmt: skip


def test_embedded_store_demo_health_check_and_sigterm(
    podman: Podman, image: str, cleanup: Cleanup, tmp_path: Path
) -> None:
    config_dir = tmp_path / "config"
    write_config(config_dir)
    config_dir.chmod(0o755)
    (config_dir / "config.toml").chmod(0o644)  # read by the image's user (tokens.json stays 0600, host-side)
    suffix = secrets.token_hex(4)
    name, volume, port = f"aaa-fmip-test-{suffix}", f"aaa-fmip-test-data-{suffix}", free_port()
    cleanup.containers.append(name)
    cleanup.volumes.append(volume)
    _start(podman, image, name, volume, config_dir, port)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, podman, name)

    started = [e for e in log_events(podman.logs(name)) if e.get("event") == "starting"]
    assert started and started[0]["store"] == "embedded" and started[0]["store_at"] == "/var/lib/aaa-fmip/data"
    kek_id = started[0]["kek_id"]
    # The KEK was created in the volume, readable by the service's user only.
    stat = podman.run("exec", name, "stat", "-c", "%a %U", "/var/lib/aaa-fmip/data/kek").stdout.split()
    assert stat == ["600", "aaa-fmip"]

    # The image's own health check, as the engine runs it.
    health = podman.run("healthcheck", "run", name, check=False)
    assert health.returncode == 0, health.stdout + health.stderr

    demo = subprocess.run(
        [sys.executable, "-m", "aaa_fmip.cli", "demo", "--url", base, "--tokens", str(config_dir / "tokens.json")],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "demo finished: all steps as expected" in demo.stdout and "UNEXPECTED" not in demo.stdout

    # SIGTERM (podman stop): exit status 0 means the service stopped by itself; had it still been running after
    # STOP_TIMEOUT seconds, podman would have killed it (137).
    podman.run("stop", "--time", str(STOP_TIMEOUT), name, timeout=STOP_TIMEOUT + 60)
    state = podman.inspect("container", name)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 0, state
    stopped = [e for e in log_events(podman.logs(name)) if e.get("event") == "stopped"]
    assert stopped and stopped[-1]["signal"] == "SIGTERM"

    # A new container on the same volume finds the same KEK (and so can unwrap what the first one stored).
    podman.run("rm", name)  # the volume stays; the replacement has the same name
    port = free_port()
    _start(podman, image, name, volume, config_dir, port)
    wait_ready(f"http://127.0.0.1:{port}", podman, name)
    restarted = [e for e in log_events(podman.logs(name)) if e.get("event") == "starting"]
    assert restarted and restarted[0]["kek_id"] == kek_id

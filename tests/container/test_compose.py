"""docker/compose.yaml itself, run by podman-compose: the service against a Redis container with the append-only
file on, and a restart of that Redis container that the service and its sessions survive.

The compose file is used as shipped (copied beside its config/ and secrets/, which it mounts relative to itself);
only the variables it documents are set: the local images (no registry here) and the published port.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

import pytest

from aaa_fmip import keys
from aaa_fmip.commands.demo import PAR1, write_config
from tests.container._podman import (
    REDIS_IMAGE,
    REPO,
    Podman,
    call,
    free_port,
    wait_logged,
    wait_ready,
    write_kek,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SERVICE_UID = 10001  # the image's user (docker/Dockerfile)


def _container(podman: Podman, project: str, service: str) -> str:
    names = podman.run(
        "ps", "--all", "--format", "{{.Names}}",
        "--filter", f"label=io.podman.compose.project={project}",
        "--filter", f"label=io.podman.compose.service={service}",
    ).stdout.split()  # fmt: skip
    assert len(names) == 1, names
    return names[0]


def _redis(podman: Podman, container: str, *command: str) -> str:
    return podman.run("exec", container, "redis-cli", *command).stdout.strip()


def test_compose_with_redis_aof_survives_a_redis_restart(podman: Podman, image: str, tmp_path: Path) -> None:
    shutil.copy(REPO / "docker" / "compose.yaml", tmp_path / "compose.yaml")
    tokens = write_config(tmp_path / "config")
    (tmp_path / "config").chmod(0o755)
    (tmp_path / "config" / "config.toml").chmod(0o644)
    write_kek(tmp_path / "secrets" / "kek", SERVICE_UID)
    project = f"aaa-fmip-test-{secrets.token_hex(4)}"
    port = free_port()
    podman.env.update(REDIS_IMAGE=REDIS_IMAGE, AAA_FMIP_IMAGE=image, AAA_FMIP_PUBLISH=f"127.0.0.1:{port}")
    compose = ("-p", project, "-f", str(tmp_path / "compose.yaml"))
    volumes: set[str] = set()
    try:
        podman.compose(*compose, "up", "--detach", "--no-build", cwd=tmp_path)
        service, redis = _container(podman, project, "aaa-fmip"), _container(podman, project, "redis")
        for container in (service, redis):
            volumes.update(m["Name"] for m in podman.inspect("container", container)["Mounts"] if m.get("Name"))
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, podman, service)

        started = wait_logged(podman, service, "starting")  # worker 0 says it; another may have answered /readyz
        assert started["store"] == "redis" and started["store_at"] == "redis:6379/0"
        assert _redis(podman, redis, "CONFIG", "GET", "appendonly").split() == ["appendonly", "yes"]

        # A session, and the handover key AR1 gets for it.
        emsk, eap_session_id = os.urandom(64), b"\x0d" + os.urandom(64)
        status, body = call(
            base,
            "POST",
            "/v1/sessions",
            tokens["aaa"],
            {"emsk": emsk.hex(), "eap_session_id": eap_session_id.hex(), "user_name": "alice"},
        )
        assert status == 201, body
        master = keys.derive_hmk(emsk, eap_session_id)
        expected = keys.derive_hk(master.hmk, master.hmk_name, PAR1, master.spi).hk.hex()
        query = {"ar_address": str(PAR1), "spi": master.spi}
        status, body = call(base, "POST", "/v1/handover-keys", tokens["ar1"]["token"], query)
        assert status == 200 and body["hk"] == expected

        # Restart the Redis container (compose's own verb); with appendonly it reloads from the AOF.
        run_id = _redis(podman, redis, "INFO", "server")
        service_started = podman.inspect("container", service)["State"]["StartedAt"]
        podman.compose(*compose, "restart", "redis", cwd=tmp_path)
        deadline = time.monotonic() + 60
        while _redis(podman, redis, "PING") != "PONG":
            assert time.monotonic() < deadline, "Redis did not come back within 60 s"
            time.sleep(0.2)
        assert _redis(podman, redis, "INFO", "server") != run_id  # a new redis-server process (run_id differs)
        assert "aof_enabled:1" in _redis(podman, redis, "INFO", "persistence")

        # The service was not restarted, reconnects by itself, and the session is intact.
        wait_ready(base, podman, service)
        assert podman.inspect("container", service)["State"]["StartedAt"] == service_started
        status, body = call(base, "POST", "/v1/handover-keys", tokens["ar1"]["token"], query)
        assert status == 200 and body["hk"] == expected
    finally:
        podman.compose(*compose, "down", "--volumes", "--timeout", "10", check=False, cwd=tmp_path)
        for key in ("REDIS_IMAGE", "AAA_FMIP_IMAGE", "AAA_FMIP_PUBLISH"):
            podman.env.pop(key, None)
        # Whatever compose left (e.g. the service image's anonymous volume): containers, network, volumes.
        leftovers = podman.run(
            "ps", "--all", "--quiet", "--filter", f"label=io.podman.compose.project={project}", check=False
        ).stdout.split()
        for container in leftovers:
            podman.run("rm", "--force", "--volumes", "--time", "0", container, check=False)
        podman.run("network", "rm", "--force", f"{project}_default", check=False)
        for volume in volumes | {f"{project}_redis-data"}:
            podman.run("volume", "rm", "--force", volume, check=False)

"""Driving podman (and podman-compose) from the container tests: every call bounded, failures with the output."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUILD_IMAGE = REPO / "scripts" / "build-image"
PODMAN_LIMITS = REPO / "scripts" / "podman-limits"
REDIS_IMAGE = "localhost/aaa-fmip-redis:bookworm"


class Podman:
    """podman with the environment the tests need (e.g. CONTAINERS_CONF where limits cannot be raised)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)

    def run(
        self, *args: str, timeout: float = 120, check: bool = True, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.exec(["podman", *args], timeout=timeout, check=check, cwd=cwd)

    def compose(
        self, *args: str, timeout: float = 180, check: bool = True, cwd: Path
    ) -> subprocess.CompletedProcess[str]:
        return self.exec([sys.executable, "-m", "podman_compose", *args], timeout=timeout, check=check, cwd=cwd)

    def exec(
        self, cmd: Sequence[str], *, timeout: float, check: bool, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, env=self.env, cwd=cwd, check=False
        )
        if check and proc.returncode != 0:
            output = f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}"
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{output}")
        return proc

    def inspect(self, what: str, name: str) -> dict[str, Any]:
        out = self.run(what, "inspect", name).stdout
        data: list[dict[str, Any]] = json.loads(out)
        return data[0]

    def image_ids(self) -> set[str]:
        return set(self.run("images", "--quiet", "--no-trunc").stdout.split())

    def untagged(self, image_ids: set[str]) -> list[str]:
        """Those of image_ids that still exist and have no name."""
        found = []
        for image_id in image_ids:
            proc = self.run("image", "inspect", "--format", "{{len .RepoTags}}", image_id, check=False)
            if proc.returncode == 0 and proc.stdout.strip() == "0":
                found.append(image_id)
        return found

    def logs(self, name: str) -> str:
        proc = self.run("logs", name, check=False)
        return proc.stdout + proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_status(url: str, timeout: float = 3) -> int | None:
    """The HTTP status of GET url, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return None


def call(base: str, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return int(resp.status), json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return int(err.code), json.loads(raw) if raw else None


def wait_ready(base: str, podman: Podman, container: str, timeout: float = 90) -> None:
    """Until /readyz answers 200; fails early with the container's log if the container stops."""
    deadline = time.monotonic() + timeout
    while True:
        if http_status(base + "/readyz") == 200:
            return
        state = podman.inspect("container", container)["State"]
        if not state.get("Running"):
            raise AssertionError(f"{container} is not running ({state.get('Status')}):\n{podman.logs(container)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{base}/readyz not 200 within {timeout} s:\n{podman.logs(container)[-3000:]}")
        time.sleep(0.2)


def wait_logged(podman: Podman, container: str, event: str, timeout: float = 30) -> dict[str, Any]:
    """The first log line of ``event``, once the container has written it (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in log_events(podman.logs(container)) if e.get("event") == event]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {event!r} line within {timeout} s:\n{podman.logs(container)[-3000:]}")
        time.sleep(0.2)


def log_events(text: str) -> list[dict[str, Any]]:
    """The service's JSON log lines (anything else, e.g. podman's own messages, is skipped)."""
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    pip_canary: str  # a pip setting only the build secrets carried
    build_stages: list[str]  # untagged images the multi-stage build left (ids)
    build_log: str


@dataclass
class Cleanup:
    """Containers (by name) and volumes a test creates: removed at its end, whatever happens."""

    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)


def write_kek(path: Path, uid: int) -> None:
    """A KEK file only the service's user can read, as docker/compose.yaml asks for."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(os.urandom(32).hex() + "\n")
    path.chmod(0o600)
    os.chown(path, uid, -1)

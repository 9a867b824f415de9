"""``aaa-fmip serve`` as a real subprocess on a free loopback port, for tests of every adapter.

    creds = [Credential.new("ar", "ar1", ["2001:db8::1"]), Credential.new("aaa", "radius")]
    config = render_config(store_url=redis.url, prefix="t1", credentials=creds)
    with ServiceProcess(tmp_path, config=config, env={"AAA_FMIP_KEK": random_kek()}) as svc:
        svc.client(creds[0]).post("/v1/handover-keys", json={...})

Every wait is bounded; a process that fails to come up raises :class:`ServiceFailed` with the tail of its log.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from tests.support.redis_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


class ServiceFailed(RuntimeError):
    pass


def random_kek() -> str:
    """A KEK for AAA_FMIP_KEK (64 hex digits)."""
    return secrets.token_hex(32)


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Credential:
    """A caller of the REST API: its token and the configuration entry that admits it."""

    role: Literal["ar", "aaa", "auditor", "admin"]
    name: str
    token: str = field(repr=False)
    addresses: tuple[str, ...] = ()
    diameter_identity: str | None = None

    @classmethod
    def new(
        cls,
        role: Literal["ar", "aaa", "auditor", "admin"],
        name: str,
        addresses: Iterable[str] = (),
        *,
        diameter_identity: str | None = None,
    ) -> Credential:
        return cls(role, name, secrets.token_urlsafe(32), tuple(addresses), diameter_identity)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def token_sha256(self) -> str:
        return hashlib.sha256(self.token.encode()).hexdigest()

    def toml(self) -> str:
        if self.role == "ar":
            lines = [
                "[[access_routers]]",
                f"name = {_toml_str(self.name)}",
                "addresses = [" + ", ".join(_toml_str(a) for a in self.addresses) + "]",
                f'token_sha256 = "{self.token_sha256}"',
            ]
            if self.diameter_identity:
                lines.append(f"diameter_identity = {_toml_str(self.diameter_identity)}")
        else:
            lines = [
                "[[clients]]",
                f"name = {_toml_str(self.name)}",
                f'role = "{self.role}"',
                f'token_sha256 = "{self.token_sha256}"',
            ]
        return "\n".join(lines) + "\n"


def render_config(
    *,
    store_url: str = "",
    prefix: str | None = None,
    data_dir: str | Path | None = None,
    timeout: float | None = None,
    credentials: Sequence[Credential] = (),
    keys: Mapping[str, Any] | None = None,
    extra: str = "",
) -> str:
    """A configuration file for the common cases; ``extra`` is appended verbatim (more tables)."""
    store = [f"url = {_toml_str(store_url)}"]
    if prefix is not None:
        store.append(f"prefix = {_toml_str(prefix)}")
    if data_dir is not None:
        store.append(f"data_dir = {_toml_str(str(data_dir))}")
    if timeout is not None:
        store.append(f"timeout = {timeout}")
    parts = ["[store]", *store, ""]
    if keys:
        parts.append("[keys]")
        for name, value in keys.items():
            parts.append(f"{name} = {_toml_str(value) if isinstance(value, str) else value}")
        parts.append("")
    parts += [c.toml() for c in credentials]
    parts.append(extra)
    return "\n".join(parts)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without AAA_FMIP_* variables, with this checkout importable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AAA_FMIP_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "aaa_fmip.cli", *args]


def run_cli(
    *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``aaa-fmip ARGS`` to completion (bounded) and capture its output."""
    return subprocess.run(
        cli_command(*args),
        cwd=cwd or REPO_ROOT,
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ServiceProcess:
    """One ``aaa-fmip serve`` process. ``config`` None: no configuration file at all (the defaults).

    The process runs in ``workdir`` (so the default data directory is ``workdir/aaa-fmip-data``) and logs to
    ``workdir/serve.log``. ``wait`` chooses what :meth:`start` waits for: ``"ready"`` (``/readyz`` 200, the
    store answers) or ``"live"`` (``/healthz`` 200, e.g. when the store is meant to be down).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        config: str | None = None,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        args: Sequence[str] = (),
        https: bool = False,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``https`` and ``client_options`` (httpx.Client keyword arguments: ``verify``, ``cert``) are for a
        service configured with TLS; the readiness probe uses them too."""
        self.workdir = workdir
        self.https = https
        self.client_options = dict(client_options or {})
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = workdir / "aaa-fmip.toml"
            self.config_path.write_text(config, encoding="utf-8")
        self.env = dict(env or {})
        self._fixed_port = port
        self.port = port or free_port()
        self.args = tuple(args)
        self.log_path = workdir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = cli_command("serve", "--listen", f"127.0.0.1:{self.port}", *self.args)
        if "--workers" not in self.args:
            cmd += ["--workers", "1"]  # one process unless a test asks for more (its limits are per process)
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        return cmd

    def start(self, *, wait: Literal["ready", "live"] = "ready", timeout: float = 30.0) -> ServiceProcess:
        for attempt in range(3):
            self._spawn()
            try:
                self.wait_until(wait, timeout=timeout)
                return self
            except ServiceFailed:
                if self._fixed_port is None and attempt < 2 and "address already in use" in self.logs().lower():
                    self.port = free_port()  # lost a race for the port: try another
                    continue
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env=clean_env(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        self.returncode = None

    def wait_until(self, what: Literal["ready", "live"] = "ready", *, timeout: float = 30.0) -> None:
        """Poll ``/readyz`` (or ``/healthz``) until 200; ServiceFailed if the process exits or time runs out."""
        path = "/readyz" if what == "ready" else "/healthz"
        deadline = time.monotonic() + timeout
        last = "no answer"
        with httpx.Client(base_url=self.url, timeout=2.0, **self.client_options) as client:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    code = None if self.proc is None else self.proc.returncode
                    raise ServiceFailed(f"aaa-fmip serve exited ({code}) before {what}:\n{self.log_tail()}")
                try:
                    response = client.get(path)
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.05)
        raise ServiceFailed(f"aaa-fmip serve not {what} within {timeout} s (last: {last}):\n{self.log_tail()}")

    def stop(self, *, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal the process and wait (bounded; killed after ``timeout``). Returns its exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self.returncode = proc.returncode
        return self.returncode

    def restart(self, *, wait: Literal["ready", "live"] = "ready", timeout: float = 30.0) -> ServiceProcess:
        self.stop()
        return self.start(wait=wait, timeout=timeout)

    def __enter__(self) -> ServiceProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- use -----------------------------------------------------------------------------------------------

    def client(self, credential: Credential | None = None, *, timeout: float = 10.0) -> httpx.Client:
        """An HTTP client for this service, authenticated as ``credential`` when given."""
        headers = credential.headers if credential is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout, **self.client_options)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.logs().splitlines()[-lines:])

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (other lines skipped)."""
        records = []
        for line in self.logs().splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                records.append(value)
        return records

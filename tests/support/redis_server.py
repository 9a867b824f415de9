"""A real redis-server on loopback for tests: started, stopped and restarted with bounded waits."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str:
    for candidate in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("redis-server is not installed: run scripts/install-deps")


class RedisServer:
    """One redis-server process with its data in ``directory``; ``url`` is stable across restarts.

    It runs as docs/configuration.md asks (append-only file, ``appendfsync everysec``), or the service would
    refuse FBUs. ``persist=False``: each start begins with an empty data set (the files are removed first);
    ``persist=True``: the data set survives restarts (RDB snapshots too). ``args`` are appended last (they win).
    """

    def __init__(
        self, directory: Path, *, port: int | None = None, persist: bool = False, args: Sequence[str] = ()
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.persist = persist
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        args += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", "1 1" if self.persist else ""]
        if not self.persist:
            for name in ("appendonly.aof", "appendonlydir", "dump.rdb"):
                shutil.rmtree(self.directory / name, ignore_errors=True)
                (self.directory / name).unlink(missing_ok=True)
        args += self.args
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: see {self.directory / 'redis.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)
        self.proc = None

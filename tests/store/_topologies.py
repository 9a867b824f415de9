"""Real Redis Cluster and Redis Sentinel deployments on loopback, for running the store against every topology.

Each starts real redis-server processes (cluster mode, sentinel mode) with every wait bounded.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from pathlib import Path

import redis

from tests.support.redis_server import RedisServer, free_port, redis_binary


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = 20000 + secrets.randbelow(30000)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready within {timeout} s")


class _Proc:
    def __init__(self, directory: Path, args: list[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        log = (directory / "server.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=directory)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class RedisClusterDeployment:
    """Three cluster-mode masters (no replicas) with all 16384 slots assigned, each with an append-only file."""

    def __init__(self, directory: Path, nodes: int = 3) -> None:
        self.directory = directory
        self.ports = [_cluster_port() for _ in range(nodes)]
        self.procs: list[_Proc] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:2])

    def start(self) -> None:
        for port in self.ports:
            d = self.directory / str(port)
            args = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d)]
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            args += ["--cluster-node-timeout", "5000"]
            args += ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]  # as docs/configuration.md asks
            self.procs.append(_Proc(d, args))
        for port in self.ports:
            _wait(lambda port=port: redis.Redis(port=port, socket_timeout=0.5).ping(), 10, f"cluster node {port}")
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )

        def all_ok() -> bool:
            return all(
                redis.Redis(port=p, socket_timeout=0.5).cluster("info")["cluster_state"] == "ok" for p in self.ports
            )

        _wait(all_ok, 20, "redis cluster")

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


class RedisSentinelDeployment:
    """One master and one sentinel monitoring it as service ``fmip``."""

    service = "fmip"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.master = RedisServer(directory / "master")
        self.sentinel_port = free_port()
        self.proc: _Proc | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.service}/0"

    def start(self) -> None:
        self.master.start()
        d = self.directory / "sentinel"
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {d}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
        )
        self.proc = _Proc(d, [redis_binary(), str(conf), "--sentinel"])

        def knows_master() -> bool:
            s = redis.Redis(port=self.sentinel_port, socket_timeout=0.5)
            return s.sentinel_get_master_addr_by_name(self.service) is not None

        _wait(knows_master, 10, "redis sentinel")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        self.master.stop()

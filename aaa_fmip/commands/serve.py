"""``aaa-fmip serve``: the key service (REST, and Diameter when ``[diameter]`` is configured).

With no configuration at all it starts on 127.0.0.1:8080 with the embedded Redis and a KEK created in
``./aaa-fmip-data``. SIGTERM and SIGINT stop it promptly: the HTTP server drains (bounded), the listeners stop,
the store is closed and the embedded Redis saves and exits; the exit status is then 0.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import ipaddress
import logging
import os
import signal
import ssl
import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final, Protocol

import uvicorn

from aaa_fmip.config import ENV_CONFIG, Settings, load_settings, resolve_config_path
from aaa_fmip.errors import AaaFmipError
from aaa_fmip.logging import configure_logging

if TYPE_CHECKING:
    from aaa_fmip.bootstrap import Runtime

# The service stack is imported when the command runs, so that other commands (and --help) neither pay for nor
# depend on it.

log = logging.getLogger("aaa_fmip.serve")

GRACEFUL_SHUTDOWN_SECONDS: Final = 5
TOKEN_HINT: Final = (
    "no access routers or clients are configured, so every /v1 request is refused (401). Create a token with "
    "`aaa-fmip token new --role ar --name ar1 --address 2001:db8::1` (or --role aaa|auditor|admin), paste the "
    f"lines it prints into a configuration file and start with --config FILE (or {ENV_CONFIG}=FILE)."
)


class ListenerHandle(Protocol):
    def stop(self) -> None: ...


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="run the key service (REST API; Diameter when configured)",
        description=(
            "Run the key service. Without a configuration file it listens on 127.0.0.1:8080 and keeps its data "
            "(embedded Redis, key-encryption key) in ./aaa-fmip-data. See docs/configuration.md."
        ),
    )
    parser.add_argument("--config", metavar="FILE", help=f"TOML configuration file (default: ${ENV_CONFIG})")
    parser.add_argument("--listen", metavar="HOST:PORT", help="REST listen address, overriding server.listen")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level.upper())
    path = resolve_config_path(args.config, os.environ)
    settings = load_settings(path, os.environ)
    if args.listen:
        settings = settings.with_listen(args.listen)
    return serve(settings)


def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    from aaa_fmip.api.app import create_app
    from aaa_fmip.bootstrap import build_runtime, check_store_at_start

    runtime = build_runtime(settings)
    listeners: list[tuple[str, ListenerHandle]] = []
    try:
        check_store_at_start(runtime)
        listeners = start_listeners(runtime)
        app = create_app(runtime)
        config = uvicorn.Config(
            app,
            host=settings.server.listen.host,
            port=settings.server.listen.port,
            log_config=None,  # our JSON handler (aaa_fmip.logging) formats uvicorn's records too
            access_log=False,  # the app logs one access line per request itself, without query strings
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            server_header=False,
            proxy_headers=False,
            **_tls_options(settings),
        )
        server = _Server(config)
        # What is loaded now (FastAPI, pydantic, redis-py, cryptography, the app: some 90,000 objects) lives as
        # long as the process. Move it out of the cyclic collector's reach: a full collection over it stalls every
        # request for tens of ms (docs/performance.md: the FBU p99.9 fell from 19-128 ms to 6-40 ms).
        gc.freeze()
        _log_startup(runtime)
        server.run()
        if not server.started:
            raise AaaFmipError(f"could not listen on {settings.server.listen} (in use, or not a local address?)")
        log.info("stopped", extra={"event": "stopped", "signal": server.stop_signal})
        return 0
    finally:
        for name, handle in reversed(listeners):
            try:
                handle.stop()
            except Exception as exc:
                log.error("listener did not stop cleanly", extra={"listener": name, "error": type(exc).__name__})
        runtime.close()


def _tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS options for ``[server]`` (RFC 6734 §4: keying material only over a protected transport)."""
    server = settings.server
    if not server.tls:
        if not _is_loopback(server.listen.host):
            log.warning(
                "the REST listener is not on a loopback address and has no TLS: handover keys would cross the "
                "network in clear; set server.tls_cert_file and server.tls_key_file",
                extra={"event": "no-tls", "listen": str(server.listen)},
            )
        return {}
    options: dict[str, Any] = {"ssl_certfile": str(server.tls_cert_file), "ssl_keyfile": str(server.tls_key_file)}
    if server.tls_client_ca_file is not None:
        options |= {"ssl_ca_certs": str(server.tls_client_ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start_listeners(runtime: Runtime) -> list[tuple[str, ListenerHandle]]:
    """Start the optional protocol listeners the settings ask for. Each module is imported only when it is
    configured and exposes ``start(runtime) -> handle`` with ``handle.stop()``."""
    started: list[tuple[str, ListenerHandle]] = []
    try:
        if runtime.settings.diameter is not None:
            started.append(("diameter", start_diameter(runtime)))
    except BaseException:
        for _name, handle in reversed(started):
            handle.stop()
        raise
    return started


def start_diameter(runtime: Runtime) -> ListenerHandle:
    """The Diameter listener of ``[diameter]`` (aaa_fmip.diameter.server)."""
    return _start_module("aaa_fmip.diameter.server", runtime)


def _start_module(module_name: str, runtime: Runtime) -> ListenerHandle:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise AaaFmipError(f"this installation has no {module_name} module for the configured listener") from None
    handle: ListenerHandle = module.start(runtime)
    return handle


def _log_startup(runtime: Runtime) -> None:
    settings = runtime.settings
    log.info(
        "starting",
        extra={
            "event": "starting",
            "listen": str(settings.server.listen),
            "store": runtime.store_kind,
            "store_at": str(settings.store.data_dir) if runtime.store_kind == "embedded" else runtime.store.where,
            "access_routers": len(settings.access_routers),
            "clients": len(settings.clients),
            "diameter": str(settings.diameter.listen) if settings.diameter else None,
            "config": str(settings.source) if settings.source else None,
            "kek_id": runtime.kek_ring.current.key_id,
            "gc_frozen": gc.get_freeze_count(),
        },
    )
    if not settings.access_routers and not settings.clients:
        log.warning(TOKEN_HINT, extra={"event": "unconfigured"})


class _Server(uvicorn.Server):
    """uvicorn re-raises the stopping signal after shutdown, which would kill the process before the store is
    closed; this variant records the signal and returns normally instead."""

    stop_signal: str | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: object) -> None:
        self.stop_signal = signal.Signals(sig).name
        self.handle_exit(sig, None)

"""The key service's REST listener and what runs beside it (Diameter, the audit export): started, limited and
stopped for ``aaa-fmip serve`` (one process) and for each of its workers (:mod:`aaa_fmip.commands.workers`).
SIGTERM and SIGINT stop it promptly: the HTTP server drains (bounded), the listeners stop, the store is closed
and the embedded Redis saves and exits."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib
import importlib.util
import ipaddress
import logging
import os
import resource
import signal
import ssl
import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final, Protocol

import uvicorn

from aaa_fmip.api.settings import LimitSettings
from aaa_fmip.config import ENV_CONFIG, Settings, load_settings, resolve_config_path
from aaa_fmip.errors import AaaFmipError

if TYPE_CHECKING:
    from aaa_fmip.bootstrap import Runtime

# The service stack is imported when the command runs, so that other commands (and --help) neither pay for nor
# depend on it.

log = logging.getLogger("aaa_fmip.serve")

GRACEFUL_SHUTDOWN_SECONDS: Final = 5
NOFILE_FALLBACK: Final = 1 << 20  # when the hard limit is "unlimited", as Linux's fs.nr_open default
TOKEN_HINT: Final = (
    "no access routers or clients are configured, so every /v1 request is refused (401). Create a token with "
    "`aaa-fmip token new --role ar --name ar1 --address 2001:db8::1` (or --role aaa|auditor|admin), paste the "
    f"lines it prints into a configuration file and start with --config FILE (or {ENV_CONFIG}=FILE)."
)


class ListenerHandle(Protocol):
    def stop(self) -> None: ...


def load_serve_settings(config: str | None, listen: str | None) -> Settings:
    path = resolve_config_path(config, os.environ)
    settings = load_settings(path, os.environ)
    return settings.with_listen(listen) if listen else settings


def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    from aaa_fmip.bootstrap import build_runtime, check_store_at_start

    runtime = build_runtime(settings)
    listeners: list[tuple[str, ListenerHandle]] = []
    try:
        check_store_at_start(runtime)
        listeners = start_listeners(runtime)
        return serve_rest(runtime)
    finally:
        stop_listeners(listeners)
        runtime.close()


def stop_listeners(listeners: list[tuple[str, ListenerHandle]]) -> None:
    for name, handle in reversed(listeners):
        try:
            handle.stop()
        except Exception as exc:
            log.error("listener did not stop cleanly", extra={"listener": name, "error": type(exc).__name__})


def serve_rest(runtime: Runtime, sockets: list[Any] | None = None, *, worker: int | None = None) -> int:
    """The REST listener of ``runtime`` until SIGTERM/SIGINT (on ``sockets`` already bound, in a worker)."""
    from aaa_fmip.api.app import create_app
    from aaa_fmip.api.protocol import http_parser, protocol_class
    from aaa_fmip.bootstrap import api_context

    settings = runtime.settings
    open_files = raise_open_file_limit()
    max_connections = connection_limit(settings.limits, open_files)
    app = create_app(api_context(runtime))
    config = uvicorn.Config(
        app,
        host=settings.server.listen.host,
        port=settings.server.listen.port,
        log_config=None,  # our JSON handler (aaa_fmip.logging) formats uvicorn's records too
        access_log=False,  # the app logs one access line per request itself, without query strings
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=settings.limits.keep_alive_timeout,
        loop=event_loop(settings.server.event_loop),
        http=protocol_class(settings.limits, runtime.metrics, max_connections, parser=settings.server.http_parser),
        server_header=False,
        proxy_headers=False,
        **_tls_options(settings),
    )
    server = _Server(config, handshake_timeout=settings.limits.header_timeout)
    log.info(
        "limits",
        extra={
            "event": "limits",
            "open_files": open_files,
            "max_connections": max_connections,
            "max_requests_in_flight": settings.limits.max_requests_in_flight,
            "header_timeout_s": settings.limits.header_timeout,
            "rate_limit": settings.limits.rate_limit,
            "event_loop": event_loop(settings.server.event_loop),
            "http_parser": http_parser(settings.server.http_parser),
            "worker": worker,
        },
    )
    # What is loaded now (FastAPI, pydantic, redis-py, cryptography, the app: some 90,000 objects) lives as
    # long as the process. Move it out of the cyclic collector's reach: a full collection over it stalls every
    # request for tens of ms (docs/performance.md: the FBU p99.9 fell from 19-128 ms to 6-40 ms).
    gc.freeze()
    if worker is None or worker == 0:
        _log_startup(runtime)
    server.run(sockets=sockets)
    if not server.started:
        raise AaaFmipError(f"could not listen on {settings.server.listen} (in use, or not a local address?)")
    log.info("stopped", extra={"event": "stopped", "signal": server.stop_signal, "worker": worker})
    return 0


def event_loop(configured: str = "auto") -> str:
    """The loop to run: ``server.event_loop``; "auto" is uvloop where it is installed (``uvicorn[standard]``),
    else asyncio's own loop (uvicorn's "auto", named)."""
    if configured != "auto":
        return configured
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (systemd's default soft limit is 1,024: far too few for a
    listener) and return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NOFILE_FALLBACK if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning(
                "could not raise the open-file limit",
                extra={"event": "nofile", "soft": soft, "hard": hard, "error": type(exc).__name__},
            )
            return soft
        log.info("open-file limit raised", extra={"event": "nofile", "from": soft, "to": target, "hard": hard})
        return target
    log.info("open-file limit", extra={"event": "nofile", "soft": soft, "hard": hard})
    return NOFILE_FALLBACK if soft == resource.RLIM_INFINITY else soft


def connection_limit(limits: LimitSettings, open_files: int) -> int:
    """``limits.max_connections``, lowered so that open connections leave descriptors for everything else
    (Redis connections, the Diameter and RADIUS listeners, log and data files): a quarter of the limit, at least
    16 and at most 256 of them."""
    reserve = min(256, max(16, open_files // 4))
    allowed = max(1, open_files - reserve)
    if limits.max_connections > allowed:
        log.warning(
            "limits.max_connections lowered to fit the open-file limit",
            extra={
                "event": "limits-lowered",
                "configured": limits.max_connections,
                "used": allowed,
                "open_files": open_files,
            },
        )
        return allowed
    return limits.max_connections


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
        if runtime.settings.audit.exporting:
            started.append(("audit-export", start_audit_export(runtime)))
    except BaseException:
        for _name, handle in reversed(started):
            handle.stop()
        raise
    return started


def start_diameter(runtime: Runtime) -> ListenerHandle:
    """The Diameter listener of ``[diameter]`` (aaa_fmip.diameter.server)."""
    return _start_module("aaa_fmip.diameter.server", runtime)


def start_audit_export(runtime: Runtime) -> ListenerHandle:
    """The exporter of ``[audit]``: the trail followed into a file and/or syslog outside Redis, then trimmed."""
    import time

    from aaa_fmip.audit_export import AuditExporter, open_sinks

    audit = runtime.settings.audit
    metrics = runtime.metrics
    return AuditExporter(
        runtime.store,
        open_sinks(audit.export_file, audit.export_syslog),
        retain=audit.retain_entries,
        interval=audit.export_interval,
        clock=time.time,
        on_exported=metrics.audit_exported.inc,
        on_error=lambda kind: metrics.audit_export_errors.labels(kind).inc(),
        on_pass=metrics.audit_export_pass.observe,
    ).start()


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
            "previous_kek_ids": [k.key_id for k in runtime.kek_ring.previous],
            "slot_chains": runtime.store.ops.slot_chains,
            "writer": runtime.store.ops.writer,
            "gc_frozen": gc.get_freeze_count(),
        },
    )
    if not settings.access_routers and not settings.clients:
        log.warning(TOKEN_HINT, extra={"event": "unconfigured"})


class _Server(uvicorn.Server):
    """uvicorn re-raises the stopping signal after shutdown, which would kill the process before the store is
    closed; this variant records the signal and returns normally instead."""

    stop_signal: str | None = None

    def __init__(self, config: uvicorn.Config, *, handshake_timeout: float | None = None) -> None:
        super().__init__(config)
        self.handshake_timeout = handshake_timeout

    async def serve(self, sockets: list[Any] | None = None) -> None:
        loop = asyncio.get_running_loop()
        if self.config.is_ssl and self.handshake_timeout is not None:
            # uvicorn leaves asyncio's 60 s TLS handshake timeout; a client that opens TCP and never sends a
            # ClientHello must not hold its descriptor longer than one that sends half a request head.
            loop.create_server = functools.partial(  # type: ignore[method-assign]
                loop.create_server, ssl_handshake_timeout=self.handshake_timeout
            )
        await super().serve(sockets)

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

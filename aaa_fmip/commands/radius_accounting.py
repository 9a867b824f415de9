"""``aaa-fmip radius-accounting``: a RADIUS accounting listener (RFC 2866) that revokes sessions on
Accounting Stop, for deployments whose accounting does not pass through the FreeRADIUS module
(docs/freeradius.md, "Accounting elsewhere")."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

from aaa_fmip.config import ENV_CONFIG, load_settings, parse_host_port, resolve_config_path
from aaa_fmip.errors import AaaFmipError, ConfigError
from aaa_fmip.logging import configure_logging

log = logging.getLogger("aaa_fmip.radius.accounting")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "radius-accounting",
        help="listen for RADIUS Accounting-Requests and revoke sessions on Stop",
        description=(
            "Receive RADIUS Accounting-Requests (RFC 2866) from the clients in radius.accounting.clients, "
            "verify their Request Authenticator with radius.accounting.secret, revoke the session(s) an "
            "Accounting Stop ends and answer with an Accounting-Response. Requests from other addresses or "
            "with a wrong authenticator are dropped and logged."
        ),
    )
    parser.add_argument("--config", metavar="FILE", help=f"TOML configuration file (default: ${ENV_CONFIG})")
    parser.add_argument("--listen", metavar="HOST:PORT", help="overrides radius.accounting.listen")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level.upper())
    settings = load_settings(resolve_config_path(args.config, os.environ), os.environ)
    accounting = settings.radius.accounting
    if accounting is None:
        raise ConfigError("the [radius.accounting] section (listen, secret, clients) is required", key="radius")
    listen = parse_host_port(args.listen, key="--listen") if args.listen else accounting.listen

    from aaa_fmip.bootstrap import build_runtime
    from aaa_fmip.radius.accounting import build_listener

    runtime = build_runtime(settings)
    try:
        listener = build_listener(runtime, logger=log)
        return asyncio.run(_serve(listener, listen.host, listen.port))
    finally:
        runtime.close()


async def _serve(listener: Any, host: str, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        bound = await listener.start(host, port)
    except OSError as exc:
        raise AaaFmipError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    log.info("listening", extra={"event": "listening", "address": f"{bound[0]}:{bound[1]}"})
    try:
        await stop.wait()
    finally:
        await listener.close()
        log.info("stopped", extra={"event": "stopped", **{k: v for k, v in listener.counts.items()}})
    return 0

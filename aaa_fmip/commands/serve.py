"""``aaa-fmip serve``: the key service (REST, and Diameter when ``[diameter]`` is configured).

With no configuration at all it starts on 127.0.0.1:8080 with the embedded Redis and a KEK created in
``./aaa-fmip-data``. SIGTERM and SIGINT stop it promptly: the HTTP server drains (bounded), the listeners stop,
the store is closed and the embedded Redis saves and exits; the exit status is then 0.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from aaa_fmip.config import ENV_CONFIG
from aaa_fmip.errors import AaaFmipError
from aaa_fmip.logging import configure_logging

# The service stack (aaa_fmip.commands.rest, uvicorn, the store) is imported when the command runs, so that other
# commands (and --help) neither pay for nor depend on it.


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
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="REST worker processes sharing the listening socket (default: the number of cores with an external "
        "Redis; 1 with the embedded one, which belongs to one process)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from aaa_fmip.commands.rest import load_serve_settings, serve

    configure_logging(args.log_level.upper())
    settings = load_serve_settings(args.config, args.listen)
    workers = args.workers
    if workers is None:
        workers = 1 if settings.store.embedded else (os.cpu_count() or 1)
    if workers < 1:
        raise AaaFmipError("--workers must be at least 1")
    if workers == 1:
        return serve(settings)
    if settings.store.embedded:
        raise AaaFmipError("--workers above 1 needs an external Redis (store.url): the embedded one is per process")
    from aaa_fmip.commands import workers as pool

    return pool.supervise(settings, workers, (args.config, args.listen, args.log_level))

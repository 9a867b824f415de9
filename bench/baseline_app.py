"""The baseline the REST benchmark compares against: the service's stack doing the least a request can do.

``GET /baseline``: one Redis GET of a 64-octet value, and a small JSON body back, dispatched the way the
service's ``POST /v1/fbu/verify`` is: an ``async`` handler on the event loop awaiting the asyncio redis-py
client of the service's own store (:attr:`aaa_fmip.store.redis.RedisStore.aio`, built by
:meth:`~aaa_fmip.store.redis.RedisStore.from_url`: same socket timeouts, retry policy and pool). Everything else
is what ``aaa-fmip serve`` uses: FastAPI, uvicorn (uvloop and httptools, from ``uvicorn[standard]``) with the same
``uvicorn.Config`` options, in one process or ``--workers N``. No
middleware, no authentication, no logging per request: the difference between this and ``POST /v1/fbu/verify``
is what the service adds.

``GET /baseline-thread``: the same GET through the blocking client in a plain ``def`` handler (FastAPI runs it in
its thread pool), the way the FBU route worked before it moved onto the event loop; kept as a second reference.

    python -m bench.baseline_app --listen 127.0.0.1:8081 --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from collections.abc import Sequence
from typing import Any, Final

import uvicorn
from fastapi import FastAPI

from aaa_fmip.commands.rest import GRACEFUL_SHUTDOWN_SECONDS
from aaa_fmip.config import parse_host_port
from aaa_fmip.crypto.wrap import KekRing, parse_kek
from aaa_fmip.store.redis import RedisStore

VALUE_OCTETS: Final = 64


def create_app(redis_url: str, *, prefix: str = "bench", timeout: float = 0.5) -> FastAPI:
    # The KEK is unused (nothing is wrapped); the store only builds the client exactly as the service does.
    kek = KekRing(parse_kek(secrets.token_hex(32), source="baseline"))
    store = RedisStore.from_url(redis_url, kek, prefix=prefix, socket_timeout=timeout)
    client: Any = store._r()
    key = f"{prefix}:baseline"
    client.set(key, secrets.token_bytes(VALUE_OCTETS))

    app = FastAPI(title="aaa-fmip benchmark baseline", docs_url=None, redoc_url=None, openapi_url=None)
    aio = store.aio
    if aio is None:
        raise SystemExit(f"baseline_app: the store for {redis_url} has no asyncio client")

    @app.get("/baseline")
    async def baseline() -> dict[str, Any]:
        value = await aio._loop_state().client.get(key)
        return {"status": "ok", "length": None if value is None else len(value)}

    @app.get("/baseline-thread")
    def baseline_thread() -> dict[str, Any]:
        value = client.get(key)
        return {"status": "ok", "length": None if value is None else len(value)}

    return app


_ENV: Final = "AAA_FMIP_BENCH_BASELINE"


def app_from_environment() -> FastAPI:
    redis_url, prefix, timeout = json.loads(os.environ[_ENV])
    return create_app(redis_url, prefix=prefix, timeout=timeout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8081", metavar="HOST:PORT")
    parser.add_argument("--redis-url", required=True, metavar="URL")
    parser.add_argument("--prefix", default="bench", help="Redis key prefix (default: bench)")
    parser.add_argument("--timeout", type=float, default=0.5, help="Redis socket timeout, as store.timeout")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (as serve --workers)")
    args = parser.parse_args(argv)
    listen = parse_host_port(args.listen, key="--listen")
    if args.workers > 1:  # uvicorn's own supervisor: each worker builds the app (and its store) from the environment
        os.environ[_ENV] = json.dumps([args.redis_url, args.prefix, args.timeout])
        uvicorn.run(
            f"{__name__}:app_from_environment",
            factory=True,
            workers=args.workers,
            host=listen.host,
            port=listen.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            server_header=False,
            proxy_headers=False,
        )
        return 0
    app = create_app(args.redis_url, prefix=args.prefix, timeout=args.timeout)
    config = uvicorn.Config(  # the options of aaa_fmip.commands.rest.serve_rest
        app,
        host=listen.host,
        port=listen.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        server_header=False,
        proxy_headers=False,
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

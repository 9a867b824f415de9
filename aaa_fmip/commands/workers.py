"""``aaa-fmip serve --workers N``: N REST worker processes on one listening socket, and the supervisor.

The supervisor (this process) builds the runtime the optional listeners need (Diameter, the audit exporter),
binds the REST socket, and starts N workers with ``multiprocessing``'s spawn method: fresh interpreters, each
loading the same settings and building its own store clients (a Redis connection belongs to one process), each
running the REST listener on the shared socket (the kernel spreads the connections). ``/metrics`` of any worker
shows the sum over all of them: prometheus_client's multiprocess mode, its value files in a directory the
supervisor creates and removes (``PROMETHEUS_MULTIPROC_DIR``, set before anything imports the client).

SIGTERM or SIGINT to the supervisor: each worker gets SIGTERM and drains as a single process does (bounded),
then the listeners stop and the store is closed; exit status 0. A worker that exits on its own stops the
others too (exit status 1): the service is whole or not running, never silently at part strength.

Per-process state stays per process: the per-caller rate limit (``limits.caller_rate``) and the failed-
authentication limit per address are enforced by each worker, so N workers admit up to N times the configured
rate; the session cache (:mod:`aaa_fmip.service.cache`) is per worker.

Each process that verifies FBUs writes audit entries, and writers of one chain keep meeting at its head (a
refused script, sent again). So every worker is a writer of its own: the supervisor keeps ``store.writer``
(its Diameter listener verifies FBUs too), worker i is ``store.writer + 1 + i``, and with more than one worker
the accepted FBUs' entries go to those writers' slot chains unless the configuration says otherwise
(``store.slot_chains``; docs/configuration.md, "Slot chains").
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Final

from aaa_fmip.errors import AaaFmipError
from aaa_fmip.logging import configure_logging
from aaa_fmip.store.slots import WRITERS

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from aaa_fmip.config import Settings

log = logging.getLogger("aaa_fmip.serve")

STOP_MARGIN_SECONDS: Final = 10.0  # beyond the graceful shutdown of the HTTP server, before a worker is killed
Argv = tuple[str | None, str | None, str]  # --config, --listen, --log-level


def supervise(settings: Settings, workers: int, argv: Argv) -> int:
    from aaa_fmip.commands.rest import GRACEFUL_SHUTDOWN_SECONDS, start_listeners, stop_listeners

    metrics_dir = tempfile.mkdtemp(prefix="aaa-fmip-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus_client is imported, here and below
    from aaa_fmip.bootstrap import build_runtime, check_store_at_start

    last_writer = settings.store.writer + workers
    if last_writer >= WRITERS:
        raise AaaFmipError(
            f"--workers {workers} with store.writer = {settings.store.writer} needs writer numbers up to "
            f'{last_writer}; they are 0-{WRITERS - 1} (docs/configuration.md, "Slot chains")'
        )
    stop = threading.Event()
    stopped_by: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopped_by.append(signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    procs: list[BaseProcess] = []
    listeners = []
    runtime = build_runtime(settings)
    sock: socket.socket | None = None
    try:
        check_store_at_start(runtime)
        listeners = start_listeners(runtime)
        sock = _bind(settings)
        spawn = multiprocessing.get_context("spawn")
        slot_chains = settings.store.slot_chains is None and workers > 1  # the module docstring
        for index in range(workers):
            writer = settings.store.writer + 1 + index
            worker = spawn.Process(
                target=_worker, args=(index, argv, sock, slot_chains, writer), name=f"aaa-fmip-worker-{index}"
            )
            worker.start()
            procs.append(worker)
        log.info(
            "workers started",
            extra={"event": "workers", "workers": workers, "pids": [p.pid for p in procs], "supervisor": os.getpid()},
        )
        while not stop.is_set() and all(p.is_alive() for p in procs):
            stop.wait(0.2)
        failed = [p for p in procs if not p.is_alive() and p.exitcode != 0]
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACEFUL_SHUTDOWN_SECONDS + STOP_MARGIN_SECONDS
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker did not stop in time; killed", extra={"event": "worker-killed", "pid": proc.pid})
                proc.kill()
                proc.join(5)
        failed += [p for p in procs if p.exitcode not in (0, None) and p not in failed]
        if failed or not stopped_by:
            log.error(
                "a worker exited; the service stopped",
                extra={"event": "worker-exited", "exit_codes": {str(p.pid): p.exitcode for p in procs}},
            )
            return 1
        log.info("stopped", extra={"event": "stopped", "signal": stopped_by[0], "workers": workers})
        return 0
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if sock is not None:
            sock.close()
        stop_listeners(listeners)
        runtime.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _bind(settings: Settings) -> socket.socket:
    import uvicorn

    listen = settings.server.listen
    config = uvicorn.Config(app="unused", host=listen.host, port=listen.port)  # only to bind as uvicorn would
    try:
        return config.bind_socket()
    except SystemExit:  # uvicorn exits the process when it cannot bind
        raise AaaFmipError(f"could not listen on {listen} (in use, or not a local address?)") from None


def _worker(index: int, argv: Argv, sock: socket.socket, slot_chains: bool, writer: int) -> None:
    """One worker: the settings loaded again (same file, same environment), its own runtime, REST on ``sock``;
    ``slot_chains``: switch on ``store.slot_chains`` (left unset by the configuration); ``writer``: its
    ``store.writer``."""
    from aaa_fmip.bootstrap import build_runtime
    from aaa_fmip.commands.rest import load_serve_settings, serve_rest

    config, listen, log_level = argv
    configure_logging(log_level.upper())
    settings = load_serve_settings(config, listen)
    store: dict[str, object] = {"writer": writer}
    if slot_chains:
        store["slot_chains"] = True
    settings = settings.model_copy(update={"store": settings.store.model_copy(update=store)})
    runtime = build_runtime(settings)
    try:
        code = serve_rest(runtime, [sock], worker=index)
    finally:
        runtime.close()
    raise SystemExit(code)

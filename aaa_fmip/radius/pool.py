"""The FreeRADIUS module's store-call pool: every store call of the module runs here, bounded, never raising.

Availability first (architecture.md §6): a call the request waits for (:meth:`StoreCallPool.call`) runs on a
small thread pool and is awaited for at most ``store_timeout`` seconds, a place in the queue included; a call
nobody waits for (:meth:`StoreCallPool.behind`, the writes behind the Access-Accept) runs on
:class:`BehindWriters`. At most ``max_pending`` calls of either kind are pending; a call that finds them all
taken waits up to ``store_timeout`` for one, else it is skipped. A timeout, a skipped call or any error is
counted and logged (rate-limited, never a value) and answered as "no result": nothing here raises into
FreeRADIUS.

Whether the store keeps up (:meth:`StoreCallPool.keeping_up`): the last session write succeeded and none has
been pending longer than ``store_timeout``. The module writes behind the reply only while it does
(docs/freeradius.md, "When the session is in Redis").

Counters (``aaa_fmip_radius_events_total{interface="radius"}``, docs/freeradius.md): ``<operation>_error``,
``_timeout``, ``_overload``, ``_shutdown``, ``dropped_on_close``, and the success counter a write names.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Final, TypeVar

from aaa_fmip.errors import AaaFmipError
from aaa_fmip.logging import RATE_KEY
from aaa_fmip.metrics import Metrics

T = TypeVar("T")

INTERFACE: Final = "radius"  # the metrics ``interface`` label of the FreeRADIUS module

log = logging.getLogger("aaa_fmip.radius.pool")


def _keyed(key: str) -> dict[str, object]:
    """``extra=`` of a line the FreeRADIUS log handler rate-limits under ``key`` (aaa_fmip.radius.radlog)."""
    return {RATE_KEY: key}


class BehindWriters:
    """Threads that run the writes behind the reply: a plain queue, cheaper to enter from the request than an
    executor with its futures, since nobody waits for these.

    ``nice`` > 0 lowers these threads' CPU priority by that much (Linux, where the nice value is per thread):
    where FreeRADIUS, its RADIUS clients and Redis share CPUs, a write then waits for a free CPU rather than
    taking one from an authentication in progress. The writes still get CPU time under load (the kernel's fair
    scheduler gives every runnable thread a share), and when they fall behind by more than ``store_timeout``
    the module goes back to waiting for its writes, on its normal-priority pool (:meth:`StoreCallPool.keeping_up`).
    """

    def __init__(self, count: int, *, nice: int = 0) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._max = count
        if nice > 0 and not sys.platform.startswith("linux"):  # elsewhere the nice value is the whole process's
            log.warning("write_behind_nice needs Linux (here: %s); the writes run at normal priority", sys.platform)
            nice = 0
        self.nice = nice
        self._warned = False
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[[], None]) -> None:
        """Queue ``fn`` (which must not raise); RuntimeError once closed."""
        if self._closed:
            raise RuntimeError("closed")
        self._queue.put(fn)
        if self._idle < self._queue.qsize() and len(self._threads) < self._max:
            with self._lock:
                if not self._closed and len(self._threads) < self._max:
                    thread = threading.Thread(target=self._work, name=f"aaa-fmip-behind-{len(self._threads)}")
                    thread.daemon = True
                    self._threads.append(thread)
                    thread.start()

    def _work(self) -> None:
        self._lower_priority()
        while True:
            with self._lock:
                self._idle += 1
            fn = self._queue.get()
            with self._lock:
                self._idle -= 1
            if fn is None:
                return
            fn()

    def _lower_priority(self) -> None:
        if self.nice <= 0:
            return
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + self.nice))
        except OSError as exc:
            with self._lock:
                first, self._warned = not self._warned, True
            if first:
                log.warning(
                    "could not lower the write threads' priority (%s); they run at normal priority", exc.strerror
                )

    def close(self) -> int:
        """Stop the threads once they finish what they run now; returns how many queued calls were dropped."""
        with self._lock:
            self._closed = True
            threads = len(self._threads)
        dropped = 0
        while True:
            try:
                fn = self._queue.get_nowait()
            except queue.Empty:
                break
            dropped += fn is not None
        for _ in range(threads):
            self._queue.put(None)
        return dropped


class StoreCallPool:
    """The bounded store calls of one FreeRADIUS module (see the module docstring). Thread-safe."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        store_timeout: float,
        workers: int = 8,
        max_pending: int = 64,
        write_behind_nice: int = 0,
    ) -> None:
        self.store_timeout = store_timeout
        self._metrics = metrics
        # Calls a request waits for (and Accounting-On/Off revocations) run on the pool; writes behind the reply
        # on the writers. Each at most ``workers`` threads.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aaa-fmip")
        self._writers = BehindWriters(workers, nice=write_behind_nice)
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified whenever a call ends
        self._pending = 0
        self._behind: dict[int, float] = {}  # writes nobody waits for: id -> time.monotonic() when queued
        self._behind_ids = itertools.count()
        self._store_ok = True  # False from a failed (or late) session write until one succeeds

    @property
    def nice(self) -> int:
        """How much lower the writes behind the reply run (0 where it cannot be applied: not Linux)."""
        return self._writers.nice

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def count(self, event: str, amount: int = 1) -> None:
        self._metrics.count_radius(INTERFACE, event, amount)

    # -- bounded calls ----------------------------------------------------------------------------------

    def _reserve(self, operation: str, timeout: float) -> bool:
        """Count one more pending call; with ``max_pending`` already pending, wait up to ``timeout`` seconds for
        one to end, else give up (counted, logged)."""
        with self._idle:
            reserved = self._idle.wait_for(lambda: self._pending < self._max_pending, timeout)
            if reserved:
                self._pending += 1
        if not reserved:
            self.count(f"{operation}_overload")
            log.warning(
                "%s skipped: %d store calls still pending (store too slow?)",
                operation,
                self._max_pending,
                extra=_keyed(f"{operation}-overload"),
            )
        return reserved

    def _release(self, behind_id: int | None = None) -> None:
        with self._lock:
            self._pending -= 1
            if behind_id is not None:
                self._behind.pop(behind_id, None)
            self._idle.notify_all()

    def report(self, operation: str, exc: BaseException) -> None:
        """Count and log (rate-limited) a failed call of ``operation``; never a value."""
        self.count(f"{operation}_error")
        name = type(exc).__name__
        if isinstance(exc, AaaFmipError):
            label = getattr(exc, "reason", None) or name
            # Messages of our own errors never carry key material (errors.py); keep them short anyway.
            log.error("%s", f"{operation} failed: {name}: {exc}"[:290], extra=_keyed(f"{operation}-{label}"))
        else:
            # A library's message could quote its input: log the type only.
            log.error("%s failed: %s", operation, name, extra=_keyed(f"{operation}-{name}"))

    def call(self, operation: str, fn: Callable[[], T]) -> T | None:
        """``fn()`` on the pool, awaited for at most ``store_timeout`` in all (a place in the queue included);
        None (counted, logged) on any failure."""
        deadline = time.monotonic() + self.store_timeout
        if not self._reserve(operation, self.store_timeout):
            return None

        def run() -> T:
            try:
                with self._metrics.operation(INTERFACE, operation):
                    return fn()
            finally:
                self._release()

        try:
            future = self._pool.submit(run)
        except RuntimeError:  # pool shut down (detach in progress)
            self._release()
            self.count(f"{operation}_shutdown")
            return None
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            self.count(f"{operation}_timeout")
            log.error(
                "%s did not finish within %g s; access is not affected",
                operation,
                self.store_timeout,
                extra=_keyed(f"{operation}-timeout"),
            )
        except Exception as exc:
            self.report(operation, exc)
        return None

    def behind(self, operation: str, fn: Callable[[], object], *, done: str | None = None) -> bool:
        """``fn()`` on the writers, not awaited; its failure is counted and logged. False if it could not be
        queued (``max_pending`` reached, or shutting down). ``done``: the counter of a success, which also marks
        the store as keeping up (a failure marks it as not)."""
        if not self._reserve(operation, self.store_timeout):
            return False
        with self._lock:
            behind_id = next(self._behind_ids)
            self._behind[behind_id] = time.monotonic()

        def run() -> None:
            try:
                with self._metrics.operation(INTERFACE, operation):
                    fn()
            except Exception as exc:
                if done is not None:
                    self._store_ok = False
                self.report(operation, exc)
            else:
                if done is not None:
                    self._store_ok = True
                    self.count(done)
            finally:
                self._release(behind_id)

        try:
            self._writers.submit(run)
        except RuntimeError:  # writers closed (detach in progress)
            self._release(behind_id)
            self.count(f"{operation}_shutdown")
            return False
        return True

    def stored(self) -> None:
        """An awaited session write succeeded: the store keeps up again."""
        self._store_ok = True

    def keeping_up(self) -> bool:
        """The last session write succeeded and none has been pending longer than ``store_timeout``."""
        if not self._store_ok:
            return False
        with self._lock:
            oldest = min(self._behind.values(), default=None)
        return oldest is None or time.monotonic() - oldest <= self.store_timeout

    # -- lifecycle --------------------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds until no store call is pending; True if none is."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, *, flush_timeout: float = 0.0) -> int:
        """Let pending calls finish for at most ``flush_timeout`` seconds, then drop the rest and stop the threads.

        Returns how many store calls were still pending (dropped: logged and counted as ``dropped_on_close``).
        """
        self.flush(flush_timeout)
        self._writers.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        left = self.pending
        if left:
            self.count("dropped_on_close", left)
            log.error("%d store calls still pending at shutdown were dropped", left)
        return left

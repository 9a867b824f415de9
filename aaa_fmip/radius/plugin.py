"""The FreeRADIUS adapter's logic, independent of the embedded interpreter (architecture.md §6).

:class:`FreeRadiusPlugin` turns one post-auth or accounting call into service calls:

* post-auth with an EMSK: :meth:`HandoverKeyService.prepare_session` (the checks and derivations of
  ``POST /v1/sessions``) in the calling thread, then, when the NAS is a registered access router and
  ``radius.push_keys`` is on, that router's HK for the first address listed for it, as vendor attributes for the
  Access-Accept (``AAA-FMIP-HK`` is salt-encrypted by FreeRADIUS itself, dictionary flag ``encrypt=2``). A
  ``Class`` value ``aaa-fmip:<token>`` names the session so that the NAS's Accounting-Request can revoke exactly
  it. :meth:`HandoverKeyService.commit_session` (the Redis writes: session record, audit entries) runs on the
  plugin's pool *behind* the reply while the store keeps up (see "Write-behind" below).
* post-auth of an EAP method without an EMSK (EAP-PWD in FreeRADIUS 3.2, EAP-MD5): no session;
  :meth:`HandoverKeyService.record_no_emsk` writes the audit entry, on the pool, behind the reply.
* accounting Stop, Accounting-On/Off: :func:`aaa_fmip.radius.accounting.revoke_for_accounting`, awaited (bounded,
  see below).

Availability first: every store call runs on a small worker pool; a call the request waits for is awaited for at
most ``radius.store_timeout`` seconds; on a timeout or any error the Access-Accept goes out unchanged, the failure
is logged (rate-limited, never a value) and counted. Nothing here raises into FreeRADIUS.

Write-behind: while the store keeps up, post-auth does not wait for the session's writes: the key is pushed at
once and the writes follow on the pool (bounded by ``max_pending``, counted, logged on failure; :meth:`flush`
and :meth:`close` wait for them, bounded). As soon as a write fails, or one has been pending longer than
``store_timeout``, post-auth waits for the writes again (bounded, as above) and pushes a key only once its session
is stored, until a write succeeds. So in an outage at most the authentications whose writes were already under
way got a key that is not stored; their failure is logged and counted (``ingest_error``, ``ingest_timeout``).

Priority: the writes behind the reply run on their own threads (:class:`BehindWriters`), at a CPU priority lowered
by ``radius.write_behind_nice``; the calls a request waits for run on the pool, at FreeRADIUS' own priority.

The plugin is shared by all FreeRADIUS worker threads; its own state is the pool, the write threads, a lock and
counters.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import itertools
import os
import queue
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypeVar

from aaa_fmip.errors import AaaFmipError, DecodeError
from aaa_fmip.model import AccessRouter, Caller, HandoverKeyGrant
from aaa_fmip.radius.accounting import EXTERNAL_ID_PREFIX, ServicePort, accounting_kind, revoke_for_accounting
from aaa_fmip.radius.attributes import (
    NasIdentity,
    PostAuthInput,
    class_value,
    parse_accounting,
    parse_lists,
    parse_post_auth,
)
from aaa_fmip.radius.dictionary import ALGORITHM_VALUES, ATTRIBUTE_NAMES, VendorAttribute
from aaa_fmip.service import PreparedSession

T = TypeVar("T")
Level = Literal["debug", "info", "warning", "error"]
LogFn = Callable[[Level, str], None]
ReplyPair = tuple[str, str, str]

AAA_CALLER: Final = Caller(name="freeradius", role="aaa")
INTERFACE: Final = "radius"
_MATCH_CACHE_SIZE: Final = 4096  # distinct NAS identities remembered


class MetricsPort(Protocol):
    def operation(self, interface: str, operation: str) -> AbstractContextManager[None]: ...


class PluginService(ServicePort, Protocol):
    def prepare_session(
        self,
        caller: Caller,
        *,
        user_name: str,
        emsk: bytes | None = None,
        eap_session_id: bytes | None = None,
        calling_station_id: str | None = None,
        nas_identifier: str | None = None,
        lifetime: int | None = None,
        external_ids: tuple[str, ...] = (),
        push_to: tuple[Caller, ipaddress.IPv6Address] | None = None,
    ) -> PreparedSession: ...

    def commit_session(self, prepared: PreparedSession, *, deadline: float | None = None) -> None: ...

    def record_no_emsk(self, caller: Caller, *, user_name: str, method: str | None, detail: str) -> None: ...


# ------------------------------------------------------------------------------------------ router matching


@dataclass(frozen=True)
class RouterMatch:
    router: AccessRouter | None
    reason: str  # why none matched, for the operator's log (identifiers and addresses only)
    misconfigured: bool = False  # a router seems meant for this NAS but is not matched (or several are)


def _shown(text: str) -> str:
    """A NAS's own string, quoted and cut short for a log line (it is the NAS's claim, not ours)."""
    return repr(text[:64])


def describe_nas(nas: NasIdentity) -> str:
    """The NAS as a request showed it: its source address (when the site policy recorded it), the addresses it
    claims, its NAS-Identifier."""
    parts = [
        f"source address {nas.source_address}"
        if nas.source_address is not None
        else "source address not recorded (aaa_fmip_nas_source policy not run)"
    ]
    if nas.nas_ip_address is not None:
        parts.append(f"NAS-IP-Address {nas.nas_ip_address}")
    if nas.nas_ipv6_address is not None:
        parts.append(f"NAS-IPv6-Address {nas.nas_ipv6_address}")
    parts.append(f"NAS-Identifier {_shown(nas.nas_identifier)}" if nas.nas_identifier else "no NAS-Identifier")
    return ", ".join(parts)


def match_router(routers: Iterable[AccessRouter], nas: NasIdentity) -> RouterMatch:
    """The registered access router that sent this request, if exactly one fits.

    A router with ``nas_address`` is matched by address: the packet's source address when the site policy
    recorded it (authenticated by the RADIUS shared secret of that client), else NAS-IP(v6)-Address. A router
    with only ``nas_identifier`` is matched by NAS-Identifier, which is the NAS's own claim (docs/freeradius.md).
    When none or several match, ``reason`` says why, in the terms of the configuration.
    """
    routers = tuple(routers)
    claimed = {a for a in (nas.nas_ip_address, nas.nas_ipv6_address) if a is not None}
    by_address = {nas.source_address} if nas.source_address is not None else claimed
    found: list[AccessRouter] = []
    for router in routers:
        if router.nas_address is not None:
            if router.nas_address in by_address:
                found.append(router)
        elif router.nas_identifier is not None and router.nas_identifier == nas.nas_identifier:
            found.append(router)
    if len(found) == 1:
        return RouterMatch(found[0], "")
    if found:
        names = ", ".join(r.name for r in found)
        return RouterMatch(None, f"it matches {len(found)} access routers ({names}); give each its own", True)
    if not routers:
        return RouterMatch(None, "no [[access_routers]] are configured")
    what = "source address" if nas.source_address is not None else "NAS-IP-Address / NAS-IPv6-Address"
    shown = ", ".join(sorted(str(a) for a in by_address)) or "none"
    reason = (
        f"no access router has nas_address = {shown} or (without nas_address) a nas_identifier equal to its "
        f"NAS-Identifier; a router with nas_address is matched by the packet's {what} only, never by NAS-Identifier"
    )
    # The usual slip: the router names this NAS-Identifier but is matched by an address this NAS does not use.
    meant = [
        r
        for r in routers
        if r.nas_address is not None and nas.nas_identifier and r.nas_identifier == nas.nas_identifier
    ]
    for router in meant:
        reason += (
            f"; router {router.name} has nas_identifier {_shown(router.nas_identifier or '')} but "
            f"nas_address = {router.nas_address}, so only requests from {router.nas_address} match it"
        )
    return RouterMatch(None, reason, bool(meant))


# ------------------------------------------------------------------------------------------------- logging


class RateLimitedLog:
    """At most one line per ``key`` every ``interval`` seconds, with the count of lines suppressed meanwhile."""

    def __init__(self, log: LogFn, *, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def __call__(self, level: Level, key: str, message: str) -> bool:
        """Log ``message`` unless a line with this ``key`` went out less than ``interval`` ago; True if logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] += 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += f" ({suppressed} more like this since the last report)"
        self._log(level, message)
        return True


# ------------------------------------------------------------------------------------------- behind-writers


class BehindWriters:
    """Threads that run the writes behind the reply: a plain queue, cheaper to enter from the request than an
    executor with its futures, since nobody waits for these.

    ``nice`` > 0 lowers these threads' CPU priority by that much (Linux, where the nice value is per thread):
    where FreeRADIUS, its RADIUS clients and Redis share CPUs, a write then waits for a free CPU rather than
    taking one from an authentication in progress. The writes still get CPU time under load (the kernel's fair
    scheduler gives every runnable thread a share), and when they fall behind by more than ``store_timeout``
    the plugin goes back to waiting for its writes, on its normal-priority pool (:meth:`FreeRadiusPlugin.keeping_up`).
    """

    def __init__(self, count: int, *, nice: int = 0, log: LogFn | None = None) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._max = count
        self._log = log
        if nice > 0 and not sys.platform.startswith("linux"):  # elsewhere the nice value is the whole process's
            self._warn(f"write_behind_nice needs Linux (here: {sys.platform}); the writes run at normal priority")
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
                self._warn(f"could not lower the write threads' priority ({exc.strerror}); they run at normal priority")

    def _warn(self, message: str) -> None:
        if self._log is not None:
            self._log("warning", f"aaa_fmip: {message}")

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


# -------------------------------------------------------------------------------------------------- plugin


class FreeRadiusPlugin:
    """Shared by every FreeRADIUS worker thread; see the module docstring for the contract."""

    def __init__(
        self,
        service: PluginService,
        *,
        routers: Iterable[AccessRouter] = (),
        push_keys: bool = True,
        store_timeout: float = 0.3,
        log: LogFn,
        metrics: MetricsPort | None = None,
        workers: int = 8,
        max_pending: int = 64,
        write_behind: bool = True,
        write_behind_nice: int = 0,
    ) -> None:
        self.service = service
        self.routers = tuple(routers)
        self.push_keys = push_keys
        self.store_timeout = store_timeout
        self.write_behind = write_behind
        self._log = log
        self._limited = RateLimitedLog(log)
        self._metrics = metrics
        # Calls a request waits for (and Accounting-On/Off revocations) run on the pool; writes behind the reply
        # on the writers. Each at most ``workers`` threads.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aaa-fmip")
        self._writers = BehindWriters(workers, nice=write_behind_nice, log=log)
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified whenever a pool call ends
        self._pending = 0
        self._behind: dict[int, float] = {}  # writes nobody waits for: id -> time.monotonic() when queued
        self._behind_ids = itertools.count()
        self._store_ok = True  # False from a failed (or late) session write until one succeeds
        self._counts: Counter[str] = Counter()
        # Built once: the caller and address ingest is given for each router's push (RFC 5568 §6.4.5: the HK
        # is for the router's first address, the AR-ID its MNs send FBUs to).
        self._push_to = {
            r.name: (Caller(name=r.name, role="ar", router=r), r.key_address)
            for r in self.routers
            if r.key_address is not None
        }
        self._address_text = {name: str(address) for name, (_, address) in self._push_to.items()}
        self._matches: dict[NasIdentity, RouterMatch] = {}  # the routers are fixed: a NAS always matches alike
        self._explained: set[NasIdentity] = set()  # NASes whose "no key pushed" line has been logged
        self._no_push_log = RateLimitedLog(log, interval=1.0)  # those lines, across all NASes

    @property
    def write_behind_nice(self) -> int:
        """How much lower the writes behind the reply run (0 where it cannot be applied: not Linux)."""
        return self._writers.nice

    # -- counters ---------------------------------------------------------------------------------------

    def count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    # -- bounded service calls --------------------------------------------------------------------------

    def _op(self, operation: str) -> AbstractContextManager[None]:
        return self._metrics.operation(INTERFACE, operation) if self._metrics is not None else nullcontext()

    def _reserve(self, operation: str, timeout: float) -> bool:
        """Count one more pool call; with ``max_pending`` already pending, wait up to ``timeout`` seconds for one
        to end, else give up (counted, logged)."""
        with self._idle:
            overloaded = not self._idle.wait_for(lambda: self._pending < self._max_pending, timeout)
            if overloaded:
                self._counts[f"{operation}_overload"] += 1
            else:
                self._pending += 1
        if overloaded:
            self._limited(
                "warning",
                f"{operation}-overload",
                f"aaa_fmip: {operation} skipped: {self._max_pending} store calls still pending (store too slow?)",
            )
        return not overloaded

    def _release(self, behind_id: int | None = None) -> None:
        with self._lock:
            self._pending -= 1
            if behind_id is not None:
                self._behind.pop(behind_id, None)
            self._idle.notify_all()

    def _report(self, operation: str, exc: BaseException) -> None:
        """Count and log (rate-limited) a failed store call; never a value."""
        self.count(f"{operation}_error")
        if isinstance(exc, AaaFmipError):
            label = getattr(exc, "reason", None) or type(exc).__name__
            # Messages of our own errors never carry key material (errors.py); keep them short anyway.
            self._limited(
                "error", f"{operation}-{label}", f"aaa_fmip: {operation} failed: {type(exc).__name__}: {exc}"[:300]
            )
        else:
            # A library's message could quote its input: log the type only.
            self._limited(
                "error", f"{operation}-{type(exc).__name__}", f"aaa_fmip: {operation} failed: {type(exc).__name__}"
            )

    def _bounded(self, operation: str, fn: Callable[[], T]) -> T | None:
        """``fn()`` on the pool, awaited for at most ``store_timeout`` in all (a place in the queue included);
        None (counted, logged) on any failure."""
        deadline = time.monotonic() + self.store_timeout
        if not self._reserve(operation, self.store_timeout):
            return None

        def run() -> T:
            try:
                with self._op(operation):
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
            self._limited(
                "error",
                f"{operation}-timeout",
                f"aaa_fmip: {operation} did not finish within {self.store_timeout:g} s; access is not affected",
            )
        except Exception as exc:
            self._report(operation, exc)
        return None

    def _behind_reply(self, operation: str, fn: Callable[[], object], *, done: str | None = None) -> bool:
        """``fn()`` on the pool, not awaited; its failure is counted and logged. False if it could not be queued
        (``max_pending`` reached, or shutting down). ``done``: the counter of a success, which also marks the
        store as keeping up (a failure marks it as not)."""
        if not self._reserve(operation, self.store_timeout):
            return False
        with self._lock:
            behind_id = next(self._behind_ids)
            self._behind[behind_id] = time.monotonic()

        def run() -> None:
            try:
                with self._op(operation):
                    fn()
            except Exception as exc:
                if done is not None:
                    self._store_ok = False
                self._report(operation, exc)
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

    def keeping_up(self) -> bool:
        """The last session write succeeded and none has been pending longer than ``store_timeout``."""
        if not self._store_ok:
            return False
        with self._lock:
            oldest = min(self._behind.values(), default=None)
        return oldest is None or time.monotonic() - oldest <= self.store_timeout

    # -- post-auth --------------------------------------------------------------------------------------

    def post_auth(self, p: object) -> tuple[ReplyPair, ...]:
        """Reply attributes to add to the Access-Accept (possibly none). Never raises."""
        try:
            return self._post_auth(p)
        except Exception as exc:  # the contract: FreeRADIUS never sees an exception from us
            self.count("post_auth_internal_error")
            self._limited("error", "post-auth-internal", f"aaa_fmip: post-auth failed: {type(exc).__name__}")
            return ()

    def _post_auth(self, p: object) -> tuple[ReplyPair, ...]:
        try:
            request = parse_post_auth(parse_lists(p))
        except DecodeError as exc:
            self.count("post_auth_bad_attributes")
            self._limited("error", "post-auth-decode", f"aaa_fmip: unusable attributes: {exc}")
            return ()
        if request.emsk is None or request.eap_session_id is None:
            return self._no_emsk(request)
        push_to = None
        if self.push_keys:
            match = self._matches.get(request.nas)
            if match is None:
                if len(self._matches) >= _MATCH_CACHE_SIZE:
                    self._matches.clear()
                match = self._matches[request.nas] = match_router(self.routers, request.nas)
            if match.router is None:
                if request.nas not in self._explained:
                    self._explain_no_push(request.nas, match)
            else:
                push_to = self._push_to[match.router.name]
        token = secrets.token_hex(16)
        session_timeout = request.session_timeout if request.session_timeout and request.session_timeout > 0 else None
        try:
            # Pure computation (KDF, no IO): done here, so the reply does not wait for the pool.
            prepared = self.service.prepare_session(
                AAA_CALLER,
                user_name=request.user_name,
                emsk=request.emsk.reveal(),
                eap_session_id=request.eap_session_id,
                calling_station_id=request.calling_station_id,
                nas_identifier=request.nas.label(),
                lifetime=session_timeout,
                external_ids=(EXTERNAL_ID_PREFIX + token,),
                push_to=push_to,  # the router's HK comes from the HMK just derived, not read back
            )
        except Exception as exc:
            self._report("ingest", exc)
            return ()
        info = prepared.info

        # The moment an awaited write is given up on: past it Redis refuses the write (checked against its own
        # clock), so a session the reply goes out without cannot appear later. Writes behind the reply carry
        # the store's own deadline (its socket timeout).
        deadline: float | None = None

        def commit() -> bool:  # True: _bounded answers None for a failure
            self.service.commit_session(prepared, deadline=deadline)
            self._log("debug", f"aaa_fmip: session stored: HMK-Name {info.hmk_name.hex()} SPI {info.spi}")
            return True

        if self.write_behind and self.keeping_up():
            if not self._behind_reply("ingest", commit, done="sessions_stored"):
                return ()
        else:
            deadline = time.time() + self.store_timeout
            if self._bounded("ingest", commit) is None:
                return ()
            self._store_ok = True
            self.count("sessions_stored")
        pairs: list[ReplyPair] = [("Class", "+=", "0x" + class_value(token).hex())]
        if info.grant is not None and push_to is not None:
            self.count("keys_pushed")
            pairs += _push_pairs(info.grant, self._address_text[push_to[0].name])
        return tuple(pairs)

    def _explain_no_push(self, nas: NasIdentity, match: RouterMatch) -> None:
        """Say once per NAS why its Access-Accepts carry no key (at most one such line a second in all)."""
        message = (
            f"aaa_fmip: no key pushed to the NAS with {describe_nas(nas)}: {match.reason}. Its Access-Accepts "
            "carry Class but no key; the router can still ask POST /v1/handover-keys (logged once per NAS)"
        )
        if self._no_push_log("warning" if match.misconfigured else "info", "no-push", message):
            if len(self._explained) >= _MATCH_CACHE_SIZE:
                self._explained.clear()
            self._explained.add(nas)

    def _no_emsk(self, request: PostAuthInput) -> tuple[ReplyPair, ...]:
        if not request.is_eap:
            self.count("post_auth_not_eap")
            return ()
        method = request.eap_type
        detail = "the EAP method exported no EMSK; the MN can use the RFC 5269 (SEND) handover key"
        if request.emsk is not None and request.eap_session_id is None:
            detail = "EMSK without EAP Session-Id: cannot name the handover master key"
        self.count("no_emsk")
        # Nothing in the reply depends on the audit entry: it is written behind the reply.
        self._behind_reply(
            "record_no_emsk",
            lambda: self.service.record_no_emsk(AAA_CALLER, user_name=request.user_name, method=method, detail=detail),
        )
        return ()

    # -- accounting -------------------------------------------------------------------------------------

    def accounting(self, p: object) -> int | None:
        """Revoke on Accounting Stop; returns how many sessions were revoked (None: not a Stop, or failed)."""
        try:
            request = parse_accounting(parse_lists(p))
        except DecodeError as exc:
            self.count("accounting_bad_attributes")
            self._limited("error", "accounting-decode", f"aaa_fmip: unusable accounting attributes: {exc}")
            return None
        except Exception as exc:
            self.count("accounting_internal_error")
            self._limited("error", "accounting-internal", f"aaa_fmip: accounting failed: {type(exc).__name__}")
            return None
        if not request.is_stop and request.nas_restart is None:
            return None
        # An Accounting-On/Off may revoke many sessions: past store_timeout it goes on in the pool, unawaited.
        revoked = self._bounded("revoke", lambda: revoke_for_accounting(self.service, AAA_CALLER, request))
        if revoked is not None:
            kind = accounting_kind(request)
            self.count("accounting_" + kind.removeprefix("accounting-"))  # accounting_stop, _on, _off
            if revoked:
                self.count("sessions_revoked")
                if kind != "stop":
                    self._log("info", f"aaa_fmip: {kind} from {request.nas.label()}: {revoked} session(s) revoked")
        return revoked

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
        """Let pending writes finish for at most ``flush_timeout`` seconds, then drop the rest and stop the pool.

        Returns how many store calls were still pending (dropped: logged and counted as ``dropped_on_close``).
        """
        self.flush(flush_timeout)
        self._writers.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        left = self.pending
        if left:
            with self._lock:
                self._counts["dropped_on_close"] += left
            self._log("error", f"aaa_fmip: {left} store calls still pending at shutdown were dropped")
        return left

    def summary(self) -> str:
        counts = self.counts
        return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no calls"


def _push_pairs(grant: HandoverKeyGrant, ar_address: str) -> Iterator[ReplyPair]:
    names = ATTRIBUTE_NAMES
    yield (names[VendorAttribute.HK], ":=", "0x" + grant.hk.hex())
    yield (names[VendorAttribute.SPI], ":=", str(grant.spi))
    yield (names[VendorAttribute.HK_LIFETIME], ":=", str(max(0, int(grant.lifetime))))
    yield (names[VendorAttribute.HK_NAME], ":=", "0x" + grant.hk_name.hex())
    yield (names[VendorAttribute.AR_ADDRESS], ":=", ar_address)
    if grant.algorithm in ALGORITHM_VALUES:
        yield (names[VendorAttribute.HK_ALGORITHM], ":=", grant.algorithm)

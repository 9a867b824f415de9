"""The FreeRADIUS adapter's logic, independent of the embedded interpreter (architecture.md §6).

:class:`FreeRadiusPlugin` turns one post-auth or accounting call into service calls:

* post-auth with an EMSK: :meth:`HandoverKeyService.ingest_session` (the same use case as ``POST /v1/sessions``),
  then, when the NAS is a registered access router and ``radius.push_keys`` is on, that router's HK for the
  first address listed for it, as vendor attributes for the Access-Accept (``AAA-FMIP-HK`` is salt-encrypted
  by FreeRADIUS itself, dictionary flag ``encrypt=2``). A ``Class`` value ``aaa-fmip:<token>`` names the
  session so that the NAS's Accounting-Request can revoke exactly it.
* post-auth of an EAP method without an EMSK (EAP-PWD in FreeRADIUS 3.2, EAP-MD5): no session;
  :meth:`HandoverKeyService.record_no_emsk` writes the audit entry.
* accounting Stop: :func:`aaa_fmip.radius.accounting.revoke_for_stop`.

Availability first: every service call runs on a small worker pool and is awaited for at most
``radius.store_timeout`` seconds; on a timeout or any error the Access-Accept goes out unchanged, the failure
is logged (rate-limited, never a value) and counted. Nothing here raises into FreeRADIUS. The plugin is
shared by all FreeRADIUS worker threads; its own state is the pool, a lock and counters.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypeVar

from aaa_fmip.config import AccessRouterSettings
from aaa_fmip.errors import AaaFmipError, DecodeError
from aaa_fmip.model import Caller, HandoverKeyGrant, SessionInfo
from aaa_fmip.radius.accounting import ServicePort, revoke_for_stop
from aaa_fmip.radius.attributes import (
    NasIdentity,
    PostAuthInput,
    class_value,
    parse_accounting,
    parse_lists,
    parse_post_auth,
)
from aaa_fmip.radius.dictionary import ALGORITHM_VALUES, ATTRIBUTE_NAMES, VendorAttribute

T = TypeVar("T")
Level = Literal["debug", "info", "warning", "error"]
LogFn = Callable[[Level, str], None]
ReplyPair = tuple[str, str, str]

AAA_CALLER: Final = Caller(name="freeradius", role="aaa")
EXTERNAL_ID_PREFIX: Final = "radius-class:"
INTERFACE: Final = "radius"


class MetricsPort(Protocol):
    def operation(self, interface: str, operation: str) -> AbstractContextManager[None]: ...


class PluginService(ServicePort, Protocol):
    def ingest_session(
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
    ) -> SessionInfo: ...

    def record_no_emsk(self, caller: Caller, *, user_name: str, method: str | None, detail: str) -> None: ...


# ------------------------------------------------------------------------------------------ router matching


@dataclass(frozen=True)
class RouterMatch:
    router: AccessRouterSettings | None
    reason: str  # why none matched, for the debug log


def match_router(routers: Iterable[AccessRouterSettings], nas: NasIdentity) -> RouterMatch:
    """The registered access router that sent this request, if exactly one fits.

    A router with ``nas_address`` is matched by address: the packet's source address when the site policy
    recorded it (authenticated by the RADIUS shared secret of that client), else NAS-IP(v6)-Address. A router
    with only ``nas_identifier`` is matched by NAS-Identifier, which is the NAS's own claim (docs/freeradius.md).
    """
    claimed = {a for a in (nas.nas_ip_address, nas.nas_ipv6_address) if a is not None}
    by_address = {nas.source_address} if nas.source_address is not None else claimed
    found: list[AccessRouterSettings] = []
    for router in routers:
        if router.nas_address is not None:
            if router.nas_address in by_address:
                found.append(router)
        elif router.nas_identifier is not None and router.nas_identifier == nas.nas_identifier:
            found.append(router)
    if len(found) == 1:
        return RouterMatch(found[0], "")
    if not found:
        return RouterMatch(None, "the NAS is not a registered access router")
    return RouterMatch(None, f"the NAS matches {len(found)} access routers: {', '.join(r.name for r in found)}")


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

    def __call__(self, level: Level, key: str, message: str) -> None:
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] += 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += f" ({suppressed} more like this since the last report)"
        self._log(level, message)


# -------------------------------------------------------------------------------------------------- plugin


class FreeRadiusPlugin:
    """Shared by every FreeRADIUS worker thread; see the module docstring for the contract."""

    def __init__(
        self,
        service: PluginService,
        *,
        routers: Iterable[AccessRouterSettings] = (),
        push_keys: bool = True,
        store_timeout: float = 0.3,
        log: LogFn,
        metrics: MetricsPort | None = None,
        workers: int = 8,
        max_pending: int = 64,
    ) -> None:
        self.service = service
        self.routers = tuple(routers)
        self.push_keys = push_keys
        self.store_timeout = store_timeout
        self._log = log
        self._limited = RateLimitedLog(log)
        self._metrics = metrics
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aaa-fmip")
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._pending = 0
        self._counts: Counter[str] = Counter()

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

    def _bounded(self, operation: str, fn: Callable[[], T]) -> T | None:
        """``fn()`` on the pool, awaited for at most ``store_timeout``; None (counted, logged) on any failure."""
        with self._lock:
            if self._pending >= self._max_pending:
                self._counts[f"{operation}_overload"] += 1
                overloaded = True
            else:
                self._pending += 1
                overloaded = False
        if overloaded:
            self._limited(
                "warning",
                f"{operation}-overload",
                f"aaa_fmip: {operation} skipped: {self._max_pending} store calls still pending (store too slow?)",
            )
            return None

        def run() -> T:
            try:
                with self._op(operation):
                    return fn()
            finally:
                with self._lock:
                    self._pending -= 1

        try:
            future = self._pool.submit(run)
        except RuntimeError:  # pool shut down (detach in progress)
            with self._lock:
                self._pending -= 1
            self.count(f"{operation}_shutdown")
            return None
        try:
            return future.result(timeout=self.store_timeout)
        except concurrent.futures.TimeoutError:
            self.count(f"{operation}_timeout")
            self._limited(
                "error",
                f"{operation}-timeout",
                f"aaa_fmip: {operation} did not finish within {self.store_timeout:g} s; access is not affected",
            )
        except AaaFmipError as exc:
            label = getattr(exc, "reason", None) or type(exc).__name__
            self.count(f"{operation}_error")
            # Messages of our own errors never carry key material (errors.py); keep them short anyway.
            self._limited(
                "error", f"{operation}-{label}", f"aaa_fmip: {operation} failed: {type(exc).__name__}: {exc}"[:300]
            )
        except Exception as exc:
            # A library's message could quote its input: log the type only.
            self.count(f"{operation}_error")
            self._limited(
                "error", f"{operation}-{type(exc).__name__}", f"aaa_fmip: {operation} failed: {type(exc).__name__}"
            )
        return None

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
        router = None
        if self.push_keys:
            match = match_router(self.routers, request.nas)
            router = match.router
            if router is None:
                self._log("debug", f"aaa_fmip: no key push: {match.reason}")
        token = secrets.token_hex(16)
        session_timeout = request.session_timeout if request.session_timeout and request.session_timeout > 0 else None
        emsk = request.emsk
        sid = request.eap_session_id

        user_name, mac, nas_label = request.user_name, request.calling_station_id, request.nas.label()
        external_ids = (EXTERNAL_ID_PREFIX + token,)

        push_to = None
        if router is not None:
            push_to = (Caller(name=router.name, role="ar", router=router.to_model()), router.addresses[0])

        def work() -> SessionInfo:
            return self.service.ingest_session(
                AAA_CALLER,
                user_name=user_name,
                emsk=emsk.reveal(),
                eap_session_id=sid,
                calling_station_id=mac,
                nas_identifier=nas_label,
                lifetime=session_timeout,
                external_ids=external_ids,
                push_to=push_to,  # one call: the router's HK comes from the HMK just derived, not read back
            )

        info = self._bounded("ingest", work)
        if info is None:
            return ()
        grant = info.grant
        self.count("sessions_stored")
        self._log("debug", f"aaa_fmip: session stored: HMK-Name {info.hmk_name.hex()} SPI {info.spi}")
        pairs: list[ReplyPair] = [("Class", "+=", "0x" + class_value(token).hex())]
        if grant is not None and router is not None:
            self.count("keys_pushed")
            pairs += _push_pairs(grant, router.addresses[0])
        return tuple(pairs)

    def _no_emsk(self, request: PostAuthInput) -> tuple[ReplyPair, ...]:
        if not request.is_eap:
            self.count("post_auth_not_eap")
            return ()
        method = request.eap_type
        detail = "the EAP method exported no EMSK; the MN can use the RFC 5269 (SEND) handover key"
        if request.emsk is not None and request.eap_session_id is None:
            detail = "EMSK without EAP Session-Id: cannot name the handover master key"
        self.count("no_emsk")
        self._bounded(
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
        if not request.is_stop:
            return None
        revoked = self._bounded("revoke", lambda: revoke_for_stop(self.service, AAA_CALLER, request))
        if revoked is not None:
            self.count("accounting_stop")
            if revoked:
                self.count("sessions_revoked")
        return revoked

    # -- lifecycle --------------------------------------------------------------------------------------

    def close(self, *, wait: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def summary(self) -> str:
        counts = self.counts
        return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no calls"


def _push_pairs(grant: HandoverKeyGrant, ar_address: ipaddress.IPv6Address) -> Iterator[ReplyPair]:
    names = ATTRIBUTE_NAMES
    yield (names[VendorAttribute.HK], ":=", "0x" + grant.hk.hex())
    yield (names[VendorAttribute.SPI], ":=", str(grant.spi))
    yield (names[VendorAttribute.HK_LIFETIME], ":=", str(max(0, int(grant.lifetime))))
    yield (names[VendorAttribute.HK_NAME], ":=", "0x" + grant.hk_name.hex())
    yield (names[VendorAttribute.AR_ADDRESS], ":=", str(ar_address))
    if grant.algorithm in ALGORITHM_VALUES:
        yield (names[VendorAttribute.HK_ALGORITHM], ":=", grant.algorithm)

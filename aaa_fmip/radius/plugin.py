"""The FreeRADIUS adapter's logic, independent of the embedded interpreter (architecture.md §6).

:class:`FreeRadiusPlugin` turns one post-auth or accounting call into service calls:

* post-auth with an EMSK: :meth:`HandoverKeyService.prepare_session` (the checks and derivations of
  ``POST /v1/sessions``) in the calling thread, then, when the NAS is a registered access router and
  ``radius.push_keys`` is on, that router's HK for the first address listed for it, as vendor attributes for the
  Access-Accept (``AAA-FMIP-HK`` is salt-encrypted by FreeRADIUS itself, dictionary flag ``encrypt=2``). A
  ``Class`` value ``aaa-fmip:<token>`` names the session so that the NAS's Accounting-Request can revoke exactly
  it. :meth:`HandoverKeyService.commit_session` (the Redis writes: session record, audit entries) runs on the
  store-call pool *behind* the reply while the store keeps up (see "Write-behind" below).
* post-auth of an EAP method without an EMSK (EAP-PWD in FreeRADIUS 3.2, EAP-MD5): no session;
  :meth:`HandoverKeyService.record_no_emsk` writes the audit entry, on the pool, behind the reply.
* accounting Stop, Accounting-On/Off: :func:`aaa_fmip.radius.accounting.revoke_for_accounting`, awaited (bounded,
  see below).

Availability first: every store call runs on the module's :class:`~aaa_fmip.radius.pool.StoreCallPool`; a call
the request waits for is awaited for at most ``radius.store_timeout`` seconds; on a timeout or any error the
Access-Accept goes out unchanged, the failure is logged (rate-limited, never a value) and counted. Nothing here
raises into FreeRADIUS.

Write-behind: while the store keeps up, post-auth does not wait for the session's writes: the key is pushed at
once and the writes follow on the pool (bounded by ``max_pending``, counted, logged on failure; :meth:`flush`
and :meth:`close` wait for them, bounded). As soon as a write fails, or one has been pending longer than
``store_timeout``, post-auth waits for the writes again (bounded, as above) and pushes a key only once its session
is stored, until a write succeeds. So in an outage at most the authentications whose writes were already under
way got a key that is not stored; their failure is logged and counted (``ingest_error``, ``ingest_timeout``).

Logging and counters: the standard :mod:`logging` (logger ``aaa_fmip.radius.plugin``; inside FreeRADIUS
:mod:`aaa_fmip.radius.radlog` forwards every line to FreeRADIUS' log), and the runtime's Prometheus
:class:`~aaa_fmip.metrics.Metrics` (``aaa_fmip_radius_events_total{interface="radius"}``, the counter names of
docs/freeradius.md, which :meth:`FreeRadiusPlugin.summary` lists at shutdown). Log lines carry identifiers,
never a key: the EMSK, HMK and HK stay in :class:`~aaa_fmip.crypto.secrets.SecretBytes` or the reply pairs.

The plugin is shared by all FreeRADIUS worker threads; its own state is the pool and two small caches.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Final, Protocol

from aaa_fmip.callers import CallerRegistry, RouterMatch, describe_nas
from aaa_fmip.errors import DecodeError
from aaa_fmip.logging import RATE_KEY
from aaa_fmip.metrics import Metrics
from aaa_fmip.model import Caller, EapKeys, HandoverKeyGrant, NasIdentity, SessionRequest
from aaa_fmip.radius.accounting import EXTERNAL_ID_PREFIX, ServicePort, accounting_kind, revoke_for_accounting
from aaa_fmip.radius.attributes import (
    PostAuthInput,
    class_value,
    parse_accounting,
    parse_lists,
    parse_post_auth,
)
from aaa_fmip.radius.dictionary import ALGORITHM_VALUES, ATTRIBUTE_NAMES, VendorAttribute
from aaa_fmip.radius.pool import INTERFACE, StoreCallPool
from aaa_fmip.ratelimit import Rate, TokenBucket
from aaa_fmip.service import PreparedSession

ReplyPair = tuple[str, str, str]

AAA_CALLER: Final = Caller(name="freeradius", role="aaa")
_MATCH_CACHE_SIZE: Final = 4096  # distinct NAS identities remembered
_NO_PUSH_RATE: Final = Rate(per_second=1.0, burst=1.0)  # "no key pushed" lines, across all NASes

log = logging.getLogger("aaa_fmip.radius.plugin")


class PluginService(ServicePort, Protocol):
    def prepare_session(self, caller: Caller, request: SessionRequest) -> PreparedSession: ...

    def commit_session(self, prepared: PreparedSession, *, deadline: float | None = None) -> None: ...

    def record_no_emsk(self, caller: Caller, *, user_name: str, method: str | None, detail: str) -> None: ...


# ------------------------------------------------------------------------------------------ router matching


# -------------------------------------------------------------------------------------------------- plugin


class FreeRadiusPlugin:
    """Shared by every FreeRADIUS worker thread; see the module docstring for the contract."""

    def __init__(
        self,
        service: PluginService,
        *,
        metrics: Metrics,
        callers: CallerRegistry,
        push_keys: bool = True,
        store_timeout: float = 0.3,
        workers: int = 8,
        max_pending: int = 64,
        write_behind: bool = True,
        write_behind_nice: int = 0,
    ) -> None:
        self.service = service
        self.callers = callers
        self.routers = callers.routers
        self.push_keys = push_keys
        self.store_timeout = store_timeout
        self.write_behind = write_behind
        self._metrics = metrics
        self._pool = StoreCallPool(
            metrics,
            store_timeout=store_timeout,
            workers=workers,
            max_pending=max_pending,
            write_behind_nice=write_behind_nice,
        )
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
        # Those lines, at most one a second across all NASes. Not the log handler's rate limit: a NAS counts as
        # explained only once its line went out, so the plugin has to know.
        self._no_push_lock = threading.Lock()
        self._no_push_bucket = TokenBucket(_NO_PUSH_RATE)
        self._no_push_held = 0

    @property
    def write_behind_nice(self) -> int:
        """How much lower the writes behind the reply run (0 where it cannot be applied: not Linux)."""
        return self._pool.nice

    # -- counters ---------------------------------------------------------------------------------------

    def count(self, event: str, amount: int = 1) -> None:
        self._metrics.count_radius(INTERFACE, event, amount)

    @property
    def counts(self) -> dict[str, int]:
        """The module's counters that are not zero, by name (read back from the metrics)."""
        return self._metrics.radius_counts(INTERFACE)

    @property
    def pending(self) -> int:
        return self._pool.pending

    def keeping_up(self) -> bool:
        """The last session write succeeded and none has been pending longer than ``store_timeout``."""
        return self._pool.keeping_up()

    # -- post-auth --------------------------------------------------------------------------------------

    def post_auth(self, p: object) -> tuple[ReplyPair, ...]:
        """Reply attributes to add to the Access-Accept (possibly none). Never raises."""
        try:
            return self._post_auth(p)
        except Exception as exc:  # the contract: FreeRADIUS never sees an exception from us
            self.count("post_auth_internal_error")
            log.error("post-auth failed: %s", type(exc).__name__, extra={RATE_KEY: "post-auth-internal"})
            return ()

    def _post_auth(self, p: object) -> tuple[ReplyPair, ...]:
        try:
            request = parse_post_auth(parse_lists(p))
        except DecodeError as exc:
            self.count("post_auth_bad_attributes")
            # DecodeError messages name the attribute and what is wrong with it, never its value.
            log.error("unusable attributes: %s", exc, extra={RATE_KEY: "post-auth-decode"})
            return ()
        if request.emsk is None or request.eap_session_id is None:
            return self._no_emsk(request)
        push_to = None
        if self.push_keys:
            match = self._matches.get(request.nas)
            if match is None:
                if len(self._matches) >= _MATCH_CACHE_SIZE:
                    self._matches.clear()
                match = self._matches[request.nas] = self.callers.match_nas(request.nas)
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
                SessionRequest(
                    user_name=request.user_name,
                    keys=EapKeys(request.emsk, request.eap_session_id),
                    calling_station_id=request.calling_station_id,
                    nas_identifier=request.nas.label(),
                    lifetime=session_timeout,
                    external_ids=(EXTERNAL_ID_PREFIX + token,),
                    push_to=push_to,  # the router's HK comes from the HMK just derived, not read back
                ),
            )
        except Exception as exc:  # refused before any store call (Forbidden, InvalidRequest): as a failed ingest
            self._pool.report("ingest", exc)
            return ()
        info = prepared.info

        # The moment an awaited write is given up on: past it Redis refuses the write (checked against its own
        # clock), so a session the reply goes out without cannot appear later. Writes behind the reply carry
        # the store's own deadline (its socket timeout).
        deadline: float | None = None

        def commit() -> bool:  # True: the pool answers None for a failure
            self.service.commit_session(prepared, deadline=deadline)
            log.debug("session stored: HMK-Name %s SPI %d", info.hmk_name.hex(), info.spi)
            return True

        if self.write_behind and self._pool.keeping_up():
            if not self._pool.behind("ingest", commit, done="sessions_stored"):
                return ()
        else:
            deadline = time.time() + self.store_timeout
            if self._pool.call("ingest", commit) is None:
                return ()
            self._pool.stored()
            self.count("sessions_stored")
        pairs: list[ReplyPair] = [("Class", "+=", "0x" + class_value(token).hex())]
        if info.grant is not None and push_to is not None:
            self.count("keys_pushed")
            pairs += _push_pairs(info.grant, self._address_text[push_to[0].name])
        return tuple(pairs)

    def _explain_no_push(self, nas: NasIdentity, match: RouterMatch) -> None:
        """Say once per NAS why its Access-Accepts carry no key (at most one such line a second in all)."""
        with self._no_push_lock:
            if self._no_push_bucket.take(time.monotonic()):
                self._no_push_held += 1
                return
            held, self._no_push_held = self._no_push_held, 0
            if len(self._explained) >= _MATCH_CACHE_SIZE:
                self._explained.clear()
            self._explained.add(nas)
        log.log(
            logging.WARNING if match.misconfigured else logging.INFO,
            "no key pushed to the NAS with %s: %s. Its Access-Accepts carry Class but no key; the router can still "
            "ask POST /v1/handover-keys (logged once per NAS)",
            describe_nas(nas),
            match.reason,
            extra={"suppressed": held} if held else None,
        )

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
        self._pool.behind(
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
            log.error("unusable accounting attributes: %s", exc, extra={RATE_KEY: "accounting-decode"})
            return None
        except Exception as exc:
            self.count("accounting_internal_error")
            log.error("accounting failed: %s", type(exc).__name__, extra={RATE_KEY: "accounting-internal"})
            return None
        if not request.is_stop and request.nas_restart is None:
            return None
        # An Accounting-On/Off may revoke many sessions: past store_timeout it goes on in the pool, unawaited.
        revoked = self._pool.call("revoke", lambda: revoke_for_accounting(self.service, AAA_CALLER, request))
        if revoked is not None:
            kind = accounting_kind(request)
            self.count("accounting_" + kind.removeprefix("accounting-"))  # accounting_stop, _on, _off
            if revoked:
                self.count("sessions_revoked", revoked)
                if kind != "stop":
                    log.info("%s from %s: %d session(s) revoked", kind, request.nas.label(), revoked)
        return revoked

    # -- lifecycle --------------------------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds until no store call is pending; True if none is."""
        return self._pool.flush(timeout)

    def close(self, *, flush_timeout: float = 0.0) -> int:
        """Let pending writes finish for at most ``flush_timeout`` seconds, then drop the rest and stop the pool.

        Returns how many store calls were still pending (dropped: logged and counted as ``dropped_on_close``).
        """
        return self._pool.close(flush_timeout=flush_timeout)

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

"""Keeping the audit trail outside Redis: an append-only JSON-lines file and RFC 5424 syslog, and retention.

The trail in Redis is authenticated (entry MACs, signed checkpoints: :mod:`aaa_fmip.crypto.audit`), but whoever
controls Redis can still delete it. Operators therefore keep their own copy: :class:`AuditExporter` follows the
stream and appends every entry, verified, to each sink, then records in Redis how far it got
(``P:{audit}:exported``). Retention (``audit.retain_entries``) then trims only what every sink holds, leaving
a signed anchor so the rest of the chain still verifies.

One export line (UTF-8 JSON, one object per line, keys sorted)::

    {"at": "<Unix seconds as stored>", "event": ..., "fields": {...}, "hash": <MAC>, "id": <stream id>,
     "kid": <KEK id>, "n": <position>, "prev": <MAC of entry n-1>, "v": 2}

An entry of a slot chain (``store.slot_chains``: an accepted FBU's entry in its session's hash slot) carries
``"slot": <slot>`` too, and ``n`` and ``prev`` are its position and link in that chain. A pass reads every chain
whose head moved past what was exported (the positions of all chains in one call, the entries of all those
chains in one pipeline), writes the new lines in groups of at most ``GROUP_BYTES`` (one write and one fsync each),
and records the positions of a group's chains in one call after it; lines of different chains interleave in the
file, each chain's lines in order.

``at`` is the exact text the MAC covers, and ``fields`` re-encoded with sorted keys and no spaces is the exact
``fields`` text it covers, so :func:`verify_export` (with the KEK) checks a copy offline, and a copy's last line
can be compared with a signed checkpoint.

Delivery is at least once: a crash between writing a group and recording its positions writes that group
again. The file sink skips entries it already holds (at start it reads the end of the file, more than a group,
and keeps the last position of each chain there); a syslog receiver may see a group twice (the ``slot`` and ``n``
in each message tell duplicates apart). The syslog message is the export
line as MSG of an RFC 5424 message (APP-NAME ``aaa-fmip``, MSGID ``audit``, facility authpriv), sent with the
maintained ``rfc5424-logging-handler`` (UDP, or TCP with octet-counting framing, RFC 6587 §3.4.1).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from aaa_fmip.crypto.audit import AUDIT_GENESIS, AuditKeys
from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import AaaFmipError, ConfigError, StoreError
from aaa_fmip.store import AuditEntry
from aaa_fmip.store.ops import ChainRef
from aaa_fmip.store.redis import RedisStore, canonical_fields

log = logging.getLogger("aaa_fmip.audit")

EXPORT_BATCH: Final = 1000  # entries read from one chain at a time
FULL_PASS_EVERY: Final = 12  # export passes: every 12th reads every chain's head (a minute at the default interval)
GROUP_BYTES: Final = 256 * 1024  # lines written (and fsync'd) before their positions are recorded, at most about
_TAIL_READ: Final = 16 * GROUP_BYTES  # read back at start: holds the last group, which may not be recorded
_NONE: Final = (0, None, AUDIT_GENESIS)  # the export position of a chain nothing of which was exported


def export_line(entry: AuditEntry, at_text: str) -> str:
    """One entry as its export line (module docstring)."""
    doc: dict[str, object] = {
        "v": 2,
        "id": entry.id,
        "n": entry.n,
        "at": at_text,
        "event": entry.event,
        "fields": entry.fields,
        "prev": entry.prev,
        "hash": entry.hash,
        "kid": entry.kid,
    }
    if entry.slot is not None:
        doc["slot"] = entry.slot
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


Line = tuple[int | None, int, str]  # chain (None: the main chain), position, export line


class Sink(Protocol):
    name: str

    def write(self, lines: Sequence[Line]) -> None:
        """Keep these lines durably; raise OSError on failure."""
        ...

    def close(self) -> None: ...


class JsonLinesSink:
    """An append-only file, one line per entry, flushed to disk (fsync) before the positions are recorded."""

    def __init__(self, path: Path) -> None:
        self.name = f"file {path}"
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise ConfigError(
                f"cannot open {path} for appending: {exc.strerror or exc}", key="audit.export_file"
            ) from None
        self._last = _last_positions(path)  # per chain, the last position at the end of the file

    def write(self, lines: Sequence[Line]) -> None:
        # a group written but not recorded before a crash is at the end of the file: what it holds is skipped
        fresh = [(slot, n, text) for slot, n, text in lines if n > self._last.get(slot, 0)]
        if not fresh:
            return
        data = "".join(text + "\n" for _, _, text in fresh).encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        for slot, n, _ in fresh:
            self._last[slot] = n

    def close(self) -> None:
        os.close(self._fd)


def _last_positions(path: Path) -> dict[int | None, int]:
    """Per chain, ``n`` of its last complete line in the end of an export file (none: empty or not an export)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _TAIL_READ))
            tail = f.read()
    except OSError:
        return {}
    lines = tail.split(b"\n")[1 if size > _TAIL_READ else 0 : -1]  # a cut first line, and what follows the last \n
    out: dict[int | None, int] = {}
    for line in lines:
        try:
            doc = json.loads(line)
            n, slot = doc.get("n"), doc.get("slot")
        except (ValueError, AttributeError):
            continue
        if isinstance(n, int) and (slot is None or isinstance(slot, int)):
            out[slot] = n
    return out


class SyslogSink:
    """RFC 5424 messages to a syslog receiver (``udp://host:port`` or ``tcp://host:port``)."""

    def __init__(self, url: str) -> None:
        import rfc5424logging

        scheme, _, rest = url.partition("://")
        host, _, port = rest.rpartition(":")
        self.name = f"syslog {url}"
        tcp = scheme == "tcp"
        try:
            self._handler: Any = rfc5424logging.Rfc5424SysLogHandler(
                address=(host.strip("[]"), int(port or 514)),
                socktype=socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM,
                facility=rfc5424logging.LOG_AUTHPRIV,
                appname="aaa-fmip",
                procid=os.getpid(),
                msg_as_utf8=True,
                utc_timestamp=True,
                framing=rfc5424logging.FRAMING_OCTET_COUNTING if tcp else rfc5424logging.FRAMING_NON_TRANSPARENT,
            )
        except OSError as exc:
            raise ConfigError(f"cannot reach {url}: {exc.strerror or exc}", key="audit.export_syslog") from None

    def write(self, lines: Sequence[Line]) -> None:
        for _slot, _n, text in lines:
            record = logging.LogRecord("aaa_fmip.audit", logging.INFO, __file__, 0, text, None, None)
            record.msgid = "audit"
            # build and send directly (not emit()): a failed send must raise, not be swallowed by a handler
            self._handler.transport.transmit(self._handler.build_msg(record))

    def close(self) -> None:
        self._handler.close()


def open_sinks(file: Path | None, syslog: str | None) -> list[Sink]:
    sinks: list[Sink] = []
    if file is not None:
        sinks.append(JsonLinesSink(file))
    if syslog is not None:
        sinks.append(SyslogSink(syslog))
    return sinks


class AuditExporter:
    """Follows the stream into ``sinks`` (module docstring); :meth:`export_once` is one pass, :meth:`start`
    runs passes on a thread every ``interval`` seconds with retention after each."""

    def __init__(
        self,
        store: RedisStore,
        sinks: Sequence[Sink],
        *,
        retain: int = 0,
        interval: float = 5.0,
        clock: Callable[[], float],
        on_exported: Callable[[int], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_pass: Callable[[float], None] | None = None,
    ) -> None:
        if not sinks:
            raise ValueError("an exporter needs a sink")
        self.store = store
        self.sinks = list(sinks)
        self.retain = retain
        self.interval = interval
        self.clock = clock
        self._on_exported = on_exported or (lambda n: None)
        self._on_error = on_error or (lambda kind: None)
        self._on_pass = on_pass or (lambda seconds: None)  # the seconds a successful pass (export, retention) took
        self._slow = False  # the last pass took longer than the interval (said once, until it no longer does)
        self._revisit: set[int] = set()  # slot chains said to have moved, not yet exported by a pass that succeeded
        self._passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None

    def export_once(self, *, full: bool = True) -> int:
        """Export every entry not yet exported; returns how many. Raises StoreError (and exports nothing further
        of that chain, nor anything after the group that holds it) at an entry that does not verify: a copy must
        never take in a forged entry. ``full`` False: of the main chain and the slot chains the writers said they
        appended to since the last pass (:meth:`~aaa_fmip.store.ops.StoreOps.report_moved`) only, so that the
        pass does not read the heads of every chain; the periodic passes are such, and every
        :data:`FULL_PASS_EVERY`-th is full, for what a writer appended and could not say (it crashed)."""
        moved = self.store.take_moved() | self._revisit
        self._revisit = moved  # until this pass succeeds: what it was told is not lost with a failed pass
        numbers = None if full else moved  # None: every chain of the registry
        done = self.store.audit_exported_all(numbers)
        heads = self.store.audit_heads(numbers)
        todo = [ref for ref, head in heads if head is None or head > done.get(ref.slot, _NONE)[0]]
        total = 0
        while todo:
            reads = [(done.get(ref.slot, _NONE)[1], EXPORT_BATCH, ref) for ref in todo]
            batches = self.store.read_audit_raw_many(reads)
            more: list[ChainRef] = []
            group: list[Line] = []
            positions: dict[int | None, tuple[int, str, str]] = {}
            size = 0
            bad: tuple[ChainRef, AuditEntry] | None = None
            for ref, rows in zip(todo, batches, strict=True):
                n, after, prev = done.get(ref.slot, _NONE)
                for stored in rows:
                    entry = stored.entry
                    linked = after is None or (entry.n == n + 1 and entry.prev == prev)
                    if not linked or not self.store.entry_verifies(stored):
                        bad = bad or (ref, entry)
                        break
                    line = export_line(entry, stored.at_text)
                    group.append((ref.slot, entry.n, line))
                    size += len(line) + 1
                    n, after, prev = entry.n, entry.id, entry.hash
                    positions[ref.slot] = (n, after, prev)
                    done[ref.slot] = (n, after, prev)
                else:
                    if len(rows) == EXPORT_BATCH:
                        more.append(ref)
                if size >= GROUP_BYTES:
                    total += self._flush(group, positions)
                    group, positions, size = [], {}, 0
            total += self._flush(group, positions)
            if bad is not None:  # what verified is kept; nothing of that chain from it on
                ref, entry = bad
                where = "" if ref.slot is None else f" of slot chain {ref.slot}"
                raise StoreError(
                    f"audit entry {entry.id}{where} (n={entry.n}) does not verify or does not follow the last exported "
                    "one; export stopped: run `aaa-fmip audit verify`"
                )
            todo = more
        self._revisit = set()
        return total

    def _flush(self, group: list[Line], positions: dict[int | None, tuple[int, str, str]]) -> int:
        """Write a group to every sink, then record its chains' positions (one call)."""
        if not group:
            return 0
        for sink in self.sinks:
            sink.write(group)
        self.store.set_audit_exported_many(positions)
        self._on_exported(len(group))
        return len(group)

    def trim(self) -> int:
        if self.retain <= 0:
            return 0
        return self.store.trim_audit(keep=self.retain, now=self.clock())

    def start(self) -> AuditExporter:
        self._thread = threading.Thread(target=self._run, name="aaa-fmip-audit-export", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """A last pass, then stop (bounded by one pass)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for sink in self.sinks:
            with contextlib.suppress(OSError):
                sink.close()

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            self._pass()
            if stopping:
                return
            self._stop.wait(self.interval)

    def _pass(self) -> None:
        started = time.monotonic()
        # full: the first, every FULL_PASS_EVERY-th and the one after a failed pass; retention (which verifies the
        # whole trail first) with the full passes only
        full = self._passes % FULL_PASS_EVERY == 0
        try:
            exported = self.export_once(full=full)
            dropped = self.trim() if full else 0
        except (AaaFmipError, OSError) as exc:
            kind = "store" if isinstance(exc, AaaFmipError) else "sink"
            self._on_error(kind)
            message = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
            if message != self._last_error:  # once per distinct failure, not every pass
                log.error("audit export failed", extra={"event": "audit-export-failed", "error": message})
            self._last_error = message
            self._passes = 0  # the next pass is full
            return
        if self._last_error is not None:
            log.info("audit export works again", extra={"event": "audit-export-recovered"})
            self._last_error = None
        self._passes += 1
        elapsed = time.monotonic() - started
        self._on_pass(elapsed)
        slow = elapsed > self.interval
        # a full pass reads every chain's head: with many slot chains it can take long (docs/performance.md)
        if slow and not self._slow:
            log.warning(
                "an audit export pass took longer than the export interval",
                extra={"event": "audit-export-slow", "seconds": round(elapsed, 3), "interval": self.interval},
            )
        self._slow = slow
        if exported or dropped:
            log.info("audit exported", extra={"event": "audit-exported", "entries": exported, "trimmed": dropped})


@dataclass(frozen=True)
class ExportCheck:
    ok: bool
    lines: int
    n: int  # position of the last line
    head: str  # its MAC
    problem: str | None = None
    line_number: int | None = None  # first bad line (1-based)


def verify_export(lines: Iterable[str], ring: KekRing, *, checkpoint: tuple[int, str] | None = None) -> ExportCheck:
    """Check an export file offline with the KEK ring: every line's MAC, and that each chain's lines (the main
    chain's, and each slot chain's) follow one another without gaps (each chain's first line may start anywhere:
    files are rotated). With ``checkpoint`` (n, head) of the main chain, its line at position n must carry that
    head, and the file must reach it. ``n`` and ``head`` of the result are the main chain's last line's."""
    keys = {k.key_id: AuditKeys.derive(k) for k in (ring.current, *ring.previous)}
    count = 0
    chains: dict[int | None, tuple[int, str]] = {}  # per chain, (n, MAC) of its last line
    main: tuple[int, str] = (0, AUDIT_GENESIS)
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        count += 1
        try:
            doc = json.loads(text)
            entry_n, prev, mac, kid = int(doc["n"]), str(doc["prev"]), str(doc["hash"]), str(doc["kid"])
            at, event, fields, slot = str(doc["at"]), str(doc["event"]), doc["fields"], doc.get("slot")
            if not isinstance(fields, dict) or not (slot is None or isinstance(slot, int)):
                raise ValueError("fields")
        except (ValueError, KeyError, TypeError):
            return ExportCheck(False, count, *main, "a line is not an export entry", number)
        last = chains.get(slot)
        if last is not None and (entry_n != last[0] + 1 or prev != last[1]):
            return ExportCheck(
                False, count, *main, "a gap or a reordering: the line does not follow the last of its chain", number
            )
        k = keys.get(kid)
        if k is None:
            return ExportCheck(False, count, *main, f"MAC made under KEK {kid!r}, which is not configured", number)
        if not 0 < entry_n < 1 << 64 or not hmac.compare_digest(
            k.mac(entry_n, prev, at, event, canonical_fields(fields)), mac
        ):
            return ExportCheck(False, count, *main, "the line's MAC does not verify: edited or forged", number)
        if (
            slot is None
            and checkpoint is not None
            and entry_n == checkpoint[0]
            and not hmac.compare_digest(mac, checkpoint[1])
        ):
            return ExportCheck(False, count, *main, "the entry at the checkpoint's position differs from it", number)
        chains[slot] = (entry_n, mac)
        if slot is None:
            main = (entry_n, mac)
    n = main[0]
    if checkpoint is not None and n < checkpoint[0]:
        return ExportCheck(False, count, *main, f"the file ends at n={n}, before the checkpoint's n={checkpoint[0]}")
    return ExportCheck(True, count, *main)

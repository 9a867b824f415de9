"""Local FBU verification at the PAR: parse, BADF, replay (RFC 5568 §6.2.2, §6.4.5; architecture.md §3, §8).

The fast path of a handover never leaves the router: with the node's handover key (HK) in memory, one FBU
costs one MH decode (checksum included), one HMAC and one replay check. Replay state is kept per (key,
router): the HK is specific to this router's address (the AR-ID), so no other router can advance it, and the
state is written to an append-only journal before the verdict is returned, so an FBU accepted before a restart
is not accepted after it. On start the journal is compacted (live entries rewritten to a temporary file that
is then renamed over it, an atomic step on POSIX file systems).

Replay rule (architecture.md §3, RFC 6275 §9.5.1 serial arithmetic): a Sequence Number newer than the last
accepted one (within 2^15) is accepted; the same number with the same authenticator is a retransmission;
anything else is a replay.

No clock (time is passed in); the journal is the only IO, behind :class:`ReplayJournal`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import Final, Literal, Protocol

from aaa_fmip.crypto import badf
from aaa_fmip.crypto.secrets import SecretBytes, constant_time_equal
from aaa_fmip.errors import BadAuthenticator, DecodeError
from aaa_fmip.wire import mh as mhwire
from aaa_fmip.wire._buffer import internet_checksum, ipv6_pseudo_header
from aaa_fmip.wire.icmpv6 import LinkLayerAddressCode

__all__ = [
    "FbuVerdict",
    "FileReplayJournal",
    "MemoryReplayJournal",
    "ParsedFbu",
    "ReceivedMh",
    "ReplayState",
    "RouterKey",
    "parse_fbu",
    "sequence_newer",
    "verify_with_key",
]

Outcome = Literal["accepted", "retransmission", "rejected"]
_HALF: Final = 1 << 15


def sequence_newer(candidate: int, last: int) -> bool:
    """RFC 6275 §9.5.1: ``candidate`` is newer than ``last`` modulo 2^16 (the 2^15 values after it)."""
    return 0 < (candidate - last) % 0x10000 < _HALF


@dataclass(frozen=True)
class ReceivedMh:
    """A Mobility Header as it arrived, with the addresses that authenticate it."""

    source: IPv6Address  # IPv6 source
    destination: IPv6Address  # IPv6 destination (for an FBU: the PAR address, the AR-ID)
    home_address: IPv6Address | None  # the Home Address destination option's address, if any
    mh: bytes


@dataclass(frozen=True)
class RouterKey:
    """A handover key this router holds for one node and one of its own addresses."""

    hk: SecretBytes = field(repr=False)
    hk_name: bytes  # 8 octets; names the (session, AR-ID) pair, so it scopes the replay state
    spi: int
    ar_address: IPv6Address
    expires_at: float  # POSIX seconds
    source: str = "fetched"  # pushed | prefetched | fetched | configured (for logs and metrics)


@dataclass(frozen=True)
class ParsedFbu:
    """An FBU decoded, with what its authentication needs."""

    packet: ReceivedMh
    fbu: mhwire.FBU
    auth: mhwire.BadfInput
    pcoa: IPv6Address  # the Home Address option's address, else the source
    ncoa: IPv6Address  # the Alternate CoA option, else the source
    mn_lla: bytes | None  # from an MH Link-Layer Address option (code 2), if any

    @property
    def predictive(self) -> bool:
        """Sent from the PCoA on the PAR's link (RFC 5568 §3.2): HI Code 0; else reactive, Code 1."""
        return self.packet.source == self.pcoa and self.ncoa != self.pcoa


def parse_fbu(packet: ReceivedMh) -> ParsedFbu:
    """Decode and checksum-check an FBU (pseudo-header source = the home address when present, architecture
    §3). Raises DecodeError for anything malformed, another MH type included (field ``mh.type``).

    The common layouts (Alternate CoA, MH-LLA, padding, BADF last) take a single pass over the octets
    (:func:`_parse_common`); anything else, and anything that fails a check there, goes through the full
    decoder of :mod:`aaa_fmip.wire.mh`, which gives the same result or the DecodeError.
    """
    fast = _parse_common(packet)
    if fast is not None:
        return fast
    pcoa = packet.home_address or packet.source
    message = mhwire.decode_mh(packet.mh, source=pcoa, destination=packet.destination)
    if not isinstance(message, mhwire.FBU):
        raise DecodeError("not a Fast Binding Update", field="mh.type", offset=2)
    auth = mhwire.badf_input(packet.mh)
    ncoa: IPv6Address | None = None
    mn_lla = None
    for option in message.options:
        if isinstance(option, mhwire.AlternateCareOfAddress) and ncoa is None:
            ncoa = option.address
        elif isinstance(option, mhwire.MHLinkLayerAddress) and option.option_code == 2 and mn_lla is None:
            mn_lla = option.address
    return ParsedFbu(packet, message, auth, pcoa, ncoa or packet.source, mn_lla)


_FBU_TYPE: Final = int(mhwire.MHType.FAST_BINDING_UPDATE)
_LLA_CODES: Final = {int(c): c for c in LinkLayerAddressCode}


def _parse_common(packet: ReceivedMh) -> ParsedFbu | None:
    """The hot path of :func:`parse_fbu` for FBUs with only Pad1/PadN, Alternate CoA, MH-LLA and a BADF that
    ends the header; None whenever the full decoder must decide (including every malformed input)."""
    mh = packet.mh
    n = len(mh)
    if n < 16 or mh[0] != 59 or mh[2] != _FBU_TYPE or (mh[1] + 1) * 8 != n:
        return None
    pcoa = packet.home_address or packet.source
    if internet_checksum(ipv6_pseudo_header(pcoa, packet.destination, n, mhwire.MH_NEXT_HEADER) + mh) != 0:
        return None
    options: list[mhwire.MobilityOption] = []
    ncoa: IPv6Address | None = None
    mn_lla: bytes | None = None
    pos = 12
    while pos < n:
        kind = mh[pos]
        if kind == 0:
            pos += 1
            continue
        if pos + 2 > n:
            return None
        length = mh[pos + 1]
        if kind == 21:  # BADF: Option Length counts the authenticator only (RFC 5568 §6.4.5)
            if pos + 6 + length != n:
                return None
            spi = int.from_bytes(mh[pos + 2 : pos + 6], "big")
            authenticator = mh[pos + 6 :]
            options.append(mhwire.BindingAuthorizationDataForFMIPv6(spi, authenticator))
            fbu = mhwire.FBU(
                int.from_bytes(mh[6:8], "big"),
                int.from_bytes(mh[10:12], "big"),
                tuple(options),
                bool(mh[8] & 0x80),
                bool(mh[8] & 0x40),
                bool(mh[8] & 0x20),
                bool(mh[8] & 0x10),
            )
            auth = mhwire.BadfInput(mh[:4] + b"\x00\x00" + mh[6 : pos + 6], spi, authenticator)
            return ParsedFbu(packet, fbu, auth, pcoa, ncoa or packet.source, mn_lla)
        end = pos + 2 + length
        if end > n:
            return None
        if kind == 3 and length == 16:
            address = IPv6Address(mh[pos + 2 : end])
            options.append(mhwire.AlternateCareOfAddress(address))
            ncoa = ncoa or address
        elif kind == 7 and length >= 1 and mh[pos + 2] in _LLA_CODES:
            lla = mh[pos + 3 : end]
            options.append(mhwire.MHLinkLayerAddress(_LLA_CODES[mh[pos + 2]], lla))
            if mh[pos + 2] == 2 and mn_lla is None:
                mn_lla = lla
        elif kind != 1:
            return None
        pos = end
    return None


@dataclass(frozen=True)
class FbuVerdict:
    """What the PAR decided about one FBU."""

    outcome: Outcome
    spi: int
    sequence: int
    reason: str | None = None  # for "rejected": unknown-spi, revoked, expired, bad-authenticator, replay, ...
    lifetime: int = 0  # seconds of redirection granted
    key: RouterKey | None = field(default=None, repr=False)  # the HK that verified it; signs the FBack

    @property
    def valid(self) -> bool:
        return self.outcome != "rejected"


# --- replay state ------------------------------------------------------------------------------------------------


@dataclass
class _Entry:
    sequence: int
    digest: bytes  # SHA-256 of the authenticator: a retransmission repeats it
    expires_at: float


class ReplayJournal(Protocol):
    """Where replay state is made durable: ``record`` returns only once the entry is written."""

    def load(self) -> dict[bytes, tuple[int, bytes, float]]: ...

    def record(self, scope: bytes, sequence: int, digest: bytes, expires_at: float) -> None: ...


class MemoryReplayJournal:
    """No durability (tests, and routers that accept losing replay state on restart)."""

    def load(self) -> dict[bytes, tuple[int, bytes, float]]:
        return {}

    def record(self, scope: bytes, sequence: int, digest: bytes, expires_at: float) -> None:
        return None


class FileReplayJournal:
    """An append-only journal of JSON lines ``[scope hex, sequence, digest hex, expires_at]``.

    ``load`` replays it (the last line per scope wins, a torn last line is ignored) and rewrites the live
    entries through a temporary file renamed over the journal. ``record`` appends one line with a single
    ``write`` on an ``O_APPEND`` descriptor (the kernel keeps it across a crash of the agent); with ``fsync``
    it also reaches the disk before returning (survives a power loss, costs a disk flush per FBU).
    """

    def __init__(self, path: Path, *, now: float, fsync: bool = False) -> None:
        self.path = path
        self.now = now
        self.fsync = fsync
        self._fd: int | None = None

    def load(self) -> dict[bytes, tuple[int, bytes, float]]:
        entries: dict[bytes, tuple[int, bytes, float]] = {}
        if self.path.exists():
            for line in self.path.read_text("ascii", errors="replace").splitlines():
                try:
                    scope_hex, sequence, digest_hex, expires_at = json.loads(line)
                    entries[bytes.fromhex(scope_hex)] = (int(sequence), bytes.fromhex(digest_hex), float(expires_at))
                except (ValueError, TypeError):
                    continue  # a line torn by a crash mid-write: the entries before it still count
        live = {k: v for k, v in entries.items() if v[2] > self.now}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="ascii") as f:
            for scope, (sequence, digest, expires_at) in live.items():
                f.write(_line(scope, sequence, digest, expires_at))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        os.chmod(self.path, 0o600)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        return live

    def record(self, scope: bytes, sequence: int, digest: bytes, expires_at: float) -> None:
        if self._fd is None:
            raise RuntimeError("load() the journal before recording")
        os.write(self._fd, _line(scope, sequence, digest, expires_at).encode("ascii"))
        if self.fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _line(scope: bytes, sequence: int, digest: bytes, expires_at: float) -> str:
    return json.dumps([scope.hex(), sequence, digest.hex(), round(expires_at, 3)], separators=(",", ":")) + "\n"


class ReplayState:
    """Last accepted Sequence Number per key scope (the HK-Name), journalled before each verdict."""

    def __init__(self, journal: ReplayJournal | None = None) -> None:
        self.journal: ReplayJournal = journal if journal is not None else MemoryReplayJournal()
        self._entries: dict[bytes, _Entry] = {
            scope: _Entry(sequence, digest, expires_at)
            for scope, (sequence, digest, expires_at) in self.journal.load().items()
        }

    def __len__(self) -> int:
        return len(self._entries)

    def check(
        self, scope: bytes, sequence: int, authenticator: bytes, *, now: float, expires_at: float
    ) -> Literal["accepted", "retransmission", "replay"]:
        """Check and, when accepted, record ``sequence`` for ``scope`` (architecture.md §3)."""
        digest = hashlib.sha256(authenticator).digest()
        entry = self._entries.get(scope)
        if entry is not None and entry.expires_at > now:
            if entry.sequence == sequence:
                return "retransmission" if constant_time_equal(entry.digest, digest) else "replay"
            if not sequence_newer(sequence, entry.sequence):
                return "replay"
        self.journal.record(scope, sequence, digest, expires_at)
        self._entries[scope] = _Entry(sequence, digest, expires_at)
        return "accepted"

    def forget(self, scope: bytes) -> None:
        self._entries.pop(scope, None)

    def expire(self, now: float) -> int:
        dead = [k for k, e in self._entries.items() if e.expires_at <= now]
        for k in dead:
            del self._entries[k]
        return len(dead)


def verify_with_key(
    parsed: ParsedFbu,
    candidates: list[RouterKey],
    replay: ReplayState,
    *,
    now: float,
    lifetime_unit: int = 4,
) -> FbuVerdict:
    """Verify ``parsed`` with the first candidate key whose authenticator matches, then check replay.

    ``candidates`` are this router's keys for the FBU's SPI and destination (SPI collisions are possible,
    architecture §3, so more than one may be tried). Never raises for a bad FBU: the verdict says why.
    """
    fbu, auth = parsed.fbu, parsed.auth

    def reject(reason: str, key: RouterKey | None = None) -> FbuVerdict:
        return FbuVerdict("rejected", auth.spi, fbu.sequence, reason, key=key)

    live = [k for k in candidates if k.expires_at > now and k.ar_address == parsed.packet.destination]
    if not live:
        return reject("expired" if candidates else "unknown-spi")
    for key in live:
        try:
            badf.verify_authenticator(key.hk, parsed.ncoa, parsed.packet.destination, auth.mh_data, auth.authenticator)
        except BadAuthenticator:
            continue
        outcome = replay.check(key.hk_name, fbu.sequence, auth.authenticator, now=now, expires_at=key.expires_at)
        if outcome == "replay":
            return reject("replay", key)
        remaining = max(1, int(key.expires_at - now))
        return FbuVerdict(outcome, auth.spi, fbu.sequence, None, min(fbu.lifetime * lifetime_unit, remaining), key)
    return reject("bad-authenticator")

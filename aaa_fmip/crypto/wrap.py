"""Key wrapping for key material at rest (architecture.md §5): AES-256-GCM under a key-encryption key (KEK).

Wrapped blob, version 1::

    version (1 octet, = 1) | key-id length (1 octet, 1..255) | key id (ASCII) | nonce (12 octets)
    | ciphertext | GCM tag (16 octets)

The GCM additional authenticated data is ``header || aad``, where ``header`` is the version, key-id length and
key id octets above and ``aad`` is supplied by the caller (the store passes the record's Redis key name), so a
blob cannot be moved to another key name or relabelled with another key id without failing authentication.

Nonces are 96 random bits per wrap (NIST SP 800-38D §8.2.2); rotate the KEK well before 2^32 wraps.

KEK text form (file or environment variable): one line ``key_id:hex64`` or just ``hex64`` (64 hex digits =
32 octets); blank lines and lines starting with ``#`` are ignored. Without an explicit id, the id is the
key's fingerprint ``k`` + the first 6 octets, in hex, of ``SHA-256("aaa-fmip kek id" || key)``. Key ids are
printable ASCII without spaces or ``:``, 1 to 64 characters.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import CryptoError

WRAP_VERSION: Final = 1
KEK_LENGTH: Final = 32  # AES-256
NONCE_LENGTH: Final = 12  # SP 800-38D §5.2.1.1: 96-bit IVs
TAG_LENGTH: Final = 16

_KEY_ID = re.compile(r"[!-9;-~]{1,64}")  # printable ASCII, no space, no ':'
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_FINGERPRINT_LABEL: Final = b"aaa-fmip kek id"


def kek_fingerprint(key: SecretBytes) -> str:
    """The default key id of a KEK: not secret (a truncated hash of a 256-bit key reveals nothing useful)."""
    return "k" + hashlib.sha256(_FINGERPRINT_LABEL + key.reveal()).digest()[:6].hex()


@dataclass(frozen=True)
class Kek:
    """A key-encryption key and the id that names it in every blob it wraps."""

    key_id: str
    key: SecretBytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not _KEY_ID.fullmatch(self.key_id):
            raise CryptoError("KEK id must be 1-64 printable ASCII characters without spaces or ':'")
        if not isinstance(self.key, SecretBytes) or len(self.key) != KEK_LENGTH:
            raise CryptoError(f"KEK {self.key_id!r} must be {KEK_LENGTH} octets")


class KekRing:
    """The current KEK (wraps) and previous ones (still unwrap), for rotation without re-wrapping."""

    def __init__(self, current: Kek, previous: tuple[Kek, ...] = ()) -> None:
        ids = [current.key_id, *(k.key_id for k in previous)]
        if len(set(ids)) != len(ids):
            raise CryptoError("KEK ring has two keys with the same id")
        self.current = current
        self.previous = tuple(previous)
        self._by_id: dict[str, Kek] = {k.key_id: k for k in (current, *previous)}

    def __repr__(self) -> str:
        return f"KekRing(current={self.current.key_id!r}, previous={[k.key_id for k in self.previous]!r})"

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext`` under the current KEK, bound to ``aad``."""
        kid = self.current.key_id.encode("ascii")
        header = bytes((WRAP_VERSION, len(kid))) + kid
        nonce = secrets.token_bytes(NONCE_LENGTH)
        sealed = AESGCM(self.current.key.reveal()).encrypt(nonce, bytes(plaintext), header + bytes(aad))
        return header + nonce + sealed

    def unwrap(self, blob: bytes, aad: bytes) -> SecretBytes:
        """Check and decrypt a blob made by :meth:`wrap` with the same ``aad``; raises :class:`CryptoError`."""
        blob = bytes(blob)
        if len(blob) < 2 or blob[0] != WRAP_VERSION:
            raise CryptoError("wrapped key: unknown format version")
        kid_len = blob[1]
        header_len = 2 + kid_len
        if kid_len == 0 or len(blob) < header_len + NONCE_LENGTH + TAG_LENGTH:
            raise CryptoError("wrapped key: truncated")
        try:
            kid = blob[2:header_len].decode("ascii")
        except UnicodeDecodeError:
            raise CryptoError("wrapped key: malformed key id") from None
        kek = self._by_id.get(kid)
        if kek is None:
            raise CryptoError(
                f"wrapped key: KEK {kid!r} is not configured (known: {', '.join(self._by_id)}; "
                "a KEK retired by a rotation belongs in keys.previous_kek_files)"
            )
        nonce = blob[header_len : header_len + NONCE_LENGTH]
        try:
            plain = AESGCM(kek.key.reveal()).decrypt(nonce, blob[header_len + NONCE_LENGTH :], blob[:header_len] + aad)
        except InvalidTag:
            raise CryptoError(
                f"wrapped key: authentication failed under KEK {kid!r} (wrong key, or the blob was edited or moved)"
            ) from None
        return SecretBytes(plain)


def parse_kek(text: str, *, source: str) -> Kek:
    """Parse the KEK text form (see the module docstring); ``source`` names where it came from, for errors."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(lines) != 1:
        raise CryptoError(f"{source}: expected exactly one line 'key_id:hex64' or 'hex64', found {len(lines)}")
    key_id, sep, hexkey = lines[0].rpartition(":")
    if not _HEX64.fullmatch(hexkey):
        raise CryptoError(f"{source}: the key must be 64 hex digits (32 octets)")
    key = SecretBytes(bytes.fromhex(hexkey))
    if not sep:
        key_id = kek_fingerprint(key)
    elif not _KEY_ID.fullmatch(key_id):
        raise CryptoError(f"{source}: key id must be 1-64 printable ASCII characters without spaces or ':'")
    return Kek(key_id, key)


def load_kek_file(path: Path | str) -> Kek:
    """Load a KEK file; it must be a regular file with no group or other permissions (e.g. mode 0600)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise CryptoError(f"KEK file {path} does not exist") from None
    except OSError as exc:
        raise CryptoError(f"KEK file {path} cannot be opened: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CryptoError(f"KEK file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise CryptoError(
                f"KEK file {path} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"run: chmod 600 {path}"
            )
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise CryptoError(f"KEK file {path} is not ASCII text") from None
    return parse_kek(text, source=f"KEK file {path}")


def kek_from_env(value: str, *, name: str = "environment variable") -> Kek:
    """Parse a KEK given in an environment variable's value (``key_id:hex64`` or ``hex64``)."""
    return parse_kek(value, source=name)


def create_kek_file(path: Path | str, *, key_id: str | None = None) -> Kek:
    """Create a new random KEK file with mode 0600; fails if ``path`` exists (never overwrites a KEK).

    The file is written under a temporary name in the same directory and linked into place, so a reader never
    sees a partly written file.
    """
    path = Path(path)
    key = SecretBytes(secrets.token_bytes(KEK_LENGTH))
    kek = Kek(key_id or kek_fingerprint(key), key)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        raise CryptoError(f"cannot create KEK file in {path.parent}: {exc.strerror}") from None
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask could only have narrowed it; make it exact
            os.write(fd, f"{kek.key_id}:{key.hex()}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, and fails like O_EXCL when the target exists
        except FileExistsError:
            raise CryptoError(f"KEK file {path} already exists; refusing to overwrite it") from None
        except OSError:
            _create_in_place(path, kek)  # file systems without hard links
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)
    return kek


def _create_in_place(path: Path, kek: Kek) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise CryptoError(f"KEK file {path} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise CryptoError(f"cannot create KEK file {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"{kek.key_id}:{kek.key.hex()}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

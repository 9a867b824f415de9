"""A real freeDiameter daemon (freeDiameterd 1.2.1) on loopback for tests: PKI, fd.conf, start, log, stop.

freeDiameter insists on TLS credentials even when no peer uses TLS, and the certificate's CN must equal its
Identity, so :class:`FreeDiameter` makes a throw-away CA and a certificate for that name. Every peer is declared
with ``No_TLS`` (python-diameter sends no Inband-Security-Id, which freeDiameter otherwise answers with 5017);
a peer given a ``port`` is connected to by freeDiameter, the others are expected to connect in. Readiness is the
log line ``freeDiameterd daemon initialized.``; :meth:`messages` parses the ``dbg_msg_dumps`` output (every
message sent and received) so that tests can assert what went over the wire. Every wait is bounded.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.redis_server import free_port

EXTENSIONS = Path("/usr/lib/freeDiameter")
READY_LINE = "freeDiameterd daemon initialized."
_HEADER = re.compile(r"\b(RCV from|SND to) '([^']+)':\s*$")
_NAME = re.compile(r"^\s*'([A-Za-z-]+)'\s*$")
_CODE = re.compile(r"Command Code: (\d+)")
_FLAGS = re.compile(r"Flags: 0x([0-9A-Fa-f]{2})")


def freediameterd_binary() -> str:
    for candidate in ("/usr/bin/freeDiameterd", shutil.which("freeDiameterd")):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("freeDiameterd is not installed: run scripts/install-deps (Debian: freediameter)")


@dataclass(frozen=True)
class FdPeer:
    """A peer freeDiameter accepts (without TLS); with ``port`` freeDiameter also connects to it."""

    identity: str
    port: int | None = None
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class FdMessage:
    """One message freeDiameter logged: direction ("RCV"/"SND"), the peer, the command's name and code."""

    direction: str
    peer: str
    name: str  # freeDiameter's dictionary name, or "" when the command is not in its dictionary
    code: int
    flags: int

    @property
    def is_request(self) -> bool:
        return bool(self.flags & 0x80)


class FreeDiameter:
    def __init__(
        self,
        directory: Path,
        *,
        identity: str = "fd.fmip.test",
        realm: str = "relay.test",
        peers: tuple[FdPeer, ...] = (),
        port: int | None = None,
        watchdog: int = 6,
        reconnect: int = 3,
    ) -> None:
        if watchdog < 6:
            raise ValueError("freeDiameter's TwTimer minimum is 6 s")
        self.directory = directory
        self.identity = identity
        self.realm = realm
        self.peers = peers
        self.port = port or free_port()
        self.watchdog = watchdog
        self.reconnect = reconnect
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "freediameter.log"

    # ------------------------------------------------------------------------------------------------- setup

    def _pki(self) -> tuple[Path, Path, Path]:
        pki = self.directory / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ca_key, ca_pem = pki / "ca.key", pki / "ca.pem"
        key, csr, pem = pki / "fd.key", pki / "fd.csr", pki / "fd.pem"

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)

        openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_pem),
            "-days", "2", "-subj", "/CN=aaa-fmip test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        # freeDiameter checks that the certificate's CN is its own Identity.
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            f"/CN={self.identity}",
        )
        openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(pem), "-days", "2",
        )  # fmt: skip
        return ca_pem, pem, key

    def _config(self, ca: Path, cert: Path, key: Path) -> Path:
        lines = [
            f'Identity = "{self.identity}";',
            f'Realm = "{self.realm}";',
            f"Port = {self.port};",
            "SecPort = 0;",
            "No_SCTP;",
            "No_IPv6;",
            'ListenOn = "127.0.0.1";',
            f"TcTimer = {self.reconnect};",
            f"TwTimer = {self.watchdog};",
            f'TLS_Cred = "{cert}", "{key}";',
            f'TLS_CA = "{ca}";',
            f'LoadExtension = "{EXTENSIONS / "dict_nasreq.fdx"}";',
            f'LoadExtension = "{EXTENSIONS / "dict_eap.fdx"}";',
            # 0x0080: dump every message sent and received (the tests read them back).
            f'LoadExtension = "{EXTENSIONS / "dbg_msg_dumps.fdx"}" : "0x0080";',
        ]
        for peer in self.peers:
            # A peer that only connects in gets an unused port: freeDiameter's reconnect attempts then fail fast.
            port = peer.port if peer.port is not None else free_port()
            lines.append(
                f'ConnectPeer = "{peer.identity}" {{ ConnectTo = "{peer.host}"; Port = {port}; No_TLS; No_SCTP; }};'
            )
        path = self.directory / "fd.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    # --------------------------------------------------------------------------------------------- process

    def start(self, timeout: float = 20.0) -> None:
        binary = freediameterd_binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        for extension in ("dict_nasreq.fdx", "dict_eap.fdx", "dbg_msg_dumps.fdx"):
            if not (EXTENSIONS / extension).exists():
                raise RuntimeError(f"{EXTENSIONS / extension} is missing: install freediameter-extensions")
        config = self._config(*self._pki())
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"freeDiameterd exited with {self.proc.returncode}: see {self.log_path}")
            if READY_LINE in self.log():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"freeDiameterd did not log {READY_LINE!r} within {timeout} s: see {self.log_path}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, then (bounded) SIGKILL. Stop the python-diameter peers after this: they answer its DPRs."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    # ------------------------------------------------------------------------------------------------- log

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def messages(self) -> list[FdMessage]:
        """Every message in the dump, in log order."""
        found: list[FdMessage] = []
        lines = self.log().splitlines()
        for i, line in enumerate(lines):
            header = _HEADER.search(line)
            if header is None:
                continue
            name, code, flags = "", -1, 0
            for follow in lines[i + 1 : i + 8]:
                text = follow.split("NOTI", 1)[-1]
                if (m := _NAME.match(text)) is not None:
                    name = m.group(1)
                elif (m := _CODE.search(text)) is not None:
                    code = int(m.group(1))
                elif (m := _FLAGS.search(text)) is not None:
                    flags = int(m.group(1), 16)
            direction = "RCV" if header.group(1) == "RCV from" else "SND"
            found.append(FdMessage(direction, header.group(2), name, code, flags))
        return found

    def wait_for(self, predicate: object, timeout: float, what: str) -> None:
        """Wait (bounded) until ``predicate(self)`` is true; fail naming ``what`` and the log file."""
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"freeDiameterd exited while waiting for {what}: see {self.log_path}")
            time.sleep(0.05)
        raise AssertionError(f"freeDiameter: no {what} within {timeout} s: see {self.log_path}")

    def peer_open(self, identity: str) -> bool:
        return re.search(rf"-> 'STATE_OPEN'\s+'{re.escape(identity)}'", self.log()) is not None

    def wait_open(self, identity: str, timeout: float = 15.0) -> None:
        self.wait_for(lambda fd: fd.peer_open(identity), timeout, f"open connection with {identity}")

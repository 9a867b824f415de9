"""A real key service (``aaa-fmip serve`` on redis-server) with an AAA client, two Mobility Servers (role ``mos``,
each bound to its MIHF-ID) and an auditor; sessions ingested as a RADIUS server would; openssl helpers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aaa_fmip import mn
from aaa_fmip.keys import HandoverMasterKey
from tests.support.service_proc import Credential, ServiceProcess, random_kek, render_config

MOS1_ID = "mos1.example.net"
MOS2_ID = "mos2.example.net"
OPENSSL_CIPHER = "PSK-AES128-GCM-SHA256"  # RFC 5487 TLS_PSK_WITH_AES_128_GCM_SHA256, OpenSSL's name


@dataclass(frozen=True)
class MosCredential:
    """A ``[[clients]]`` entry of role ``mos`` with its MIHF-IDs, and its bearer token."""

    name: str
    mihf_ids: tuple[str, ...]
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def toml(self) -> str:
        return (
            "[[clients]]\n"
            f"name = {json.dumps(self.name)}\n"
            'role = "mos"\n'
            "mihf_ids = [" + ", ".join(json.dumps(m) for m in self.mihf_ids) + "]\n"
            f'token_sha256 = "{hashlib.sha256(self.token.encode()).hexdigest()}"\n'
        )


@dataclass
class Stack:
    service: ServiceProcess
    aaa: Credential
    auditor: Credential
    mos1: MosCredential
    mos2: MosCredential


@dataclass
class NodeSession:
    """A node's EAP keying material and the session the AAA side created from it."""

    emsk: bytes
    eap_session_id: bytes
    hmk_name: str

    @property
    def master(self) -> HandoverMasterKey:
        return mn.derive_master_key(emsk=self.emsk, eap_session_id=self.eap_session_id)


def start_stack(workdir: Any, redis_url: str) -> Stack:
    aaa, auditor = Credential.new("aaa", "radius1"), Credential.new("auditor", "auditor1")
    mos1, mos2 = MosCredential("mos1", (MOS1_ID,)), MosCredential("mos2", (MOS2_ID,))
    config = render_config(
        store_url=redis_url,
        prefix="m" + secrets.token_hex(4),
        credentials=[aaa, auditor],
        extra=mos1.toml() + "\n" + mos2.toml(),
    )
    service = ServiceProcess(workdir, config=config, env={"AAA_FMIP_KEK": random_kek()}).start()
    return Stack(service=service, aaa=aaa, auditor=auditor, mos1=mos1, mos2=mos2)


def ingest(stack: Stack) -> NodeSession:
    emsk, sid = os.urandom(64), b"\x0d" + os.urandom(64)
    with stack.service.client(stack.aaa) as client:
        response = client.post(
            "/v1/sessions", json={"emsk": emsk.hex(), "eap_session_id": sid.hex(), "user_name": "node@example.net"}
        )
    assert response.status_code == 201, response.text
    return NodeSession(emsk, sid, response.json()["hmk_name"])


def fetch_psk(stack: Stack, mos: MosCredential, identity: str, mihf_id: str) -> Any:
    with stack.service.client(mos) as client:  # type: ignore[arg-type]
        return client.post("/v1/mih/psk", json={"psk_identity": identity, "mihf_id": mihf_id})


def openssl() -> str:
    found = shutil.which("openssl")
    assert found, "openssl is required (scripts/install-deps installs it)"
    return found


class OpenSsl:
    """One ``openssl s_server``/``s_client`` process, its output read line by line (bounded waits)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output: list[str] = []

    @classmethod
    async def start(cls, args: Sequence[str]) -> OpenSsl:
        proc = await asyncio.create_subprocess_exec(
            openssl(),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(proc)

    async def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """Read output lines until one contains ``text``; fails with everything read on timeout or exit."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await self.proc.stdout.readline()
                    if not raw:
                        break
                    line = raw.decode("utf-8", "replace")
                    self.output.append(line)
                    if text in line:
                        return line
        except TimeoutError:
            pass
        raise AssertionError(f"openssl did not print {text!r}; it printed:\n{''.join(self.output)[-3000:]}")

    async def send_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


class LoopbackCapture:
    """``dumpcap`` on the loopback interface with a capture filter, into ``path``; started and stopped within
    bounded waits, always terminated."""

    def __init__(self, path: Any, capture_filter: str) -> None:
        self.path = path
        self.capture_filter = capture_filter
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LoopbackCapture:
        dumpcap = shutil.which("dumpcap")
        assert dumpcap, "dumpcap (tshark's capture tool) is required"
        self.proc = subprocess.Popen(
            [dumpcap, "-q", "-i", "lo", "-f", self.capture_filter, "-w", str(self.path)],
            stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 20
        seen = b""
        os.set_blocking(self.proc.stderr.fileno(), False)
        # "Capturing on" comes before dumpcap opens the interface; the file only once it is open and filtering.
        while b"Capturing on" not in seen or not (os.path.exists(self.path) and os.path.getsize(self.path) > 0):
            assert time.monotonic() < deadline and self.proc.poll() is None, f"dumpcap did not start: {seen!r}"
            seen += self.proc.stderr.read() or b""
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        time.sleep(0.3)  # let the last packets reach the capture
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def tshark_dtls_decrypted(pcap: Any, port: int, psk_hex: str) -> str:
    """tshark's text and hex dump of the capture, DTLS on ``port`` decrypted with ``psk_hex`` (``-o dtls.psk``)."""
    tshark = shutil.which("tshark")
    assert tshark, "tshark is required"
    done = subprocess.run(
        [tshark, "-n", "-r", str(pcap), "-o", f"dtls.psk:{psk_hex}", "-d", f"udp.port=={port},dtls", "-P", "-x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "LC_ALL": "C"},
    )
    return done.stdout

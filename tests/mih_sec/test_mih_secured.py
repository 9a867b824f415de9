"""MIH over DTLS/TLS-PSK end to end: a real key service issues the keys, ``aaa-fmip mih`` with a [mih.psk] table
serves MIH_Get_Information only inside DTLS 1.2-PSK (UDP) and TLS 1.2-PSK (TCP), the node keys itself.

Peers: ``openssl s_client`` sending an encoded MIH frame, our node client (:func:`aaa_fmip.mih.secure.open_session`),
tshark decrypting the capture with the derived key and decoding the MIH inside, and revocation at the service
(new handshakes refused; open channels closed by the MoS's revocation follower)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from aaa_fmip import mn
from aaa_fmip.mih import psk as mihpsk
from aaa_fmip.mih.information import InformationServer, neighbours_from_response
from aaa_fmip.mih.neighbours import NeighbourTable
from aaa_fmip.mih.secure import SecureMIHServer, open_session
from aaa_fmip.wire import mih
from tests.mih._packets import udp6
from tests.mih.test_information import TABLE
from tests.mih_sec._stack import MOS1_ID, OPENSSL_CIPHER, LoopbackCapture, OpenSsl, Stack, ingest
from tests.support.pcap import tshark_fields, write_pcap
from tests.support.redis_server import RedisServer
from tests.support.service_proc import REPO_ROOT, ServiceProcess, random_kek, render_config

NODE = b"node@example.net"
AP1 = mih.LinkAddress.mac("02:00:00:00:00:01")
NEIGHBOUR_ROUTERS = ["2001:db8:2::1", "2001:db8:3::1"]
Transport = Literal["tcp", "udp"]
SNI_NOTE = b"Can't use SSL_get_servername\n"


def free_port() -> int:
    import socket

    for _ in range(50):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        ):
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on both TCP and UDP")


def routers(answer: mih.GetInformationResponse) -> list[str]:
    assert answer.status == mih.Status.SUCCESS
    (result,) = neighbours_from_response(answer)
    return [str(a) for c in result for a in c.ip_addresses]


def get_information_frame(tid: int, *, ack_req: bool = False) -> bytes:
    request = mih.GetInformationRequest(
        source=NODE,
        destination=MOS1_ID.encode(),
        transaction_id=tid,
        queries=(mih.IQBinData(querier_link_address=AP1),),
    )
    frame = mih.decode_frame(mih.encode_message(request))
    if ack_req:
        from dataclasses import replace

        frame = replace(frame, header=replace(frame.header, ack_req=True))
    return mih.encode_frame(frame)


# ---------------------------------------------------------------------------------- in process (fast path)


def test_node_session_over_tls_and_dtls_in_process(stack: Stack) -> None:
    """SecureMIHServer with the service's keys; the node derives its key and asks over TLS, then DTLS."""
    node = ingest(stack)

    async def scenario() -> None:
        info = InformationServer(MOS1_ID.encode(), NeighbourTable.from_mapping(_table()), clock=time.monotonic)
        keys = mihpsk.RestKeySource(stack.service.url, stack.mos1.token, MOS1_ID)
        server = SecureMIHServer(MOS1_ID.encode(), info.handle_frame, keys)
        await server.start("127.0.0.1", 0)
        try:
            for transport in ("tcp", "udp"):
                client = await open_session(
                    node.master, MOS1_ID, "127.0.0.1", server.port, transport=transport, node_mihf_id=NODE
                )
                try:
                    assert client.transport == transport
                    for _ in range(3):
                        assert routers(await client.get_information(AP1, timeout=20)) == NEIGHBOUR_ROUTERS
                finally:
                    await client.close()
            assert server.counters["tls-channels"] == 1 and server.counters["dtls-channels"] == 1
            # the key for another MoS does not open a session with this one
            with pytest.raises(mihpsk.ChannelError, match="handshake"):
                await open_session(
                    mn.derive_mih_psk(node.master, "mos2.example.net"),
                    "mos2.example.net",
                    "127.0.0.1",
                    server.port,
                    node_mihf_id=NODE,
                    timeout=8,
                )
        finally:
            await server.close()

    asyncio.run(scenario())


def _table() -> dict[str, object]:
    import tomllib

    return dict(tomllib.loads(TABLE))


# ---------------------------------------------------------------------------------- aaa-fmip mih process


@dataclass
class MosProcess:
    proc: subprocess.Popen[str]
    port: int
    stderr: list[str]

    def log(self) -> str:
        return "".join(self.stderr)[-4000:]


@contextlib.contextmanager
def mos_process(
    tmp_path: Path, stack: Stack, *, follow_revocations: bool, url: str | None = None, extra: str = ""
) -> Iterator[MosProcess]:
    """``aaa-fmip mih`` with [mih.psk]: keys from the real service with the mos1 token from a file; with
    ``follow_revocations`` an auditor token from the environment and a 1-second revocation poll."""
    port = free_port()
    (tmp_path / "mos.token").write_text(stack.mos1.token + "\n", "utf-8")
    psk = f'[mih.psk]\nservice_url = "{url or stack.service.url}"\ntoken_file = "mos.token"\n{extra}'
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    if follow_revocations:
        psk += 'audit_token_env = "MOS_AUDIT_TOKEN"\nrevocation_poll = 1\n'
        env["MOS_AUDIT_TOKEN"] = stack.auditor.token
    config = tmp_path / "mos.toml"
    config.write_text(f'[mih]\nmihf_id = "{MOS1_ID}"\n{psk}{TABLE}', "utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aaa_fmip.cli", "mih", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    mos = MosProcess(proc, port, lines)
    try:
        deadline = time.monotonic() + 30
        while not any('"listening"' in line for line in list(lines)):
            assert proc.poll() is None and time.monotonic() < deadline, f"aaa-fmip mih did not start:\n{mos.log()}"
            time.sleep(0.05)
        assert '"security":"dtls-psk,tls-psk"' in "".join(lines)
        yield mos
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        reader.join(timeout=10)
    assert proc.returncode == 0, mos.log()
    assert "Traceback" not in mos.log()


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["dtls", "tls"])
def test_openssl_client_gets_information_from_the_secured_mos(
    stack: Stack, tmp_path: Path, transport: Literal["dtls", "tls"]
) -> None:
    """s_client, keyed with what the node derives, sends an encoded MIH_Get_Information; our codec decodes the
    answer s_client received. The MoS fetched its key from the service with its mos token."""
    node = ingest(stack)
    key = mn.derive_mih_psk(node.master, MOS1_ID)
    request = get_information_frame(7)

    async def scenario(port: int) -> bytes:
        client = await OpenSsl.start(
            [
                "s_client",
                "-dtls1_2" if transport == "dtls" else "-tls1_2",
                "-connect",
                f"127.0.0.1:{port}",
                "-psk",
                key.psk.hex(),
                "-psk_identity",
                key.identity,
                "-cipher",
                OPENSSL_CIPHER,
                "-quiet",  # no session dump on stdout, no stdin commands: stdout is the decrypted stream only
            ]
        )
        try:
            assert client.proc.stdin is not None and client.proc.stdout is not None
            client.proc.stdin.write(request)  # one write: one DTLS record, one MIH frame
            await client.proc.stdin.drain()
            received = b""
            async with asyncio.timeout(30):
                while True:
                    # s_client 3.0 prints this line on stdout even with -quiet (its SNI callback); the rest of
                    # stdout is the decrypted stream
                    if SNI_NOTE.startswith(received):
                        frame = b""
                    else:
                        frame = received.removeprefix(SNI_NOTE)
                        total = mih.frame_length(frame[: mih.HEADER_LENGTH])
                        if total is not None and len(frame) >= total:
                            return frame[:total]
                    chunk = await client.proc.stdout.read(65536)
                    assert chunk, "s_client ended before the answer arrived"
                    received += chunk
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"s_client received {received.hex()}; {exc!r}") from None
        finally:
            await client.stop()

    with mos_process(tmp_path, stack, follow_revocations=False) as mos:
        try:
            answer = asyncio.run(scenario(mos.port))
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"no answer ({exc!r}); the MoS logged:\n{mos.log()}") from exc
    frame = mih.decode_frame(answer)
    assert frame.header.transaction_id == 7 and frame.header.opcode == mih.Opcode.RESPONSE
    message = mih.decode_message(frame)
    assert isinstance(message, mih.GetInformationResponse)
    assert routers(message) == NEIGHBOUR_ROUTERS
    assert message.source == MOS1_ID.encode() and message.destination == NODE
    # over DTLS the MoS asks for an MIH ACK (RFC 5677 §6), over TLS it does not
    assert frame.header.ack_req is (transport == "dtls")
    assert '"key_service"' in mos.log()


@pytest.mark.slow
def test_node_client_over_dtls_and_tls_and_tshark_decrypts_the_mih(stack: Stack, tmp_path: Path) -> None:
    """Our node client over DTLS and TLS to the MoS process; the DTLS capture, decrypted by tshark with the key
    the node derived (``-o dtls.psk``), holds MIH frames tshark's own ``mih`` dissector decodes."""
    node = ingest(stack)
    key = mn.derive_mih_psk(node.master, MOS1_ID)
    pcap = tmp_path / "mih-dtls.pcap"

    async def scenario(port: int) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for transport in ("udp", "tcp"):
            client = await open_session(node.master, MOS1_ID, "127.0.0.1", port, transport=transport, node_mihf_id=NODE)
            try:
                found[transport] = routers(await client.get_information(AP1, timeout=30))
                found[transport + "-again"] = routers(await client.get_information(AP1, timeout=30))
                if transport == "udp":  # let our MIH ACK of the last answer reach the MoS before closing
                    await asyncio.sleep(0.3)
            finally:
                await client.close()
        return found

    with (
        mos_process(tmp_path, stack, follow_revocations=False) as mos,
        LoopbackCapture(pcap, f"udp port {mos.port}"),
    ):
        found = asyncio.run(scenario(mos.port))
    assert found == {t: NEIGHBOUR_ROUTERS for t in ("udp", "udp-again", "tcp", "tcp-again")}

    # 1. tshark decrypts the DTLS records with the key the node derived, and hands the plaintext to its "data"
    #    dissector (tshark 4.0 has no "mih" entry in its dtls.port table); 2. its "mih" dissector decodes that
    #    plaintext, re-framed as UDP to port 4551, and so does our codec.
    decrypt = [
        "-o",
        f"dtls.psk:{key.psk.hex()}",
        "-d",
        f"udp.port=={mos.port},dtls",
        "-d",
        f"dtls.port=={mos.port},data",
    ]
    # (no display filter: tshark 4.0's one-pass -Y runs before the records are decrypted)
    records = tshark_fields(pcap, ["data.data"], extra_args=decrypt)
    plaintexts = [bytes.fromhex(r["data.data"][0]) for r in records if r["data.data"]]
    assert plaintexts, "tshark decrypted nothing"
    frames = [mih.decode_frame(p) for p in plaintexts]
    fields = ["mih.service_id", "mih.opcode", "mih.action_id", "mih.tid", "mih.acq_req", "mih.acq_resp"]
    rows = tshark_fields(
        write_pcap(tmp_path / "decrypted.pcap", [udp6(p) for p in plaintexts]), fields, display_filter="mih"
    )
    assert len(rows) == len(frames)
    decoded = []
    for row, frame in zip(rows, frames, strict=True):
        h = frame.header
        values = tuple(int(row[f][0], 0) for f in fields)  # tshark prints SID, opcode and AID in hex
        assert values == (int(h.service_id), int(h.opcode), h.action_id, h.transaction_id, h.ack_req, h.ack_rsp)
        decoded.append(values)
    # MIH_Get_Information (SID 4 information, AID 1): the requests (opcode 1) and responses (opcode 2) of both
    # transactions, and MIH ACKs (ACK-Rsp, RFC 5677 §6) inside DTLS
    get_information = {(op, tid) for sid, op, aid, tid, _, _ in decoded if (sid, aid) == (4, 1)}
    assert {(1, 1), (2, 1), (1, 2), (2, 2)} <= get_information, decoded
    assert any(ack_rsp for *_, ack_rsp in decoded), "no MIH ACK decoded"
    answers = [mih.decode_message(f) for f in frames if f.header.opcode == mih.Opcode.RESPONSE and len(f.tlvs) > 2]
    assert answers and all(
        routers(a) == NEIGHBOUR_ROUTERS for a in answers if isinstance(a, mih.GetInformationResponse)
    )
    # with any other key nothing decrypts
    wrong = mn.derive_mih_psk(node.master, "mos2.example.net").psk.hex()
    assert (
        tshark_fields(pcap, ["data.data"], display_filter="data", extra_args=["-o", f"dtls.psk:{wrong}", *decrypt[2:]])
        == []
    )


@pytest.mark.slow
def test_revocation_refuses_handshakes_and_closes_open_channels(stack: Stack, tmp_path: Path) -> None:
    """Revoked at the service: the open TLS and DTLS sessions are closed by the MoS (it follows session.revoked
    in the audit trail), and a new handshake of that session fails. Another node's session is untouched."""
    node, other = ingest(stack), ingest(stack)
    with mos_process(tmp_path, stack, follow_revocations=True) as mos:

        async def scenario() -> None:
            sessions = {
                (who, transport): await open_session(
                    n.master, MOS1_ID, "127.0.0.1", mos.port, transport=transport, node_mihf_id=NODE
                )
                for who, n in (("node", node), ("other", other))
                for transport in ("tcp", "udp")
            }
            try:
                for client in sessions.values():
                    assert routers(await client.get_information(AP1, timeout=30)) == NEIGHBOUR_ROUTERS
                with stack.service.client(stack.aaa) as http:
                    assert http.delete(f"/v1/sessions/{node.hmk_name}").status_code == 204
                async with asyncio.timeout(30):  # the follower polls every second
                    for transport in ("tcp", "udp"):
                        await sessions[("node", transport)].channel.wait_closed()
                transports: tuple[Literal["tcp", "udp"], ...] = ("tcp", "udp")
                for transport in transports:
                    with pytest.raises(ConnectionError):
                        await sessions[("node", transport)].get_information(AP1, timeout=10)
                    # the other node's sessions still work
                    assert routers(await sessions[("other", transport)].get_information(AP1, timeout=30)) == (
                        NEIGHBOUR_ROUTERS
                    )
                    with pytest.raises(mihpsk.ChannelError, match="handshake"):
                        await open_session(
                            node.master,
                            MOS1_ID,
                            "127.0.0.1",
                            mos.port,
                            transport=transport,
                            node_mihf_id=NODE,
                            timeout=8,
                        )
            finally:
                for client in sessions.values():
                    await client.close()

        asyncio.run(scenario())
    log = mos.log()
    assert f"closed 2 MIH channel(s) of PSK identity {node.hmk_name}" in log
    assert f"PSK identity {other.hmk_name}" not in log.split("closed 2 MIH channel(s)")[1]


# ---------------------------------------------------------------------------------- configuration, follower


@pytest.mark.parametrize(
    ("psk", "message"),
    [
        ('token_file = "t"\n', "mih.psk.service_url"),
        ('service_url = "ftp://x"\ntoken_file = "t"\n', "mih.psk.service_url"),
        ('service_url = "https://aaa.example.net"\n', "required: token_file or token_env"),
        ('service_url = "https://aaa.example.net"\ntoken_file = "missing"\n', "cannot read"),
        ('service_url = "https://aaa.example.net"\ntoken_file = "t"\ntoken_env = "X"\n', "not both"),
        ('service_url = "https://aaa.example.net"\ntoken_env = "AAA_FMIP_TEST_UNSET"\n', "mih.psk.token_env"),
        ('service_url = "https://aaa.example.net"\ntoken_file = "t"\nca_file = "nope.pem"\n', "mih.psk.ca_file"),
        ('service_url = "https://aaa.example.net"\ntoken_file = "t"\nrevocation_poll = 0\n', "revocation_poll"),
        ('service_url = "https://aaa.example.net"\ntoken_file = "t"\ncolour = 1\n', "mih.psk.colour: unknown setting"),
        ('service_url = "https://aaa.example.net"\ntoken_file = "t"\ntls_verify = "no"\n', "mih.psk.tls_verify"),
    ],
)
def test_psk_configuration_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, psk: str, message: str
) -> None:
    from aaa_fmip.cli import main

    monkeypatch.delenv("AAA_FMIP_TEST_UNSET", raising=False)
    (tmp_path / "t").write_text("a-token\n", "utf-8")
    config = tmp_path / "mos.toml"
    config.write_text(f'[mih]\nmihf_id = "{MOS1_ID}"\n[mih.psk]\n{psk}{TABLE}', "utf-8")
    assert main(["mih", "--config", str(config), "--check"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and message in err and "Traceback" not in err
    assert "a-token" not in err


def test_psk_configuration_check_and_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aaa_fmip.cli import main

    (tmp_path / "mos.token").write_text("a-token\n", "utf-8")
    config = tmp_path / "mos.toml"
    config.write_text(
        f'[mih]\nmihf_id = "{MOS1_ID}"\n[mih.psk]\nservice_url = "https://aaa.example.net:8443"\n'
        f'token_file = "mos.token"\naudit_token_env = "HOME"\n{TABLE}',
        "utf-8",
    )
    assert main(["mih", "--config", str(config), "--check"]) == 0
    out = capsys.readouterr().out
    assert "DTLS/TLS-PSK keyed by https://aaa.example.net:8443" in out and "a-token" not in out
    with pytest.raises(SystemExit):
        main(["mih", "--help"])
    out = capsys.readouterr().out
    assert "[mih.psk]" in out and "DTLS 1.2-PSK" in out and "token_file" in out and "audit_token" in out


def test_revocation_follower_reads_session_revoked_with_an_auditor_token(stack: Stack) -> None:
    """The follower hands each revoked session's PSK identity on once; a mos token may not read the trail."""
    node, other = ingest(stack), ingest(stack)

    async def scenario() -> None:
        from aaa_fmip.mih.secure import RevocationFollower

        handed: list[str] = []

        async def on_revoked(identity: str) -> int:
            handed.append(identity)
            return 0

        follower = RevocationFollower(stack.service.url, stack.auditor.token, on_revoked)
        await follower.poll()
        before = list(handed)
        with stack.service.client(stack.aaa) as http:
            assert http.delete(f"/v1/sessions/{node.hmk_name}").status_code == 204
        assert node.hmk_name in await follower.poll()
        assert handed[len(before) :] == [node.hmk_name] and other.hmk_name not in handed
        assert await follower.poll() == []  # the cursor moved on: nothing twice
        refused = RevocationFollower(stack.service.url, stack.mos1.token, on_revoked)
        assert await refused.poll() == [] and refused.counters == {"poll-refused": 1}

    asyncio.run(scenario())


def test_publish_prints_what_dnsmasq_accepts_and_the_zone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``aaa-fmip mih --publish`` from [mih.publish]: dnsmasq's own syntax check accepts the lines (dnsmasq serving
    them to our discovery and to dhclient is tests/mih_sec/test_discovery_dnsmasq.py)."""
    import ipaddress

    from aaa_fmip.cli import main
    from aaa_fmip.mih import publish

    config = tmp_path / "mos.toml"
    config.write_text(
        f'[mih]\nmihf_id = "{MOS1_ID}"\nlisten = "[::]:4551"\n[mih.publish]\ndomain = "example.net"\n'
        f'addresses = ["192.0.2.1", "2001:db8:5678::1"]\n{TABLE}',
        "utf-8",
    )
    mos = publish.MosPublication(
        domain="example.net",
        host=MOS1_ID,
        addresses=(ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("2001:db8:5678::1")),
    )
    assert main(["mih", "--config", str(config), "--publish", "dnsmasq"]) == 0
    lines = capsys.readouterr().out
    assert lines == publish.dnsmasq_config([mos]) and "srv-host=_MIHIS._tcp.example.net,mos1.example.net,4551" in lines
    (tmp_path / "dnsmasq.conf").write_text(lines, "utf-8")
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    checked = subprocess.run(
        [dnsmasq, "--test", f"--conf-file={tmp_path / 'dnsmasq.conf'}"], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0 and "syntax check OK" in checked.stderr, checked.stderr
    assert main(["mih", "--config", str(config), "--publish", "zone", "--listen", "[::]:4552"]) == 0
    zone = capsys.readouterr().out
    assert "_MIHIS._udp.example.net. 3600 IN SRV 10 0 4552 mos1.example.net." in zone
    config.write_text(f'[mih]\nmihf_id = "{MOS1_ID}"\n{TABLE}', "utf-8")
    assert main(["mih", "--config", str(config), "--publish", "zone"]) == 2
    assert "[mih.publish]" in capsys.readouterr().err


@pytest.mark.slow
def test_the_mos_reaches_an_https_key_service_through_its_ca_file(
    stack: Stack, tmp_path: Path, redis_server: RedisServer
) -> None:
    """[mih.psk] ca_file: the MoS verifies the key service's certificate with that CA; without it (the system's
    CAs) every key fetch fails, so the node's handshake is refused, and no key appears in the MoS's log."""
    from tests.api.test_tls import _issue, _write, tls_context

    ca = _issue(None, "aaa-fmip test CA")
    ca_pem, _ = _write(tmp_path / "ca", *ca)
    server_pem, server_key = _write(tmp_path / "server", *_issue(ca, "keys.example.net", server=True))
    config = f'[server]\ntls_cert_file = "{server_pem}"\ntls_key_file = "{server_key}"\n' + render_config(
        store_url=redis_server.url,
        prefix="h" + secrets.token_hex(4),
        credentials=[stack.aaa],
        extra=stack.mos1.toml(),
    )
    service = ServiceProcess(
        tmp_path / "svc",
        config=config,
        env={"AAA_FMIP_KEK": random_kek()},
        https=True,
        client_options={"verify": tls_context(ca_pem)},
    ).start()
    try:
        https = Stack(service=service, aaa=stack.aaa, auditor=stack.auditor, mos1=stack.mos1, mos2=stack.mos2)
        node = ingest(https)
        assert service.url.startswith("https://")

        async def ask(port: int, transport: Transport) -> list[str]:
            client = await open_session(
                node.master, MOS1_ID, "127.0.0.1", port, transport=transport, node_mihf_id=NODE, timeout=8
            )
            try:
                return routers(await client.get_information(AP1, timeout=30))
            finally:
                await client.close()

        trusted = tmp_path / "trusted"
        trusted.mkdir()
        with mos_process(trusted, https, follow_revocations=False, extra=f'ca_file = "{ca_pem}"\n') as mos:
            assert asyncio.run(ask(mos.port, "tcp")) == NEIGHBOUR_ROUTERS
            assert asyncio.run(ask(mos.port, "udp")) == NEIGHBOUR_ROUTERS
        untrusting = tmp_path / "untrusting"
        untrusting.mkdir()
        with (
            mos_process(untrusting, https, follow_revocations=False) as mos,
            pytest.raises(mihpsk.ChannelError, match="handshake"),
        ):
            asyncio.run(ask(mos.port, "tcp"))
        log = mos.log()
        assert "key source failed (ConnectError)" in log
        key = mn.derive_mih_psk(node.master, MOS1_ID).psk.hex()
        assert key not in log and key not in "".join(mos.stderr)
    finally:
        service.stop()


def test_an_idle_channel_is_closed_and_frees_its_dtls_peer_slot(stack: Stack) -> None:
    """A node that goes quiet (it moved away without closing) loses its channel after idle_timeout, over DTLS
    and TLS, so its peer slot is free again; a busy one keeps it."""
    node = ingest(stack)

    async def scenario() -> None:
        info = InformationServer(MOS1_ID.encode(), NeighbourTable.from_mapping(_table()), clock=time.monotonic)
        keys = mihpsk.RestKeySource(stack.service.url, stack.mos1.token, MOS1_ID)
        server = SecureMIHServer(MOS1_ID.encode(), info.handle_frame, keys, idle_timeout=1.0)
        await server.start("127.0.0.1", 0)
        try:
            for transport in ("udp", "tcp"):
                client = await open_session(
                    node.master, MOS1_ID, "127.0.0.1", server.port, transport=transport, node_mihf_id=NODE
                )
                try:
                    for _ in range(4):  # busy for longer than idle_timeout: kept
                        assert routers(await client.get_information(AP1, timeout=20)) == NEIGHBOUR_ROUTERS
                        await asyncio.sleep(0.4)
                    assert not client.channel.closed
                    async with asyncio.timeout(20):
                        await client.channel.wait_closed()  # the MoS's close_notify after 1 s of silence
                    assert server.psk.dtls_peers == 0 and server.psk.registry.open_channels() == []
                finally:
                    await client.close()
            assert server.counters["idle-closed"] == 2
        finally:
            await server.close()
            await keys.aclose()

    asyncio.run(scenario())

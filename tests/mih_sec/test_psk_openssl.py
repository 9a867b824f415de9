"""DTLS 1.2-PSK and TLS 1.2-PSK with ``openssl s_server``/``s_client`` as the independent peer, both directions,
keyed by what the real key service hands out (``POST /v1/mih/psk``) and by what the node derives itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import pytest

from aaa_fmip import mn
from aaa_fmip.mih import psk as mihpsk
from tests.mih_sec._stack import (
    MOS1_ID,
    OPENSSL_CIPHER,
    LoopbackCapture,
    OpenSsl,
    Stack,
    fetch_psk,
    ingest,
    tshark_dtls_decrypted,
)
from tests.support.redis_server import free_port

pytestmark = pytest.mark.slow

Transport = Literal["dtls", "tls"]


def _version_args(transport: Transport) -> list[str]:
    return ["-dtls1_2"] if transport == "dtls" else ["-tls1_2"]


async def _echo(channel: mihpsk.Channel) -> None:
    while data := await channel.recv():
        await channel.send(b"echo:" + data)


@pytest.mark.parametrize("transport", ["dtls", "tls"])
def test_openssl_client_to_our_mos_keyed_by_the_service(stack: Stack, transport: Transport) -> None:
    """s_client plays the node with the key the node derives; our MoS gets its key from the service over REST."""
    node = ingest(stack)
    psk = mn.derive_mih_psk(node.master, MOS1_ID)

    async def scenario() -> None:
        keys = mihpsk.RestKeySource(stack.service.url, stack.mos1.token, MOS1_ID)
        server = mihpsk.PskServer(keys, _echo)
        start = server.start_dtls if transport == "dtls" else server.start_tls
        port = await start("127.0.0.1", 0)
        client = await OpenSsl.start(
            [
                "s_client",
                *_version_args(transport),
                "-connect",
                f"127.0.0.1:{port}",
                "-psk",
                psk.psk.hex(),
                "-psk_identity",
                psk.identity,
                "-cipher",
                OPENSSL_CIPHER,
                "-ign_eof",
            ]
        )
        try:
            await client.wait_for("Cipher is " + OPENSSL_CIPHER)
            await client.send_line("mih-frame-from-openssl")
            await client.wait_for("echo:mih-frame-from-openssl")
            (channel,) = server.registry.open_channels(psk.identity)
            assert channel.transport_name == transport and channel.cipher == "TLS-PSK-WITH-AES-128-GCM-SHA256"
            # revocation closes the open channel: openssl sees the close_notify
            assert await server.revoke(psk.identity) == 1
            assert server.registry.open_channels() == []
            await client.wait_for("closed")
        finally:
            await client.stop()
            await server.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", ["dtls", "tls"])
def test_our_node_to_openssl_server_keyed_by_the_service(stack: Stack, transport: Transport) -> None:
    """s_server plays the MoS with the key the service hands the MoS; our node derives its own."""
    node = ingest(stack)
    response = fetch_psk(stack, stack.mos1, node.hmk_name, MOS1_ID)
    assert response.status_code == 200, response.text
    service_key = response.json()["psk"]
    port = free_port()

    async def scenario() -> None:
        server = await OpenSsl.start(
            [
                "s_server",
                *_version_args(transport),
                "-accept",
                f"127.0.0.1:{port}",
                "-nocert",
                "-psk",
                service_key,
                "-psk_identity",
                node.hmk_name,
                "-cipher",
                OPENSSL_CIPHER,
            ]
        )
        try:
            await server.wait_for("ACCEPT")
            psk = mn.derive_mih_psk(node.master, MOS1_ID)
            connect = mihpsk.connect_dtls if transport == "dtls" else mihpsk.connect_tls
            channel = await connect("127.0.0.1", port, identity=psk.identity, psk=psk.psk.reveal())
            await channel.send(b"mih-frame-from-node\n")
            await server.wait_for("mih-frame-from-node")
            await server.send_line("mih-frame-from-openssl")
            received = b""
            async with asyncio.timeout(20):
                while b"mih-frame-from-openssl" not in received:
                    data = await channel.recv()
                    assert data, "channel closed before the server's line arrived"
                    received += data
            await channel.close()
        finally:
            await server.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", ["dtls", "tls"])
def test_wrong_key_fails_against_openssl(stack: Stack, transport: Transport) -> None:
    """A node keyed for another MoS cannot talk to this one: the handshake fails (no data flows)."""
    node = ingest(stack)
    service_key = fetch_psk(stack, stack.mos1, node.hmk_name, MOS1_ID).json()["psk"]
    wrong = mn.derive_mih_psk(node.master, "mos2.example.net")
    port = free_port()

    async def scenario() -> None:
        server = await OpenSsl.start(
            [
                "s_server",
                *_version_args(transport),
                "-accept",
                f"127.0.0.1:{port}",
                "-nocert",
                "-psk",
                service_key,
                "-psk_identity",
                node.hmk_name,
                "-cipher",
                OPENSSL_CIPHER,
            ]
        )
        try:
            await server.wait_for("ACCEPT")
            connect = mihpsk.connect_dtls if transport == "dtls" else mihpsk.connect_tls
            with pytest.raises(mihpsk.ChannelError, match="handshake"):
                await connect("127.0.0.1", port, identity=wrong.identity, psk=wrong.psk.reveal(), timeout=8)
        finally:
            await server.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("transport", ["dtls", "tls"])
def test_revoked_session_cannot_open_a_channel(stack: Stack, transport: Transport) -> None:
    node = ingest(stack)
    psk = mn.derive_mih_psk(node.master, MOS1_ID)
    with stack.service.client(stack.aaa) as client:
        assert client.delete(f"/v1/sessions/{node.hmk_name}").status_code == 204

    async def scenario() -> None:
        server = mihpsk.PskServer(mihpsk.RestKeySource(stack.service.url, stack.mos1.token, MOS1_ID), _echo)
        port = await (server.start_dtls if transport == "dtls" else server.start_tls)("127.0.0.1", 0)
        try:
            connect = mihpsk.connect_dtls if transport == "dtls" else mihpsk.connect_tls
            with pytest.raises(mihpsk.ChannelError, match="handshake"):
                await connect("127.0.0.1", port, identity=psk.identity, psk=psk.psk.reveal(), timeout=8)
            assert server.registry.open_channels() == []
        finally:
            await server.close()

    asyncio.run(scenario())


def test_tshark_decrypts_the_dtls_capture_with_the_key_the_service_hands_out(stack: Stack, tmp_path: Path) -> None:
    """The key on the wire is the derived one: tshark, given the service's key, decrypts the MIH payload."""
    node = ingest(stack)
    service_key = fetch_psk(stack, stack.mos1, node.hmk_name, MOS1_ID).json()["psk"]
    payload = b"MIH-PAYLOAD-" + node.hmk_name.encode()
    pcap = tmp_path / "dtls.pcap"
    port = free_port()

    async def scenario() -> None:
        server = mihpsk.PskServer(mihpsk.RestKeySource(stack.service.url, stack.mos1.token, MOS1_ID), _echo)
        await server.start_dtls("127.0.0.1", port)
        try:
            psk = mn.derive_mih_psk(node.master, MOS1_ID)
            channel = await mihpsk.connect_dtls("127.0.0.1", port, identity=psk.identity, psk=psk.psk.reveal())
            await channel.send(payload)
            assert await channel.recv() == b"echo:" + payload
            await channel.close()
        finally:
            await server.close()

    with LoopbackCapture(pcap, f"udp port {port}"):
        asyncio.run(scenario())

    def hexdump_of(data: bytes) -> str:
        return " ".join(f"{b:02x}" for b in data[:16])

    decrypted = tshark_dtls_decrypted(pcap, port, service_key)
    assert "Hello Verify Request" in decrypted  # the cookie exchange (RFC 6347 §4.2.1) came first
    assert decrypted.count("Decrypted DTLS") >= 3  # both Finished messages and the data
    assert hexdump_of(payload) in decrypted and hexdump_of(b"echo:" + payload) in decrypted
    # with another key nothing decrypts: the payload is not in the capture in clear
    wrong = mn.derive_mih_psk(node.master, "mos2.example.net").psk.hex()
    undecrypted = tshark_dtls_decrypted(pcap, port, wrong)
    assert hexdump_of(payload) not in undecrypted and "Decrypted DTLS" not in undecrypted

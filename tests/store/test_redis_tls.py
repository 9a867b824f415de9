"""TLS to Redis as docs/configuration.md ("TLS to Redis") describes: ``rediss://`` with ``ssl_ca_certs`` and a
client certificate.

The redis-server of the test machine is built without TLS, so TLS is terminated by a small proxy in front of a
real redis-server (a real handshake with Python's ssl module on both ends); what Redis itself does with
``tls-port`` is not exercised here.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aaa_fmip.crypto.wrap import KekRing
from aaa_fmip.errors import StoreUnavailable
from aaa_fmip.store.durability import ReplayDurabilityPolicy
from aaa_fmip.store.redis import RedisStore
from tests.api.test_tls import _issue, _write
from tests.support.redis_server import RedisServer


class TlsProxy:
    """Accepts TLS on loopback (client certificates from ``ca`` required) and relays to a plain Redis port."""

    def __init__(self, context: ssl.SSLContext, target_port: int) -> None:
        self.context = context
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(5)
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        threading.Thread(target=_pump, args=(upstream, tls), daemon=True).start()
        _pump(tls, upstream)

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.thread.join(timeout=5)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def tls_redis(tmp_path: Path, private_redis: RedisServer) -> Iterator[tuple[TlsProxy, dict[str, Path]]]:
    ca = _issue(None, "redis test CA")
    ca_pem, _ = _write(tmp_path / "ca", *ca)
    server_pem, server_key = _write(tmp_path / "server", *_issue(ca, "redis.example.net", server=True))
    client_pem, client_key = _write(tmp_path / "client", *_issue(ca, "aaa-fmip"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(server_pem), str(server_key))
    context.load_verify_locations(str(ca_pem))
    context.verify_mode = ssl.CERT_REQUIRED  # as tls-auth-clients yes
    proxy = TlsProxy(context, private_redis.port)
    yield proxy, {"ca": ca_pem, "cert": client_pem, "key": client_key}
    proxy.stop()


def test_rediss_with_a_private_ca_and_a_client_certificate(
    tls_redis: tuple[TlsProxy, dict[str, Path]], kek_ring: KekRing
) -> None:
    proxy, files = tls_redis
    base = f"rediss://127.0.0.1:{proxy.port}/0?ssl_ca_certs={files['ca']}"
    url = f"{base}&ssl_certfile={files['cert']}&ssl_keyfile={files['key']}"
    store = RedisStore.from_url(url, kek_ring, prefix="tls", socket_timeout=2.0, replay_policy=ReplayDurabilityPolicy())
    try:
        report = store.check_durability(require=True)
        assert report is not None and report.durable
        assert store.check_replay(b"\x03" * 8, b"ar", 1, b"x", ttl=5) == "accepted"
    finally:
        store.close()
    # without the CA the server is not trusted; without the client certificate the server refuses us
    for wrong in (f"rediss://127.0.0.1:{proxy.port}/0", base):
        other = RedisStore.from_url(wrong, kek_ring, prefix="tls", socket_timeout=2.0)
        with pytest.raises(StoreUnavailable):
            other.ping()
        other.close()

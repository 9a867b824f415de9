"""``aaa-fmip healthcheck`` against the real service in each TLS mode: plain HTTP, TLS and mutual TLS (the mode
in which the old container HEALTHCHECK, plain HTTP to /readyz, could never succeed)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.test_abuse import closed_by_peer
from tests.api.test_tls import _issue, _write, tls_context
from tests.support.redis_server import RedisServer, free_port
from tests.support.service_proc import Credential, ServiceProcess, render_config, run_cli


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hc-pki")
    ca = _issue(None, "aaa-fmip health CA")
    ca_pem, _ = _write(d / "ca", *ca)
    server_pem, server_key = _write(d / "server", *_issue(ca, "keys.example.net", server=True))
    probe_pem, probe_key = _write(d / "probe", *_issue(ca, "healthcheck.example.net"))
    return {"ca": ca_pem, "server": server_pem, "server_key": server_key, "probe": probe_pem, "probe_key": probe_key}


def _kek(tmp_path: Path) -> Path:
    kek = tmp_path / "kek"
    kek.write_text("k1:" + "33" * 32 + "\n")
    kek.chmod(0o600)
    return kek


def _start(tmp_path: Path, redis: RedisServer, server: str, **options: object) -> Iterator[ServiceProcess]:
    port = free_port()
    ar = Credential.new("ar", "ar1", ["2001:db8::1"])
    config = f'[server]\nlisten = "127.0.0.1:{port}"\n{server}\n' + render_config(
        store_url=redis.url, credentials=[ar], keys={"kek_file": str(_kek(tmp_path))}
    )
    service = ServiceProcess(tmp_path / "svc", config=config, port=port, **options)  # type: ignore[arg-type]
    service.start()
    try:
        yield service
    finally:
        service.stop()


def healthcheck(service: ServiceProcess, *args: str) -> tuple[int, str]:
    assert service.config_path is not None
    result = run_cli("healthcheck", "--config", str(service.config_path), *args, timeout=30)
    return result.returncode, result.stdout + result.stderr


def test_plain_http_ready_then_store_down(tmp_path: Path, private_redis: RedisServer) -> None:
    for service in _start(tmp_path, private_redis, ""):
        assert healthcheck(service) == (0, f"aaa-fmip healthcheck: http://127.0.0.1:{service.port}/readyz: 200\n")
        private_redis.stop()
        code, output = healthcheck(service)
        assert code == 1
        assert "/readyz: 503 (store-unavailable)" in output
        assert healthcheck(service, "--live")[0] == 0  # alive, though not ready
        service.stop()
        code, output = healthcheck(service, "--live")
        assert code == 1 and "ConnectionRefusedError" in output


def test_tls_trusts_the_services_own_certificate(
    tmp_path: Path, redis_server: RedisServer, certs: dict[str, Path]
) -> None:
    server = f'tls_cert_file = "{certs["server"]}"\ntls_key_file = "{certs["server_key"]}"'
    options = {"https": True, "client_options": {"verify": tls_context(certs["ca"])}}
    for service in _start(tmp_path, redis_server, server, **options):
        code, output = healthcheck(service)
        assert code == 0, output
        assert f"https://127.0.0.1:{service.port}/readyz: 200" in output
        assert healthcheck(service, "--cafile", str(certs["ca"]))[0] == 0
        other = tmp_path / "other-ca"
        other_pem, _ = _write(other, *_issue(None, "some other CA"))
        code, output = healthcheck(service, "--cafile", str(other_pem))
        assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in output


def test_mutual_tls_presents_the_configured_client_certificate(
    tmp_path: Path, redis_server: RedisServer, certs: dict[str, Path]
) -> None:
    server = (
        f'tls_cert_file = "{certs["server"]}"\ntls_key_file = "{certs["server_key"]}"\n'
        f'tls_client_ca_file = "{certs["ca"]}"\n'
        f'healthcheck_cert_file = "{certs["probe"]}"\nhealthcheck_key_file = "{certs["probe_key"]}"'
    )
    context = tls_context(certs["ca"], certs["probe"], certs["probe_key"])
    for service in _start(tmp_path, redis_server, server, https=True, client_options={"verify": context}):
        code, output = healthcheck(service)
        assert code == 0, output
        assert healthcheck(service, "--live")[0] == 0
        # Without a client certificate of its own the probe falls back to the server's pair, which this CA
        # issued for server authentication only: the handshake fails, and the probe says so.
        assert service.config_path is not None
        text = service.config_path.read_text()
        service.config_path.write_text(
            "\n".join(line for line in text.splitlines() if not line.startswith("healthcheck_"))
        )
        code, output = healthcheck(service)
        assert code == 1
        assert "is server.healthcheck_cert_file a client certificate" in output, output


def test_tls_connection_that_never_handshakes_is_closed(
    tmp_path: Path, redis_server: RedisServer, certs: dict[str, Path]
) -> None:
    # asyncio's own TLS handshake timeout is 60 s; the listener applies limits.header_timeout to it as well.
    server = (
        f'tls_cert_file = "{certs["server"]}"\ntls_key_file = "{certs["server_key"]}"\n[limits]\nheader_timeout = 1.0'
    )
    options = {"https": True, "client_options": {"verify": tls_context(certs["ca"])}}
    for service in _start(tmp_path, redis_server, server, **options):
        silent = socket.create_connection(("127.0.0.1", service.port), timeout=5)
        half = socket.create_connection(("127.0.0.1", service.port), timeout=5)
        half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
        try:
            deadline = time.monotonic() + 30
            assert closed_by_peer(silent, deadline)
            assert closed_by_peer(half, deadline)
        finally:
            silent.close()
            half.close()
        assert healthcheck(service)[0] == 0

"""The REST listener over TLS and mutual TLS (RFC 6734 §4: keying material only over a protected transport).

A CA, a server certificate for 127.0.0.1 and a client certificate are made here with `cryptography`; the
service is the real `aaa-fmip serve`; the client is httpx over real TLS."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.service_proc import Credential, ServiceProcess, render_config, run_cli

NOW = datetime.datetime.now(datetime.UTC)


def tls_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client TLS context trusting ``ca``, presenting ``cert`` when given."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = path.with_suffix(".pem"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _issue(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, cn: str, *, server: bool = False
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca[0].subject if ca else _name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
    )
    if ca is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if server:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
    return builder.sign(ca[1] if ca else key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca = _issue(None, "aaa-fmip test CA")
    other_ca = _issue(None, "some other CA")
    ca_pem, _ = _write(d / "ca", *ca)
    server_pem, server_key = _write(d / "server", *_issue(ca, "keys.example.net", server=True))
    client_pem, client_key = _write(d / "client", *_issue(ca, "ar1.example.net"))
    rogue_pem, rogue_key = _write(d / "rogue", *_issue(other_ca, "ar1.example.net"))
    return {
        "ca": ca_pem,
        "server": server_pem,
        "server_key": server_key,
        "client": client_pem,
        "client_key": client_key,
        "rogue": rogue_pem,
        "rogue_key": rogue_key,
    }


def test_https_serves_and_plain_http_does_not(tmp_path: Path, pki: dict[str, Path], redis_server: object) -> None:
    ar = Credential.new("ar", "ar1", ["2001:db8::1"])
    kek = tmp_path / "kek"
    kek.write_text("k1:" + "11" * 32 + "\n")
    kek.chmod(0o600)
    config = (
        f'[server]\ntls_cert_file = "{pki["server"]}"\ntls_key_file = "{pki["server_key"]}"\n'
        + render_config(store_url=redis_server.url, credentials=[ar], keys={"kek_file": str(kek)})  # type: ignore[attr-defined]
    )
    service = ServiceProcess(
        tmp_path / "svc", config=config, https=True, client_options={"verify": tls_context(pki["ca"])}
    )
    service.start()
    try:
        with service.client(ar) as client:
            assert client.get("/readyz").status_code == 200
            assert client.post("/v1/handover-keys", json={"ar_address": "2001:db8::1", "spi": 7}).status_code == 404
        with (
            httpx.Client(base_url=service.url.replace("https://", "http://"), timeout=5) as plain,
            pytest.raises(httpx.HTTPError),
        ):
            plain.get("/readyz")
        with (
            httpx.Client(base_url=service.url, timeout=5, verify=True) as untrusting,
            pytest.raises(httpx.ConnectError),  # our CA is not a public one: verification fails
        ):
            untrusting.get("/readyz")
    finally:
        service.stop()


def test_mutual_tls_requires_a_client_certificate_from_the_configured_ca(
    tmp_path: Path, pki: dict[str, Path], redis_server: object
) -> None:
    ar = Credential.new("ar", "ar1", ["2001:db8::1"])
    kek = tmp_path / "kek"
    kek.write_text("k1:" + "22" * 32 + "\n")
    kek.chmod(0o600)
    config = (
        f'[server]\ntls_cert_file = "{pki["server"]}"\ntls_key_file = "{pki["server_key"]}"\n'
        f'tls_client_ca_file = "{pki["ca"]}"\n'
        + render_config(store_url=redis_server.url, credentials=[ar], keys={"kek_file": str(kek)})  # type: ignore[attr-defined]
    )
    good = {"verify": tls_context(pki["ca"], pki["client"], pki["client_key"])}
    service = ServiceProcess(tmp_path / "svc", config=config, https=True, client_options=good)
    service.start()
    try:
        with service.client(ar) as client:
            assert client.get("/readyz").status_code == 200
        for context in (
            tls_context(pki["ca"]),  # no client certificate
            tls_context(pki["ca"], pki["rogue"], pki["rogue_key"]),  # one from another CA
        ):
            with (
                httpx.Client(base_url=service.url, timeout=5, verify=context) as client,
                pytest.raises((httpx.HTTPError, ssl.SSLError)),
            ):
                client.get("/readyz")
    finally:
        service.stop()


def test_tls_settings_are_checked(tmp_path: Path, pki: dict[str, Path]) -> None:
    missing = tmp_path / "c1.toml"
    missing.write_text(f'[server]\ntls_cert_file = "{pki["server"]}"\n')
    proc = run_cli("serve", "--config", str(missing))
    assert proc.returncode == 2 and "server.tls_key_file" in proc.stderr
    absent = tmp_path / "c2.toml"
    absent.write_text(f'[server]\ntls_cert_file = "{tmp_path / "nope.pem"}"\ntls_key_file = "{pki["server_key"]}"\n')
    proc = run_cli("serve", "--config", str(absent))
    assert proc.returncode == 2 and "server.tls_cert_file" in proc.stderr and "no such file" in proc.stderr
    ca_only = tmp_path / "c3.toml"
    ca_only.write_text(f'[server]\ntls_client_ca_file = "{pki["ca"]}"\n')
    proc = run_cli("serve", "--config", str(ca_only))
    assert proc.returncode == 2 and "server.tls_client_ca_file" in proc.stderr

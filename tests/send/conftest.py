"""Keys, PKI and a real ``aaa-fmip serve`` for the SEND-fallback tests. RSA keys are made once per run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aaa_fmip import ar, mn
from aaa_fmip.crypto import rsa
from tests.api._deploy import Deployment, start_deployment
from tests.send._helpers import MN_PREFIX, StoreProbe
from tests.send._pki import OpensslCA, small_rsa_key
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def send_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("send")


@pytest.fixture(scope="session")
def ca(send_dir: Path) -> OpensslCA:
    """The MNs' trust anchor."""
    return OpensslCA.create(send_dir / "pki", "FMIP Test CA")


@pytest.fixture(scope="session")
def router(ca: OpensslCA) -> ar.RouterIdentity:
    """AR1's router key (RSA-2048), its link-local CGA and a certificate from the test CA."""
    key = rsa.generate_private_key(2048)
    return ar.router_identity(key, ca.issue(key, "ar1.fmip.test"))


@pytest.fixture(scope="session")
def mn_identity() -> mn.CgaIdentity:
    """The round-trip MN: an RSA-2048 CGA (Sec 1) on AR1's prefix."""
    return mn.generate_cga_identity(MN_PREFIX, sec=1, key_bits=2048)


@pytest.fixture(scope="session")
def encryption_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """Two handover-key-encryption keys (RSA-2048), so a second request can use another one."""
    return rsa.generate_private_key(2048), rsa.generate_private_key(2048)


@pytest.fixture(scope="session")
def small_key(send_dir: Path) -> rsa.RSAPrivateKey:
    """RSA-768: below the default minimum of 1024 bits (RFC 3971 §5.1.3)."""
    return small_rsa_key(send_dir / "small", 768)


@pytest.fixture(scope="session")
def quick_keys() -> list[rsa.RSAPrivateKey]:
    """RSA-1024 keys for tests that need many identities (CGA keys and encryption keys)."""
    return [rsa.generate_private_key(1024) for _ in range(6)]


@pytest.fixture(scope="module")
def deployment(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = start_deployment(tmp_path_factory.mktemp("serve"), redis_server)
    yield d
    d.service.stop()


@pytest.fixture(scope="module")
def probe(deployment: Deployment) -> Iterator[StoreProbe]:
    p = StoreProbe(deployment)
    yield p
    p.close()

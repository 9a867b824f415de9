"""A deployment for the RADIUS tests: one configuration file read by FreeRADIUS' module, by a real
``aaa-fmip serve`` and by the test's own runtime (to look into the store), all on one redis-server prefix."""

from __future__ import annotations

import ipaddress
import itertools
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from aaa_fmip.bootstrap import Runtime, build_runtime
from aaa_fmip.config import load_settings
from aaa_fmip.crypto.wrap import create_kek_file
from aaa_fmip.store import SessionRecord
from aaa_fmip.store.redis import RedisStore
from tests.support.redis_server import free_port
from tests.support.service_proc import Credential, render_config

AR_NAME = "ar1"
AR_NAS_IDENTIFIER = "ar1.fmip.test"
AR_ADDRESS = ipaddress.IPv6Address("2001:db8:1::1")
AR_SECOND_ADDRESS = ipaddress.IPv6Address("2001:db8:1::2")
OTHER_AR_ADDRESS = ipaddress.IPv6Address("2001:db8:2::1")
ACCOUNTING_SECRET = "acct-secret-1"

_macs = itertools.count(1)


def next_mac() -> str:
    """A distinct locally administered MAC per authentication, so sessions never share a Calling-Station-Id."""
    n = next(_macs) + secrets.randbelow(1 << 20) * 4096
    return "02:" + ":".join(f"{(n >> s) & 0xFF:02x}" for s in (32, 24, 16, 8, 0))


def wait_for_session(store: RedisStore, hmk_name: bytes, timeout: float = 5.0) -> SessionRecord | None:
    """The session named ``hmk_name``, polled for at most ``timeout`` seconds: the module writes it behind the
    Access-Accept, so it appears shortly after eapol_test (or post_auth) returns."""
    deadline = time.monotonic() + timeout
    while True:
        record = store.get_session(hmk_name)
        if record is not None or time.monotonic() >= deadline:
            return record
        time.sleep(0.02)


@dataclass
class StackConfig:
    directory: Path
    redis_url: str
    prefix: str = field(default_factory=lambda: "r" + secrets.token_hex(4))
    store_timeout: float = 0.3
    write_behind: bool = True
    redis_timeout: float = 0.5  # store.timeout: the socket timeout of each Redis call
    accounting_port: int = field(default_factory=free_port)
    ar: Credential = field(default_factory=lambda: Credential.new("ar", AR_NAME, [str(AR_ADDRESS)]))
    other_ar: Credential = field(default_factory=lambda: Credential.new("ar", "ar2", [str(OTHER_AR_ADDRESS)]))
    aaa: Credential = field(default_factory=lambda: Credential.new("aaa", "radius"))
    auditor: Credential = field(default_factory=lambda: Credential.new("auditor", "audit"))

    def write(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        kek = self.directory / "kek"
        if not kek.exists():
            create_kek_file(kek)
        ar_toml = (
            self.ar.toml() + f'nas_identifier = "{AR_NAS_IDENTIFIER}"\nnas_address = "127.0.0.1"\n'
            # A second address: the pushed key is the one for the first address listed.
        ).replace(f'addresses = ["{AR_ADDRESS}"]', f'addresses = ["{AR_ADDRESS}", "{AR_SECOND_ADDRESS}"]')
        text = render_config(
            store_url=self.redis_url,
            prefix=self.prefix,
            timeout=self.redis_timeout,
            keys={"kek_file": str(kek)},
            credentials=[self.other_ar, self.aaa, self.auditor],
            extra=(
                ar_toml
                + f"\n[radius]\nstore_timeout = {self.store_timeout}\n"
                + ("" if self.write_behind else "write_behind = false\n")
                + f'\n[radius.accounting]\nlisten = "127.0.0.1:{self.accounting_port}"\n'
                + f'secret = "{ACCOUNTING_SECRET}"\nclients = ["127.0.0.1/32"]\n'
            ),
        )
        path = self.directory / "aaa-fmip.toml"
        path.write_text(text)
        return path

    def runtime(self) -> Runtime:
        return build_runtime(load_settings(self.directory / "aaa-fmip.toml", {}))

"""A deployment for the API tests: a real ``aaa-fmip serve`` with two routers and one client of each role, on a
redis-server under a key prefix of its own."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from tests.support.redis_server import RedisServer
from tests.support.service_proc import Credential, ServiceProcess, random_kek, render_config

AR1_ADDRESSES = ("2001:db8:1::1", "2001:db8:1::2")
AR2_ADDRESSES = ("2001:db8:2::1",)


@dataclass
class Deployment:
    service: ServiceProcess
    ar1: Credential
    ar2: Credential
    aaa: Credential
    auditor: Credential
    admin: Credential
    redis: RedisServer
    prefix: str
    kek: str


def make_credentials() -> dict[str, Credential]:
    return {
        "ar1": Credential.new("ar", "ar1", AR1_ADDRESSES),
        "ar2": Credential.new("ar", "ar2", AR2_ADDRESSES),
        "aaa": Credential.new("aaa", "radius1"),
        "auditor": Credential.new("auditor", "auditor1"),
        "admin": Credential.new("admin", "admin1"),
    }


def start_deployment(workdir: Path, redis: RedisServer, *, timeout: float | None = None) -> Deployment:
    creds = make_credentials()
    prefix = "t" + secrets.token_hex(4)
    kek = random_kek()
    config = render_config(store_url=redis.url, prefix=prefix, timeout=timeout, credentials=list(creds.values()))
    service = ServiceProcess(workdir, config=config, env={"AAA_FMIP_KEK": kek}).start()
    return Deployment(service=service, redis=redis, prefix=prefix, kek=kek, **creds)

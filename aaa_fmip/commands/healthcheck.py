"""``aaa-fmip healthcheck``: ask the running service, as configured, whether it is ready (or alive).

It reads the same configuration as ``serve`` (``--config`` or ``AAA_FMIP_CONFIG`` and the environment) and
connects to ``server.listen`` the way a client must: plain HTTP, TLS, or mutual TLS. Under TLS it trusts the
service's own certificate file (``server.tls_cert_file``; the chain in it is the trust anchor, so no public CA
and no host name is needed on the loopback); under mutual TLS it presents ``server.healthcheck_cert_file`` and
``healthcheck_key_file``, or the server's own pair when those are not set (that works only if the client CA
issued the server certificate for client authentication too). Exit status: 0 healthy, 1 not, 2 configuration
error. Meant for container HEALTHCHECKs and systemd/Kubernetes exec probes.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import json
import os
import ssl
import sys
from typing import Any, Final

from aaa_fmip.config import ENV_CONFIG, Settings, load_settings, resolve_config_path

DEFAULT_TIMEOUT: Final = 3.0


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "healthcheck",
        help="check that the running service is ready (exit 0) or not (exit 1), in any TLS mode",
        description=(
            "Connect to server.listen as configured (plain, TLS or mutual TLS) and GET /readyz (or /healthz with "
            "--live). Exit 0 on 200, 1 otherwise. See docs/configuration.md, 'Health checks'."
        ),
    )
    parser.add_argument("--config", metavar="FILE", help=f"TOML configuration file (default: ${ENV_CONFIG})")
    parser.add_argument("--live", action="store_true", help="check liveness (/healthz) instead of readiness")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS")
    parser.add_argument("--cafile", metavar="FILE", help="trust this CA bundle instead of server.tls_cert_file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(resolve_config_path(args.config, os.environ), os.environ)
    path = "/healthz" if args.live else "/readyz"
    ok, message = check(settings, path, timeout=args.timeout, cafile=args.cafile)
    print(f"aaa-fmip healthcheck: {message}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def target_host(host: str) -> str:
    """The address to dial for a listen address: a wildcard listen is reached on the loopback."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return host


def client_context(settings: Settings, cafile: str | None = None) -> ssl.SSLContext:
    server = settings.server
    assert server.tls_cert_file is not None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile or str(server.tls_cert_file))
    if cafile is None:
        # The pinned certificate is the service's own: a leaf is a valid anchor only with partial chains, and
        # it need not name the loopback address dialled here.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        context.check_hostname = False
    if server.tls_client_ca_file is not None:
        cert = server.healthcheck_cert_file or server.tls_cert_file
        key = server.healthcheck_key_file or server.tls_key_file
        context.load_cert_chain(str(cert), str(key))
    return context


def check(settings: Settings, path: str, *, timeout: float, cafile: str | None = None) -> tuple[bool, str]:
    """(healthy, one line saying what was seen)."""
    listen = settings.server.listen
    host = target_host(listen.host)
    connection: http.client.HTTPConnection
    try:
        if settings.server.tls:
            context = client_context(settings, cafile)
            connection = http.client.HTTPSConnection(host, listen.port, timeout=timeout, context=context)
        else:
            connection = http.client.HTTPConnection(host, listen.port, timeout=timeout)
    except (OSError, ssl.SSLError) as exc:
        return False, f"cannot set up TLS: {exc}"
    url = f"{'https' if settings.server.tls else 'http'}://{listen}{path}"
    try:
        connection.request("GET", path, headers={"Host": str(listen)})
        response = connection.getresponse()
        body = response.read(4096)
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        hint = ""
        if settings.server.tls_client_ca_file is not None and not isinstance(exc, ConnectionRefusedError):
            # Under TLS 1.3 a refused client certificate shows only as a closed connection.
            hint = " (mutual TLS: is server.healthcheck_cert_file a client certificate from server.tls_client_ca_file?)"
        return False, f"{url}: {type(exc).__name__}: {exc}{hint}"
    finally:
        connection.close()
    if response.status == 200:
        return True, f"{url}: {response.status}"
    reason = ""
    with contextlib.suppress(ValueError, AttributeError):
        reason = str(json.loads(body).get("reason", ""))
    return False, f"{url}: {response.status}{f' ({reason})' if reason else ''}"

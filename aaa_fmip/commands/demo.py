"""``aaa-fmip demo``: an AAA server, a mobile node and two access routers, against a running service.

Without ``--url`` the demo starts a private service (embedded Redis in a temporary directory, fresh tokens),
plays the scenario over HTTP, and stops it. ``--write-config DIR`` writes a config and the matching tokens
so an operator can run ``aaa-fmip serve --config DIR/config.toml`` and then
``aaa-fmip demo --url http://127.0.0.1:8080 --tokens DIR/tokens.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aaa_fmip import keys, mn
from aaa_fmip.crypto.secrets import SecretBytes

PAR1 = ipaddress.IPv6Address("2001:db8:1::1")
PAR2 = ipaddress.IPv6Address("2001:db8:2::1")
PCOA = ipaddress.IPv6Address("2001:db8:1::100")
NCOA = ipaddress.IPv6Address("2001:db8:2::100")
MAC = "02-00-00-00-00-01"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="play an AAA server, a mobile node and two access routers against the service",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="base URL of a running service (default: start a private one)")
    parser.add_argument("--tokens", type=Path, help="tokens.json written by --write-config (with --url)")
    parser.add_argument(
        "--write-config", type=Path, metavar="DIR", help="write DIR/config.toml and DIR/tokens.json, then exit"
    )
    parser.set_defaults(func=run)


def make_tokens() -> dict[str, Any]:
    return {
        "aaa": secrets.token_urlsafe(32),
        "auditor": secrets.token_urlsafe(32),
        "ar1": {"token": secrets.token_urlsafe(32), "address": str(PAR1)},
        "ar2": {"token": secrets.token_urlsafe(32), "address": str(PAR2)},
    }


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def config_text(tokens: dict[str, Any], data_dir: Path, listen: str) -> str:
    return f"""# Written by `aaa-fmip demo --write-config`: two access routers, an AAA client, an auditor.
[server]
listen = "{listen}"

[store]
data_dir = "{data_dir}"

[[access_routers]]
name = "ar1"
addresses = ["{PAR1}"]
token_sha256 = "{_sha(tokens["ar1"]["token"])}"

[[access_routers]]
name = "ar2"
addresses = ["{PAR2}"]
token_sha256 = "{_sha(tokens["ar2"]["token"])}"

[[clients]]
name = "demo-aaa"
role = "aaa"
token_sha256 = "{_sha(tokens["aaa"])}"

[[clients]]
name = "demo-auditor"
role = "auditor"
token_sha256 = "{_sha(tokens["auditor"])}"
"""


def write_config(directory: Path, listen: str = "127.0.0.1:8080") -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    tokens = make_tokens()
    (directory / "config.toml").write_text(config_text(tokens, directory / "data", listen))
    fd = os.open(directory / "tokens.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(tokens, f, indent=2)
    return tokens


class Client:
    """A minimal JSON-over-HTTP client (stdlib only, so the demo needs nothing beyond the package)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def call(self, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310 - http(s) only
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw) if raw else None
            except ValueError:
                return err.code, raw.decode(errors="replace")
        except (urllib.error.URLError, OSError) as err:  # refused, unreachable, timed out, TLS, ...
            reason = err.reason if isinstance(err, urllib.error.URLError) else err
            raise Unreachable(f"cannot reach the service at {self.base}: {reason}") from None


class Unreachable(Exception):
    """The service did not answer at all (as opposed to answering with an error status)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_service() -> Iterator[tuple[str, dict[str, Any]]]:
    with tempfile.TemporaryDirectory(prefix="aaa-fmip-demo-") as tmp:
        port = _free_port()
        tokens = write_config(Path(tmp), listen=f"127.0.0.1:{port}")
        cmd = [sys.executable, "-m", "aaa_fmip.cli", "serve", "--config", str(Path(tmp) / "config.toml")]
        log = (Path(tmp) / "serve.log").open("wb")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("the service exited: " + (Path(tmp) / "serve.log").read_text()[-2000:])
                try:
                    if Client(base).call("GET", "/readyz", None)[0] == 200:
                        break
                except Unreachable:  # not listening yet
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the service did not become ready within 30 s")
                time.sleep(0.1)
            yield base, tokens
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def step(n: int, who: str, text: str) -> None:
    print(f"\n[{n}] {who}: {text}")


def show(status: int, body: Any) -> None:
    print(f"    -> HTTP {status} {json.dumps(body, sort_keys=True) if body is not None else ''}")


def scenario(base: str, tokens: dict[str, Any]) -> int:
    """Play the whole story; returns 0 if every step behaved as the design says."""
    api = Client(base)
    ar1, ar2 = tokens["ar1"]["token"], tokens["ar2"]["token"]
    failures = 0

    def expect(ok: bool, what: str) -> None:
        nonlocal failures
        print(f"    {'ok' if ok else 'UNEXPECTED'}: {what}")
        failures += 0 if ok else 1

    emsk, session_id = os.urandom(64), b"\x0d" + os.urandom(64)
    step(1, "AAA server", f"EAP succeeded for alice ({MAC}); the plug-in ingests the EMSK-derived session")
    status, body = api.call(
        "POST",
        "/v1/sessions",
        tokens["aaa"],
        {"emsk": emsk.hex(), "eap_session_id": session_id.hex(), "user_name": "alice", "calling_station_id": MAC},
    )
    show(status, body)
    expect(status == 201, "session stored (the EMSK itself is not)")
    master = keys.derive_hmk(emsk, session_id)
    expect(status == 201 and body["spi"] == master.spi, f"SPI {master.spi} matches the MN's own derivation")

    step(2, "AR1 (previous AR)", "asks for its own handover key for this MN, by SPI")
    status, body = api.call("POST", "/v1/handover-keys", ar1, {"ar_address": str(PAR1), "spi": master.spi})
    shown = {k: v for k, v in (body or {}).items() if k != "hk"} if status == 200 else body
    show(status, shown)
    hk1 = keys.derive_hk(master.hmk, master.hmk_name, PAR1, master.spi)
    expect(status == 200 and body["hk"] == hk1.hk.hex(), "AR1's key equals the one the MN derives for AR1")

    step(3, "AR2", "asks for AR1's key (must be refused: keys are scoped to the router they are for)")
    status, body = api.call("POST", "/v1/handover-keys", ar2, {"ar_address": str(PAR1), "spi": master.spi})
    show(status, body)
    expect(status == 403, "refused")

    step(4, "MN", f"hands over: FBU seq 1 to PAR {PAR1}, NCoA {NCOA}, authenticated with AR1's key")
    fbu1 = mn.build_fbu(hk1, sequence=1, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR1)
    req = {"source": str(PCOA), "destination": str(PAR1), "mh": fbu1.hex()}
    status, body = api.call("POST", "/v1/fbu/verify", ar1, req)
    show(status, body)
    expect(status == 200 and body.get("verdict") == "accepted", "accepted")

    step(5, "MN", "retransmits the same FBU (no FBack seen)")
    status, body = api.call("POST", "/v1/fbu/verify", ar1, req)
    show(status, body)
    expect(status == 200 and body.get("verdict") == "retransmission", "recognised as a retransmission")

    step(6, "attacker", "replays an older FBU (seq 0) captured earlier")
    old = mn.build_fbu(hk1, sequence=0, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR1)
    status, body = api.call("POST", "/v1/fbu/verify", ar1, {**req, "mh": old.hex()})
    show(status, body)
    expect(status == 200 and body.get("reason") == "replay", "rejected as a replay")

    step(7, "attacker", "forges an FBU redirecting the MN's traffic to 2001:db8:666::1")
    guessed = keys.HandoverKey(hk=SecretBytes(os.urandom(32)), hk_name=bytes(8), spi=master.spi)
    forged = mn.build_fbu(
        guessed, sequence=2, lifetime_seconds=60, pcoa=PCOA, ncoa=ipaddress.IPv6Address("2001:db8:666::1"), par=PAR1
    )
    status, body = api.call("POST", "/v1/fbu/verify", ar1, {**req, "mh": forged.hex()})
    show(status, body)
    expect(status == 200 and body.get("reason") == "bad-authenticator", "rejected: bad authenticator")

    step(8, "AAA server", "Accounting Stop for alice: the session is revoked")
    status, body = api.call("DELETE", f"/v1/sessions/{master.hmk_name.hex()}", tokens["aaa"])
    show(status, body)
    expect(status == 204, "revoked")
    fbu3 = mn.build_fbu(hk1, sequence=3, lifetime_seconds=60, pcoa=PCOA, ncoa=NCOA, par=PAR1)
    status, body = api.call("POST", "/v1/fbu/verify", ar1, {**req, "mh": fbu3.hex()})
    show(status, body)
    expect(status == 200 and body.get("reason") in ("revoked", "unknown-spi"), "later FBUs fail")

    step(9, "auditor", "checks the hash-chained audit trail")
    status, body = api.call("GET", "/v1/audit/verify", tokens["auditor"])
    show(status, body)
    expect(status == 200 and body.get("ok") is True, "audit chain intact")

    print(f"\ndemo finished: {'all steps as expected' if not failures else f'{failures} unexpected step(s)'}")
    return 0 if not failures else 1


def run(args: argparse.Namespace) -> int:
    if args.write_config:
        write_config(args.write_config)
        print(f"wrote {args.write_config / 'config.toml'} and {args.write_config / 'tokens.json'} (mode 0600)")
        print(f"run:  aaa-fmip serve --config {args.write_config / 'config.toml'}")
        print(f"then: aaa-fmip demo --url http://127.0.0.1:8080 --tokens {args.write_config / 'tokens.json'}")
        return 0
    if args.url:
        if not args.tokens:
            print("aaa-fmip demo: --url needs --tokens (see --write-config)", file=sys.stderr)
            return 2
        try:
            tokens = json.loads(args.tokens.read_text())
        except (OSError, ValueError) as exc:
            print(f"aaa-fmip demo: cannot read the tokens file {args.tokens}: {exc}", file=sys.stderr)
            return 2
        try:
            return scenario(args.url, tokens)
        except Unreachable as exc:
            print(f"aaa-fmip demo: {exc} (is `aaa-fmip serve` running there?)", file=sys.stderr)
            return 1
    print("starting a private service (embedded Redis, temporary directory) ...")
    try:
        with private_service() as (base, tokens):
            print(f"service ready at {base}")
            return scenario(base, tokens)
    except (RuntimeError, Unreachable) as exc:  # it did not start, or went away
        print(f"aaa-fmip demo: {exc}", file=sys.stderr)
        return 1

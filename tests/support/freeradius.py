"""Real FreeRADIUS 3.2 and eapol_test for tests, on loopback only, every wait bounded.

* :func:`make_pki`: a CA, a server certificate (serverAuth) and a client certificate (clientAuth), RSA 2048, made
  with the openssl command line.
* :class:`FreeRadius`: a private copy of the distribution's raddb (``/etc/freeradius/3.0``) with our paths,
  loopback listeners on free ports, the test user, EAP-PWD enabled, and aaa-fmip installed into it by the real
  ``aaa-fmip freeradius-config --raddb`` command. Started threaded (``-f``, the production mode) or single-threaded
  with debug output (``-X``).
* :func:`run_eapol_test`: one EAP authentication by wpa_supplicant's eapol_test as the NAS + peer; parses the
  EMSK, MSK and EAP Session-Id it prints.
* :class:`UdpRecorder`: a transparent UDP relay between a RADIUS client and the server that keeps every datagram,
  so a test can hand the real Access-Request/Access-Accept pair to the access-router decoder.

A missing binary raises :class:`MissingBinary` (the test fails; nothing is skipped).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tests.support.redis_server import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DIST_RADDB = Path("/etc/freeradius/3.0")
RLM_PYTHON3 = Path("/usr/lib/freeradius/rlm_python3.so")
SECRET = "testing123"  # the distribution's clients.conf secret for localhost
USER = "alice"
PASSWORD = "alicepass"  # the test user's password in the private raddb

EapMethod = Literal["TLS", "PEAP", "TTLS", "PWD", "MD5"]


class MissingBinary(RuntimeError):
    pass


class RadiusFailed(RuntimeError):
    pass


def require_binary(name: str) -> str:
    for candidate in (f"/usr/sbin/{name}", f"/usr/bin/{name}", shutil.which(name)):
        if candidate and Path(candidate).exists():
            return candidate
    raise MissingBinary(f"{name} is not installed: run scripts/install-deps")


def require_freeradius() -> str:
    binary = require_binary("freeradius")
    if not RLM_PYTHON3.exists():
        raise MissingBinary(f"{RLM_PYTHON3} is missing (Debian package freeradius-python3): run scripts/install-deps")
    if not DIST_RADDB.is_dir():
        raise MissingBinary(f"{DIST_RADDB} is missing (Debian package freeradius): run scripts/install-deps")
    return binary


# ------------------------------------------------------------------------------------------------------ PKI


@dataclass(frozen=True)
class Pki:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [require_binary("openssl"), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr[-2000:]}")


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
        "-subj", "/CN=aaa-fmip test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    for name, eku in (("server", "serverAuth"), ("client", "clientAuth")):
        (directory / f"{name}.ext").write_text(
            f"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={eku}\n"
        )
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}.fmip.test",
            cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "30", "-extfile", f"{name}.ext",
            cwd=directory,
        )  # fmt: skip
    return Pki(directory)


# ------------------------------------------------------------------------------------------------ FreeRADIUS


def python_path_for_freeradius() -> tuple[str, ...]:
    """This checkout and the test interpreter's site-packages: what the embedded interpreter imports from."""
    import sysconfig

    return tuple(dict.fromkeys((str(REPO_ROOT), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])))


_LISTEN_BLOCK = re.compile(r"^listen \{\n.*?^\}\n", re.M | re.S)


class FreeRadius:
    """One FreeRADIUS server with a private raddb in ``directory``; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        pki: Pki,
        *,
        aaa_config: Path | None = None,
        mode: Literal["python", "rest"] | None = "python",
        rest_url: str | None = None,
        threaded: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = directory
        self.raddb = directory / "raddb"
        self.pki = pki
        self.aaa_config = aaa_config
        self.mode = mode
        self.rest_url = rest_url
        self.threaded = threaded
        self.env = dict(env or {})
        self.auth_port = free_port()
        self.acct_port = free_port()
        self.log_path = directory / "radiusd.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config_output = ""

    # -- configuration ---------------------------------------------------------------------------------

    def prepare(self) -> FreeRadius:
        require_freeradius()
        if self.raddb.exists():
            shutil.rmtree(self.raddb)
        self.directory.mkdir(parents=True, exist_ok=True)
        shutil.copytree(DIST_RADDB, self.raddb, symlinks=True)
        for sub in ("log", "run"):
            (self.directory / sub).mkdir(exist_ok=True)
        self._edit(
            "radiusd.conf",
            lambda t: re.sub(
                r"^(\s*)(user|group) = freerad",
                r"\1#\2 = freerad",
                t.replace("raddbdir = /etc/freeradius/3.0", f"raddbdir = {self.raddb}")
                .replace("logdir = /var/log/freeradius", f"logdir = {self.directory / 'log'}")
                .replace("run_dir = ${localstatedir}/run/${name}", f"run_dir = {self.directory / 'run'}"),
                flags=re.M,
            ),
        )
        pki = self.pki
        self._edit(
            "mods-available/eap",
            lambda t: (
                t.replace("/etc/ssl/private/ssl-cert-snakeoil.key", str(pki.key("server")))
                .replace("/etc/ssl/certs/ssl-cert-snakeoil.pem", str(pki.cert("server")))
                .replace("/etc/ssl/certs/ca-certificates.crt", str(pki.ca))
                .replace(
                    "\n\tmd5 {\n",
                    "\n\tpwd {\n\t\tgroup = 19\n\t\tserver_id = radius.fmip.test\n\t\tfragment_size = 1020\n"
                    '\t\tvirtual_server = "inner-tunnel"\n\t}\n\n\tmd5 {\n',
                    1,
                )
            ),
        )
        # Other loopback sources (127.0.0.2, ...) as NASes too, with the same secret.
        self._edit(
            "clients.conf",
            lambda t: t + f"\nclient loopback_net {{\n\tipaddr = 127.0.0.0/8\n\tsecret = {SECRET}\n}}\n",
        )
        # raddb/users is a symlink to this file: edit the target, not the link.
        self._edit("mods-config/files/authorize", lambda t: f'{USER}\tCleartext-Password := "{PASSWORD}"\n\n' + t)
        listen = (
            f"listen {{\n\ttype = auth\n\tipaddr = 127.0.0.1\n\tport = {self.auth_port}\n}}\n"
            f"listen {{\n\ttype = acct\n\tipaddr = 127.0.0.1\n\tport = {self.acct_port}\n}}\n"
        )
        self._edit(
            "sites-available/default",
            lambda t: _LISTEN_BLOCK.sub("", t).replace("server default {\n", "server default {\n" + listen, 1),
        )
        self._edit("sites-available/inner-tunnel", lambda t: _LISTEN_BLOCK.sub("", t))
        for check, what in (
            ("mods-available/eap", "pwd {"),
            ("sites-available/default", f"port = {self.auth_port}"),
        ):
            if what not in (self.raddb / check).read_text():
                raise RuntimeError(f"could not patch {check}: the distribution's raddb changed")
        if self.mode is not None:
            self._install_aaa_fmip()
        return self

    def _edit(self, relative: str, fn: object) -> None:
        path = self.raddb / relative
        path = path.resolve() if path.is_symlink() else path
        assert callable(fn)
        path.write_text(fn(path.read_text()))

    def _install_aaa_fmip(self) -> None:
        # The real operator command, from this checkout.
        args = [
            sys.executable, "-m", "aaa_fmip.cli", "freeradius-config", "--raddb", str(self.raddb),
            "--mode", str(self.mode), "--python-path", ":".join(python_path_for_freeradius()),
        ]  # fmt: skip
        if self.aaa_config is not None:
            args += ["--config", str(self.aaa_config)]
        if self.rest_url is not None:
            args += ["--rest-url", self.rest_url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AAA_FMIP_")}
        env["PYTHONPATH"] = str(REPO_ROOT)
        result = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
        self.config_output = result.stdout + result.stderr
        if result.returncode != 0:
            raise RuntimeError(f"aaa-fmip freeradius-config failed ({result.returncode}):\n{self.config_output}")

    # -- lifecycle -------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        binary = require_freeradius()
        if self.threaded:
            return [binary, "-f", "-l", "stdout", "-d", str(self.raddb)]
        return [binary, "-X", "-d", str(self.raddb)]

    def start(self, timeout: float = 30.0) -> FreeRadius:
        if not (self.raddb / "radiusd.conf").exists():
            self.prepare()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AAA_FMIP_", "PYTHON"))}
        env.update(self.env)
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(self.command(), cwd=self.directory, env=env, stdout=log, stderr=log)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RadiusFailed(f"freeradius exited ({code}) during start:\n{self.log_tail()}")
            if "Ready to process requests" in self.log():
                return self
            time.sleep(0.05)
        self.stop()
        raise RadiusFailed(f"freeradius not ready within {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)

    def __enter__(self) -> FreeRadius:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- output ----------------------------------------------------------------------------------------

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not in the FreeRADIUS log within {timeout} s:\n{self.log_tail()}")


# ------------------------------------------------------------------------------------------------ eapol_test


@dataclass(frozen=True)
class EapolResult:
    returncode: int
    output: str = field(repr=False)
    emsk: bytes | None = field(repr=False)
    msk: bytes | None = field(repr=False)
    session_id: bytes | None
    seconds: float

    @property
    def success(self) -> bool:
        return self.returncode == 0 and "\nSUCCESS" in self.output

    def require_keys(self) -> tuple[bytes, bytes]:
        if not self.success or self.emsk is None or self.session_id is None:
            raise AssertionError(f"eapol_test did not succeed with an EMSK:\n{self.output[-3000:]}")
        return self.emsk, self.session_id


def _hexdump(output: str, label: str) -> bytes | None:
    matches = re.findall(re.escape(label) + r" - hexdump\(len=\d+\):((?: [0-9a-f]{2})+)", output)
    return bytes.fromhex(matches[-1].replace(" ", "")) if matches else None


def _conf_string(value: str) -> str:
    # wpa_supplicant's quoted strings have no escapes: anything with a quote or backslash goes as hex.
    return value.encode().hex() if any(c in value for c in '"\\') else f'"{value}"'


def network_block(method: EapMethod, pki: Pki, *, identity: str | None = None) -> str:
    lines: list[str]
    if method == "TLS":
        lines = [
            "key_mgmt=WPA-EAP",
            "eap=TLS",
            f"identity={_conf_string(identity or USER + '@fmip.test')}",
            f'ca_cert="{pki.ca}"',
            f'client_cert="{pki.cert("client")}"',
            f'private_key="{pki.key("client")}"',
        ]
    elif method in ("PEAP", "TTLS"):
        lines = [
            "key_mgmt=WPA-EAP",
            f"eap={method}",
            f'identity="{identity or USER}"',
            'anonymous_identity="anonymous"',
            f'password="{PASSWORD}"',
            f'ca_cert="{pki.ca}"',
            'phase2="auth=MSCHAPV2"' if method == "PEAP" else 'phase2="auth=PAP"',
        ]
    elif method == "PWD":
        lines = ["key_mgmt=WPA-EAP", "eap=PWD", f'identity="{identity or USER}"', f'password="{PASSWORD}"']
    else:  # MD5: no keys at all; eapol_test must not insist on MPPE keys (-n)
        lines = ["key_mgmt=IEEE8021X", "eap=MD5", f'identity="{identity or USER}"', f'password="{PASSWORD}"']
    return "network={\n" + "".join(f"\t{line}\n" for line in lines) + "}\n"


def run_eapol_test(
    method: EapMethod,
    pki: Pki,
    *,
    port: int,
    work_dir: Path,
    mac: str = "02:00:00:00:00:01",
    nas_identifier: str | None = None,
    secret: str = SECRET,
    server: str = "127.0.0.1",
    timeout: float = 20.0,
    identity: str | None = None,
    extra_args: Sequence[str] = (),
) -> EapolResult:
    work_dir.mkdir(parents=True, exist_ok=True)
    conf = work_dir / f"eapol-{method.lower()}-{mac.replace(':', '')}.conf"
    conf.write_text(network_block(method, pki, identity=identity))
    args = [
        require_binary("eapol_test"), "-c", str(conf), "-a", server, "-p", str(port), "-s", secret,
        "-M", mac, "-t", str(int(timeout)),
    ]  # fmt: skip
    if nas_identifier is not None:
        args.append(f"-N32:s:{nas_identifier}")
    if method == "MD5":
        args.append("-n")
    args += list(extra_args)
    start = time.perf_counter()
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 10, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"eapol_test ({method}) did not finish within {timeout + 10} s") from exc
    seconds = time.perf_counter() - start
    output = result.stdout + result.stderr
    session_id = _hexdump(output, "EAP: Session-Id") or _hexdump(output, "Derived Session-Id")
    return EapolResult(
        returncode=result.returncode,
        output=output,
        emsk=_hexdump(output, "Derived EMSK"),
        msk=_hexdump(output, "Derived key"),
        session_id=session_id,
        seconds=seconds,
    )


def radclient_accounting(port: int, attributes: str, *, secret: str = SECRET) -> str:
    """Send one Accounting-Request with FreeRADIUS' radclient; returns its output (it must get an answer)."""
    args = [require_binary("radclient"), "-x", "-t", "3", "-r", "1", f"127.0.0.1:{port}", "acct", secret]
    result = subprocess.run(args, input=attributes, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0 or "Accounting-Response" not in result.stdout:
        raise AssertionError(f"radclient got no Accounting-Response:\n{result.stdout}{result.stderr}")
    return result.stdout


# ------------------------------------------------------------------------------------------- UDP recorder


class UdpRecorder:
    """A transparent UDP relay on loopback: clients talk to ``port``, datagrams go to the server and back.

    It forwards bytes unchanged (same shared secret on both sides) and records ``(direction, data)`` pairs, for
    one client at a time (the last address it heard from).
    """

    def __init__(self, target_port: int, *, source_host: str = "127.0.0.1") -> None:
        self.target = ("127.0.0.1", target_port)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind((source_host, 0))  # the address the server sees the requests come from
        self.port = int(self.front.getsockname()[1])
        self.datagrams: list[tuple[Literal["request", "reply"], bytes]] = []
        self._client: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._pump, args=(d,), daemon=True) for d in ("request", "reply")]

    def __enter__(self) -> UdpRecorder:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for s in (self.front, self.back):
            s.close()
        for t in self._threads:
            t.join(timeout=2)

    def _pump(self, direction: Literal["request", "reply"]) -> None:
        sock = self.front if direction == "request" else self.back
        sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams.append((direction, data))
            if direction == "request":
                self._client = addr
                self.back.sendto(data, self.target)
            elif self._client is not None:
                self.front.sendto(data, self._client)

    def exchange(self, code: int) -> tuple[bytes, bytes]:
        """The last reply with RADIUS ``code`` and the request (same identifier) it answers."""
        for i in range(len(self.datagrams) - 1, -1, -1):
            direction, data = self.datagrams[i]
            if direction == "reply" and data[0] == code:
                for j in range(i - 1, -1, -1):
                    d2, req = self.datagrams[j]
                    if d2 == "request" and req[1] == data[1]:
                        return req, data
        raise AssertionError(f"no RADIUS reply with code {code} was relayed")

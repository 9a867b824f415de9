"""strongSwan (charon-systemd and swanctl) in network namespaces of the test's own: two IKEv2 peers.

Each :class:`Charon` has its own strongswan.conf (``STRONGSWAN_CONF``), its own vici socket and log in its own
directory, and runs in its namespace; swanctl talks to it through that socket. Every wait is bounded and
:meth:`PeerNamespaces.down` removes the daemons (by PID) and the namespaces, also when ``up`` fails half-way.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Sequence
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

CHARON = "/usr/sbin/charon-systemd"
SWANCTL = "/usr/sbin/swanctl"


def strongswan_missing() -> str | None:
    """Why strongSwan cannot run here (scripts/install-deps installs it), or None."""
    for binary in (CHARON, SWANCTL):
        if not os.access(binary, os.X_OK):
            return f"{binary} is not installed (scripts/install-deps)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


def _run(argv: Sequence[str], *, timeout: float = 20.0, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


class Charon:
    """One charon-systemd in namespace ``ns``, configured under ``workdir``."""

    def __init__(self, ns: str, workdir: Path) -> None:
        self.ns = ns
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.vici = self.dir / "charon.vici"
        self.log = self.dir / "charon.log"
        self.conf = self.dir / "strongswan.conf"
        self.conf.write_text(
            f"""charon-systemd {{
    load_modular = yes
    install_routes = no
    plugins {{
        include /etc/strongswan.d/charon/*.conf
        vici {{
            socket = unix://{self.vici}
        }}
    }}
    filelog {{
        test {{
            path = {self.log}
            default = 1
            ike = 2
            flush_line = yes
        }}
    }}
    journal {{
        default = -1
    }}
}}
swanctl {{
    load = pem pkcs1 x509 revocation constraints pubkey openssl random
}}
""",
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "STRONGSWAN_CONF": str(self.conf)}

    def start(self, timeout: float = 20.0) -> Charon:
        with (self.dir / "charon.out").open("ab") as out:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, CHARON], stdout=out, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"charon exited {self.proc.returncode}: {self.logs()[-2000:]}")
            if self.vici.exists() and self.swanctl("--stats", check=False).returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"charon did not open its vici socket within {timeout} s: {self.logs()[-2000:]}")

    def swanctl(self, *args: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["ip", "netns", "exec", self.ns, SWANCTL, *args, "--uri", f"unix://{self.vici}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"swanctl {' '.join(args)}: {result.stdout[-2000:]} {result.stderr[-2000:]}")
        return result

    def load(self, swanctl_conf: Path) -> None:
        """``swanctl --load-all`` of ``swanctl_conf``, as an operator reloads it: secrets no longer in the file are
        unloaded (docs/router.md §9)."""
        self.swanctl("--load-all", "--file", str(swanctl_conf))

    def initiate(self, ike: str, timeout: int = 10) -> subprocess.CompletedProcess[str]:
        return self.swanctl("--initiate", "--ike", ike, "--timeout", str(timeout), check=False, timeout=timeout + 20)

    def terminate_all(self) -> None:
        listed = self.swanctl("--list-sas", check=False).stdout
        for line in listed.splitlines():
            if line and not line.startswith(" ") and ": #" in line:
                _, _, rest = line.partition(": #")
                self.swanctl("--terminate", "--ike-id", rest.split(",")[0], "--timeout", "5", check=False)

    def established(self, ike: str) -> bool:
        listed = self.swanctl("--list-sas", "--ike", ike, check=False).stdout
        return any(line.startswith(f"{ike}: #") and ", ESTABLISHED, IKEv2," in line for line in listed.splitlines())

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


class PeerNamespaces:
    """Two namespaces joined by a veth, each with one router address (on-link routes to the other's /64)."""

    def __init__(self, workdir: Path, a: IPv6Address, b: IPv6Address) -> None:
        tag = "ik" + secrets.token_hex(3)
        self.a_ns, self.b_ns = f"{tag}-a", f"{tag}-b"
        self.addresses = (a, b)
        self.charons = (Charon(self.a_ns, workdir / "charon-a"), Charon(self.b_ns, workdir / "charon-b"))

    def up(self) -> PeerNamespaces:
        try:
            self._up()
        except BaseException:
            self.down()
            raise
        return self

    def _up(self) -> None:
        a, b = self.addresses
        for ns in (self.a_ns, self.b_ns):
            _run(["ip", "netns", "add", ns])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(
            [
                "ip",
                "link",
                "add",
                "ike0",
                "netns",
                self.a_ns,
                "type",
                "veth",
                "peer",
                "name",
                "ike0",
                "netns",
                self.b_ns,
            ]
        )
        for ns, mine, other in ((self.a_ns, a, b), (self.b_ns, b, a)):
            _run(["ip", "-n", ns, "addr", "add", f"{mine}/128", "dev", "ike0", "nodad"])
            _run(["ip", "-n", ns, "link", "set", "ike0", "up"])
            _run(["ip", "-n", ns, "-6", "route", "add", str(IPv6Network(f"{other}/64", strict=False)), "dev", "ike0"])
        for charon in self.charons:
            charon.start()

    def down(self) -> None:
        for charon in self.charons:
            with contextlib.suppress(Exception):
                charon.stop()
        for ns in (self.a_ns, self.b_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20, check=False)

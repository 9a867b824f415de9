"""Discovery against a real dnsmasq in a pair of network namespaces joined by a veth pair (created here, always
removed): dnsmasq serves what :mod:`aaa_fmip.mih.publish` generates; our discovery (DHCPINFORM, DHCPv6
Information-Request, RFC 5679 NAPTR/SRV and the SRV-only fallback) finds the MoS from the client namespace; ISC
dhclient, an independent client, reads the same options from the same dnsmasq."""

from __future__ import annotations

import ipaddress
import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aaa_fmip.mih import discovery as d
from aaa_fmip.mih.publish import MosPublication, dnsmasq_config
from tests.support.service_proc import REPO_ROOT

pytestmark = pytest.mark.slow

SERVER_V4, CLIENT_V4 = "192.0.2.1", "192.0.2.20"
SERVER_V6, CLIENT_V6 = "2001:db8:5678::1", "2001:db8:5678::20"
MAC = "02000000a020"
PUBLISHED = MosPublication(
    domain="example.net",
    host="mos1.example.net",
    addresses=(ipaddress.ip_address(SERVER_V4), ipaddress.ip_address(SERVER_V6)),
    services=(d.ServiceType.IS, d.ServiceType.ES),
    port=4551,
)
FALLBACK = ("fallback.example", "mos2.fallback.example", 4600, "192.0.2.2")


@dataclass
class Link:
    server_ns: str
    client_ns: str
    client_if: str
    workdir: Path
    dnsmasq: subprocess.Popen[bytes]

    def run_in_client(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.client_ns, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            cwd=REPO_ROOT,
        )

    def probe(self, *args: str) -> Any:
        done = self.run_in_client("python3", "-m", "tests.mih_sec._probe", *args)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    def dnsmasq_log(self) -> str:
        return (self.workdir / "dnsmasq.log").read_text(errors="replace")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _sysctl(ns: str, key: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", key], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Link]:
    for tool in ("dnsmasq", "dhclient", "ip"):
        assert shutil.which(tool), f"{tool} is required (scripts/install-deps installs it)"
    tag = f"{os.getpid() % 100000}"
    server_ns, client_ns = f"mihs{tag}", f"mihc{tag}"
    server_if, client_if = f"vms{tag}", f"vmc{tag}"
    workdir = tmp_path_factory.mktemp("dnsmasq")
    dnsmasq: subprocess.Popen[bytes] | None = None
    try:
        _ip("netns", "add", server_ns)
        _ip("netns", "add", client_ns)
        _ip("link", "add", server_if, "type", "veth", "peer", "name", client_if)
        _ip("link", "set", server_if, "netns", server_ns)
        _ip("link", "set", client_if, "netns", client_ns)
        for ns, ifname, v4, v6 in (
            (server_ns, server_if, SERVER_V4, SERVER_V6),
            (client_ns, client_if, CLIENT_V4, CLIENT_V6),
        ):
            _sysctl(ns, f"net.ipv6.conf.{ifname}.accept_dad=0")  # addresses usable at once, no DAD wait
            _ip("-n", ns, "addr", "add", f"{v4}/24", "dev", ifname)
            _ip("-n", ns, "addr", "add", f"{v6}/64", "dev", ifname, "nodad")
            _ip(
                "-n",
                ns,
                "link",
                "set",
                ifname,
                "address",
                "02:00:00:00:a0:20" if ns == client_ns else "02:00:00:00:a0:01",
            )
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", ifname, "up")
        (workdir / "mos.conf").write_text(dnsmasq_config([PUBLISHED]))
        domain, host, port, address = FALLBACK
        (workdir / "dnsmasq.conf").write_text(
            "\n".join(
                [
                    f"interface={server_if}",
                    "bind-interfaces",
                    "no-resolv",
                    "no-hosts",
                    "user=root",
                    "local=/example.net/",  # answer these domains from this configuration only (NXDOMAIN/NODATA)
                    f"local=/{domain}/",
                    f"dhcp-range={CLIENT_V4},{CLIENT_V4},255.255.255.0,1h",
                    "dhcp-range=192.0.2.100,192.0.2.110,255.255.255.0,1h",
                    "dhcp-range=2001:db8:5678::,ra-stateless",
                    f"dhcp-leasefile={workdir / 'leases'}",
                    "log-dhcp",
                    "log-queries",
                    # only SRV, no NAPTR, for the RFC 5679 fallback
                    f"srv-host=_MIHIS._tcp.{domain},{host},{port},0,0",
                    f"host-record={host},{address}",
                    f"conf-file={workdir / 'mos.conf'}",
                ]
            )
            + "\n"
        )
        dnsmasq = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                server_ns,
                "dnsmasq",
                "--keep-in-foreground",
                f"--conf-file={workdir / 'dnsmasq.conf'}",
                f"--log-facility={workdir / 'dnsmasq.log'}",
                f"--pid-file={workdir / 'dnsmasq.pid'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while (
            "DHCPv6 stateless" not in (workdir / "dnsmasq.log").read_text(errors="replace")
            if (workdir / "dnsmasq.log").exists()
            else True
        ):
            assert dnsmasq.poll() is None, dnsmasq.stderr.read() if dnsmasq.stderr else b""
            assert time.monotonic() < deadline, "dnsmasq did not start"
            time.sleep(0.1)
        yield Link(server_ns, client_ns, client_if, workdir, dnsmasq)
    finally:
        if dnsmasq is not None:
            dnsmasq.send_signal(signal.SIGTERM)
            try:
                dnsmasq.wait(timeout=10)
            except subprocess.TimeoutExpired:
                dnsmasq.kill()
                dnsmasq.wait()
        for ns in (client_ns, server_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)


def test_dhcpv4_inform_finds_the_mos(link: Link) -> None:
    got = link.probe("dhcp4", SERVER_V4, CLIENT_V4, MAC)
    assert got == {
        "addresses": [[1, [SERVER_V4]], [3, [SERVER_V4]]],
        "domains": [[1, ["example.net"]], [3, ["example.net"]]],
    }
    assert "DHCPINFORM" in link.dnsmasq_log()


def test_dhcpv6_information_request_finds_the_mos(link: Link) -> None:
    got = link.probe("dhcp6", link.client_if, MAC)
    assert got == {
        "addresses": [[1, [SERVER_V6]], [3, [SERVER_V6]]],
        "domains": [[1, ["example.net"]], [3, ["example.net"]]],
    }


def test_dns_naptr_srv_finds_the_mos(link: Link) -> None:
    got = link.probe("dns", "example.net", SERVER_V4)
    assert got == [
        ["MIHIS", "tcp", "mos1.example.net", 4551, SERVER_V6, "naptr"],
        ["MIHIS", "tcp", "mos1.example.net", 4551, SERVER_V4, "naptr"],
        ["MIHIS", "udp", "mos1.example.net", 4551, SERVER_V6, "naptr"],
        ["MIHIS", "udp", "mos1.example.net", 4551, SERVER_V4, "naptr"],
    ]
    log = link.dnsmasq_log().lower()  # dnsmasq gives the NAPTR replacement in lower case
    assert "query[naptr] example.net" in log and "query[srv] _mihis._tcp.example.net" in log


def test_dns_srv_fallback_without_naptr(link: Link) -> None:
    domain, host, port, address = FALLBACK
    got = link.probe("dns", domain, SERVER_V6)
    assert got == [["MIHIS", "tcp", host, port, address, "srv"]]


def test_dhclient_reads_the_same_options(link: Link) -> None:
    """ISC dhclient, asked for options 139/140 (v4) and 54/55 (v6) by code, stores the bytes dnsmasq sent; our
    decoders read them back as what was published."""
    env_file = link.workdir / "dhclient.env"
    script = link.workdir / "dhclient-script"
    script.write_text(f'#!/bin/sh\nenv | grep -E "^new_(mos|dhcp6_mos)" >> {env_file}\n')
    script.chmod(0o755)
    conf4, conf6 = link.workdir / "dh4.conf", link.workdir / "dh6.conf"
    conf4.write_text(
        "option mos-ipv4 code 139 = string;\noption mos-fqdn4 code 140 = string;\n"
        "request subnet-mask, mos-ipv4, mos-fqdn4;\n"
    )
    conf6.write_text(
        "option dhcp6.mos-addr code 54 = string;\noption dhcp6.mos-fqdn code 55 = string;\n"
        "request dhcp6.mos-addr, dhcp6.mos-fqdn;\n"
    )
    for name in ("l4", "l6"):
        (link.workdir / name).touch()
    runs = [
        ["dhclient", "-1", "-cf", str(conf4), "-lf", str(link.workdir / "l4")],
        ["dhclient", "-6", "-S", "-1", "-cf", str(conf6), "-lf", str(link.workdir / "l6")],
    ]
    for args in runs:
        pidfile = link.workdir / f"dhclient{len(args)}.pid"
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                link.client_ns,
                *args,
                "-d",
                "-sf",
                str(script),
                "-pf",
                str(pidfile),
                link.client_if,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            wanted = "new_mos_ipv4=" if "-6" not in args else "new_dhcp6_mos_addr="
            while not (env_file.exists() and wanted in env_file.read_text()):
                assert time.monotonic() < deadline, f"dhclient {args} got no MoS option"
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)

    def octets(text: str) -> bytes:  # dhclient prints "string" options as colon-separated hex without zero padding
        return bytes(int(part, 16) for part in text.strip().strip("'\"").split(":"))

    expected_v4 = tuple(d.MosAddresses(s, PUBLISHED.v4) for s in PUBLISHED.services)
    expected_v6 = tuple(d.MosAddresses(s, PUBLISHED.v6) for s in PUBLISHED.services)
    expected_names = tuple(d.MosDomains(s, ("example.net",)) for s in PUBLISHED.services)
    assert d.decode_dhcpv4_mos_addresses(octets(values["new_mos_ipv4"])) == expected_v4
    assert d.decode_dhcpv4_mos_domains(octets(values["new_mos_fqdn4"])) == expected_names
    assert d.decode_dhcpv6_mos_addresses(octets(values["new_dhcp6_mos_addr"])) == expected_v6
    assert d.decode_dhcpv6_mos_domains(octets(values["new_dhcp6_mos_fqdn"])) == expected_names


def test_dhcp_domain_then_dns(link: Link) -> None:
    """The whole path of RFC 5677 §4: the domain from DHCPv6 option 55, then RFC 5679 on it."""
    domain, endpoints = link.probe("chain", link.client_if, MAC, SERVER_V6)
    assert domain == "example.net"
    assert endpoints[0] == ["tcp", "mos1.example.net", 4551, SERVER_V6]
    assert {e[0] for e in endpoints} == {"tcp", "udp"}


def test_discovered_mos_answers_over_tls_and_dtls_psk(link: Link) -> None:
    """A MoS listening in the server namespace; the node discovers it (DHCPv6 then DNS) and talks to the endpoint
    found over TLS-PSK (TCP) and DTLS-PSK (UDP) with the key derived for the MoS's MIHF-ID."""
    mos = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            link.server_ns,
            "python3",
            "-m",
            "tests.mih_sec._mos_echo",
            "mos1.example.net",
            SERVER_V4,
            SERVER_V6,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
    )
    try:
        assert mos.stdout is not None
        readable, _, _ = select.select([mos.stdout], [], [], 30)  # bounded wait for "ready"
        ready = mos.stdout.readline() if readable else b""
        assert ready.strip() == b"ready", mos.stderr.read() if mos.stderr else b""
        done = link.run_in_client("python3", "-m", "tests.mih_sec._probe", "secure", link.client_if, MAC, SERVER_V6)
    finally:
        mos.terminate()
        try:
            mos.wait(timeout=10)
        except subprocess.TimeoutExpired:
            mos.kill()
            mos.wait()
    mos_log = mos.stderr.read().decode(errors="replace") if mos.stderr else ""
    assert done.returncode == 0, done.stderr[-1500:] + "\nMoS log:\n" + mos_log[-1500:]
    got = json.loads(done.stdout)
    assert got == [
        ["tcp", SERVER_V6, "TLS-PSK-WITH-AES-128-GCM-SHA256", "echo:mih over tcp"],
        ["udp", SERVER_V6, "TLS-PSK-WITH-AES-128-GCM-SHA256", "echo:mih over udp"],
    ]

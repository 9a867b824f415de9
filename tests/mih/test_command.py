"""``aaa-fmip mih`` as an operator runs it: a subprocess with a configuration file, queried over TCP and UDP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aaa_fmip.cli import main
from aaa_fmip.mih.client import TcpClient, UdpClient
from aaa_fmip.wire import mih
from tests.mih.test_information import TABLE
from tests.mih.test_server import get_information, neighbour_routers

ROOT = Path(__file__).resolve().parents[2]
MN = b"mn1@example.org"


def free_port() -> int:
    """A port free on both TCP and UDP at the time of asking."""
    for _ in range(50):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        ):
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def write_config(tmp_path: Path, *, separate: bool = False) -> Path:
    config = tmp_path / "mos.toml"
    head = '[mih]\nmihf_id = "mos.example.org"\nvalid_time_interval = 60\n'
    if separate:
        (tmp_path / "poas.toml").write_text(TABLE, "utf-8")
        config.write_text(head + 'neighbours = "poas.toml"\n', "utf-8")
    else:
        config.write_text(head + TABLE, "utf-8")
    return config


@pytest.mark.parametrize("separate", [False, True])
def test_check(tmp_path: Path, capsys: pytest.CaptureFixture[str], separate: bool) -> None:
    assert main(["mih", "--config", str(write_config(tmp_path, separate=separate)), "--check"]) == 0
    assert "3 points of attachment" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[mih]\n", "mih.mihf_id"),
        ('[mih]\nmihf_id = "m"\ncolour = 2\n', "unknown keys"),
        ('[mih]\nmihf_id = "m"\nmax_udp_payload = 10\n', "mih.max_udp_payload"),
        ('[mih]\nmihf_id = "m"\nlisten = "nowhere:port"\n', "mih.listen"),
        ('[mih]\nmihf_id = "m"\nneighbours = "missing.toml"\n', "cannot read"),
        ("[[poa]]\n", "the [mih] table is required"),
        ("[mih\n", "--config"),
    ],
)
def test_configuration_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text, "utf-8")
    assert main(["mih", "--config", str(config), "--check"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and message in err and "Traceback" not in err


def test_help_explains_the_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["mih", "--help"])
    out = capsys.readouterr().out
    assert "RFC 5677" in out and "[[poa]]" in out and "mihf_id" in out


def test_the_command_serves_tcp_and_udp(tmp_path: Path) -> None:
    port = free_port()
    config = str(write_config(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "aaa_fmip.cli", "mih", "--config", config, "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        async def query() -> tuple[list[str], list[str]]:
            deadline = time.monotonic() + 30
            while True:
                try:
                    tcp = await TcpClient.connect(MN, "127.0.0.1", port)
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    await asyncio.sleep(0.1)
            udp = await UdpClient.open(MN, "127.0.0.1", port)
            try:
                async with asyncio.timeout(30):
                    return (
                        neighbour_routers(await tcp.request(get_information(1))),
                        neighbour_routers(await udp.request(get_information(2))),
                    )
            finally:
                await tcp.close()
                await udp.close()

        over_tcp, over_udp = asyncio.run(query())
        assert over_tcp == over_udp == ["2001:db8:2::1", "2001:db8:3::1"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    assert '"listening"' in err and '"stopped"' in err
    assert mih.MIH_PORT == 4551

"""Capture loopback traffic with dumpcap and decode it with tshark, optionally with another Wireshark data dir.

:class:`LoopbackCapture` runs ``dumpcap -i lo -f "tcp port N"`` (a capture filter on one port, so nothing else on
the machine's loopback is recorded) until stopped; every wait is bounded. :func:`tshark_text` decodes a capture
as Diameter on that port (``tshark -V``). With ``data_dir`` tshark reads its Diameter dictionary from there
(``WIRESHARK_DATA_DIR``); Wireshark ignores that variable for root, so tshark then runs as ``nobody``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

NOBODY = 65534


def require(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        raise RuntimeError(f"{binary} is not installed: run scripts/install-deps (Debian: tshark)")
    return found


class LoopbackCapture:
    """``with LoopbackCapture(port) as cap: ...`` then ``cap.path`` is a pcapng of that TCP port's traffic."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.path = directory / f"diameter-{port}.pcapng"
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr = bytearray()

    def __enter__(self) -> LoopbackCapture:
        self.proc = subprocess.Popen(
            [require("dumpcap"), "-i", "lo", "-f", f"tcp port {self.port}", "-w", str(self.path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        # dumpcap prints "Capturing on" before it opens the interface; it creates the output file (and writes
        # the pcapng section and interface headers) only once the interface is open and the filter set, so
        # traffic sent before that file exists could go unrecorded.
        deadline = time.monotonic() + 20
        while b"Capturing on" not in self._stderr or not self._file_started():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dumpcap did not start capturing: {self._stderr.decode(errors='replace')}")
            time.sleep(0.02)
        return self

    def _file_started(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def wait_for(self, display_filter: str, count: int, timeout: float = 20.0) -> None:
        """Wait until the file holds ``count`` frames matching ``display_filter`` (Diameter decoded on our port).

        libpcap hands packets to dumpcap in blocks, with a delay; stopping dumpcap right after the traffic would
        lose the last of it.
        """
        deadline = time.monotonic() + timeout
        found = 0
        decode = ["-d", f"tcp.port=={self.port},diameter", "-Y", display_filter, "-T", "fields", "-e", "frame.number"]
        while time.monotonic() < deadline:
            done = subprocess.run(
                [require("tshark"), "-n", "-r", str(self.path), *decode],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            found = len(done.stdout.split())
            if found >= count:
                return
            time.sleep(0.1)
        raise AssertionError(f"dumpcap: {found} of {count} frames matching {display_filter!r} within {timeout} s")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr += line

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # dumpcap writes out what it has and exits
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tshark_text(capture: Path, port: int, *, data_dir: Path | None = None, timeout: float = 120.0) -> str:
    """``tshark -V`` of the Diameter messages in ``capture`` (TCP ``port`` decoded as Diameter)."""
    with tempfile.TemporaryDirectory(prefix="tshark-home-") as home:
        os.chmod(home, 0o755)
        readable = Path(home) / capture.name
        shutil.copyfile(capture, readable)  # dumpcap writes 0600 files; the decoding user must read it
        os.chmod(readable, 0o644)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LC_ALL": "C", "TZ": "UTC"}
        command = [require("tshark"), "-n", "-r", str(readable), "-d", f"tcp.port=={port},diameter", "-Y", "diameter"]
        command.append("-V")
        if data_dir is not None:
            env["WIRESHARK_DATA_DIR"] = str(data_dir)
            if os.geteuid() == 0:  # Wireshark ignores WIRESHARK_DATA_DIR for a privileged process
                command = [require("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"tshark exited with {done.returncode}: {done.stderr.strip()}")
    return done.stdout

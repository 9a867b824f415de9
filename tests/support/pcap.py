"""Write packets to a pcap file and read them back through tshark, the independent oracle for our codecs.

``write_pcap`` writes classic libpcap files (LINKTYPE_RAW for bare IPv6 packets, or Ethernet), with fixed
timestamps (frame i at i seconds) so nothing depends on the clock. ``tshark_fields`` and ``tshark_json``
run tshark with a bounded timeout, an empty private configuration directory (no user preferences leak in)
and TZ=UTC (absolute times print the same everywhere), and return what it printed, parsed.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # bare IPv4/IPv6 packets
ETHERTYPE_IPV6 = 0x86DD

_PCAP_MAGIC = 0xA1B2C3D4  # microsecond timestamps
_SNAPLEN = 65535
_AGGREGATOR = "\x1f"  # between occurrences of one field: a character no field value contains
_SEPARATOR = "|"


def ethernet_frame(
    payload: bytes,
    *,
    source: bytes = bytes.fromhex("020000000001"),
    destination: bytes = bytes.fromhex("020000000002"),
    ethertype: int = ETHERTYPE_IPV6,
) -> bytes:
    """An Ethernet II frame around ``payload`` (no FCS)."""
    return destination + source + struct.pack("!H", ethertype) + payload


def write_pcap(path: Path, packets: Iterable[bytes], *, linktype: int = LINKTYPE_RAW) -> Path:
    """Write ``packets`` (IPv6 packets for LINKTYPE_RAW, frames for Ethernet) to ``path``; return ``path``."""
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", _PCAP_MAGIC, 2, 4, 0, 0, _SNAPLEN, linktype))
        for index, packet in enumerate(packets):
            f.write(struct.pack("<IIII", index, 0, len(packet), len(packet)))
            f.write(packet)
    return path


def tshark_binary() -> str:
    found = shutil.which("tshark")
    if found is None:
        raise RuntimeError("tshark is not installed: run scripts/install-deps")
    return found


def _run_tshark(args: Sequence[str], timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="tshark-config-") as config:
        env = {**os.environ, "WIRESHARK_CONFIG_DIR": config, "LC_ALL": "C", "TZ": "UTC"}
        try:
            done = subprocess.run(
                [tshark_binary(), "-n", *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"tshark did not finish within {timeout} s") from exc
    if done.returncode != 0:
        raise RuntimeError(f"tshark exited with {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def tshark_fields(
    pcap: Path,
    fields: Sequence[str],
    *,
    display_filter: str | None = None,
    timeout: float = 60.0,
    extra_args: Sequence[str] = (),
) -> list[dict[str, list[str]]]:
    """One dict per frame: field name -> every value tshark printed for it, in order (empty when absent).

    Runs ``tshark -r PCAP -T fields -E separator=| -e FIELD...`` (all occurrences of each field).
    """
    args = ["-r", str(pcap), "-T", "fields", "-E", f"separator={_SEPARATOR}", "-E", "occurrence=a"]
    args += ["-E", f"aggregator={_AGGREGATOR}", "-E", "quote=n", "-E", "header=n"]
    if display_filter:
        args += ["-Y", display_filter]
    for field in fields:
        args += ["-e", field]
    frames = []
    for line in _run_tshark([*args, *extra_args], timeout).splitlines():
        values = line.split(_SEPARATOR)
        if len(values) != len(fields):
            raise RuntimeError(f"tshark printed {len(values)} columns for {len(fields)} fields: {line!r}")
        frames.append({f: (v.split(_AGGREGATOR) if v else []) for f, v in zip(fields, values, strict=True)})
    return frames


def tshark_json(pcap: Path, *, timeout: float = 60.0, extra_args: Sequence[str] = ()) -> list[dict[str, Any]]:
    """tshark's ``-T json`` output: one ``_source.layers`` dict per frame."""
    out = json.loads(_run_tshark(["-r", str(pcap), "-T", "json", *extra_args], timeout) or "[]")
    return [frame["_source"]["layers"] for frame in out]

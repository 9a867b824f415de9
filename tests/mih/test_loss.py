"""MIH over UDP through a lossy path: nftables drops a random quarter of the MIH datagrams in a network
namespace (this kernel has no netem), and every request still gets its answer through ACKs and retransmission.

The namespace and its ruleset are created by the fixture and deleted afterwards, also when the test fails."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORT = 4551
LOSS_PERCENT = 25


def _run(*args: str, timeout: float = 30) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@pytest.fixture
def lossy_namespace() -> Iterator[str]:
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed: run scripts/install-deps")
    name = f"mihloss-{os.getpid()}-{secrets.token_hex(3)}"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "-n", name, "link", "set", "lo", "up")
        ruleset = f"""
table inet mihloss {{
    counter dropped {{ }}
    chain input {{
        type filter hook input priority 0; policy accept;
        udp dport {PORT} numgen random mod 100 < {LOSS_PERCENT} counter name dropped drop
        udp sport {PORT} numgen random mod 100 < {LOSS_PERCENT} counter name dropped drop
    }}
}}
"""
        subprocess.run(
            ["ip", "netns", "exec", name, "nft", "-f", "-"], input=ruleset, text=True, check=True, timeout=30
        )
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)


@pytest.mark.slow
def test_every_request_is_answered_despite_loss(lossy_namespace: str) -> None:
    requests = 30
    command = ["ip", "netns", "exec", lossy_namespace, sys.executable, "-m", "tests.mih._loss_run"]
    done = subprocess.run(
        [*command, "--port", str(PORT), "--requests", str(requests)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    counters = _run("ip", "netns", "exec", lossy_namespace, "nft", "list", "counter", "inet", "mihloss", "dropped")
    match = re.search(r"packets (\d+)", counters)
    assert match is not None
    dropped = int(match.group(1))

    assert result["ok"] == requests and result["failed"] == 0
    assert dropped > 0
    # the drops were repaired by the MIH layer: retransmissions on at least one side, and at most one
    # Get_Information reached the Information Server per request (duplicates were caught by TID)
    retransmitted = result["client"].get("retransmissions", 0) + result["server"].get("retransmissions", 0)
    assert retransmitted > 0
    assert result["handled"] == requests
    assert result["server_pending"] == 0
    print(json.dumps({"dropped": dropped, **result}))  # shown with -s: what the loss cost

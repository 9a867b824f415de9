"""The benchmarks run end to end. These tests check that numbers come out and that every request got the answer
it had to get; they never look at how fast anything was (house style: benchmarks report, tests don't time)."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import loadgen
from bench.__main__ import available, by_default
from tests.support.service_proc import REPO_ROOT, clean_env


def _bench(*args: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=REPO_ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bench_rest_runs_end_to_end_and_every_fbu_is_accepted(tmp_path: Path) -> None:
    out = tmp_path / "rest.json"
    proc = _bench(
        "bench_rest",
        *("--requests", "48", "--connections", "2", "--sessions", "6", "--warmup", "6"),
        *("--rate", "40", "--duration", "0.5", "--open-connections", "2", "--json", str(out)),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())

    phases = {(p["target"], p["mode"]): p for p in doc["phases"]}
    want = {(t, m) for t in ("baseline", "fbu-verify") for m in ("closed", "open")} | {("baseline-thread", "closed")}
    assert set(phases) == want
    expected_requests = {"closed": 48, "open": 20}
    for (target, mode), phase in phases.items():
        requests = expected_requests[mode]
        assert phase["requests"] == requests
        good = "accepted" if target == "fbu-verify" else "ok"  # both baselines answer {"status": "ok", ...}
        assert phase["outcomes"] == {good: requests}, phase["outcomes"]
        assert phase["statuses"] == {"200": requests}
        for key in ("throughput_rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"):
            assert isinstance(phase[key], float) and math.isfinite(phase[key]) and phase[key] > 0, (key, phase)

    targets = doc["targets"]
    assert isinstance(targets["throughput_ratio"]["value"], float)
    assert isinstance(targets["throughput_ratio_to_thread_baseline"], float)
    assert [p["rate"] for p in targets["p99_at_rate"]] == [40.0]
    assert isinstance(targets["p99_at_rate"][0]["value_ms"], float)
    assert doc["machine"]["cpus"] and doc["machine"]["python"]
    assert "fbu-verify" in proc.stdout and "p99" in proc.stdout  # the table was printed


def _bench_json(tmp_path: Path, name: str, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run one benchmark with ``--json``; it must exit 0 and report no failure. Its output and the JSON."""
    out = tmp_path / f"{name}.json"
    proc = _bench(name, *args, "--json", str(out), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads(out.read_text())
    assert doc["failed"] is None
    return proc, doc


def test_bench_rest_with_wrk_checks_every_answer_and_reports_rewrites(tmp_path: Path) -> None:
    """The measurement the targets are about (``--loadgen wrk``), in miniature: both targets alternately, closed
    loop and one connection, every answer checked, replay protection and revocation checked, and per phase the
    AOF rewrites that happened in it (none: the bench rewrites the AOF before each phase)."""
    _, doc = _bench_json(
        tmp_path,
        "bench_rest",
        *("--loadgen", "wrk", "--rounds", "1", "--seconds", "1", "--sessions", "20", "--connections", "4"),
        *("--open-connections", "4"),
    )
    phases = {(r["load"], r["target"]) for r in doc["runs"]}
    assert phases == {(load, t) for load in ("closed", "one connection") for t in ("baseline", "fbu-verify")}
    for run in doc["runs"]:
        assert run["good"] == run["requests"] > 0 and run["aof_rewrites"] == 0, run
        assert run["steal"] is None or 0 <= run["steal"] <= 1, run  # /proc/stat, where there is one
        # Redis scripts per request: at least one per FBU (its verification), none for the baseline's GET
        assert run["scripts_per_request"] >= 1 if run["target"] == "fbu-verify" else run["scripts_per_request"] == 0
    assert doc["replay_check"] == {"accepted": 20, "retransmission": 20, "replay": 20}
    assert doc["revocation"]["accepted_after_revocation"] == 0
    assert set(doc["medians"]["closed"]["ratio"]) == {"throughput", "p50", "p99", "server_cpu"}


def test_bench_audit_times_the_whole_trail_operations_with_and_without_slot_chains(tmp_path: Path) -> None:
    """``bench_audit`` in miniature: the same work with slot chains off (one chain) and on with three writers (on
    one Redis a chain each, beside the main chain), every operation timed on both (the bench itself checks counts
    and verification)."""
    proc, doc = _bench_json(
        tmp_path, "bench_audit", *("--sessions", "20", "--fbus", "2", "--writers", "3", "--repeat", "1")
    )
    off, on = doc["results"]["off"], doc["results"]["on"]
    assert off["chains"] == 1 and on["chains"] == 1 + 3
    assert set(off) == set(on) and all(off[k] > 0 and on[k] > 0 for k in off)
    assert "find the chains" in proc.stdout and "on/off" in proc.stdout


def test_bench_ab_measures_two_versions_side_by_side(tmp_path: Path) -> None:
    """``bench_ab`` in miniature: two services (both this checkout, given as a directory) on one Redis, measured
    alternately; every FBU accepted, each round has one phase per version, the summary has both."""
    proc, doc = _bench_json(
        tmp_path, "bench_ab", *("--b", str(REPO_ROOT), "--rounds", "2", "--seconds", "1", "--sessions", "20")
    )
    assert sorted((r["round"], r["version"]) for r in doc["runs"]) == [(1, "A"), (1, "B"), (2, "A"), (2, "B")]
    assert [r["version"] for r in doc["runs"]] == ["A", "B", "B", "A"]  # the order alternates per round
    for run in doc["runs"]:
        assert run["target"] == "fbu-verify" and run["good"] == run["requests"] > 0, run
    summary = doc["summary"]
    assert summary["rounds"] == 2 and 0 <= summary["rounds_kept"] <= 2
    if summary["rounds_kept"]:
        assert summary["A"]["throughput"] > 0 and summary["B"]["throughput"] > 0
    assert "A:" in proc.stdout and "B:" in proc.stdout


def test_bench_main_finds_benchmarks_and_refuses_unknown_names() -> None:
    listed = _bench("--list", timeout=60)
    assert listed.returncode == 0
    assert "bench_rest" in listed.stdout.split() and "bench_ab" in listed.stdout.split()
    assert "bench_rest" in by_default(available()) and "bench_ab" not in by_default(available())  # a tool, on request
    unknown = _bench("no_such_benchmark", timeout=60)
    assert unknown.returncode == 2
    assert "no_such_benchmark" in unknown.stderr
    helped = _bench("rest", "--help", timeout=60)
    assert helped.returncode == 0
    for option in ("--requests", "--rate", "--connections", "--duration", "--json"):
        assert option in helped.stdout


# --- the load generator against a stub server (no service needed) -------------------------------------------


class _StubServer:
    """An HTTP/1.1 keep-alive server on loopback that answers each request with its path, in order, alternating
    Content-Length and chunked bodies. It closes a connection after its 7th answer saying so, or, with
    ``idle_close``, after its 5th answer without saying so (as a server does with an idle keep-alive connection)."""

    def __init__(self, *, idle_close: bool = False) -> None:
        self.idle_close = idle_close
        self.seen: list[tuple[int, str]] = []  # (connection number, path)
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        counter = iter(range(1_000_000))

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = next(counter)
            answered = 0
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    path = head.split(b" ", 2)[1].decode()
                    self.seen.append((conn, path))
                    body = json.dumps({"path": path}).encode()
                    answered += 1
                    close = answered % 7 == 0 and not self.idle_close
                    extra = b"Connection: close\r\n" if close else b""
                    if answered % 2:
                        writer.write(b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                    else:
                        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
                        writer.write(b"HTTP/1.1 200 OK\r\n" + extra + b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
                    await writer.drain()
                    if close or (self.idle_close and answered % 5 == 0):
                        break
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    def __enter__(self) -> _StubServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def stub() -> Iterator[_StubServer]:
    with _StubServer() as server:
        yield server


def _requests(port: int, count: int) -> list[bytes]:
    return [loadgen.encode_request("GET", f"/r/{i}", host=f"127.0.0.1:{port}") for i in range(count)]


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_loadgen_answers_every_request_and_keeps_each_lane_in_order(stub: _StubServer, mode: str) -> None:
    count, lanes = 60, [i % 5 for i in range(60)]
    answers: dict[int, bytes] = {}

    def on_response(response: loadgen.Response) -> None:
        answers[response.index] = response.body

    requests = _requests(stub.port, count)
    if mode == "closed":
        result = loadgen.run_closed(
            "127.0.0.1", stub.port, requests, connections=3, lanes=lanes, on_response=on_response
        )
    else:
        result = loadgen.run_open(
            "127.0.0.1", stub.port, requests, rate=400, connections=3, lanes=lanes, on_response=on_response
        )

    assert result.requests == count and result.statuses == {200: count} and not result.errors
    assert len(result.latencies) == count and not result.stopped_early
    assert {i: json.loads(body)["path"] for i, body in answers.items()} == {i: f"/r/{i}" for i in range(count)}
    # Requests of one lane reach the server in index order (an FBU must never overtake its predecessor).
    order = [int(path.rsplit("/", 1)[1]) for _, path in stub.seen]
    for lane in range(5):
        in_lane = [i for i in order if lanes[i] == lane]
        assert in_lane == sorted(in_lane)
    summary = result.summary()
    assert summary["requests"] == count and summary["p99_ms"] >= summary["p50_ms"]


def test_loadgen_resends_on_a_new_connection_when_the_server_closed_an_idle_one() -> None:
    with _StubServer(idle_close=True) as server:
        result = loadgen.run_closed("127.0.0.1", server.port, _requests(server.port, 23), connections=2)
        paths = sorted(int(path.rsplit("/", 1)[1]) for _, path in server.seen)
    assert result.statuses == {200: 23} and not result.errors
    assert paths == list(range(23))  # each request reached the server exactly once


def test_loadgen_records_failures_instead_of_hiding_them() -> None:
    with _StubServer() as server:
        port = server.port
    # The server is gone: every request fails and is counted as status 0 with its error.
    result = loadgen.run_closed("127.0.0.1", port, _requests(port, 4), connections=2, timeout=2.0)
    assert result.requests == 4 and result.failed == 4 and sum(result.errors.values()) == 4
    assert result.latencies == []


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 99) == 99.0
    assert loadgen.percentile(values, 100) == 100.0
    assert loadgen.percentile([3.0], 99.9) == 3.0
    assert math.isnan(loadgen.percentile([], 50))


def test_bench_freeradius_runs_end_to_end_with_its_control_server() -> None:
    proc = _bench("bench_freeradius", "--rounds", "3", "--parallel", "2", "--parallel-rounds", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for name in ("without module", "with aaa-fmip module", "control (no module)"):
        assert any(line.startswith(name) and "n=3 " in line and "p99" in line for line in lines), proc.stdout
        assert any(line.startswith(name) and "2 ok in" in line for line in lines), proc.stdout
    assert any(line.startswith("added at median ") for line in lines), proc.stdout
    assert any(line.startswith("noise floor (control - without): median ") for line in lines), proc.stdout
    # 10 warm-up, 3 timed and 2 parallel authentications through the module: each stored and pushed.
    assert lines[-1].endswith("detaching: keys_pushed=15, sessions_stored=15"), lines[-1]

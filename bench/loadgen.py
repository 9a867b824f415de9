"""An HTTP/1.1 keep-alive load generator on asyncio streams (standard library only).

Requests are pre-encoded bytes, so the generator spends its time on the socket, not on building messages. Each
request belongs to a *lane*: requests of one lane go out on one connection, in order, one at a time (an FBU with
sequence number n+1 must not overtake n, or the service rightly calls n a replay). Lanes are spread over the
connections (lane mod connections).

Two modes:

* **closed loop** (:func:`run_closed`): each connection sends its next request as soon as the previous answer
  is in. It measures the highest throughput the server sustains with that many requests in flight; latency is
  from the first byte written to the last byte read.
* **open loop** (:func:`run_open`): request ``i`` is due at ``start + i / rate``, whether or not earlier answers
  came back. Latency is measured from that *intended* send time, so time spent waiting for a busy connection, or
  for a late client, is counted (no coordinated omission: a server stall shows up in every request it delayed,
  not just in the one that hit it). epoll sleeps in whole milliseconds, so the scheduler wakes up to half a
  millisecond early rather than up to a millisecond late; a request released before it was due is timed from its
  release instead, so no request is ever timed from later than it left. How late the client released requests
  (its own lag, counted in the latency) is reported separately.

Every wait is bounded: connecting and each response by ``timeout``, a whole run by ``max_seconds``. A request
that fails (connection error, timeout, malformed response) is recorded with status 0 and its error; the caller
decides how loudly to fail. The one failure retried is a kept-alive connection the server had closed before
reading the request: it is sent once more on a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "LoadResult",
    "Response",
    "WrkResult",
    "encode_request",
    "percentile",
    "run_closed",
    "run_open",
    "run_wrk",
]

_MAX_HEADER_OCTETS = 64 * 1024
_MAX_BODY_OCTETS = 16 * 1024 * 1024
_EARLY = 0.0005  # seconds: half of epoll's 1 ms timeout granularity


def encode_request(
    method: str,
    path: str,
    *,
    host: str,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """One HTTP/1.1 request, ready to write (``Content-Length`` is added when there is a body)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass(frozen=True)
class Response:
    """One answer: status 0 means the request failed without an HTTP answer (``error`` says why)."""

    index: int
    status: int
    body: bytes
    latency: float  # seconds
    error: str | None = None


@dataclass
class LoadResult:
    """What a run measured. Latencies are in seconds; percentiles are nearest-rank."""

    mode: str
    connections: int
    requests: int  # requests sent (answered or failed)
    elapsed: float  # seconds, first send to last answer
    latencies: list[float] = field(repr=False)
    statuses: dict[int, int]
    errors: dict[str, int]
    target_rate: float | None = None
    max_schedule_lag: float = 0.0  # open loop: the latest a request was released after it was due
    schedule_lags: list[float] = field(default_factory=list, repr=False)  # open loop: per request, >= 0
    client_cpu: float = 0.0  # CPU seconds this process used during the run
    stopped_early: bool = False  # max_seconds ran out before every request was sent

    @property
    def throughput(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def failed(self) -> int:
        return self.statuses.get(0, 0)

    def pct(self, p: float) -> float:
        return percentile(self.latencies, p)

    def summary(self) -> dict[str, Any]:
        ms = {f"p{_label(p)}_ms": round(self.pct(p) * 1000, 3) for p in (50, 90, 99, 99.9)}
        return {
            "mode": self.mode,
            "connections": self.connections,
            "target_rate": self.target_rate,
            "requests": self.requests,
            "elapsed_s": round(self.elapsed, 3),
            "throughput_rps": round(self.throughput, 1),
            **ms,
            "mean_ms": round(1000 * sum(self.latencies) / len(self.latencies), 3) if self.latencies else math.nan,
            "max_ms": round(max(self.latencies) * 1000, 3) if self.latencies else math.nan,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "client_lag_p99_ms": round(percentile(self.schedule_lags, 99) * 1000, 3) if self.schedule_lags else None,
            "max_schedule_lag_ms": round(self.max_schedule_lag * 1000, 3),
            "client_cpu_s": round(self.client_cpu, 3),
            "stopped_early": self.stopped_early,
        }


def _label(p: float) -> str:
    return str(int(p)) if p == int(p) else str(p).replace(".", "")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (the smallest value with at least p% of the values at or below it)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class ProtocolError(Exception):
    pass


class _ClosedBeforeResponse(ProtocolError):
    pass


class _Connection:
    """One keep-alive connection; reopened transparently when the server closes it."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), timeout=self.timeout
        )

    async def close(self) -> None:
        writer, self.writer, self.reader = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), timeout=self.timeout)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request and read its whole answer (each attempt bounded by ``timeout``).

        A kept-alive connection the server closed while idle fails before any response byte; the request is then
        sent once more on a new connection (the server never read it). Any other failure is the caller's.
        """
        reused = self.writer is not None
        while True:
            if self.writer is None:
                await self._open()
            try:
                async with asyncio.timeout(self.timeout):
                    status, body, keep = await self._roundtrip(request)
            except _ClosedBeforeResponse:
                await self.close()
                if not reused:
                    raise
                reused = False
                continue
            except BaseException:
                await self.close()
                raise
            if not keep:
                await self.close()
            return status, body

    async def _roundtrip(self, request: bytes) -> tuple[int, bytes, bool]:
        assert self.reader is not None and self.writer is not None
        try:
            self.writer.write(request)
            await self.writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            raise _ClosedBeforeResponse("connection closed before the request was sent") from None
        return await self._read_response(self.reader)

    @staticmethod
    async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except ConnectionResetError:
            raise _ClosedBeforeResponse("connection reset before a response") from None
        except asyncio.LimitOverrunError:
            raise ProtocolError("response header too long") from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise ProtocolError("connection closed in a response header") from None
            raise _ClosedBeforeResponse("connection closed before a response") from None
        if len(head) > _MAX_HEADER_OCTETS:
            raise ProtocolError("response header too long")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {lines[0][:60]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        keep = parts[0] == "HTTP/1.1"
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                continue
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                if not value.isdigit() or int(value) > _MAX_BODY_OCTETS:
                    raise ProtocolError("bad Content-Length")
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value
            elif name == "connection":
                keep = "close" not in value if keep else "keep-alive" in value
        if chunked:
            body = await _read_chunked(reader)
        elif length is not None:
            body = await reader.readexactly(length)
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:  # no length: the body runs to the end of the connection
            pieces: list[bytes] = []
            while chunk := await reader.read(65536):
                pieces.append(chunk)
                if sum(map(len, pieces)) > _MAX_BODY_OCTETS:
                    raise ProtocolError("body too long")
            body, keep = b"".join(pieces), False
        return status, body, keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError("bad chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(chunks)
        total += size
        if total > _MAX_BODY_OCTETS:
            raise ProtocolError("chunked body too long")
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ProtocolError("bad chunk terminator")


def _error_name(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, ProtocolError):
        return f"protocol: {exc}"
    return type(exc).__name__


class _Recorder:
    def __init__(self, total: int, on_response: Callable[[Response], None] | None) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.done = 0
        self.total = total
        self.on_response = on_response
        self.last_answer = 0.0

    def record(self, index: int, status: int, body: bytes, latency: float, error: str | None = None) -> None:
        self.done += 1
        self.last_answer = time.perf_counter()
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + 1
        else:
            self.latencies.append(latency)
        if self.on_response is not None:
            self.on_response(Response(index, status, body, latency, error))


async def _progress(recorder: _Recorder, start: float, every: float, report: Callable[[int, int, float], None]) -> None:
    while True:
        await asyncio.sleep(every)
        report(recorder.done, recorder.total, time.perf_counter() - start)


def _by_connection(count: int, connections: int, lanes: Sequence[int] | None) -> list[list[int]]:
    queues: list[list[int]] = [[] for _ in range(connections)]
    for i in range(count):
        queues[(lanes[i] if lanes is not None else i) % connections].append(i)
    return queues


async def _closed(
    host: str,
    port: int,
    requests: Sequence[bytes],
    connections: int,
    lanes: Sequence[int] | None,
    timeout: float,
    max_seconds: float,
    on_response: Callable[[Response], None] | None,
    progress: Callable[[int, int, float], None] | None,
    progress_every: float,
) -> LoadResult:
    recorder = _Recorder(len(requests), on_response)
    queues = _by_connection(len(requests), connections, lanes)
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + max_seconds
    stopped = False

    async def worker(indices: list[int]) -> None:
        nonlocal stopped
        conn = _Connection(host, port, timeout)
        try:
            for i in indices:
                if time.perf_counter() >= deadline:
                    stopped = True
                    return
                t0 = time.perf_counter()
                try:
                    status, body = await conn.exchange(requests[i])
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ProtocolError) as exc:
                    recorder.record(i, 0, b"", time.perf_counter() - t0, _error_name(exc))
                    continue
                recorder.record(i, status, body, time.perf_counter() - t0)
        finally:
            await conn.close()

    reporter = asyncio.create_task(_progress(recorder, start, progress_every, progress)) if progress else None
    try:
        await asyncio.gather(*(worker(q) for q in queues if q))
    finally:
        if reporter is not None:
            reporter.cancel()
    end = recorder.last_answer or time.perf_counter()
    return LoadResult(
        mode="closed",
        connections=connections,
        requests=recorder.done,
        elapsed=end - start,
        latencies=recorder.latencies,
        statuses=recorder.statuses,
        errors=recorder.errors,
        client_cpu=time.process_time() - cpu0,
        stopped_early=stopped,
    )


async def _open(
    host: str,
    port: int,
    requests: Sequence[bytes],
    rate: float,
    connections: int,
    lanes: Sequence[int] | None,
    timeout: float,
    max_seconds: float,
    on_response: Callable[[Response], None] | None,
    progress: Callable[[int, int, float], None] | None,
    progress_every: float,
) -> LoadResult:
    if rate <= 0:
        raise ValueError("rate must be positive")
    recorder = _Recorder(len(requests), on_response)
    conns = [_Connection(host, port, timeout) for _ in range(connections)]
    # Connect before the clock starts: connection setup is not what the run measures.
    await asyncio.gather(*(c._open() for c in conns))
    inboxes: list[asyncio.Queue[tuple[int, float] | None]] = [asyncio.Queue() for _ in range(connections)]
    cpu0 = time.process_time()
    start = time.perf_counter()
    deadline = start + max_seconds
    lag = 0.0
    lags: list[float] = []
    sent = 0
    stopped = False

    async def worker(conn: _Connection, inbox: asyncio.Queue[tuple[int, float] | None]) -> None:
        while True:
            item = await inbox.get()
            if item is None:
                return
            i, due = item  # the earlier of the intended and the actual release time
            try:
                status, body = await conn.exchange(requests[i])
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ProtocolError) as exc:
                recorder.record(i, 0, b"", time.perf_counter() - due, _error_name(exc))
                continue
            recorder.record(i, status, body, time.perf_counter() - due)

    async def scheduler() -> None:
        nonlocal lag, sent, stopped
        interval = 1.0 / rate
        for i in range(len(requests)):
            due = start + i * interval
            now = time.perf_counter()
            if due - now > _EARLY:
                await asyncio.sleep(due - now - _EARLY)
                now = time.perf_counter()
            if now >= deadline:
                stopped = True
                break
            late = max(0.0, now - due)
            lags.append(late)
            lag = max(lag, late)
            lane = lanes[i] if lanes is not None else i
            inboxes[lane % connections].put_nowait((i, min(due, now)))
            sent += 1
        for inbox in inboxes:
            inbox.put_nowait(None)

    reporter = asyncio.create_task(_progress(recorder, start, progress_every, progress)) if progress else None
    workers = [asyncio.create_task(worker(c, q)) for c, q in zip(conns, inboxes, strict=True)]
    try:
        await scheduler()
        remaining = max(0.0, deadline - time.perf_counter()) + timeout
        done, pending = await asyncio.wait(workers, timeout=remaining)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()
    finally:
        if reporter is not None:
            reporter.cancel()
        for task in workers:
            task.cancel()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    lost = sent - recorder.done
    if lost > 0:  # cancelled while in flight when max_seconds + timeout ran out
        recorder.statuses[0] = recorder.statuses.get(0, 0) + lost
        recorder.errors["unanswered at the end of the run"] = lost
    end = recorder.last_answer or time.perf_counter()
    return LoadResult(
        mode="open",
        connections=connections,
        requests=sent,
        elapsed=end - start,
        latencies=recorder.latencies,
        statuses=recorder.statuses,
        errors=recorder.errors,
        target_rate=rate,
        max_schedule_lag=lag,
        schedule_lags=lags,
        client_cpu=time.process_time() - cpu0,
        stopped_early=stopped,
    )


def run_closed(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    connections: int,
    lanes: Sequence[int] | None = None,
    timeout: float = 10.0,
    max_seconds: float = 600.0,
    on_response: Callable[[Response], None] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    progress_every: float = 1.0,
) -> LoadResult:
    """Send ``requests`` over ``connections`` keep-alive connections, each as fast as answers come back."""
    if connections < 1:
        raise ValueError("connections must be at least 1")
    if lanes is not None and len(lanes) != len(requests):
        raise ValueError("one lane per request")
    return asyncio.run(
        _closed(
            host,
            port,
            requests,
            connections,
            lanes,
            timeout,
            max_seconds,
            on_response,
            progress,
            progress_every,
        )
    )


def run_open(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    connections: int,
    lanes: Sequence[int] | None = None,
    timeout: float = 10.0,
    max_seconds: float = 600.0,
    on_response: Callable[[Response], None] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    progress_every: float = 1.0,
) -> LoadResult:
    """Send ``requests`` at ``rate`` per second, latency measured from each request's intended send time."""
    if connections < 1:
        raise ValueError("connections must be at least 1")
    if lanes is not None and len(lanes) != len(requests):
        raise ValueError("one lane per request")
    return asyncio.run(
        _open(
            host,
            port,
            requests,
            rate,
            connections,
            lanes,
            timeout,
            max_seconds,
            on_response,
            progress,
            progress_every,
        )
    )


# --------------------------------------------------------------------------------------------------- wrk

# wrk (a C load generator: its own CPU does not decide the result) driven by pre-built requests. Each wrk thread
# takes every n-th line of the request file (line i to thread i mod threads) and sends its lines in order, each
# once; the answers are checked in Lua (status 200 and ``expect`` in the body) and counted per thread. A thread
# that runs out of lines resends its last one and counts it as ``exhausted`` (the caller fails such a run);
# with ``repeat`` every thread sends its first line again and again (a request that may be repeated).
WRK_SCRIPT: Final = r"""
local threads, counter = {}, 0
function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end
function init(args)
  local file, nthreads, method, path, expect = args[1], tonumber(args[2]), args[3], args[4], args[5]
  again = args[6] == "1"
  local headers = {}
  for i = 7, #args, 2 do headers[args[i]] = args[i + 1] end
  wanted = expect
  queue = {}
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == id then
      local body = nil
      if line ~= "" then body = line end
      table.insert(queue, wrk.format(method, path, headers, body))
    end
    i = i + 1
  end
  sent, good, bad, exhausted = 0, 0, 0, 0
end
function request()
  if again then return queue[1] end
  sent = sent + 1
  if sent > #queue then
    exhausted = exhausted + 1
    return queue[#queue]
  end
  return queue[sent]
end
function response(status, headers, body)
  if status == 200 and body and string.find(body, wanted, 1, true) then good = good + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local g, b, x = 0, 0, 0
  for _, t in ipairs(threads) do
    g = g + t:get("good")
    b = b + t:get("bad")
    x = x + t:get("exhausted")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,'
      .. '"socket_errors":%d,"good":%d,"bad":%d,"exhausted":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, e.connect + e.read + e.write + e.timeout, g, b, x))
end
"""


@dataclass
class WrkResult:
    """What one wrk run measured and counted (latencies in seconds)."""

    requests: int
    seconds: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    socket_errors: int
    good: int
    bad: int
    exhausted: int

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def clean(self) -> bool:
        """Every answer was the expected one, none failed, and no thread ran out of requests."""
        return self.bad == 0 and self.socket_errors == 0 and self.exhausted == 0 and self.good == self.requests


def run_wrk(
    host: str,
    port: int,
    *,
    bodies: Sequence[bytes],
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]],
    expect: str,
    connections: int,
    threads: int,
    seconds: float,
    workdir: Any,
    timeout: float = 10.0,
    repeat: bool = False,
) -> WrkResult:
    """Run ``wrk`` for ``seconds`` against ``http://host:port/path`` with ``bodies`` (one per request, in order per
    thread; empty for none). Bounded: wrk stops itself after ``seconds``; the subprocess is killed after twice that
    plus ``timeout``."""
    import json as _json
    import subprocess
    from pathlib import Path

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    script = work / "wrk.lua"
    script.write_text(WRK_SCRIPT)
    lines = work / "requests.txt"
    with lines.open("wb") as out:
        for body in list(bodies) * (threads if repeat else 1):
            if b"\n" in body:
                raise ValueError("request bodies for wrk must be single lines")
            out.write(body + b"\n")
    args = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--timeout", f"{timeout:g}s"]
    args += ["-s", str(script), f"http://{host}:{port}{path}", "--", str(lines), str(threads), method, path, expect]
    args.append("1" if repeat else "0")
    for name, value in headers:
        args += [name, value]
    done = subprocess.run(args, capture_output=True, text=True, timeout=2 * seconds + timeout, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            r = _json.loads(line.removeprefix("WRK_RESULT "))
            return WrkResult(
                requests=r["requests"],
                seconds=r["duration_us"] / 1e6,
                p50=r["p50_us"] / 1e6,
                p90=r["p90_us"] / 1e6,
                p99=r["p99_us"] / 1e6,
                p999=r["p999_us"] / 1e6,
                max=r["max_us"] / 1e6,
                socket_errors=r["socket_errors"],
                good=r["good"],
                bad=r["bad"],
                exhausted=r["exhausted"],
            )
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr[-500:] or done.stdout[-500:]}")

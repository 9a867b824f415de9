"""The stream harness's arithmetic (tests/router/_stream.py): what the loss table in performance.md is made of."""

from __future__ import annotations

from tests.router._stream import summarise

SENDER = {"count": 10, "first": 100.0, "last": 100.009}


def test_nothing_lost() -> None:
    arrivals = [(i, 100.0 + i / 1000, 100.0005 + i / 1000) for i in range(10)]
    s = summarise(SENDER, arrivals)
    assert (s["lost"], s["duplicates"], s["reordered"], s["last_received"]) == (0, 0, 0, 9)
    assert s["longest_gap_ms"] == 1.0 and s["max_delay_ms"] == 0.5


def test_a_hole_then_a_late_flush_counts_the_gap_the_delay_and_no_loss() -> None:
    arrivals = [(i, 100.0 + i / 1000, 100.0 + i / 1000) for i in range(3)]
    arrivals += [(i, 100.0 + i / 1000, 100.050 + i / 10000) for i in range(3, 10)]  # buffered, flushed at 50 ms
    s = summarise(SENDER, arrivals)
    assert s["lost"] == 0 and s["longest_gap_ms"] == 48.3 and s["max_delay_ms"] == 47.3


def test_a_stream_that_never_comes_back_is_one_gap_to_its_last_send() -> None:
    arrivals = [(i, 100.0 + i / 1000, 100.0 + i / 1000) for i in range(4)]
    s = summarise(SENDER, arrivals)
    assert s["lost"] == 6 and s["last_received"] == 3 and s["longest_gap_ms"] == 6.0


def test_duplicates_and_reordering_are_counted_apart() -> None:
    arrivals = [(0, 100.0, 100.0), (2, 100.002, 100.002), (1, 100.001, 100.003), (2, 100.002, 100.004)]
    s = summarise({"count": 3, "first": 100.0, "last": 100.002}, arrivals)
    assert (s["lost"], s["duplicates"], s["reordered"]) == (0, 1, 1)


def test_nothing_arrived() -> None:
    s = summarise(SENDER, [])
    assert s["lost"] == 10 and s["longest_gap_ms"] is None and s["last_received"] is None

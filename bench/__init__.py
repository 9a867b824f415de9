"""Benchmarks: each ``bench/bench_*.py`` exposes ``main(argv) -> int`` and reports numbers, never asserts them.

Run them all with ``python -m bench`` (or ``make bench``), some with ``python -m bench bench_rest ...``; each
benchmark's ``--help`` says what it measures and how.
"""

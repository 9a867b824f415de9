"""Run the benchmarks of this package: every module ``bench_*.py`` that exposes ``main(argv) -> int``.

    python -m bench                               every benchmark, in name order, with its defaults (not the tools
                                                  that run only when named: bench_ab)
    python -m bench bench_rest                    just that one (the "bench_" prefix may be left out)
    python -m bench rest diameter --requests 500  several; arguments from the first option on go to each
    python -m bench rest -- --help                "--" ends the names explicitly
    python -m bench --list                        what is there

The exit status is 0 when every benchmark that ran returned 0, else the first non-zero status (2 for an unknown
name or a benchmark that cannot be imported). A failing benchmark does not stop the ones after it.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PREFIX = "bench_"


def available() -> list[str]:
    """Names of the benchmark modules in this package, sorted."""
    here = str(Path(__file__).resolve().parent)
    return sorted(m.name for m in pkgutil.iter_modules([here]) if m.name.startswith(PREFIX) and not m.ispkg)


def split_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Leading words are benchmark names; from the first option (or after ``--``) on, the benchmarks' args."""
    names: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return names, list(argv[i + 1 :])
        if arg.startswith("-"):
            return names, list(argv[i:])
        names.append(arg)
    return names, []


def by_default(known: Sequence[str]) -> list[str]:
    """The benchmarks run when none is named: all but those whose module sets ``ON_REQUEST = True`` (a tool such as
    ``bench_ab``, which compares two versions of the code and needs a git checkout)."""
    chosen = []
    for name in known:
        try:
            module = importlib.import_module(f"{__package__ or 'bench'}.{name}")
        except Exception:  # run_one reports it, with its traceback
            chosen.append(name)
            continue
        if not getattr(module, "ON_REQUEST", False):
            chosen.append(name)
    return chosen


def resolve(names: Sequence[str], known: Sequence[str]) -> tuple[list[str], list[str]]:
    """(benchmark modules in the order named, names that match none)."""
    chosen: list[str] = []
    unknown: list[str] = []
    for name in names:
        module = name.removesuffix(".py")
        module = module if module.startswith(PREFIX) else PREFIX + module
        if module in known:
            if module not in chosen:
                chosen.append(module)
        else:
            unknown.append(name)
    return chosen, unknown


def load(module_name: str) -> Callable[[list[str]], Any]:
    module = importlib.import_module(f"{__package__ or 'bench'}.{module_name}")
    entry = getattr(module, "main", None)
    if not callable(entry):
        raise TypeError(f"{module_name} has no main(argv) -> int")
    return entry  # type: ignore[no-any-return]


def run_one(module_name: str, args: list[str]) -> int:
    try:
        entry = load(module_name)
    except Exception:
        print(f"bench: cannot load {module_name}:\n{traceback.format_exc()}", file=sys.stderr)
        return 2
    try:
        status = entry(list(args))
    except SystemExit as exc:  # argparse --help or a usage error inside the benchmark
        code = exc.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        return 130
    except Exception:
        print(f"bench: {module_name} raised:\n{traceback.format_exc()}", file=sys.stderr)
        return 1
    return int(status or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    known = available()
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        print("benchmarks: " + (", ".join(known) or "none"))
        return 0
    if argv[:1] == ["--list"]:
        print("\n".join(known))
        return 0
    names, args = split_args(argv)
    chosen, unknown = resolve(names, known) if names else (by_default(known), [])
    if unknown:
        print(f"bench: no benchmark named {', '.join(unknown)} (have: {', '.join(known) or 'none'})", file=sys.stderr)
        return 2
    if not chosen:
        print("bench: no benchmarks found", file=sys.stderr)
        return 2
    results: list[tuple[str, int, float]] = []
    for module_name in chosen:
        if len(chosen) > 1:
            print(f"\n=== {module_name} ===", flush=True)
        start = time.monotonic()
        status = run_one(module_name, args)
        results.append((module_name, status, time.monotonic() - start))
    if len(results) > 1:
        print("\n=== summary ===")
        for module_name, status, seconds in results:
            print(f"{module_name}: {'ok' if status == 0 else f'FAILED (exit {status})'} in {seconds:.0f} s")
    return next((status for _, status, _ in results if status != 0), 0)


if __name__ == "__main__":
    raise SystemExit(main())

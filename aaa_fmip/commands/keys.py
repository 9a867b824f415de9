"""``aaa-fmip keys``: operator tools for the key hierarchy (architecture.md §2)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("keys", help="derive and inspect handover keys")

    def _help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_help)

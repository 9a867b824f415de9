"""``aaa-fmip`` command line: one sub-command per module under :mod:`aaa_fmip.commands`.

Each command module defines ``register(subparsers) -> None`` that adds its parser and sets
``func=handler`` where ``handler(args) -> int`` returns the exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from aaa_fmip import __version__
from aaa_fmip.errors import AaaFmipError, ConfigError

# Add a module here to add a sub-command.
COMMAND_MODULES: tuple[str, ...] = (
    "aaa_fmip.commands.keys",
    "aaa_fmip.commands.serve",
    "aaa_fmip.commands.healthcheck",
    "aaa_fmip.commands.token",
    "aaa_fmip.commands.freeradius_config",
    "aaa_fmip.commands.radius_accounting",
    "aaa_fmip.commands.demo",
    "aaa_fmip.commands.audit",
    "aaa_fmip.commands.mih",
    "aaa_fmip.commands.router",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aaa-fmip",
        description=(
            "AAA-keyed security for Mobile IPv6 fast handovers (FMIPv6, RFC 5568): a key service for access "
            "routers, plug-ins for FreeRADIUS and Diameter, and the RFC 5269 SEND fallback."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except ConfigError as exc:
        print(f"aaa-fmip: configuration error: {exc}", file=sys.stderr)
        return 2
    except AaaFmipError as exc:
        print(f"aaa-fmip: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

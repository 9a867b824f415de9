"""``aaa-fmip audit``: verify the audit trail, take signed checkpoints, export it outside Redis, trim it.

Every action reads the same configuration as ``serve`` (the store and the KEK) and talks to the store directly,
so an operator can check the trail with the service stopped, and keep a copy that Redis cannot rewrite.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aaa_fmip.config import ENV_CONFIG, Settings, load_settings, resolve_config_path
from aaa_fmip.errors import AaaFmipError, ConfigError, CryptoError
from aaa_fmip.logging import configure_logging
from aaa_fmip.store import AuditCheck, Checkpoint


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "audit",
        help="verify, checkpoint, export and trim the audit trail",
        description=(
            "The audit trail lives in Redis; each entry carries a MAC under a key derived from the KEK, so no one "
            "who can only write to Redis can forge or re-chain entries. Keep a signed checkpoint (`checkpoint`) "
            "and an exported copy (`export`) outside Redis: `verify --checkpoint` then detects a truncation or a "
            "wipe, and `verify-export` checks the copy offline."
        ),
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="FILE", help=f"TOML configuration file (default: ${ENV_CONFIG})")

    verify = actions.add_parser(
        "verify",
        help="check every entry's MAC, position and link (exit 0 if the trail verifies, 1 if not)",
        description="Check the trail in Redis; with --checkpoint, also that it still reaches that checkpoint.",
    )
    common(verify)
    verify.add_argument("--checkpoint", metavar="FILE", help="a checkpoint kept earlier (JSON, from `checkpoint`)")
    verify.set_defaults(func=run_verify)

    checkpoint = actions.add_parser(
        "checkpoint",
        help="verify the trail, then print a signed checkpoint of it (JSON) to keep elsewhere",
        description=(
            "Print {checkpoint, public_keys}: the position and head of the trail signed with Ed25519 under a key "
            "derived from the KEK, and the public keys that verify it. Keep it outside Redis."
        ),
    )
    common(checkpoint)
    checkpoint.add_argument("--out", metavar="FILE", help="write it to FILE (mode 0644) instead of stdout")
    checkpoint.set_defaults(func=run_checkpoint)

    export = actions.add_parser(
        "export",
        help="append the entries not yet exported to a JSON-lines file and/or a syslog receiver",
        description=(
            "Export (verified) every entry not yet exported, then record the position in Redis. Without --to "
            "or --syslog, the [audit] settings are used. --follow keeps going every --interval seconds until "
            "SIGTERM; retention (audit.retain_entries or --retain) trims exported entries only."
        ),
    )
    common(export)
    export.add_argument("--to", metavar="FILE", help="JSON-lines file, appended to (overrides audit.export_file)")
    export.add_argument("--syslog", metavar="URL", help="udp://host:port or tcp://host:port (RFC 5424)")
    export.add_argument("--follow", action="store_true", help="keep exporting until interrupted")
    export.add_argument("--interval", type=float, help="seconds between passes with --follow")
    export.add_argument("--retain", type=int, metavar="N", help="after each pass keep only the newest N in Redis")
    export.set_defaults(func=run_export)

    verify_export = actions.add_parser(
        "verify-export",
        help="check an exported JSON-lines file offline with the KEK (MACs, no gaps)",
        description="Check every line's MAC and that the lines follow one another; print the last position.",
    )
    common(verify_export)
    verify_export.add_argument("file", metavar="FILE")
    verify_export.add_argument("--checkpoint", metavar="FILE", help="also require the file to reach this checkpoint")
    verify_export.set_defaults(func=run_verify_export)

    def _help(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_help)


def _settings(args: argparse.Namespace) -> Settings:
    configure_logging("WARNING")
    return load_settings(resolve_config_path(args.config, os.environ), os.environ)


def read_checkpoint(path: str) -> Checkpoint:
    """A checkpoint file as `checkpoint` writes it (the whole answer, or just its ``checkpoint`` object)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        c = doc.get("checkpoint", doc)
        return Checkpoint(
            n=int(c["n"]),
            head=str(c["head"]),
            at=str(c["at"]),
            kid=str(c["kid"]),
            signature=base64.b64decode(c["signature"], validate=True),
        )
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", key="--checkpoint") from None
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise ConfigError(f"{path} is not a checkpoint", key="--checkpoint") from None


def _print_check(check: AuditCheck) -> int:
    print(
        json.dumps(
            {
                "ok": check.ok,
                "entries": check.entries,
                "n": check.n,
                "first_n": check.first_n,
                "head": check.head,
                "first_bad_id": check.first_bad_id,
                "problem": check.problem,
                "checkpoint": check.checkpoint,
            },
            indent=2,
        )
    )
    return 0 if check.ok else 1


def run_verify(args: argparse.Namespace) -> int:
    settings = _settings(args)
    kept = read_checkpoint(args.checkpoint) if args.checkpoint else None
    from aaa_fmip.bootstrap import build_runtime

    runtime = build_runtime(settings)
    try:
        try:
            return _print_check(runtime.store.verify_audit(kept))
        except CryptoError as exc:
            raise AaaFmipError(f"the checkpoint is not one this service signed: {exc}") from None
    finally:
        runtime.close()


def run_checkpoint(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from aaa_fmip.bootstrap import build_runtime
    from aaa_fmip.store.redis import checkpoint_text

    runtime = build_runtime(settings)
    try:
        cp = runtime.store.checkpoint(now=time.time())
        doc = {
            "checkpoint": json.loads(checkpoint_text(cp)),
            "public_keys": {k: base64.b64encode(v).decode() for k, v in runtime.store.audit_public_keys.items()},
        }
    finally:
        runtime.close()
    text = json.dumps(doc, indent=2) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def run_export(args: argparse.Namespace) -> int:
    settings = _settings(args)
    audit = settings.audit
    file = Path(args.to) if args.to else (audit.export_file if not args.syslog else None)
    syslog = args.syslog or (audit.export_syslog if not args.to else None)
    if file is None and syslog is None:
        raise ConfigError("give --to FILE or --syslog URL, or set audit.export_file / audit.export_syslog", key="--to")
    retain = args.retain if args.retain is not None else audit.retain_entries
    interval = args.interval if args.interval is not None else audit.export_interval
    from aaa_fmip.audit_export import AuditExporter, open_sinks
    from aaa_fmip.bootstrap import build_runtime

    runtime = build_runtime(settings)
    exporter = None
    try:
        exporter = AuditExporter(
            runtime.store, open_sinks(file, syslog), retain=retain, interval=interval, clock=time.time
        )
        if not args.follow:
            exported = exporter.export_once()
            dropped = exporter.trim()
            print(f"exported {exported} entries" + (f", trimmed {dropped}" if dropped else ""), file=sys.stderr)
            return 0
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        exporter.start()
        stop.wait()
        return 0
    finally:
        if exporter is not None:
            exporter.stop()
        runtime.close()


def run_verify_export(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from aaa_fmip.audit_export import verify_export
    from aaa_fmip.bootstrap import load_kek_ring

    ring = load_kek_ring(settings)
    if ring is None and settings.store.embedded:
        from aaa_fmip.store.embedded import ensure_kek

        data_dir = settings.store.data_dir
        ring = load_kek_ring(settings, lambda: ensure_kek(data_dir))
    if ring is None:
        raise ConfigError("the KEK is needed to check MACs: set keys.kek_file or AAA_FMIP_KEK", key="keys.kek_file")
    kept = read_checkpoint(args.checkpoint) if args.checkpoint else None
    try:
        with open(args.file, encoding="utf-8") as f:
            check = verify_export(f, ring, checkpoint=(kept.n, kept.head) if kept is not None else None)
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file}: {exc.strerror or exc}", key="FILE") from None
    problem = check.problem
    print(
        json.dumps(
            {"ok": problem is None, "lines": check.lines, "n": check.n, "head": check.head, "problem": problem,
             "line": check.line_number},
            indent=2,
        )
    )  # fmt: skip
    return 0 if problem is None else 1

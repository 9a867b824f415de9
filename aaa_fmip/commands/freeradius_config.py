"""``aaa-fmip freeradius-config``: print, or install into a raddb directory, the FreeRADIUS 3.2 configuration
(docs/freeradius.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from aaa_fmip.errors import ConfigError
from aaa_fmip.radius import freeradius_config as frc
from aaa_fmip.radius.dictionary import DEFAULT_VENDOR_ID, DICTIONARY_FILE_NAME, check_vendor_id, render_dictionary

_DESCRIPTION = """\
Print the FreeRADIUS 3.2 configuration that feeds EAP sessions to aaa-fmip, or write it into a raddb
directory (--raddb). Two modes:

  python  rlm_python3 runs aaa-fmip inside FreeRADIUS: sessions are stored from post-auth, the serving
          access router's handover key is pushed in the Access-Accept, Accounting Stop revokes. Needs
          aaa-fmip installed for the Python version FreeRADIUS embeds (3.11 on Debian 12).
  rest    rlm_rest posts each session to a running `aaa-fmip serve` (POST /v1/sessions) and Accounting
          Stops to POST /v1/sessions/revoke. No Python inside FreeRADIUS; no key push.

--raddb writes mods-available/<module> (and its mods-enabled link), policy.d/aaa_fmip,
dictionary.aaa-fmip (included from raddb/dictionary) and a marked block at the top of the site's post-auth
and accounting sections; running it again replaces exactly those."""


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "freeradius-config",
        help="print or install the FreeRADIUS module and site configuration",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--raddb", type=Path, help="write into this FreeRADIUS configuration directory")
    parser.add_argument("--site", default="default", help="virtual server to call the module from (default: default)")
    parser.add_argument("--mode", choices=("python", "rest"), default="python", help="python (default) or rest")
    parser.add_argument(
        "--config",
        type=Path,
        help="aaa-fmip configuration file the module reads (default: $AAA_FMIP_CONFIG at generation time)",
    )
    parser.add_argument(
        "--python-path",
        help="colon-separated directories aaa_fmip and its dependencies import from "
        "(default: this installation's site-packages)",
    )
    parser.add_argument("--rest-url", default="http://127.0.0.1:8080", help="base URL of `aaa-fmip serve` (rest mode)")
    parser.add_argument(
        "--rest-timeout", type=float, default=1.0, help="seconds rlm_rest waits for the key service (rest mode)"
    )
    parser.add_argument(
        "--vendor-id",
        type=int,
        help=f"RADIUS vendor id of the dictionary (default: radius.vendor_id of --config, else {DEFAULT_VENDOR_ID})",
    )
    parser.add_argument("--dictionary", action="store_true", help="print only the RADIUS dictionary")
    parser.set_defaults(func=run)


def _vendor_id(args: argparse.Namespace, config: Path | None) -> int:
    if args.vendor_id is not None:
        try:
            return check_vendor_id(args.vendor_id)
        except ValueError as exc:
            raise ConfigError(str(exc), key="--vendor-id") from None
    if config is not None:
        from aaa_fmip.config import load_settings

        return load_settings(config, os.environ).radius.vendor_id
    return DEFAULT_VENDOR_ID


def run(args: argparse.Namespace) -> int:
    config: Path | None = args.config
    if config is None and os.environ.get("AAA_FMIP_CONFIG"):
        config = Path(os.environ["AAA_FMIP_CONFIG"])
    if config is not None:
        config = config.resolve()
    vendor_id = _vendor_id(args, config)
    if args.dictionary:
        sys.stdout.write(render_dictionary(vendor_id))
        return 0
    python_path = tuple(p for p in (args.python_path or "").split(":") if p) or frc.default_python_path()
    options = frc.PythonModuleOptions(config_file=config, python_path=python_path)
    if args.mode == "python":
        warning = frc.version_warning()
        if warning:
            print(f"aaa-fmip: warning: {warning}", file=sys.stderr)
    if args.raddb is not None:
        written = frc.install(
            args.raddb,
            mode=args.mode,
            site=args.site,
            python_options=options,
            rest_url=args.rest_url,
            rest_timeout=args.rest_timeout,
            vendor_id=vendor_id,
        )
        for path in written:
            print(f"wrote {path}")
        if args.mode == "rest":
            print(f"set {frc.TOKEN_ENV} in FreeRADIUS' environment to the bearer token of an aaa client")
        return 0
    out = sys.stdout
    if args.mode == "python":
        out.write(f"### mods-available/{frc.PYTHON_INSTANCE}  (link it from mods-enabled/)\n")
        out.write(frc.python_module_text(options))
    else:
        out.write(f"### mods-available/{frc.REST_INSTANCE}  (link it from mods-enabled/)\n")
        out.write(frc.rest_module_text(args.rest_url, timeout=args.rest_timeout))
    out.write(f"\n### policy.d/{frc.POLICY_FILE}\n")
    out.write(frc.policy_text(args.mode))
    out.write(f"\n### sites-available/{args.site}\n")
    out.write(frc.site_snippet(args.mode))
    out.write(f"\n### {DICTIONARY_FILE_NAME}  (and add `$INCLUDE {DICTIONARY_FILE_NAME}` to raddb/dictionary)\n")
    out.write(render_dictionary(vendor_id))
    if args.mode == "python":
        out.write("\n### Environment of the FreeRADIUS service (the embedded interpreter honours PYTHONPATH)\n")
        out.write(frc.systemd_dropin(python_path, config))
    else:
        out.write(f"\n### Environment of the FreeRADIUS service\n# {frc.TOKEN_ENV}=<bearer token of an aaa client>\n")
    return 0

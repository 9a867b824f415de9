"""A Wireshark Diameter dictionary for aaa-fmip, rendered from the project's dictionary file.

Wireshark (and tshark) name Diameter commands, applications and AVPs from the XML files in the ``diameter/``
folder of its *data* directory (``dictionary.xml`` and the files it includes as XML entities; the format is
Wireshark's ``diameter/dictionary.dtd``). Without this file our command, application and vendor AVPs show as
unknown, and so do the RFC 6734 Key AVPs (Wireshark's own dictionary lists 581-586 only in a comment).

:func:`render` writes the XML for a dictionary (with the ``[diameter]`` overrides applied, so the numbers match
the deployment); ``dictionaries/wireshark-aaa-fmip.xml`` is its output for the shipped dictionary. AVPs that
Wireshark already defines (Calling-Station-Id) are left out: a second definition of a field name is an error
there.

Wireshark 4.0 (Debian 12) reads that folder from its data directory only (``/usr/share/wireshark``), not from
the personal configuration directory; a user process (not root) may point it elsewhere with
``WIRESHARK_DATA_DIR``. :func:`overlay` builds such a directory: every entry of the system data directory
linked, ``diameter/`` linked file by file except ``Custom.xml`` (the include point Wireshark ships for local
additions), which is replaced by one that includes our file. docs/diameter.md has both ways to install it.

``python -m aaa_fmip.diameter.wireshark [--config aaa-fmip.toml] [--overlay DIR]`` prints the XML (for the
configured ids) or builds an overlay directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final
from xml.sax.saxutils import quoteattr

from aaa_fmip.diameter.dictionary import AvpDef, DiameterDictionary, load_dictionary

FILE_NAME: Final = "wireshark-aaa-fmip.xml"
ENTITY: Final = "aaafmip"  # Wireshark's dictionary scanner accepts entity names of [a-z0-9-] only
SYSTEM_DATA_DIR: Final = Path("/usr/share/wireshark")
# IETF AVPs of our dictionary that Wireshark's base dictionary already defines (defining them again clashes).
WIRESHARK_DEFINES: Final = frozenset({31})  # Calling-Station-Id (RFC 4005/7155)
_VENDOR_REF: Final = "aaa-fmip"

# Our dictionary's type names are Wireshark's (RFC 6733 §4.2, §4.3), except Address: Wireshark calls it IPAddress,
# and decodes an IPAddress AVP with a code below 256 as a RADIUS address (4 or 16 octets, no family), whatever its
# vendor; our Address AVPs 2, 3, 4 and 9 would show as malformed. Those are declared as OctetString (shown in hex).
_RADIUS_CODES: Final = 256


def render(dictionary: DiameterDictionary) -> str:
    """The Wireshark dictionary XML (a ``<vendor>`` and an ``<application>`` element) for ``dictionary``."""
    d = dictionary
    vendor_avps = [a for a in d.avps.values() if a.vendor_id]
    ietf_avps = [a for a in d.avps.values() if not a.vendor_id and a.code not in WIRESHARK_DEFINES]
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!-- aaa-fmip Diameter dictionary for Wireshark (format: Wireshark's diameter/dictionary.dtd).",
        f"     Vendor {d.vendor_id}, Application-Id {d.application_id}, command code {d.command_code}.",
        "     Rendered by `python -m aaa_fmip.diameter.wireshark` from the aaa-fmip dictionary; see docs/diameter.md",
        "     for where Wireshark reads it. -->",
        "",
        f"<vendor vendor-id={quoteattr(_VENDOR_REF)} code={quoteattr(str(d.vendor_id))} "
        f"name={quoteattr(d.vendor_name)}>",
        *(line for avp in vendor_avps for line in _avp(avp, d)),
        "</vendor>",
        "",
        f"<application id={quoteattr(str(d.application_id))} name={quoteattr(d.application_name)}>",
        f'\t<command name={quoteattr(d.command_name)} code={quoteattr(str(d.command_code))} vendor-id="None"/>',
        *(line for avp in ietf_avps for line in _avp(avp, d)),
        "</application>",
        "",
    ]
    return "\n".join(lines)


def _avp(avp: AvpDef, d: DiameterDictionary) -> list[str]:
    attrs = [
        f"name={quoteattr(avp.name)}",
        f"code={quoteattr(str(avp.code))}",
        f'mandatory="{"must" if avp.mandatory else "mustnot"}"',
        'may-encrypt="no"',
        f'vendor-bit="{"must" if avp.vendor_id else "mustnot"}"',
    ]
    if avp.vendor_id:
        attrs.append(f"vendor-id={quoteattr(_VENDOR_REF)}")
    lines = [f"\t<avp {' '.join(attrs)}>"]
    if avp.type == "Grouped":
        lines.append("\t\t<grouped>")
        lines += [f"\t\t\t<gavp name={quoteattr(member)}/>" for member in avp.members]
        lines.append("\t\t</grouped>")
    else:
        lines.append(f"\t\t<type type-name={quoteattr(_type_name(avp))}/>")
        lines += [f"\t\t<enum name={quoteattr(n)} code={quoteattr(str(v))}/>" for n, v in avp.values.items()]
    lines.append("\t</avp>")
    return lines


def _type_name(avp: AvpDef) -> str:
    if avp.type == "Address":
        return "IPAddress" if avp.code >= _RADIUS_CODES else "OctetString"
    return avp.type


def custom_xml() -> str:
    """A ``diameter/Custom.xml`` that includes :data:`FILE_NAME` (entities may be declared in included files)."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        "<!-- Local additions to Wireshark's Diameter dictionary: aaa-fmip. -->\n"
        f'<!ENTITY {ENTITY} SYSTEM "{FILE_NAME}">\n'
        f"&{ENTITY};\n"
    )


def overlay(target: Path, dictionary: DiameterDictionary, *, system: Path = SYSTEM_DATA_DIR) -> Path:
    """Build in ``target`` a Wireshark data directory = ``system`` + our dictionary; use it as WIRESHARK_DATA_DIR."""
    if not (system / "diameter" / "dictionary.xml").is_file():
        raise FileNotFoundError(f"{system}/diameter/dictionary.xml not found: is Wireshark installed?")
    target.mkdir(parents=True, exist_ok=True)
    for entry in system.iterdir():
        if entry.name != "diameter":
            _link(entry, target / entry.name)
    diameter = target / "diameter"
    diameter.mkdir(exist_ok=True)
    for entry in (system / "diameter").iterdir():
        if entry.name != "Custom.xml":
            _link(entry, diameter / entry.name)
    (diameter / "Custom.xml").write_text(custom_xml(), encoding="utf-8")
    (diameter / FILE_NAME).write_text(render(dictionary), encoding="utf-8")
    return target


def _link(source: Path, link: Path) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(source, link)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aaa_fmip.diameter.wireshark", description="Wireshark Diameter dictionary for aaa-fmip."
    )
    parser.add_argument("--config", type=Path, help="aaa-fmip.toml: use its [diameter] ids and dictionary")
    parser.add_argument("--overlay", type=Path, help="build a WIRESHARK_DATA_DIR here instead of printing the XML")
    args = parser.parse_args(argv)
    from aaa_fmip.config import load_settings
    from aaa_fmip.errors import ConfigError

    try:
        dictionary = load_dictionary()
        if args.config is not None:
            settings = load_settings(args.config, dict(os.environ)).diameter
            if settings is not None:
                dictionary = load_dictionary(settings.dictionary).with_overrides(
                    application_id=settings.application_id,
                    vendor_id=settings.vendor_id,
                    command_code=settings.command_code,
                )
        if args.overlay is not None:
            print(overlay(args.overlay, dictionary))
        else:
            sys.stdout.write(render(dictionary))
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""FreeRADIUS 3.2 configuration for aaa-fmip: the text ``aaa-fmip freeradius-config`` prints or installs.

Two ways to feed sessions from FreeRADIUS (docs/freeradius.md):

* ``python`` (default): rlm_python3 runs :mod:`aaa_fmip.radius.freeradius_module` in the server process: ingest,
  key push in the Access-Accept, revocation on Accounting Stop, all bounded by ``radius.store_timeout``.
* ``rest``: rlm_rest posts the EMSK and Session-Id to a running ``aaa-fmip serve`` (``POST /v1/sessions``)
  and Accounting Stops to ``POST /v1/sessions/revoke``; no Python inside FreeRADIUS, no key push.

Installing into a raddb directory writes ``mods-available/<module>`` (+ the ``mods-enabled`` link),
``policy.d/aaa_fmip``, ``dictionary.aaa-fmip`` (+ an ``$INCLUDE`` in ``raddb/dictionary``), and a marked
block at the top of the site's ``post-auth`` and ``accounting`` sections. Running it again replaces what an
earlier run wrote and nothing else.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from aaa_fmip.errors import ConfigError
from aaa_fmip.radius.dictionary import DEFAULT_VENDOR_ID, DICTIONARY_FILE_NAME, render_dictionary

Mode = Literal["python", "rest"]

PYTHON_INSTANCE: Final = "aaa_fmip"
REST_INSTANCE: Final = "aaa_fmip_rest"
POLICY_FILE: Final = "aaa_fmip"
NAS_SOURCE_POLICY: Final = "aaa_fmip_nas_source"
REST_POST_AUTH_POLICY: Final = "aaa_fmip_rest_post_auth"
REST_ACCOUNTING_POLICY: Final = "aaa_fmip_rest_accounting"
TOKEN_ENV: Final = "AAA_FMIP_REST_TOKEN"  # noqa: S105 - the name of a variable, not a token
BEGIN_MARK: Final = "# aaa-fmip begin"
END_MARK: Final = "# aaa-fmip end"
RLM_PYTHON3: Final = Path("/usr/lib/freeradius/rlm_python3.so")


def default_python_path() -> tuple[str, ...]:
    """Where this aaa_fmip and its dependencies are importable from: the package's parent directory (the
    site-packages of its installation, or the source tree of an editable install) and this interpreter's
    site-packages."""
    import aaa_fmip

    paths = [str(Path(aaa_fmip.__file__).resolve().parent.parent)]
    for key in ("purelib", "platlib"):
        paths.append(sysconfig.get_paths()[key])
    return tuple(dict.fromkeys(paths))


def embedded_python_version(rlm_python3: Path = RLM_PYTHON3) -> str | None:
    """The ``3.N`` of the libpython that FreeRADIUS' rlm_python3 links, or None if it is not installed."""
    try:
        data = rlm_python3.read_bytes()
    except OSError:
        return None
    match = re.search(rb"libpython(3\.\d+)", data)
    return match.group(1).decode("ascii") if match else None


def version_warning(rlm_python3: Path = RLM_PYTHON3) -> str | None:
    """A warning when this interpreter's minor version differs from the one FreeRADIUS embeds."""
    embedded = embedded_python_version(rlm_python3)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if embedded is None or embedded == running:
        return None
    # The distribution's interpreter of that version is the one FreeRADIUS' libpython belongs to (Debian 12:
    # /usr/bin/python3.11); a venv made with it gets the same ABI and the same dependency markers.
    interpreter = f"/usr/bin/python{embedded}"
    return (
        f"FreeRADIUS embeds Python {embedded} but aaa-fmip is installed for Python {running}: compiled "
        f"dependencies (cryptography, pydantic-core) will not load. Install aaa-fmip into a virtual environment "
        f"made with {interpreter} ({interpreter} -m venv /opt/aaa-fmip) and run this command from there."
    )


def _quote(value: str) -> str:
    """A FreeRADIUS double-quoted string (no expansion inside config items other than ${...} and $ENV{...})."""
    if any(c in value for c in '"\\\n'):
        raise ConfigError(f"{value!r}: quotes, backslashes and newlines are not supported here", key="path")
    return f'"{value}"'


@dataclass(frozen=True)
class PythonModuleOptions:
    config_file: Path | None = None
    python_path: tuple[str, ...] = ()


def python_module_text(options: PythonModuleOptions) -> str:
    path = ":".join(options.python_path)
    lines = [
        "# -*- text -*-",
        "#  aaa-fmip: FMIPv6 handover keys from the EAP EMSK (rlm_python3). Written by",
        "#  `aaa-fmip freeradius-config`; see the aaa-fmip documentation, docs/freeradius.md.",
        "#",
        "#  pass_all_vps_dict = yes is required: it is what makes the reply list (EAP-EMSK,",
        "#  EAP-Session-Id) visible to the module.",
        "#  python_path is global to the server (one python3 module path per server) and is",
        "#  appended after the system's dist-packages; prepend_sys_path moves these directories",
        "#  to the front so that the system's older copies of dependencies do not shadow them.",
        f"python3 {PYTHON_INSTANCE} {{",
        f"\tpython_path = {_quote(path)}",
        "\tmodule = aaa_fmip.radius.freeradius_module",
        "\tpass_all_vps_dict = yes",
        "",
        "\tmod_instantiate = ${.module}",
        "\tfunc_instantiate = instantiate",
        "\tmod_post_auth = ${.module}",
        "\tfunc_post_auth = post_auth",
        "\tmod_accounting = ${.module}",
        "\tfunc_accounting = accounting",
        "\tmod_detach = ${.module}",
        "\tfunc_detach = detach",
        "",
        "\tconfig {",
    ]
    if options.config_file is not None:
        lines.append(f"\t\tconfig_file = {_quote(str(options.config_file))}")
    else:
        lines.append("\t\t# config_file = /etc/aaa-fmip/aaa-fmip.toml   (else $AAA_FMIP_CONFIG)")
    lines += [f"\t\tprepend_sys_path = {_quote(path)}", "\t}", "}", ""]
    return "\n".join(lines)


def policy_text(mode: Mode) -> str:
    return _NAS_SOURCE_POLICY_TEXT if mode == "python" else _REST_POLICY_TEXT


_NAS_SOURCE_POLICY_TEXT: Final = f"""\
# -*- text -*-
#  aaa-fmip: record the RADIUS client's source address, so that the module identifies the access router
#  by the address its shared secret is bound to rather than by the NAS-Identifier the NAS claims.
{NAS_SOURCE_POLICY} {{
	if (&Packet-Src-IP-Address) {{
		update request {{
			&FreeRADIUS-Client-IP-Address := "%{{Packet-Src-IP-Address}}"
		}}
	}}
	elsif (&Packet-Src-IPv6-Address) {{
		update request {{
			&FreeRADIUS-Client-IPv6-Address := "%{{Packet-Src-IPv6-Address}}"
		}}
	}}
}}
"""

_REST_POLICY_TEXT: Final = f"""\
# -*- text -*-
#  aaa-fmip over REST: call the key service only when there is something to send, and never let its answer
#  (or its absence: timeout, 401, 5xx) decide about network access.
{REST_POST_AUTH_POLICY} {{
	if (&reply:EAP-EMSK && &reply:EAP-Session-Id) {{
		update control {{
			&REST-HTTP-Header += "Authorization: Bearer $ENV{{{TOKEN_ENV}}}"
		}}
		{REST_INSTANCE} {{
			fail = 1
			reject = 1
			invalid = 1
			notfound = 1
			userlock = 1
			handled = 1
		}}
		ok
	}}
}}

{REST_ACCOUNTING_POLICY} {{
	if (&Acct-Status-Type == Stop && &Calling-Station-Id) {{
		update control {{
			&REST-HTTP-Header += "Authorization: Bearer $ENV{{{TOKEN_ENV}}}"
		}}
		{REST_INSTANCE} {{
			fail = 1
			reject = 1
			invalid = 1
			notfound = 1
			userlock = 1
			handled = 1
		}}
		ok
	}}
}}
"""


def rest_module_text(url: str, *, timeout: float = 1.0) -> str:
    if not re.match(r"^https?://[^\s\"\\]+$", url):
        raise ConfigError(f"{url!r}: expected an http:// or https:// URL", key="--rest-url")
    base = url.rstrip("/")
    t = f"{timeout:g}"
    # rlm_rest JSON-escapes every value it expands into `data` when body = 'json' (quotes, backslashes),
    # so attribute values go between literal quotes; an absent attribute expands to "".
    ingest = (
        '{\\"emsk\\":\\"%{reply:EAP-EMSK}\\",\\"eap_session_id\\":\\"%{reply:EAP-Session-Id}\\",'
        '\\"user_name\\":\\"%{User-Name}\\",\\"calling_station_id\\":\\"%{Calling-Station-Id}\\",'
        '\\"nas_identifier\\":\\"%{NAS-Identifier}\\",\\"lifetime\\":%{%{reply:Session-Timeout}:-null}}'
    )
    revoke = '{\\"calling_station_id\\":\\"%{Calling-Station-Id}\\",\\"cause\\":\\"accounting-stop\\"}'
    return f"""\
# -*- text -*-
#  aaa-fmip over REST (rlm_rest): post each EAP session to the key service, POST /v1/sessions,
#  and revoke on Accounting Stop, POST /v1/sessions/revoke. The bearer token of an "aaa" client comes from
#  the server's environment ({TOKEN_ENV}), so it is not stored in this file. See docs/freeradius.md.
rest {REST_INSTANCE} {{
	connect_uri = "{base}"
	connect_timeout = {t}

	post-auth {{
		uri = "${{..connect_uri}}/v1/sessions"
		method = 'post'
		body = 'json'
		data = "{ingest}"
		timeout = {t}
	}}

	accounting {{
		uri = "${{..connect_uri}}/v1/sessions/revoke"
		method = 'post'
		body = 'json'
		data = "{revoke}"
		timeout = {t}
	}}

	pool {{
		start = 0
		min = 0
		max = 32
		spare = 1
		uses = 0
		retry_delay = 30
		lifetime = 0
		idle_timeout = 60
	}}
}}
"""


def site_lines(mode: Mode, section: Literal["post-auth", "accounting"]) -> tuple[str, ...]:
    if mode == "python":
        calls = (NAS_SOURCE_POLICY, PYTHON_INSTANCE) if section == "post-auth" else (PYTHON_INSTANCE,)
    else:
        calls = (REST_POST_AUTH_POLICY,) if section == "post-auth" else (REST_ACCOUNTING_POLICY,)
    return (f"{BEGIN_MARK}: FMIPv6 handover keys (aaa-fmip freeradius-config)", *calls, END_MARK)


def site_snippet(mode: Mode) -> str:
    out = ["# In the virtual server that answers your NASes (sites-available/default), at the top of:"]
    sections: tuple[Literal["post-auth", "accounting"], ...] = ("post-auth", "accounting")
    for section in sections:
        out.append(f"{section} {{")
        out += [f"\t{line}" for line in site_lines(mode, section)]
        out.append("\t...")
        out.append("}")
    return "\n".join(out) + "\n"


def systemd_dropin(python_path: Iterable[str], config_file: Path | None) -> str:
    lines = ["# /etc/systemd/system/freeradius.service.d/aaa-fmip.conf", "[Service]"]
    lines.append(f'Environment="PYTHONPATH={":".join(python_path)}"')
    if config_file is not None:
        lines.append(f'Environment="AAA_FMIP_CONFIG={config_file}"')
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------- install


_OUR_BLOCK: Final = re.compile(
    rf"^[ \t]*{re.escape(BEGIN_MARK)}[^\n]*\n(?:.*\n)*?[ \t]*{re.escape(END_MARK)}[^\n]*\n", re.M
)


def _insert_block(text: str, section: str, lines: tuple[str, ...], *, where: str) -> str:
    """``lines`` right after the first line that opens ``section``."""
    match = re.search(rf"^[ \t]*{re.escape(section)}[ \t]*\{{[ \t]*(#[^\n]*)?\n", text, flags=re.M)
    if match is None:
        raise ConfigError(f"no '{section} {{' section found", key=where)
    block = "".join(f"\t{line}\n" for line in lines)
    return text[: match.end()] + block + text[match.end() :]


def install_site(site_file: Path, mode: Mode) -> None:
    """Replace the blocks an earlier run wrote (either mode) with this mode's, in post-auth and accounting."""
    text = _OUR_BLOCK.sub("", site_file.read_text())
    text = _insert_block(text, "post-auth", site_lines(mode, "post-auth"), where=str(site_file))
    text = _insert_block(text, "accounting", site_lines(mode, "accounting"), where=str(site_file))
    site_file.write_text(text)


def install_dictionary(raddb: Path, vendor_id: int) -> Path:
    target = raddb / DICTIONARY_FILE_NAME
    target.write_text(render_dictionary(vendor_id))
    main = raddb / "dictionary"
    include = f"$INCLUDE {DICTIONARY_FILE_NAME}"
    existing = main.read_text() if main.exists() else ""
    if not re.search(rf"^\$INCLUDE\s+{re.escape(DICTIONARY_FILE_NAME)}\s*$", existing, flags=re.M):
        main.write_text(existing + ("" if existing.endswith("\n") or not existing else "\n") + include + "\n")
    return target


def install(
    raddb: Path,
    *,
    mode: Mode = "python",
    site: str = "default",
    python_options: PythonModuleOptions | None = None,
    rest_url: str = "http://127.0.0.1:8080",
    rest_timeout: float = 1.0,
    vendor_id: int = DEFAULT_VENDOR_ID,
) -> list[Path]:
    """Write the module, policy, dictionary and site blocks into ``raddb``; returns the files written."""
    if not (raddb / "radiusd.conf").is_file():
        raise ConfigError(f"{raddb} is not a FreeRADIUS configuration directory (no radiusd.conf)", key="--raddb")
    site_file = raddb / "sites-available" / site
    if not site_file.is_file():
        raise ConfigError(f"{site_file} does not exist", key="--site")
    written: list[Path] = []
    available, enabled = raddb / "mods-available", raddb / "mods-enabled"
    # One mode at a time: unlink the other mode's module so that its instance is not loaded.
    stale = enabled / (REST_INSTANCE if mode == "python" else PYTHON_INSTANCE)
    if stale.is_symlink() or stale.exists():
        stale.unlink()
    if mode == "python":
        module_name, module_text = PYTHON_INSTANCE, python_module_text(python_options or PythonModuleOptions())
    else:
        module_name, module_text = REST_INSTANCE, rest_module_text(rest_url, timeout=rest_timeout)
    module_file = available / module_name
    module_file.write_text(module_text)
    written.append(module_file)
    link = enabled / module_name
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path("..") / "mods-available" / module_name)
    written.append(link)
    policy = raddb / "policy.d" / POLICY_FILE
    policy.write_text(policy_text(mode))
    written.append(policy)
    written.append(install_dictionary(raddb, vendor_id))
    install_site(site_file, mode)
    written.append(site_file)
    return written

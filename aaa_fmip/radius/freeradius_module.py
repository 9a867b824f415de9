"""The rlm_python3 entry points (FreeRADIUS 3.2): ``instantiate``, ``post_auth``, ``accounting``, ``detach``.

Enable with the module file that ``aaa-fmip freeradius-config`` writes (``pass_all_vps_dict = yes`` is
required: without it the EAP keys are not visible). The runtime (store, service) is built once, in
``instantiate``, from the file named by ``config_file`` in the module's ``config { }`` section or, failing
that, by ``AAA_FMIP_CONFIG`` in the server's environment.

Every entry point returns a result that lets the request proceed as if this module were absent: a
configuration or store problem is logged and counted, never turned into a reject. ``instantiate`` routes the
project's logging (every ``aaa_fmip.*`` logger) to ``radiusd.radlog`` (:mod:`aaa_fmip.radius.radlog`) and
``detach`` takes that back. This file imports only the standard library at import time: the directories in
``prepend_sys_path`` must be put in front of ``sys.path`` before anything else is imported (see
docs/freeradius.md, "Python path").
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from aaa_fmip.bootstrap import Runtime
    from aaa_fmip.radius.plugin import FreeRadiusPlugin
    from aaa_fmip.radius.radlog import Installed

try:
    import radiusd
except ImportError:  # imported outside FreeRADIUS (tests, documentation tools): same constants, log to stderr

    class _RadiusdStandIn:
        RLM_MODULE_REJECT = 0
        RLM_MODULE_FAIL = 1
        RLM_MODULE_OK = 2
        RLM_MODULE_HANDLED = 3
        RLM_MODULE_INVALID = 4
        RLM_MODULE_USERLOCK = 5
        RLM_MODULE_NOTFOUND = 6
        RLM_MODULE_NOOP = 7
        RLM_MODULE_UPDATED = 8
        L_DBG = 1
        L_AUTH = 2
        L_INFO = 3
        L_ERR = 4
        L_WARN = 5
        L_PROXY = 6
        L_ACCT = 7
        config: Final[dict[str, str]] = {}

        @staticmethod
        def radlog(level: int, message: str) -> None:
            if level != 1:
                print(message, file=sys.stderr)

    radiusd = _RadiusdStandIn()

CONFIG_KEY: Final = "config_file"
PREPEND_KEY: Final = "prepend_sys_path"
ENV_CONFIG: Final = "AAA_FMIP_CONFIG"  # the same variable the CLI reads (aaa_fmip.config.ENV_CONFIG)
RETRY_INTERVAL: Final = 30.0  # seconds between attempts to build the runtime after a failure
DETACH_FLUSH_TIMEOUT: Final = 5.0  # seconds detach waits for session writes still behind the replies

_lock = threading.Lock()
_plugin: FreeRadiusPlugin | None = None
_runtime: Runtime | None = None
_last_attempt = float("-inf")
_logging: Installed | None = None

log = logging.getLogger("aaa_fmip.radius.module")


def _radlog(level: int, message: str) -> None:
    radiusd.radlog(level, message)  # looked up at each call: FreeRADIUS' module, or the stand-in


def _install_logging() -> None:
    """Send the project's log lines to FreeRADIUS' log (aaa_fmip.radius.radlog)."""
    global _logging
    from aaa_fmip.radius.radlog import RadlogLevels, install, uninstall

    if _logging is not None:
        uninstall(_logging)
    levels = RadlogLevels(debug=radiusd.L_DBG, info=radiusd.L_INFO, warning=radiusd.L_WARN, error=radiusd.L_ERR)
    _logging = install(_radlog, levels)


def _uninstall_logging() -> None:
    global _logging
    if _logging is not None:
        from aaa_fmip.radius.radlog import uninstall

        uninstall(_logging)
        _logging = None


def _module_config() -> dict[str, str]:
    config = getattr(radiusd, "config", None)
    return dict(config) if isinstance(config, dict) else {}


def _prepend_sys_path(config: dict[str, str]) -> None:
    # rlm_python3 appends python_path after the system's dist-packages, where Debian's older packages
    # (python3-cryptography) would shadow the ones aaa-fmip was installed with.
    entries = [e for e in config.get(PREPEND_KEY, "").split(":") if e]
    for entry in reversed(entries):
        while entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)


def _provide_async_timeout() -> bool:
    """Let ``import redis`` work on an embedded CPython older than 3.11.3 when ``async_timeout`` is missing.

    redis-py imports :mod:`redis.asyncio` from its package ``__init__``, which needs the ``async-timeout``
    backport before CPython 3.11.3 (Debian 12 embeds 3.11.2). pip installs that backport only when the
    interpreter that runs pip is older than 3.11.3, so an installation made with a newer 3.11 lacks it. This
    module only uses redis' synchronous client, so the standard library's :func:`asyncio.timeout` (3.11+) is an
    adequate stand-in. Returns True when the stand-in was installed.
    """
    if sys.version_info >= (3, 11, 3) or "async_timeout" in sys.modules:
        return False
    import importlib.util

    if importlib.util.find_spec("async_timeout") is not None:
        return False
    import asyncio
    import types

    stand_in = types.ModuleType("async_timeout")
    stand_in.timeout = asyncio.timeout  # type: ignore[attr-defined]
    sys.modules["async_timeout"] = stand_in
    return True


def _report_environment() -> None:
    import aaa_fmip

    message = f"Python {sys.version.split()[0]}, aaa_fmip {aaa_fmip.__version__} from {aaa_fmip.__file__}"
    try:
        import cryptography

        message += f", cryptography {cryptography.__version__} from {cryptography.__file__}"
        major = int(cryptography.__version__.split(".")[0])
        if major < 41:
            log.warning(
                "cryptography %s is older than aaa-fmip needs (41): the system's copy shadows the installed one; "
                "set prepend_sys_path or PYTHONPATH",
                cryptography.__version__,
            )
    except Exception as exc:
        message += f", cryptography not importable ({type(exc).__name__})"
    log.info("%s", message)


def _build() -> tuple[Runtime, FreeRadiusPlugin]:
    from pathlib import Path

    from aaa_fmip.bootstrap import build_runtime
    from aaa_fmip.config import load_settings
    from aaa_fmip.radius.plugin import FreeRadiusPlugin

    config = _module_config()
    path_text = config.get(CONFIG_KEY, "") or os.environ.get(ENV_CONFIG, "")
    if not path_text:
        log.warning(
            "no configuration file (%s in the module's config section, or %s): using the defaults",
            CONFIG_KEY,
            ENV_CONFIG,
        )
    settings = load_settings(Path(path_text) if path_text else None, os.environ)
    if settings.store.embedded:
        log.warning(
            "store.url is not set, so sessions go to an embedded Redis that only this FreeRADIUS process can see; "
            "point store.url at the Redis the key service uses"
        )
    runtime = build_runtime(settings)
    try:
        plugin = FreeRadiusPlugin(
            runtime.service,
            metrics=runtime.metrics,
            callers=runtime.callers,
            push_keys=settings.radius.push_keys,
            store_timeout=settings.radius.store_timeout,
            write_behind=settings.radius.write_behind,
            write_behind_nice=settings.radius.write_behind_nice,
        )
    except BaseException:
        runtime.close()
        raise
    return runtime, plugin


def _ensure_plugin() -> FreeRadiusPlugin | None:
    """The plugin, building it if the last attempt failed more than RETRY_INTERVAL seconds ago."""
    global _plugin, _runtime, _last_attempt
    if _plugin is not None:
        return _plugin
    with _lock:
        if _plugin is not None:
            return _plugin
        now = time.monotonic()
        if now - _last_attempt < RETRY_INTERVAL:
            return None
        _last_attempt = now
        try:
            _runtime, _plugin = _build()
        except Exception as exc:
            # ConfigError messages name the key and never a secret; other errors: the type only.
            from aaa_fmip.errors import ConfigError

            if isinstance(exc, ConfigError):
                detail = str(exc)
            elif isinstance(exc, ImportError):
                detail = f"{type(exc).__name__}: {exc.name}"
            else:
                detail = type(exc).__name__
            log.error(
                "not active (%s); authentication continues without handover keys, next attempt in %g s",
                detail,
                RETRY_INTERVAL,
            )
            return None
        # What the interpreter holds now (some 55,000 objects: the service, redis-py, cryptography) lives as long
        # as the module. Move it out of the cyclic collector's reach: a full collection over it takes about 25 ms
        # with the interpreter lock held, a stall for every FreeRADIUS thread calling into Python meanwhile.
        gc.freeze()
        log.info(
            f"ready (store {_runtime.store_kind}, {len(_plugin.routers)} access routers, "
            f"push_keys={'yes' if _plugin.push_keys else 'no'}, store_timeout={_plugin.store_timeout:g} s, "
            f"write_behind={'yes' if _plugin.write_behind else 'no'}, write_behind_nice={_plugin.write_behind_nice})",
        )
        return _plugin


# ---------------------------------------------------------------------------------------- rlm_python3 API


def instantiate(p: Any = None) -> int:
    try:
        _prepend_sys_path(_module_config())
        try:
            _install_logging()
        except Exception as exc:  # an installation that cannot import even aaa_fmip.logging
            _radlog(radiusd.L_ERR, f"aaa_fmip: instantiate failed: {type(exc).__name__}")
            return int(radiusd.RLM_MODULE_OK)
        if _provide_async_timeout():
            log.info("async_timeout is not installed; using asyncio.timeout in its place")
        _report_environment()
        _ensure_plugin()
    except Exception as exc:
        log.error("instantiate failed: %s", type(exc).__name__)
    return int(radiusd.RLM_MODULE_OK)


def post_auth(p: Any) -> Any:
    try:
        plugin = _ensure_plugin()
        pairs = plugin.post_auth(p) if plugin is not None else ()
    except Exception as exc:  # FreeRADIUS would turn an exception into a failed post-auth, i.e. a reject
        log.error("post-auth failed: %s", type(exc).__name__)
        pairs = ()
    if not pairs:
        return radiusd.RLM_MODULE_NOOP
    return radiusd.RLM_MODULE_UPDATED, {"reply": pairs}


def accounting(p: Any) -> int:
    try:
        plugin = _ensure_plugin()
        if plugin is not None:
            plugin.accounting(p)
    except Exception as exc:
        log.error("accounting failed: %s", type(exc).__name__)
    return int(radiusd.RLM_MODULE_NOOP)


def detach(p: Any = None) -> int:
    global _plugin, _runtime
    with _lock:
        plugin, runtime = _plugin, _runtime
        _plugin = _runtime = None
    try:
        if plugin is not None:
            plugin.close(flush_timeout=DETACH_FLUSH_TIMEOUT)  # the writes behind the last replies go out first
            log.info("detaching: %s", plugin.summary())
        if runtime is not None:
            runtime.close()
    except Exception as exc:
        log.error("detach failed: %s", type(exc).__name__)
    with contextlib.suppress(Exception):
        _uninstall_logging()
    return int(radiusd.RLM_MODULE_OK)

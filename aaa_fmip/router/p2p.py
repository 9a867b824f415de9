"""The NAR's per-node point-to-point links: radvd advertises each node's prefix, the kernel routes it there.

The agent decides which prefix goes on which link (:mod:`aaa_fmip.router.prefixes`, in the core); this module
is the IO around it:

* :mod:`~aaa_fmip.router.radvd` renders radvd's configuration and runs radvd (started, reloaded, stopped).
* :class:`Routes` puts the node's prefix on its link (``ip -6 route replace PREFIX dev LINK``) through
  pyroute2's netlink, and takes it off when the binding ends.

* :func:`save_state` / :func:`load_state` keep the pool's allocations in a small JSON file across restarts of
  the agent, so a restarted NAR never hands a node's prefix to another node and re-binds the nodes whose links
  are still there.

radvd, not the agent, answers Router Solicitations and keeps advertising the prefix; the agent itself only
sends the one RA that carries NAACK (RFC 5568 §6.3), which radvd cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable, Iterable
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, Final

from aaa_fmip.router.core import Effect, PrefixEvent, RouterCore
from aaa_fmip.router.metrics import RouterMetrics
from aaa_fmip.router.prefixes import Allocation
from aaa_fmip.router.radvd import P2PError, Radvd, RadvdSettings, render_radvd_conf

__all__ = [
    "P2PError",
    "P2PLinks",
    "Radvd",
    "RadvdSettings",
    "Routes",
    "load_state",
    "present_links",
    "render_radvd_conf",
    "save_state",
]

log = logging.getLogger("aaa_fmip.router")


class Routes:
    """The node's prefix routed onto its link, through netlink (pyroute2's asyncio socket, opened on first use)."""

    def __init__(self) -> None:
        self._ipr: Any = None

    async def add(self, prefix: IPv6Network, interface: str) -> bool:
        return await self._change("replace", prefix, interface)

    async def remove(self, prefix: IPv6Network, interface: str) -> bool:
        return await self._change("del", prefix, interface)

    async def _change(self, command: str, prefix: IPv6Network, interface: str) -> bool:
        from pyroute2 import AsyncIPRoute, NetlinkError

        index = socket_index(interface)
        if index is None:
            return False  # the link is gone, and its routes with it
        try:
            if self._ipr is None:
                ipr = AsyncIPRoute(groups=0)  # no multicast groups: nothing to read but our answers
                await ipr.setup_endpoint()
                self._ipr = ipr
            await asyncio.wait_for(self._ipr.route(command, dst=str(prefix), oif=index, family=socket.AF_INET6), 5.0)
        except (NetlinkError, OSError, TimeoutError) as exc:
            log.warning(
                "route change failed",
                extra={"event": "route.failed", "command": command, "prefix": str(prefix), "error": str(exc)},
            )
            return False
        return True

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None


def socket_index(interface: str) -> int | None:
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        return None


def present_links() -> set[str]:
    """The names of this network namespace's links."""
    return {name for _index, name in socket.if_nameindex()}


class P2PLinks:
    """The driver's side of per-node prefixes: acts on the core's :class:`PrefixEvent` effects (routes, radvd,
    metrics, logs) and looks at the links every ``link_check`` seconds, so a node whose link went away (its
    point-to-point session ended) gives its prefix back."""

    def __init__(
        self,
        core: RouterCore,
        *,
        radvd: Radvd | None,
        routes: Routes | None,
        metrics: RouterMetrics,
        clock: Callable[[], float],
        link_check: float = 1.0,
        state_path: Path | None = None,
    ) -> None:
        self.core = core
        self.state_path = state_path
        self.radvd = radvd
        self.routes = routes
        self.metrics = metrics
        self.clock = clock
        self.link_check = link_check
        self._dirty = asyncio.Event()
        self._routes: list[tuple[bool, IPv6Network, str]] = []  # (add?, prefix, link), in order
        self._applied: str | None = None  # the radvd.conf radvd runs with
        self._restored = False
        self._gauges()

    def _gauges(self) -> None:
        pool = self.core.prefix_pool
        if pool is not None:
            self.metrics.prefixes_allocated.set(len(pool))
            self.metrics.prefixes_free.set(pool.free)

    def handle(self, event: PrefixEvent) -> None:
        allocation = event.allocation
        fields: dict[str, Any] = {"event": f"prefix.{event.kind}"}
        if allocation is not None:
            fields |= {
                "mn_lla": allocation.lla.hex(":"),
                "prefix": str(allocation.prefix),
                "ncoa": str(allocation.ncoa),
                "interface": allocation.interface,
            }
        if event.reason:
            fields["reason"] = event.reason
        if event.kind == "exhausted":
            self.metrics.prefixes_exhausted.inc()
            log.warning("per-node prefix pool exhausted", extra=fields)
        elif event.kind == "bound" and allocation is not None and allocation.interface is not None:
            self._routes.append((True, allocation.prefix, allocation.interface))
            self._dirty.set()
            log.info("per-node prefix bound", extra=fields)
        elif event.kind == "released" and allocation is not None:
            self.metrics.prefixes_released.labels(event.reason or "released").inc()
            if allocation.interface is not None:
                self._routes.append((False, allocation.prefix, allocation.interface))
            self._dirty.set()
            log.info("per-node prefix released", extra=fields)
        else:
            log.info("per-node prefix assigned", extra=fields)
            self._dirty.set()  # saved, so that a restart does not hand it to another node
        self._gauges()

    async def _reconfigure(self) -> None:
        changes, self._routes = self._routes, []
        for add, prefix, interface in changes:
            if self.routes is not None:
                await (self.routes.add if add else self.routes.remove)(prefix, interface)
        pool = self.core.prefix_pool
        if pool is None:
            return
        if self.state_path is not None:
            try:
                save_state(self.state_path, pool.allocations())
            except OSError as exc:
                log.error("per-node prefixes not saved", extra={"event": "prefix.save-failed", "error": str(exc)})
        if self.radvd is None:
            return
        links = [(a.interface, a.prefix) for a in pool.allocations() if a.interface is not None]
        text = render_radvd_conf(links, self.radvd.settings)
        if text == self._applied and (self.radvd.running or not links):
            return  # nothing radvd would advertise differently
        try:
            await self.radvd.apply(text)
            self._applied = text
            self.metrics.radvd_reloads.labels("ok").inc()
        except (P2PError, OSError) as exc:  # e.g. radvd_directory not writable: logged, the agent goes on
            self.metrics.radvd_reloads.labels("error").inc()
            log.error("radvd not updated", extra={"event": "radvd.failed", "error": str(exc)})

    def restore(self, apply: Callable[[list[Effect]], None]) -> None:
        """Once, at start: the allocations of the state file back into the pool (before any HI or RS is read,
        so that no node is given a prefix another one still holds)."""
        if self._restored or self.state_path is None:
            return
        self._restored = True
        saved = load_state(self.state_path)
        if saved:
            apply(self.core.restore_prefixes(saved, present_links(), self.clock()))
            log.info("per-node prefixes restored", extra={"event": "prefix.restored", "saved": len(saved)})

    async def run(self, apply: Callable[[list[Effect]], None]) -> None:
        """Until cancelled: radvd follows the bound links (changes coalesced), the links are checked."""
        loop = asyncio.get_running_loop()
        self.restore(apply)  # normally done already, before the sockets are read (RouterAgent.run)
        next_check = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), max(0.0, next_check - loop.time()))
            if self._dirty.is_set():
                await asyncio.sleep(0.05)  # a burst of attachments becomes one reload
                self._dirty.clear()
                await self._reconfigure()
            if loop.time() >= next_check:
                apply(self.core.links_present(present_links(), self.clock()))
                next_check = loop.time() + self.link_check

    async def close(self) -> None:
        pool = self.core.prefix_pool
        if self.state_path is not None and pool is not None:
            with contextlib.suppress(OSError):
                save_state(self.state_path, pool.allocations())
        if self.radvd is not None:
            await self.radvd.stop()
        if self.routes is not None:
            self.routes.close()


_STATE_VERSION: Final = 1


def save_state(path: Path, allocations: Iterable[Allocation]) -> None:
    """The pool's allocations as JSON (written to a temporary file, then renamed over the old one)."""
    entries = [
        {
            "lla": a.lla.hex(":"),
            "prefix": str(a.prefix),
            "interface": a.interface,
            "expires_at": round(a.expires_at, 3),
        }
        for a in allocations
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps({"version": _STATE_VERSION, "allocations": entries}), encoding="utf-8")
    temporary.replace(path)


def load_state(path: Path) -> list[Allocation]:
    """What :func:`save_state` wrote; an absent file is an empty list, an unreadable one too (logged)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != _STATE_VERSION:
            raise ValueError(f"version {data.get('version')!r}")
        return [
            Allocation(
                bytes.fromhex(str(e["lla"]).replace(":", "")),
                IPv6Network(str(e["prefix"])),
                IPv6Address("::"),  # recomputed by the pool
                float(e["expires_at"]),
                str(e["interface"]) if e.get("interface") is not None else None,
            )
            for e in data["allocations"]
        ]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        fields = {"event": "prefix.state-unreadable", "error": type(exc).__name__}
        log.warning("per-node prefix state unreadable: starting empty", extra=fields)
        return []

"""The data plane's kernel state, through pyroute2's netlink (aaa_fmip.router.dataplane_driver uses it): the
capture routes ``PCoA/128`` in a routing table of their own, the two policy rules that send only forwarded
packets there, the ip6tnl devices of kernel mode (RFC 2473 ip6ip6, one per NAR), and the interface of the
kernel's route toward an NCoA (where a NAR delivers to a node it has not heard from yet).

The reasons for each are in the module docstring of :mod:`~aaa_fmip.router.dataplane_driver`."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Any, Final

__all__ = ["IPPROTO_IPV6_IN_IPV6", "KERNEL_TUNNEL_PREFIX", "Forwarding", "Netlink", "kernel_has_ip6tnl"]

log = logging.getLogger("aaa_fmip.router")

IPPROTO_IPV6_IN_IPV6: Final = 41  # RFC 2473 §3: Next Header 41
KERNEL_TUNNEL_PREFIX: Final = "fmipt"
_EOPNOTSUPP: Final = 95
_MAIN_TABLE: Final = 254  # RT_TABLE_MAIN


def kernel_has_ip6tnl(ipr: Any) -> bool:
    """Whether this kernel makes ip6tnl devices (created and deleted once; EOPNOTSUPP: it has none)."""
    from pyroute2.netlink.exceptions import NetlinkError

    name = f"{KERNEL_TUNNEL_PREFIX}probe"
    try:
        ipr.link("add", ifname=name, kind="ip6tnl", ip6tnl_local="::1", ip6tnl_remote="::1", ip6tnl_proto=41)
    except NetlinkError as exc:
        if exc.code == _EOPNOTSUPP:
            return False
        raise
    with contextlib.suppress(NetlinkError):
        ipr.link("del", ifname=name)
    return True


class Netlink:
    """pyroute2's IPRoute on a thread of its own: the synchronous IPRoute of pyroute2 0.9 runs an event loop of
    its own and cannot be made inside a running one. Calls are few (a route per handover) and short, so the
    asyncio loop waits for each; that also keeps them in order."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self._ipr: Any = None
        try:
            self._ipr = self.call(self._make)
        except BaseException:
            self._pool.shutdown(wait=False)
            raise

    @staticmethod
    def _make() -> Any:
        from pyroute2 import IPRoute

        return IPRoute()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._pool.submit(fn, *args, **kwargs).result(timeout=10)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._ipr, name)
        return lambda *args, **kwargs: self.call(method, *args, **kwargs)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self._ipr.close)
        self._pool.shutdown(wait=True)


class Forwarding:
    """Capture routes, policy rules and kernel tunnels of one data plane, on ``ipr`` (which it closes)."""

    def __init__(self, ipr: Any, *, route_table: int, rule_priority: int, local: IPv6Address) -> None:
        self.ipr = ipr
        self.route_table = route_table
        self.rule_priority = rule_priority
        self.local = local  # the PAR's address: the local end of its kernel tunnels
        self.kernel_tunnels = False
        self.tun_index = 0  # the capture device (userspace mode)
        self._rules = False
        self._routes: dict[IPv6Address, int] = {}  # PCoA → oif of its capture route
        self._tunnels: dict[IPv6Address, int] = {}  # NAR → ip6tnl ifindex
        self._ifnames: dict[int, str] = {}
        self._route_oif: dict[IPv6Address, int] = {}  # NCoA → the interface of the route to it (node not seen yet)

    def add_capture(self, pcoa: IPv6Address, nar: IPv6Address | None) -> None:
        """The PCoA's host route into the capture device, or (kernel mode) into the tunnel to ``nar``."""
        oif = self.tun_index
        if self.kernel_tunnels:
            if nar is None:
                return
            oif = self._kernel_tunnel(nar)
        try:
            self.ipr.route(
                "replace", dst=str(pcoa), dst_len=128, family=socket.AF_INET6, oif=oif, table=self.route_table
            )
        except Exception as exc:
            log.warning(
                "capture route not added", extra={"event": "dataplane.error", "pcoa": str(pcoa), "error": str(exc)}
            )
            return
        self._routes[pcoa] = oif

    def remove_capture(self, pcoa: IPv6Address) -> None:
        oif = self._routes.pop(pcoa, None)
        if oif is None or self.ipr is None:
            return
        with contextlib.suppress(Exception):  # gone already when its device went
            self.ipr.route("del", dst=str(pcoa), dst_len=128, family=socket.AF_INET6, oif=oif, table=self.route_table)

    def interface_name(self, ifindex: int | None, ncoa: IPv6Address) -> str | None:
        """The name of ``ifindex``, else of the interface the kernel routes ``ncoa`` through; None if neither."""
        if ifindex is None:
            ifindex = self._route_oif.get(ncoa)
        if ifindex is None:
            try:
                ifindex = int(self.ipr.route("get", dst=str(ncoa))[0].get_attr("RTA_OIF"))
            except Exception:
                return None
            if len(self._route_oif) > 4096:
                self._route_oif.clear()
            self._route_oif[ncoa] = ifindex
        name = self._ifnames.get(ifindex)
        if name is None:
            try:
                name = socket.if_indextoname(ifindex)
            except OSError:
                return None
            self._ifnames[ifindex] = name
        return name

    def _kernel_tunnel(self, nar: IPv6Address) -> int:
        """The ip6tnl device to ``nar`` (RFC 2473 ip6ip6), made on first use. Untested here (no ip6tnl)."""
        index = self._tunnels.get(nar)
        if index is None:
            name = f"{KERNEL_TUNNEL_PREFIX}{len(self._tunnels)}"
            self.ipr.link(
                "add",
                ifname=name,
                kind="ip6tnl",
                ip6tnl_local=str(self.local),
                ip6tnl_remote=str(nar),
                ip6tnl_proto=IPPROTO_IPV6_IN_IPV6,
            )
            index = int(self.ipr.link_lookup(ifname=name)[0])
            self.ipr.link("set", index=index, state="up")
            self._tunnels[nar] = index
        return index

    def install_rules(self) -> None:
        """``iif lo lookup main`` then ``lookup <route_table>``: only forwarded packets meet a capture route."""
        self._delete_rules()  # an earlier run's, if it ended without closing
        self.ipr.rule("add", family=socket.AF_INET6, priority=self.rule_priority, iifname="lo", table=_MAIN_TABLE)
        self._rules = True
        self.ipr.rule("add", family=socket.AF_INET6, priority=self.rule_priority + 1, table=self.route_table)

    def _delete_rules(self) -> None:
        for priority in (self.rule_priority, self.rule_priority + 1):
            for rule in self.ipr.get_rules(family=socket.AF_INET6):
                if rule.get_attr("FRA_PRIORITY") == priority:
                    with contextlib.suppress(Exception):
                        self.ipr.rule(
                            "del", family=socket.AF_INET6, priority=priority, table=rule.get_attr("FRA_TABLE")
                        )

    def delete_stale_tunnels(self) -> None:
        """ip6tnl devices of an earlier run that ended without closing (kernel mode only)."""
        if not self.kernel_tunnels:
            return
        for link in self.ipr.get_links():
            name = str(link.get_attr("IFLA_IFNAME") or "")
            if name.startswith(KERNEL_TUNNEL_PREFIX):
                with contextlib.suppress(Exception):
                    self.ipr.link("del", index=link["index"])

    def close(self) -> None:
        """Every capture route, both rules and every kernel tunnel removed; netlink closed (idempotent)."""
        for pcoa in list(self._routes):
            self.remove_capture(pcoa)
        if self.ipr is None:
            return
        if self._rules:
            self._delete_rules()
            self._rules = False
        for index in self._tunnels.values():
            with contextlib.suppress(Exception):
                self.ipr.link("del", index=index)
        self._tunnels.clear()
        self.ipr.close()
        self.ipr = None

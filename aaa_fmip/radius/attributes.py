"""Attribute lists as rlm_python3 hands them to a module, parsed into typed values.

With ``pass_all_vps_dict = yes`` FreeRADIUS 3.2 calls a module function with a dict whose keys are the list
names (``request``, ``reply``, ``config``, ``session-state``, ``proxy-request``, ``proxy-reply``) and whose
values are tuples of ``(name, value)`` string pairs, or None for an empty list; ``pass_all_vps = yes`` gives
the same six lists as a tuple. Octets arrive as ``"0x<hex>"``, integers and enumerations as text. Values of
the same attribute keep their order. Nothing here logs or keeps a value it does not need.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aaa_fmip.crypto.secrets import SecretBytes
from aaa_fmip.errors import DecodeError
from aaa_fmip.model import NasIdentity

Pairs = tuple[tuple[str, str], ...]
ListName = Literal["request", "reply", "config", "session-state"]

LIST_NAMES: Final = ("request", "reply", "config", "session-state", "proxy-request", "proxy-reply")

# FreeRADIUS 3.2 internal attributes carrying the EAP keys (dictionary.freeradius.internal 1129/1130/1146).
ATTR_EMSK: Final = "EAP-EMSK"
ATTR_SESSION_ID: Final = "EAP-Session-Id"
# Set from the packet's source address by the site policy that `aaa-fmip freeradius-config` writes.
ATTR_CLIENT_IPV4: Final = "FreeRADIUS-Client-IP-Address"
ATTR_CLIENT_IPV6: Final = "FreeRADIUS-Client-IPv6-Address"

CLASS_PREFIX: Final = b"aaa-fmip:"  # our Class values (RFC 2865 §5.25), echoed by the NAS in accounting


@dataclass(frozen=True)
class AttributeLists:
    """The request, reply and control (``config``) lists of one module call."""

    request: Pairs = ()
    reply: Pairs = ()
    config: Pairs = ()
    session_state: Pairs = ()

    def _list(self, list_name: ListName) -> Pairs:
        pairs: Pairs = getattr(self, _FIELDS[list_name])
        return pairs

    def first(self, list_name: ListName, attribute: str) -> str | None:
        for name, value in self._list(list_name):
            if name == attribute:
                return value
        return None

    def firsts(self, list_name: ListName) -> dict[str, str]:
        """Each attribute's first value in one list, by name: one pass, for a parser reading several."""
        return dict(reversed(self._list(list_name)))

    def all(self, list_name: ListName, attribute: str) -> tuple[str, ...]:
        return tuple(value for name, value in self._list(list_name) if name == attribute)


_FIELDS: Final[dict[str, str]] = {
    "request": "request",
    "reply": "reply",
    "config": "config",
    "session-state": "session_state",
}


def _pairs(value: object, list_name: str) -> Pairs:
    if value is None:
        return ()
    if not isinstance(value, tuple | list):
        raise DecodeError(f"expected a tuple of pairs, got {type(value).__name__}", field=list_name, offset=0)
    # What rlm_python3 hands over: a tuple of (str, str) tuples, taken as it is (no copy).
    if type(value) is tuple and _str_pairs(value):
        return value
    out: list[tuple[str, str]] = []
    for i, pair in enumerate(value):
        # rlm_python3 gives 2-tuples; tolerate the 3-tuple (name, op, value) form modules may return.
        if not isinstance(pair, tuple | list) or len(pair) not in (2, 3):
            raise DecodeError("expected a (name, value) pair", field=list_name, offset=i)
        name, val = pair[0], pair[-1]
        if not isinstance(name, str) or not isinstance(val, str):
            raise DecodeError("expected string name and value", field=list_name, offset=i)
        out.append((name, val))
    return tuple(out)


def _str_pairs(value: tuple[Any, ...]) -> bool:
    """Every item a 2-tuple of str. Iterated in C (map, set): this runs on every authentication."""
    return (
        set(map(type, value)) <= _TUPLE
        and set(map(len, value)) <= _TWO
        and set(map(type, itertools.chain.from_iterable(value))) <= _STR
    )


_TUPLE: Final = frozenset({tuple})
_TWO: Final = frozenset({2})
_STR: Final = frozenset({str})


def parse_lists(p: object) -> AttributeLists:
    """The argument of an rlm_python3 function (``pass_all_vps_dict`` dict, ``pass_all_vps`` 6-tuple, or the
    request-only tuple of the default mode) as :class:`AttributeLists`."""
    if isinstance(p, Mapping):
        return AttributeLists(
            request=_pairs(p.get("request"), "request"),
            reply=_pairs(p.get("reply"), "reply"),
            config=_pairs(p.get("config"), "config"),
            session_state=_pairs(p.get("session-state"), "session-state"),
        )
    if isinstance(p, tuple) and len(p) == len(LIST_NAMES) and all(x is None or _is_pair_list(x) for x in p):
        return AttributeLists(
            request=_pairs(p[0], "request"),
            reply=_pairs(p[1], "reply"),
            config=_pairs(p[2], "config"),
            session_state=_pairs(p[3], "session-state"),
        )
    return AttributeLists(request=_pairs(p, "request"))


def _is_pair_list(x: Any) -> bool:
    return isinstance(x, tuple) and all(isinstance(pair, tuple) for pair in x)


def octets(value: str, *, name: str) -> bytes:
    """FreeRADIUS' ``0x<hex>`` rendering of an octets attribute."""
    if not value.startswith(("0x", "0X")):
        raise DecodeError("octets value without 0x prefix", field=name, offset=0)
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise DecodeError("octets value is not hexadecimal", field=name, offset=2) from None


def _integer(value: str | None, *, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise DecodeError("not an integer", field=name, offset=0) from None


def _address(value: str | None, *, name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if value is None or not value.strip():
        return None
    address = _parse_address(value)
    if address is None:
        raise DecodeError("not an IP address", field=name, offset=0)
    return address


@functools.lru_cache(maxsize=1024)
def _parse_address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Cached: the same few NAS addresses come with every request."""
    text = value.strip()
    if "/" in text:  # FreeRADIUS prints prefixes as a/len; the address part is what we compare
        text = text.split("/", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class PostAuthInput:
    """What post-auth needs from one successful authentication."""

    user_name: str
    emsk: SecretBytes | None = field(repr=False)
    eap_session_id: bytes | None
    is_eap: bool
    eap_type: str | None
    calling_station_id: str | None
    nas: NasIdentity
    session_timeout: int | None


# Acct-Status-Type as FreeRADIUS and pyrad hand it over (value name or number) -> the revocation cause
_NAS_RESTART: Final = {
    "accounting-on": "accounting-on",
    "7": "accounting-on",
    "accounting-off": "accounting-off",
    "8": "accounting-off",
}


@dataclass(frozen=True)
class AccountingInput:
    status_type: str | None
    user_name: str | None
    calling_station_id: str | None
    classes: tuple[bytes, ...]
    acct_session_id: str | None
    nas: NasIdentity

    @property
    def is_stop(self) -> bool:
        return self.status_type is not None and self.status_type.strip().lower() in ("stop", "2")

    @property
    def nas_restart(self) -> str | None:
        """ "accounting-on" or "accounting-off" (Acct-Status-Type 7 and 8, RFC 2866 §5.1: the NAS has started,
        or is about to stop, so every session it carried is over); None for any other status."""
        return _NAS_RESTART.get((self.status_type or "").strip().lower())

    def our_class_tokens(self) -> tuple[str, ...]:
        """The tokens of the Class values this module added to the Access-Accept (``aaa-fmip:<token>``)."""
        out = []
        for value in self.classes:
            if value.startswith(CLASS_PREFIX):
                token = value[len(CLASS_PREFIX) :]
                if token and all(c in b"0123456789abcdef" for c in token):
                    out.append(token.decode("ascii"))
        return tuple(out)


def _nas(request: Mapping[str, str]) -> NasIdentity:
    """From the request list's first values (:meth:`AttributeLists.firsts`)."""
    v4 = _address(request.get("NAS-IP-Address"), name="NAS-IP-Address")
    v6 = _address(request.get("NAS-IPv6-Address"), name="NAS-IPv6-Address")
    source = _address(request.get(ATTR_CLIENT_IPV4), name=ATTR_CLIENT_IPV4) or _address(
        request.get(ATTR_CLIENT_IPV6), name=ATTR_CLIENT_IPV6
    )
    return NasIdentity(
        nas_identifier=request.get("NAS-Identifier"),
        nas_ip_address=v4 if isinstance(v4, ipaddress.IPv4Address) else None,
        nas_ipv6_address=v6 if isinstance(v6, ipaddress.IPv6Address) else None,
        source_address=source,
    )


# IANA "Extensible Authentication Protocol (EAP) Registry", Method Types (RFC 3748 §5).
EAP_METHOD_NAMES: Final[dict[int, str]] = {
    1: "Identity",
    3: "NAK",
    4: "MD5",
    5: "OTP",
    6: "GTC",
    13: "TLS",
    17: "LEAP",
    18: "SIM",
    21: "TTLS",
    23: "AKA",
    25: "PEAP",
    26: "MSCHAPv2",
    43: "FAST",
    47: "PSK",
    48: "SAKE",
    49: "IKEv2",
    50: "AKA'",
    51: "GPSK",
    52: "PWD",
    55: "TEAP",
}
EAP_RESPONSE: Final = 2  # RFC 3748 §4: Code 2 = Response; Type follows Code, Identifier, Length


def eap_method(eap_message: bytes) -> str | None:
    """The method of the peer's last EAP Response (RFC 3748 §4.1), e.g. "PWD"; None if it is not one."""
    if len(eap_message) < 5 or eap_message[0] != EAP_RESPONSE:
        return None
    method = eap_message[4]
    return EAP_METHOD_NAMES.get(method, f"type {method}")


def _eap_type(lists: AttributeLists, request: Mapping[str, str]) -> str | None:
    # rlm_eap does not put the method in the lists it gives modules; the final Access-Request carries the
    # peer's last EAP Response, whose Type is the method (RFC 3579 §3.1: consecutive EAP-Message values concatenate).
    value = request.get("EAP-Type") or lists.first("config", "EAP-Type")
    if value:
        return value
    first = request.get("EAP-Message")
    if first is None:
        return None
    try:
        # Code, Identifier, Length and Type: the first 5 octets, normally all in the first fragment.
        head = octets(first[:12], name="EAP-Message")
        if len(head) < 5:
            head = b"".join(octets(part, name="EAP-Message") for part in lists.all("request", "EAP-Message"))
    except DecodeError:
        return None
    return eap_method(head)


def parse_post_auth(lists: AttributeLists) -> PostAuthInput:
    request = lists.firsts("request")
    reply = lists.firsts("reply")
    emsk_text = reply.get(ATTR_EMSK)
    sid_text = reply.get(ATTR_SESSION_ID)
    # The inner identity of a tunnelled method, when the inner-tunnel server exports it to the outer
    # session-state (commented out in FreeRADIUS' default inner-tunnel); else the outer User-Name.
    # (rlm_python3 passes string values as they are: unquoted, unescaped.)
    user = lists.first("session-state", "User-Name") or request.get("User-Name") or ""
    eap_type = _eap_type(lists, request)
    return PostAuthInput(
        user_name=user,
        emsk=SecretBytes(octets(emsk_text, name=ATTR_EMSK)) if emsk_text else None,
        eap_session_id=octets(sid_text, name=ATTR_SESSION_ID) if sid_text else None,
        is_eap=bool(request.get("EAP-Message")) or emsk_text is not None or eap_type is not None,
        eap_type=eap_type,
        calling_station_id=request.get("Calling-Station-Id"),
        nas=_nas(request),
        session_timeout=_integer(reply.get("Session-Timeout"), name="Session-Timeout"),
    )


def parse_accounting(lists: AttributeLists) -> AccountingInput:
    classes = tuple(_class_octets(v) for v in lists.all("request", "Class"))
    request = lists.firsts("request")
    return AccountingInput(
        status_type=request.get("Acct-Status-Type"),
        user_name=request.get("User-Name"),
        calling_station_id=request.get("Calling-Station-Id"),
        classes=classes,
        acct_session_id=request.get("Acct-Session-Id"),
        nas=_nas(request),
    )


def _class_octets(value: str) -> bytes:
    # Class is octets in FreeRADIUS' dictionary ("0x..."); a server that types it as string passes text.
    if value.startswith(("0x", "0X")):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    return value.encode("utf-8", "surrogateescape")


def class_value(token: str) -> bytes:
    """The Class octets that identify one of our sessions in later Accounting-Requests."""
    return CLASS_PREFIX + token.encode("ascii")

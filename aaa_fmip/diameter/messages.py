"""python-diameter message classes for the Handover-Key command (its code comes from the dictionary).

The classes expose the base-protocol AVPs as attributes (what python-diameter's node and ``generate_answer``
set and check: Session-Id, Origin-Host, Result-Code, Failed-AVP, ...); every aaa-fmip and RFC 6734 AVP stays in
the message's additional AVP list and is read and written by name through :mod:`aaa_fmip.diameter.avps`.
"""

from __future__ import annotations

from typing import Any

from diameter.message import DefinedMessage, MessageHeader
from diameter.message import constants as c
from diameter.message.avp.generator import AvpGenDef
from diameter.message.avp.grouped import FailedAvp, ProxyInfo
from diameter.message.commands import all_commands
from diameter.message.commands import register as register_command
from diameter.message.commands._attributes import assign_attr_from_defs

_REQUEST_DEF = (
    AvpGenDef("session_id", c.AVP_SESSION_ID, is_required=True),
    AvpGenDef("auth_application_id", c.AVP_AUTH_APPLICATION_ID, is_required=True),
    AvpGenDef("origin_host", c.AVP_ORIGIN_HOST, is_required=True),
    AvpGenDef("origin_realm", c.AVP_ORIGIN_REALM, is_required=True),
    AvpGenDef("destination_realm", c.AVP_DESTINATION_REALM, is_required=True),
    AvpGenDef("destination_host", c.AVP_DESTINATION_HOST),
    AvpGenDef("proxy_info", c.AVP_PROXY_INFO, type_class=ProxyInfo),
    AvpGenDef("route_record", c.AVP_ROUTE_RECORD),
)

_ANSWER_DEF = (
    AvpGenDef("session_id", c.AVP_SESSION_ID, is_required=True),
    AvpGenDef("auth_application_id", c.AVP_AUTH_APPLICATION_ID),
    AvpGenDef("result_code", c.AVP_RESULT_CODE, is_required=True),
    AvpGenDef("origin_host", c.AVP_ORIGIN_HOST, is_required=True),
    AvpGenDef("origin_realm", c.AVP_ORIGIN_REALM, is_required=True),
    AvpGenDef("error_message", c.AVP_ERROR_MESSAGE, is_mandatory=False),
    AvpGenDef("error_reporting_host", c.AVP_ERROR_REPORTING_HOST, is_mandatory=False),
    AvpGenDef("failed_avp", c.AVP_FAILED_AVP, type_class=FailedAvp),
    AvpGenDef("proxy_info", c.AVP_PROXY_INFO, type_class=ProxyInfo),
)

_classes: dict[int, tuple[type[Any], type[Any], type[Any]]] = {}


def _base_post_init(self: Any) -> None:
    self.header.command_code = self.code
    DefinedMessage.__post_init__(self)


def _request_post_init(self: Any) -> None:
    _base_post_init(self)
    self.header.is_request = True
    self.header.is_proxyable = True  # RFC 6733 §3: PXY, so relays and proxies may forward it
    self.proxy_info = []
    self.route_record = []
    assign_attr_from_defs(self, self._avps)
    self._avps = []


def _answer_post_init(self: Any) -> None:
    _base_post_init(self)
    self.header.is_request = False
    self.header.is_proxyable = True
    self.proxy_info = []
    assign_attr_from_defs(self, self._avps)
    self._avps = []


def handover_key_classes(code: int, name: str = "Handover-Key") -> tuple[type[Any], type[Any], type[Any]]:
    """(command, request, answer) classes for the Handover-Key command with this code."""
    found = _classes.get(code)
    if found is not None:
        return found

    def type_factory(cls: type[Any], header: MessageHeader) -> type[Any]:
        return request if header.is_request else answer

    # The class names follow python-diameter's convention (X, XRequest, XAnswer): Message.to_answer() relies on it.
    base = type(
        "HandoverKey",
        (DefinedMessage,),
        {"code": code, "name": name, "__post_init__": _base_post_init, "type_factory": classmethod(type_factory)},
    )
    request = type("HandoverKeyRequest", (base,), {"avp_def": _REQUEST_DEF, "__post_init__": _request_post_init})
    answer = type("HandoverKeyAnswer", (base,), {"avp_def": _ANSWER_DEF, "__post_init__": _answer_post_init})
    _classes[code] = (base, request, answer)
    return base, request, answer


def register_handover_key_command(code: int, name: str) -> None:
    """Make python-diameter decode messages with this command code as Handover-Key messages."""
    base, _, _ = handover_key_classes(code, name)
    existing = all_commands.get(code)
    if existing is not None and existing is not base and existing.__name__ != "HandoverKey":
        from aaa_fmip.errors import ConfigError

        raise ConfigError(
            f"command code {code} is already python-diameter's {existing.name}", key="diameter.command_code"
        )
    register_command(base)

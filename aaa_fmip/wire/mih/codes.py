"""IEEE 802.21-2008 code points: service identifiers, opcodes, actions, TLV and Information Element types, status."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TypeAlias

from aaa_fmip.wire._buffer import OpenIntEnum

MIH_PORT = 4551  # IANA "ieee-mih", UDP and TCP (RFC 5677)
MIH_VERSION = 1  # 802.21-2008 clause 8: the version of this standard
HEADER_LENGTH = 8
MAX_PAYLOAD_LENGTH = 0xFFFF  # 16-bit Variable Payload Length
_MAX_LENGTH_OCTETS = 4  # a length beyond 2**32 cannot occur inside a 16-bit payload; refuse it early


class ServiceId(OpenIntEnum):
    """MIH Service Identifier (802.21-2008 clause 8; Wireshark packet-mih.c ``servicevalues``)."""

    SERVICE_MANAGEMENT = 1
    EVENT = 2
    COMMAND = 3
    INFORMATION = 4


class Opcode(OpenIntEnum):
    """MIH Opcode (802.21-2008 clause 8; packet-mih.c ``opcodevalues``)."""

    CONFIRM = 0
    REQUEST = 1
    RESPONSE = 2
    INDICATION = 3


class ServiceManagementAction(OpenIntEnum):
    """AIDs of the service management service (802.21-2008 Table L.1; packet-mih.c ``serv_act_id_values``)."""

    CAPABILITY_DISCOVER = 1
    REGISTER = 2
    DEREGISTER = 3
    EVENT_SUBSCRIBE = 4
    EVENT_UNSUBSCRIBE = 5


class InformationAction(OpenIntEnum):
    """AIDs of the information service (802.21-2008 Table L.1; packet-mih.c ``info_act_id_values``)."""

    GET_INFORMATION = 1
    PUSH_INFORMATION = 2


class TLVType(OpenIntEnum):
    """TLV type values (802.21-2008 Table L.2; the ``#define``s at the top of packet-mih.c)."""

    SOURCE_MIHF_ID = 1
    DESTINATION_MIHF_ID = 2
    STATUS = 3
    LINK_TYPE = 4
    MIH_EVENT_LIST = 5
    MIH_COMMAND_LIST = 6
    IS_QUERY_TYPE_LIST = 7
    TRANSPORT_OPTION_LIST = 8
    LINK_ADDRESS_LIST = 9
    MBB_HANDOVER_SUPPORT = 10
    REGISTER_REQUEST_CODE = 11
    VALID_TIME_INTERVAL = 12
    LINK_IDENTIFIER = 13
    NEW_LINK_IDENTIFIER = 14
    OLD_ACCESS_ROUTER = 15
    NEW_ACCESS_ROUTER = 16
    IP_RENEWAL_FLAG = 17
    MOBILITY_MANAGEMENT_SUPPORT = 18
    IP_ADDRESS_CONFIGURATION_METHODS = 19
    LINK_DOWN_REASON = 20
    TIMER_INTERVAL = 21
    LINK_GOING_DOWN_REASON = 22
    LINK_PARAMETER_REPORT_LIST = 23
    DEVICE_STATES_REQUEST = 24
    LINK_IDENTIFIER_LIST = 25
    DEVICE_STATES_RESPONSE_LIST = 26
    GET_STATUS_REQUEST_SET = 27
    GET_STATUS_RESPONSE_LIST = 28
    CONFIGURE_REQUEST_LIST = 29
    CONFIGURE_RESPONSE_LIST = 30
    LIST_OF_LINK_POA_LIST = 31
    PREFERRED_LINK_LIST = 32
    HANDOVER_RESOURCE_QUERY_LIST = 33
    HANDOVER_STATUS = 34
    ACCESS_ROUTER_ADDRESS = 35
    DHCP_SERVER_ADDRESS = 36
    FA_ADDRESS = 37
    LINK_ACTIONS_LIST = 38
    LINK_ACTIONS_RESULT_LIST = 39
    HANDOVER_RESULT = 40
    RESOURCE_STATUS = 41
    RESOURCE_RETENTION_STATUS = 42
    INFO_QUERY_BINARY_DATA_LIST = 43
    INFO_QUERY_RDF_DATA_LIST = 44
    INFO_QUERY_RDF_SCHEMA_URL = 45
    INFO_QUERY_RDF_SCHEMA_LIST = 46
    MAX_RESPONSE_SIZE = 47
    INFO_RESPONSE_BINARY_DATA_LIST = 48
    INFO_RESPONSE_RDF_DATA_LIST = 49
    INFO_RESPONSE_RDF_SCHEMA_URL_LIST = 50
    INFO_RESPONSE_RDF_SCHEMA_LIST = 51
    MOBILE_NODE_MIHF_ID = 52
    QUERY_RESOURCE_REPORT_FLAG = 53
    EVENT_CONFIGURATION_INFO_LIST = 54
    TARGET_NETWORK_INFO = 55
    LIST_OF_TARGET_NETWORK_INFO = 56
    ASSIGNED_RESOURCE_SET = 57
    LINK_DETECTED_INFO_LIST = 58
    MN_LINK_ID = 59
    POA = 60
    UNAUTHENTICATED_INFORMATION_REQUEST = 61
    NETWORK_TYPE = 62
    REQUESTED_RESOURCE_SET = 63
    VENDOR_SPECIFIC = 100


class Status(OpenIntEnum):
    """STATUS (802.21-2008 Annex F, data type STATUS; the values packet-mih.c names in ``status_types``)."""

    SUCCESS = 0
    UNSPECIFIED_FAILURE = 1
    REJECTED = 2
    AUTHORIZATION_FAILURE = 3
    NETWORK_ERROR = 4


class RegisterRequestCode(OpenIntEnum):
    """REG_REQUEST_CODE (802.21-2008 Annex F: 0 Registration, 1 Re-Registration; packet-mih.c
    ``reg_request_code_vals``)."""

    REGISTRATION = 0
    RE_REGISTRATION = 1


class TransportSupport(OpenIntEnum):
    """TRANS_LIST bits (BITMAP(16), bit 0 the most significant; packet-mih.c masks 0x8000 / 0x4000)."""

    UDP = 0x8000
    TCP = 0x4000


class ISQueryType(OpenIntEnum):
    """Bit numbers of IQ_TYPE_LST (BITMAP(64), bit 0 the most significant; 802.21-2008 Annex F). The numbering
    follows Wireshark's packet-mih.c, which names bits 0-28 (``IQ_*_MASK`` over the first 32 bits)."""

    BINARY_DATA = 0
    RDF_DATA = 1
    RDF_SCHEMA_URL = 2
    RDF_SCHEMA = 3
    IE_NETWORK_TYPE = 4
    IE_OPERATOR_ID = 5
    IE_SERVICE_PROVIDER_ID = 6
    IE_COUNTRY_CODE = 7
    IE_NETWORK_ID = 8
    IE_NETWORK_AUX_ID = 9
    IE_ROAMING_PARTNERS = 10
    IE_COST = 11
    IE_NETWORK_QOS = 12
    IE_NETWORK_DATA_RATE = 13
    IE_NET_REGULAT_DOMAIN = 14
    IE_NET_FREQUENCY_BANDS = 15
    IE_NET_IP_CFG_METHODS = 16
    IE_NET_CAPABILITIES = 17
    IE_NET_SUPPORTED_LCP = 18
    IE_NET_MOB_MGMT_PROT = 19
    IE_NET_EMSERV_PROXY = 20
    IE_NET_IMS_PROXY_CSCF = 21
    IE_NET_MOBILE_NETWORK = 22
    IE_POA_LINK_ADDR = 23
    IE_POA_LOCATION = 24
    IE_POA_CHANNEL_RANGE = 25
    IE_POA_SYSTEM_INFO = 26
    IE_POA_SUBNET_INFO = 27
    IE_POA_IP_ADDR = 28

    @staticmethod
    def bitmap(bits: Sequence[ISQueryType]) -> int:
        """The 64-bit value of IQ_TYPE_LST with ``bits`` set."""
        out = 0
        for bit in bits:
            out |= 1 << (63 - int(bit))
        return out


class IEType(OpenIntEnum):
    """Information Element types (802.21-2008 clause 6; the values ODTONE's ``information_elements.hpp``
    registers). IS query type bits are a separate BITMAP (TLV 7); these are the 4-octet IE Type fields."""

    NETWORK_TYPE = 0x10000000
    OPERATOR_ID = 0x10000001
    SERVICE_PROVIDER_ID = 0x10000002
    COUNTRY_CODE = 0x10000003
    NETWORK_ID = 0x10000100
    NETWORK_AUX_ID = 0x10000101
    ROAMING_PARTNERS = 0x10000102
    COST = 0x10000103
    NETWORK_QOS = 0x10000105
    NETWORK_DATA_RATE = 0x10000106
    NET_REGULAT_DOMAIN = 0x10000107
    NET_FREQUENCY_BANDS = 0x10000108
    NET_IP_CFG_METHODS = 0x10000109
    NET_CAPABILITIES = 0x1000010A
    NET_SUPPORTED_LCP = 0x1000010B
    NET_MOB_MGMT_PROT = 0x1000010C
    NET_EMSERV_PROXY = 0x1000010D
    NET_IMS_PROXY_CSCF = 0x1000010E
    NET_MOBILE_NETWORK = 0x1000010F
    POA_LINK_ADDR = 0x10000200
    POA_LOCATION = 0x10000201
    POA_CHANNEL_RANGE = 0x10000202
    POA_SYSTEM_INFO = 0x10000203
    POA_SUBNET_INFO = 0x10000204
    POA_IP_ADDR = 0x10000205
    CONTAINER_LIST_OF_NETWORKS = 0x10000300
    CONTAINER_NETWORK = 0x10000301
    CONTAINER_POA = 0x10000302


class LinkAddressKind(OpenIntEnum):
    """LINK_ADDR CHOICE selector (802.21-2008 Annex F; packet-mih.c ``link_addr_types``, ODTONE ``address.hpp``)."""

    MAC = 0
    CELL_ID_3G = 1
    CELL_ID_2G = 2
    ADDR_3GPP = 3
    ADDR_3GPP2 = 4
    OTHER_L2 = 5


_ADDRESS_FAMILY_IPV4 = 1  # IANA Address Family Numbers, used by TRANSPORT_ADDR (802.21-2008 Annex F)
_ADDRESS_FAMILY_IPV6 = 2
_ADDRESS_FAMILY_802 = 6

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

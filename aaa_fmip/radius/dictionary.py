"""The aaa-fmip RADIUS vendor dictionary (architecture.md §6) and the pyrad dictionaries built on it.

One source of truth: :func:`render_dictionary` writes the FreeRADIUS-format file for a vendor id;
``dictionaries/dictionary.aaa-fmip`` is its output for the default vendor id 32473 (the RFC 5612
enterprise number reserved for documentation), and ``aaa-fmip freeradius-config`` renders the configured one.
FreeRADIUS and pyrad both read the same text.

Attributes, all in the Access-Accept towards the access router that authenticated the MN:

=====  =======================  ==========  ==========================================================
type   name                     data type   content
=====  =======================  ==========  ==========================================================
1      AAA-FMIP-HK              octets      the 32-octet handover key, salt-encrypted (``encrypt=2``,
                                            RFC 2548 §2.4.2 / RFC 2868 §3.5) with the RADIUS secret
2      AAA-FMIP-SPI             integer     the SPI the MN puts in its BADF option (RFC 5568 §6.4.5)
3      AAA-FMIP-HK-Lifetime     integer     seconds the HK stays valid
4      AAA-FMIP-HK-Name         octets      the 8-octet HK-Name (architecture.md §2)
5      AAA-FMIP-AR-Address      ipv6addr    the AR-ID (PAR address) the HK was derived for
6      AAA-FMIP-HK-Algorithm    integer     authenticator algorithm (architecture.md §3 AT code points)
=====  =======================  ==========  ==========================================================
"""

from __future__ import annotations

import enum
import io
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pyrad.dictionary import Dictionary

DEFAULT_VENDOR_ID: Final = 32473  # RFC 5612 §2: enterprise number reserved for documentation
VENDOR_NAME: Final = "AAA-FMIP"
DICTIONARY_FILE_NAME: Final = "dictionary.aaa-fmip"
MAX_VENDOR_ID: Final = 2**24 - 1  # RFC 2865 §5.26: the high-order octet of Vendor-Id is 0


class VendorAttribute(enum.IntEnum):
    """Vendor-Type numbers inside Vendor-Specific (RFC 2865 §5.26)."""

    HK = 1
    SPI = 2
    HK_LIFETIME = 3
    HK_NAME = 4
    AR_ADDRESS = 5
    HK_ALGORITHM = 6


ATTRIBUTE_NAMES: Final[dict[VendorAttribute, str]] = {
    VendorAttribute.HK: "AAA-FMIP-HK",
    VendorAttribute.SPI: "AAA-FMIP-SPI",
    VendorAttribute.HK_LIFETIME: "AAA-FMIP-HK-Lifetime",
    VendorAttribute.HK_NAME: "AAA-FMIP-HK-Name",
    VendorAttribute.AR_ADDRESS: "AAA-FMIP-AR-Address",
    VendorAttribute.HK_ALGORITHM: "AAA-FMIP-HK-Algorithm",
}

# architecture.md §3: AT code points shared with the RFC 5269 options.
ALGORITHM_VALUES: Final[dict[str, int]] = {"HMAC-SHA1-96": 1, "HMAC-SHA-256-128": 2}

_ATTRIBUTES: Final = (
    (VendorAttribute.HK, "octets", "encrypt=2"),
    (VendorAttribute.SPI, "integer", ""),
    (VendorAttribute.HK_LIFETIME, "integer", ""),
    (VendorAttribute.HK_NAME, "octets", ""),
    (VendorAttribute.AR_ADDRESS, "ipv6addr", ""),
    (VendorAttribute.HK_ALGORITHM, "integer", ""),
)


def check_vendor_id(vendor_id: int) -> int:
    if isinstance(vendor_id, bool) or not isinstance(vendor_id, int) or not 1 <= vendor_id <= MAX_VENDOR_ID:
        raise ValueError(f"vendor id must be an integer in 1..{MAX_VENDOR_ID} (RFC 2865 §5.26)")
    return vendor_id


def render_dictionary(vendor_id: int = DEFAULT_VENDOR_ID) -> str:
    """The FreeRADIUS-format dictionary for ``vendor_id`` (also readable by pyrad)."""
    check_vendor_id(vendor_id)
    lines = [
        "# -*- text -*-",
        "#",
        "#  aaa-fmip: FMIPv6 handover keys derived from the EAP EMSK, pushed in the Access-Accept",
        "#  to the access router that authenticated the mobile node (aaa-fmip docs/freeradius.md).",
        "#",
        f"#  Vendor id {vendor_id}"
        + (" (RFC 5612: reserved for documentation)." if vendor_id == DEFAULT_VENDOR_ID else "."),
        "#  Render it for another vendor id: aaa-fmip freeradius-config --vendor-id N --dictionary",
        "#",
        "#  AAA-FMIP-HK is salt-encrypted with the RADIUS shared secret (encrypt=2: RFC 2868 section 3.5,",
        "#  the MS-MPPE-Send-Key scheme of RFC 2548 section 2.4.2).",
        "#",
        f"VENDOR\t\t{VENDOR_NAME}\t\t\t{vendor_id}",
        "",
        f"BEGIN-VENDOR\t{VENDOR_NAME}",
        "",
    ]
    for attr, data_type, flags in _ATTRIBUTES:
        line = f"ATTRIBUTE\t{ATTRIBUTE_NAMES[attr]:<24}\t{int(attr)}\t{data_type}"
        lines.append(f"{line}\t{flags}" if flags else line)
    lines.append("")
    for name, value in ALGORITHM_VALUES.items():
        lines.append(f"VALUE\t{ATTRIBUTE_NAMES[VendorAttribute.HK_ALGORITHM]}\t{name:<20}\t{value}")
    lines += ["", f"END-VENDOR\t{VENDOR_NAME}", ""]
    return "\n".join(lines)


# The standard attributes the AR-side helper and the accounting listener read (RFC 2865, 2866, 2869, 3162,
# 4072 and RFC 2548's MS-MPPE keys), so neither needs a FreeRADIUS installation on the host.
BASE_DICTIONARY: Final = """\
ATTRIBUTE	User-Name		1	string
ATTRIBUTE	User-Password		2	string	encrypt=1
ATTRIBUTE	NAS-IP-Address		4	ipaddr
ATTRIBUTE	NAS-Port		5	integer
ATTRIBUTE	Service-Type		6	integer
ATTRIBUTE	Framed-IP-Address	8	ipaddr
ATTRIBUTE	Framed-MTU		12	integer
ATTRIBUTE	Reply-Message		18	string
ATTRIBUTE	State			24	octets
ATTRIBUTE	Class			25	octets
ATTRIBUTE	Vendor-Specific		26	octets
ATTRIBUTE	Session-Timeout		27	integer
ATTRIBUTE	Idle-Timeout		28	integer
ATTRIBUTE	Termination-Action	29	integer
ATTRIBUTE	Called-Station-Id	30	string
ATTRIBUTE	Calling-Station-Id	31	string
ATTRIBUTE	NAS-Identifier		32	string
ATTRIBUTE	Proxy-State		33	octets
ATTRIBUTE	Acct-Status-Type	40	integer
ATTRIBUTE	Acct-Delay-Time		41	integer
ATTRIBUTE	Acct-Input-Octets	42	integer
ATTRIBUTE	Acct-Output-Octets	43	integer
ATTRIBUTE	Acct-Session-Id		44	string
ATTRIBUTE	Acct-Authentic		45	integer
ATTRIBUTE	Acct-Session-Time	46	integer
ATTRIBUTE	Acct-Input-Packets	47	integer
ATTRIBUTE	Acct-Output-Packets	48	integer
ATTRIBUTE	Acct-Terminate-Cause	49	integer
ATTRIBUTE	Acct-Multi-Session-Id	50	string
ATTRIBUTE	Event-Timestamp		55	date
ATTRIBUTE	NAS-Port-Type		61	integer
ATTRIBUTE	Connect-Info		77	string
ATTRIBUTE	EAP-Message		79	octets
ATTRIBUTE	Message-Authenticator	80	octets
ATTRIBUTE	NAS-Port-Id		87	string
ATTRIBUTE	NAS-IPv6-Address	95	ipv6addr
ATTRIBUTE	EAP-Key-Name		102	octets

VALUE	Acct-Status-Type	Start			1
VALUE	Acct-Status-Type	Stop			2
VALUE	Acct-Status-Type	Interim-Update		3
VALUE	Acct-Status-Type	Accounting-On		7
VALUE	Acct-Status-Type	Accounting-Off		8

VENDOR		Microsoft		311
BEGIN-VENDOR	Microsoft
ATTRIBUTE	MS-MPPE-Send-Key	16	octets	encrypt=2
ATTRIBUTE	MS-MPPE-Recv-Key	17	octets	encrypt=2
END-VENDOR	Microsoft
"""


def pyrad_dictionary(vendor_id: int = DEFAULT_VENDOR_ID, *extra_files: str) -> Dictionary:
    """A pyrad :class:`~pyrad.dictionary.Dictionary` with the standard attributes above, ours, and ``extra_files``."""
    from pyrad.dictionary import Dictionary

    return Dictionary(io.StringIO(BASE_DICTIONARY), io.StringIO(render_dictionary(vendor_id)), *extra_files)

"""Classing IP addresses for the download guard.

An IPv6 address that carries an IPv4 address reaches that IPv4 host, so it is judged by
the address it carries: IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible
(``::a.b.c.d``), NAT64 with the well-known prefix (``64:ff9b::/96``, RFC 6052) and 6to4
(``2002:aabb:ccdd::/48``). The local-use NAT64 prefix ``64:ff9b:1::/48`` (RFC 8215) puts
the IPv4 address wherever the site's prefix length says, so it is never global.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

WELL_KNOWN_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def carried(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries, or the address itself."""
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in WELL_KNOWN_NAT64:
        return low
    if address in IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1
        return low
    return address


def is_public(address: IPAddress) -> bool:
    """Whether a download may connect to ``address`` without an allow-list entry."""
    if isinstance(address, ipaddress.IPv6Address) and address in LOCAL_NAT64:
        return False
    plain = carried(address)
    return plain.is_global and not plain.is_multicast


def address_kind(address: IPAddress) -> str:
    """A word for why an address is refused (loopback, private, link-local, ...)."""
    if isinstance(address, ipaddress.IPv6Address) and address in LOCAL_NAT64:
        return "local-use NAT64"
    address = carried(address)
    for kind in ("loopback", "link_local", "unspecified", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"

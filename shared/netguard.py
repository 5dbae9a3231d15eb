"""Where a webhook may go: the one guard against server-side request forgery.

An admin names a webhook URL; the services then POST to it from inside the network. Without a
guard that URL could reach the cloud metadata service, Redis on loopback or anything else the
servers can reach. So a webhook URL must be ``https`` and its host must resolve only to public
addresses. It is checked when it is set and again before every send (DNS may have changed since),
and the connection is then made to the very address that was checked (``pinned_session``), so a
name that resolves to a public address for the check and to a private one a moment later (DNS
rebinding) still reaches only the public one.

``WEBHOOK_ALLOW_PRIVATE=true`` (local work only: ``make run`` sets it) also allows ``http`` and
loopback or private addresses. Link-local, cloud metadata, unspecified, multicast and reserved
addresses are refused whatever it says.

Host spellings that the C resolver reads as IPv4 addresses (``2130706433``, ``0x7f000001``,
``0177.0.0.1``, ``127.1``) are read here the same way and checked as the address they mean.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_Connection = TypeVar("_Connection", bound=HTTPConnection)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused whatever WEBHOOK_ALLOW_PRIVATE says.
ALWAYS_REFUSED = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host
        "169.254.0.0/16",  # link-local, where 169.254.169.254 (cloud metadata) lives
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "168.63.129.16/32",  # Azure platform endpoint
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
        "::/128",  # unspecified
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
        "fd00:ec2::254/128",  # AWS metadata over IPv6
    )
]
# IPv6 ranges that carry an IPv4 address: the IPv4 one is what is reached.
NAT64 = ipaddress.ip_network("64:ff9b::/96")

_NUMERIC_LABEL = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")
_IPV4_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")


class AddressNotAllowed(ValueError):
    """The URL may not be used for a webhook; the message says why (safe to show an admin)."""


class NotResolved(OSError):
    """The host has no address now (may be temporary)."""


@dataclass(frozen=True)
class Target:
    """A checked webhook URL and the address to connect to."""

    url: str
    host: str
    port: int
    address: str


def parse_ipv4_like_inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address the C library's inet_aton would read in ``host``, else None: one to four
    parts, each decimal, octal (leading 0) or hex (0x), the last filling the remaining bytes."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART.match(part) for part in parts):
        return None
    try:
        values = [
            int(part, 16) if part[:2].lower() == "0x" else int(part, 8) if part.startswith("0") else int(part)
            for part in (p if p.lower() != "0x" else "0x0" for p in parts)
        ]
    except ValueError:
        return None
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for value in head:
        number = number * 256 + value
    number = number * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(number)


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, if it is an IP literal in any spelling."""
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        return parse_ipv4_like_inet_aton(bare)


def _carried_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches (mapped, NAT64, 6to4, Teredo)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    carried = []
    if address.ipv4_mapped:
        carried.append(address.ipv4_mapped)
    if address in NAT64:
        carried.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.sixtofour:
        carried.append(address.sixtofour)
    if address.teredo:
        carried.extend(address.teredo)
    return carried


ALWAYS_REFUSED_REASON = "must not point at a link-local, metadata, multicast, unspecified or reserved address"
PRIVATE_REASON = "must resolve only to public addresses"


def address_problem(address: IPAddress, allow_private: bool) -> str | None:
    """Why a webhook may not go to ``address``, or None."""
    carried = _carried_ipv4(address)
    if isinstance(address, ipaddress.IPv6Address) and (address.ipv4_mapped or address in NAT64):
        # Reaches exactly the IPv4 address it carries: judge that one.
        return address_problem(carried[0], allow_private)
    if (
        any(address in network for network in ALWAYS_REFUSED if network.version == address.version)
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
    ):
        return ALWAYS_REFUSED_REASON
    if address.is_loopback:
        return None if allow_private else PRIVATE_REASON
    if address.is_reserved:
        return ALWAYS_REFUSED_REASON
    if address.is_private or not address.is_global:
        return None if allow_private else PRIVATE_REASON
    for inner in carried:
        problem = address_problem(inner, allow_private)
        if problem:
            return problem
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to now."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise NotResolved(f"{host} does not resolve") from error
    addresses = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise NotResolved(f"{host} does not resolve")
    return addresses


def check_url(url: str, allow_private: bool) -> Target:
    """Check a webhook URL and resolve it. Raises ``AddressNotAllowed`` (say it to the admin)
    or ``NotResolved``; returns the address to connect to."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise AddressNotAllowed("is not a valid URL") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme.lower() not in schemes:
        raise AddressNotAllowed("must use https")
    if parts.username is not None or parts.password is not None:
        raise AddressNotAllowed("must not carry a user name or password")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise AddressNotAllowed("must name a host")
    try:
        # The name as it goes on the wire (requests encodes internationalised names the same way).
        host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host.lower()
    except UnicodeError:
        raise AddressNotAllowed("has a host name that cannot be encoded") from None
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    elif _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]) or ":" in host:
        # Looks like an address but is not one any resolver agrees on: refuse rather than guess.
        raise AddressNotAllowed("has a host that is neither a name nor a valid IP address")
    else:
        addresses = resolve(host, port)
    for address in addresses:
        problem = address_problem(address, allow_private)
        if problem:
            raise AddressNotAllowed(problem)
    return Target(url=url, host=host, port=port, address=str(addresses[0]))


# --- connecting to the checked address -----------------------------------------------------


def _pinned_connection(base: type[_Connection], address: str) -> type[_Connection]:
    """``base`` connecting to the checked address; the Host header, SNI and certificate check
    still use the URL's host name."""

    def _new_conn(self: HTTPConnection) -> socket.socket:
        self._dns_host = address
        return base._new_conn(self)

    return type("Pinned", (base,), {"_new_conn": _new_conn, "__doc__": _pinned_connection.__doc__})


class PinnedAdapter(HTTPAdapter):
    def __init__(self, address: str):
        self._address = address
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        address = self._address

        class HTTPPool(HTTPConnectionPool):
            ConnectionCls = _pinned_connection(HTTPConnection, address)

        class HTTPSPool(HTTPSConnectionPool):
            ConnectionCls = _pinned_connection(HTTPSConnection, address)

        self.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}


def pinned_session(target: Target) -> requests.Session:
    """A session that connects only to ``target.address``, ignores proxy settings (a proxy would
    resolve the name again) and follows no redirects."""
    session = requests.Session()
    session.trust_env = False
    session.max_redirects = 0
    adapter = PinnedAdapter(target.address)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session

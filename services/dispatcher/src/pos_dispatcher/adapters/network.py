"""Where a webhook may go: no loopback, private, link-local, multicast, reserved or cloud
metadata address, unless the deployment allows private ones (`WEBHOOK_ALLOW_PRIVATE_NETWORKS`:
the local sandbox does, so a developer receives on their own laptop).

The host is resolved and checked when a subscription is created or changed, and again before
every connection, and the connection goes to the very address that was checked: a name that
resolves somewhere harmless at creation and to 169.254.169.254 later (DNS rebinding) is
refused at the second check, and cannot switch between the check and the connect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata endpoints that are not caught by the link-local rule (AWS's IPv6 one, Alibaba's).
METADATA = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}


class AddressRefused(Exception):
    """The URL's host resolves to an address deliveries may not reach (or to none)."""


# NAT64's well-known prefix: 64:ff9b::a.b.c.d reaches a.b.c.d through a translator.
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _plain(ip: IpAddress) -> IpAddress:
    # ::ffff:10.0.0.1 is 10.0.0.1: judge the IPv4 address inside an IPv4-mapped one.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _carried(ip: IpAddress) -> list[IpAddress]:
    """The IPv4 addresses an IPv6 one leads to (6to4, Teredo, NAT64): each is judged as if
    the URL named it, so 2002:a9fe:a9fe:: is the metadata address 169.254.169.254 it wraps."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found: list[IpAddress] = []
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found += list(ip.teredo)
    if ip in NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


@dataclass(frozen=True)
class NetworkRules:
    allow_private: bool = False

    def refused(self, address: str) -> bool:
        ip = _plain(ipaddress.ip_address(address))
        return self._refused(ip) or any(self._refused(inner) for inner in _carried(ip))

    def _refused(self, ip: IpAddress) -> bool:
        if ip in METADATA or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
            return True  # metadata (169.254.169.254 is link-local) is never allowed
        # ::1 is in IPv6's reserved ::/8 too: loopback is judged as loopback (the sandbox's
        # own machine), every other reserved address is refused.
        if ip.is_reserved and not ip.is_loopback:
            return True
        if self.allow_private:
            return False
        # 100.64/10 (carrier-grade NAT) is neither global nor private: refused too; so is
        # IPv6's deprecated site-local fec0::/10, private in all but name.
        site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
        return ip.is_loopback or ip.is_private or site_local or not ip.is_global

    async def resolve(self, url: str) -> str:
        """One address of the URL's host that deliveries may reach; refused if any is not,
        so a host cannot mix a public address with a private one."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            pass  # a name: resolve it
        else:
            # An address in the URL needs no lookup (and none happens per delivery).
            if self.refused(str(literal)):
                raise AddressRefused(f"{host} is an address webhooks may not reach")
            return str(literal)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise AddressRefused(f"{host} does not resolve") from exc
        addresses = sorted({str(info[4][0]) for info in infos})
        if not addresses:
            raise AddressRefused(f"{host} does not resolve")
        if any(self.refused(a) for a in addresses):
            raise AddressRefused(f"{host} resolves to an address webhooks may not reach")
        return addresses[0]

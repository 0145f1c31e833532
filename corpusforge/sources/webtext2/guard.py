"""Where the fetcher may connect: `AddressGuard` resolves each host once per task (or through `resolve` overrides,
like curl --resolve) and refuses private, loopback, link-local and otherwise non-global addresses, IPv4 hidden in
IPv6 included, unless told to allow them; it is also the resolver aiohttp connects with, so a checked address is
the one connected to."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from fnmatch import fnmatch
from typing import Any


def parse_target(target: str, where: str = "resolve") -> tuple[str, int]:
    """("address", port) from "address:port" or "[v6 address]:port"; ValueError naming `where` otherwise."""
    host, _, port = target.rpartition(":")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
        return str(address), int(port)
    except ValueError:
        raise ValueError(f"{where}: expected address:port (e.g. 127.0.0.1:8080), got {target!r}") from None


class Refused(Exception):
    """The host resolves to an address the fetcher must not connect to."""


class Unresolvable(Exception):
    """DNS has no address for the host."""


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, which is where a packet to it ends up: IPv4-mapped
    (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d), 6to4 (2002:AABB:CCDD::), Teredo's client, NAT64 (64:ff9b::/96
    and the local-use 64:ff9b:1::/48). None for an IPv4 address or a plain IPv6 one."""
    if address.version != 6:
        return None
    if address.ipv4_mapped or address.sixtofour:
        return address.ipv4_mapped or address.sixtofour
    if address.teredo:
        return address.teredo[1]
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in _NAT64) or (int(address) >> 32 == 0 and int(low) > 1):
        return low
    return None


class AddressGuard:
    """Resolves hosts once per task and refuses non-global addresses; also the resolver aiohttp connects with, so
    the address checked is the address used (a second DNS answer cannot swap in a private one)."""

    def __init__(self, allow_private: bool, overrides: dict[str, str]):
        self.allow_private = allow_private
        self.overrides = {pattern.lower(): parse_target(t) for pattern, t in overrides.items()}
        self._cache: dict[tuple[str, int], list[dict[str, Any]] | Exception] = {}

    def override(self, host: str) -> tuple[str, int] | None:
        host = host.lower()
        if host in self.overrides:
            return self.overrides[host]
        return next((t for p, t in self.overrides.items() if fnmatch(host, p)), None)

    async def addresses(self, host: str, port: int) -> list[dict[str, Any]]:
        """aiohttp resolve results for host:port; raises Refused for a forbidden address, Unresolvable for a host
        DNS does not know."""
        key = (host.lower(), port)
        if key not in self._cache:
            try:
                self._cache[key] = await self._lookup(*key)
            except (Refused, Unresolvable) as exc:
                self._cache[key] = exc
        found = self._cache[key]
        if isinstance(found, Exception):
            raise found
        return found

    async def _lookup(self, host: str, port: int) -> list[dict[str, Any]]:
        forced = self.override(host)
        if forced is not None:
            return [_result(host, forced[0], forced[1])]
        try:
            infos = [(ipaddress.ip_address(host.strip("[]")), port)]
        except ValueError:
            try:
                found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise Unresolvable(f"cannot resolve {host}: {exc}") from None
            infos = [(ipaddress.ip_address(info[4][0].split("%")[0]), port) for info in found]
        results = []
        for address, p in dict.fromkeys(infos):
            forms = [address] + [v4 for v4 in [embedded_ipv4(address)] if v4 is not None]
            if not self.allow_private and any(not a.is_global or a.is_multicast for a in forms):
                raise Refused(f"{host} resolves to {address}, a private, loopback, link-local or reserved address "
                              "(pass --allow-private-hosts to fetch such hosts)")
            results.append(_result(host, str(address), p))
        return results

    # aiohttp.abc.AbstractResolver
    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        try:
            return await self.addresses(host, port)
        except (Refused, Unresolvable) as exc:
            raise OSError(str(exc)) from None

    async def close(self) -> None:
        return None


def _result(hostname: str, address: str, port: int) -> dict[str, Any]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return {"hostname": hostname, "host": address, "port": port, "family": family, "proto": 0,
            "flags": socket.AI_NUMERICHOST}

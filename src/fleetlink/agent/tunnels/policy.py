"""Which local targets this agent lets a tunnel expose (so a control plane cannot make it open
the rest of its network). Default: loopback only."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from fleetlink.contract.tunnels import split_host_port

DEFAULT_ALLOW: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AllowList:
    """Networks (CIDR) and exact host names a ``local_target`` may point at.

    A name not listed is resolved, and allowed only when every address it resolves to is inside an
    allowed network (names resolve when the tunnel starts; list IP literals to rule out DNS changes).
    """

    networks: tuple[Network, ...]
    hostnames: frozenset[str]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        networks: list[Network] = []
        names: set[str] = set()
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if not entry or "/" in entry or ":" in entry or " " in entry:
                    raise ValueError(f"{entry!r} is neither a CIDR nor a host name") from None
                names.add(entry.lower())
        return cls(tuple(networks), frozenset(names))

    def refusal(self, target: str) -> str | None:
        """Why ``target`` may not be exposed, or None when it may."""
        try:
            host, port = split_host_port(target)
        except ValueError as error:
            return str(error)
        if host.lower() in self.hostnames:
            return None
        try:
            addresses = {ipaddress.ip_address(host)}
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError:
                return f"{host} does not resolve"
            addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
        outside = sorted(str(a) for a in addresses if not any(a in net for net in self.networks))
        if outside:
            allowed = ", ".join([str(n) for n in self.networks] + sorted(self.hostnames))
            return f"{target} resolves to {', '.join(outside)}, outside this agent's allow list ({allowed})"
        return None

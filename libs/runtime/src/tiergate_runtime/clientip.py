"""The client's address, believing `X-Forwarded-For` only from proxies we trust.

Anonymous limits are keyed by this address, so a header anyone can set must not choose it:
the peer's address counts unless the peer is in a trusted range; then `X-Forwarded-For` is read
from the right (the entry our own proxy appended) past every trusted hop, and the first
untrusted address is the client. A malformed entry stops the walk at the last good hop.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from tiergate_runtime.settings import SettingsError

__all__ = ["IPNetwork", "TrustedProxies", "check_networks"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> _IPAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.9:443"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_networks(networks: Sequence[str], field: str) -> None:
    """SettingsError naming `field[i]` if an entry is not a CIDR or an address."""
    for index, network in enumerate(networks):
        try:
            ipaddress.ip_network(network.strip(), strict=False)
        except ValueError as exc:
            raise SettingsError(f"invalid setting {field}[{index}]: {exc}") from None


class TrustedProxies:
    """Resolves a request's client address from its peer and `X-Forwarded-For`."""

    def __init__(self, networks: Iterable[str]) -> None:
        """`networks`: CIDRs such as `10.0.0.0/8` or single addresses; ValueError if invalid."""
        self.networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(network.strip(), strict=False) for network in networks
        )

    def trusted(self, address: _IPAddress) -> bool:
        """Whether `address` is one of our proxies."""
        return any(address in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The client address for a request from `peer` with these `X-Forwarded-For` values."""
        peer_address = _address(peer) if peer else None
        if peer_address is None:
            return peer or "unknown"
        if not self.networks or not self.trusted(peer_address):
            return str(peer_address)
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        client = peer_address
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                break
            client = address
            if not self.trusted(address):
                break
        return str(client)

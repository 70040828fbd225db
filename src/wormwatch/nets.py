"""CIDR membership: the one test of "is this address in these networks".

In: networks as :mod:`ipaddress` objects (from the config's allowlists, or a
filter the operator typed) and addresses as event columns (``hi``/``lo``
words, :mod:`wormwatch.model`) or as text. Out: booleans. The aggregate
tests whole event columns at once (:func:`in_networks`); detect and the live
table's filter test one address (:func:`contains`). Both go through
:class:`NetMask`, so an address is in a network by one rule everywhere: IPv4
addresses and networks are IPv4-mapped (``::ffff:a.b.c.d``), so
``::ffff:192.0.2.5`` and ``192.0.2.5`` are the same host.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wormwatch.model import BOOL, U64, V4_MAPPED_PREFIX, addr_text, addr_words

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_ALL = (1 << 128) - 1
_WORD = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class NetMask:
    """A CIDR as (hi, lo) words and masks, for vectorised membership tests."""

    net_hi: int
    net_lo: int
    mask_hi: int
    mask_lo: int

    @staticmethod
    def of(network: Network) -> NetMask:
        if network.version == 4:
            bits = 96 + network.prefixlen
            value = (V4_MAPPED_PREFIX | int(network.network_address)) & _ALL
        else:
            bits = network.prefixlen
            value = int(network.network_address)
        mask = _ALL ^ ((1 << (128 - bits)) - 1)
        return NetMask(value >> 64, value & _WORD, mask >> 64, mask & _WORD)

    def holds(self, hi: int, lo: int) -> bool:
        """Whether the address ``(hi, lo)`` lies in this network."""
        return (hi & self.mask_hi) == self.net_hi and (lo & self.mask_lo) == self.net_lo


def in_networks(hi: U64, lo: U64, nets: Sequence[NetMask]) -> BOOL:
    """Which (hi, lo) addresses fall into any of ``nets``."""
    hit = np.zeros(hi.shape[0], np.bool_)
    for m in nets:
        hit |= ((hi & np.uint64(m.mask_hi)) == np.uint64(m.net_hi)) & (
            (lo & np.uint64(m.mask_lo)) == np.uint64(m.net_lo)
        )
    return hit


@functools.lru_cache(maxsize=65536)
def contains(nets: tuple[Network, ...], addr: str) -> bool:
    """Whether ``addr`` (IPv4 or IPv6 text) lies in any of ``nets``.

    Raises:
        ValueError: ``addr`` is not an address.
    """
    hi, lo = addr_words(addr)
    return any(NetMask.of(net).holds(hi, lo) for net in nets)


@dataclass(frozen=True, slots=True)
class AddressFilter:
    """The live table's ``/`` filter: which host addresses a typed text picks.

    A text with a ``/`` is a CIDR network (host bits allowed); any other text
    is a case-insensitive prefix of the address as displayed (``10.1.``,
    ``2001:db8:``), or the address itself in any spelling (``2001:0db8:0:0::1``,
    ``::ffff:192.0.2.1``). An empty text picks every address; a CIDR that does
    not parse picks none.
    """

    prefix: str | None
    nets: tuple[NetMask, ...]

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def of(text: str) -> AddressFilter:
        if "/" in text:
            try:
                return AddressFilter(None, (NetMask.of(ipaddress.ip_network(text, strict=False)),))
            except ValueError:
                return AddressFilter(None, ())
        try:
            nets: tuple[NetMask, ...] = (NetMask.of(ipaddress.ip_network(text)),)
        except ValueError:
            nets = ()
        return AddressFilter(text.lower(), nets)

    def matches(self, addr: str) -> bool:
        """Whether the address ``addr`` (text as displayed) passes."""
        if self.prefix is not None and addr.lower().startswith(self.prefix):
            return True
        try:
            hi, lo = addr_words(addr)
        except ValueError:
            return False
        return any(m.holds(hi, lo) for m in self.nets)

    def matches_words(self, hi: U64, lo: U64) -> BOOL:
        """Which addresses of (hi, lo) word columns pass: the networks tested
        on the words at once, a text prefix on each address's text (one
        Python call per address)."""
        hit = in_networks(hi, lo, self.nets)
        if self.prefix is not None:
            texts = map(addr_text, hi.tolist(), lo.tolist())
            hit |= np.fromiter((t.startswith(self.prefix) for t in texts), np.bool_, hi.shape[0])
        return hit

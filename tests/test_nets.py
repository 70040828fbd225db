"""The one CIDR matcher: column-wise and one address at a time agree."""

from __future__ import annotations

import ipaddress

import numpy as np

from wormwatch.model import addr_words
from wormwatch.nets import NetMask, contains, in_networks

NETS = (
    ipaddress.ip_network("192.0.2.0/25"),
    ipaddress.ip_network("2001:db8:1::/48"),
)
ADDRS = {
    "192.0.2.5": True,
    "192.0.2.127": True,
    "192.0.2.128": False,
    "::ffff:192.0.2.5": True,  # the same host as 192.0.2.5
    "198.51.100.1": False,
    "2001:db8:1:ffff::1": True,
    "2001:db8:2::1": False,
    "::c000:205": False,  # 192.0.2.5's bits, but not IPv4-mapped
}


def test_contains_one_address() -> None:
    for addr, expect in ADDRS.items():
        assert contains(NETS, addr) is expect, addr


def test_columns_agree_with_one_address() -> None:
    words = [addr_words(a) for a in ADDRS]
    hi = np.array([w[0] for w in words], np.uint64)
    lo = np.array([w[1] for w in words], np.uint64)
    hit = in_networks(hi, lo, [NetMask.of(n) for n in NETS])
    assert hit.tolist() == list(ADDRS.values())


def test_no_networks_holds_nothing() -> None:
    assert not contains((), "192.0.2.5")
    assert in_networks(np.zeros(3, np.uint64), np.zeros(3, np.uint64), []).tolist() == [False] * 3

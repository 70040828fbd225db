"""Events: one column list drives allocating, slicing and owning rows; addresses as text."""

from __future__ import annotations

import dataclasses
import ipaddress
import random

import numpy as np

from wormwatch.model import EVENT_COLUMNS, NAME_SLOT, Events, addr_text, addr_words


def test_event_columns_are_the_fields() -> None:
    fields = [f.name for f in dataclasses.fields(Events) if f.name != "n"]
    assert [name for name, _, _ in EVENT_COLUMNS] == fields


def test_rows_are_views_and_owned_is_a_copy() -> None:
    ev = Events.allocate(8, n=5)
    assert ev.names.shape == (8, NAME_SLOT)
    assert ev.src_hi.dtype == np.uint64
    ev.ts_us[:] = np.arange(8)
    part = ev.rows(2, 4)
    assert part.n == 2
    assert part.ts_us.tolist() == [2, 3]
    part.ts_us[0] = 99
    assert ev.ts_us[2] == 99  # a view
    own = ev.owned()
    assert own.n == 5
    assert own.ts_us.shape == (5,)
    assert own.names.shape == (5, NAME_SLOT)
    own.ts_us[0] = -1
    assert ev.ts_us[0] == 0  # a copy


def test_addr_text_writes_what_ipaddress_writes() -> None:
    """The fast IPv6 path (inet_ntop) matches ipaddress on the shapes where the two
    could part: zero runs of every length and place, ties, IPv4-compatible and
    IPv4-mapped addresses."""
    rng = random.Random(12)
    values = [0, 1, 0xFFFF_0000_0000, (1 << 128) - 1]
    for _ in range(50_000):
        words = [rng.choice((0, 0, 0, 1, 0xFFFF, rng.randrange(65536))) for _ in range(8)]
        values.append(int.from_bytes(b"".join(w.to_bytes(2, "big") for w in words), "big"))
    for value in values:
        hi, lo = value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF
        ip = ipaddress.IPv6Address(value)
        expected = str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)
        assert addr_text(hi, lo) == expected
        assert addr_words(expected) == (hi, lo)

"""Events: one column list drives allocating, slicing and owning rows."""

from __future__ import annotations

import dataclasses

import numpy as np

from wormwatch.model import EVENT_COLUMNS, NAME_SLOT, Events


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

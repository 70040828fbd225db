"""Table rows from host views: the numbers each column shows."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wormwatch.present.live.rows import host_row
from wormwatch.present.live.table import screen_rows
from wormwatch.present.live.view import ViewState

from testkit.tui_fakes import (
    snapshot,
)


def test_host_row_numbers() -> None:
    snap = snapshot()
    rows = {r.addr: r for r in screen_rows(snap, ViewState())}
    bot = rows["198.51.100.23"]
    assert bot.sync_r == pytest.approx(0.9874)  # the detector's value (Verdict.sync_r)
    assert bot.syn == (0, 24, 287)
    assert bot.syn_targets == 287
    scanner = rows["2001:db8:0:42::dead:beef"]
    assert scanner.kw_share is None  # no queries at all
    assert scanner.dns_per_s == 0
    storm = rows["192.0.2.66"]
    assert storm.kw_share == pytest.approx(1932 / 1952)
    # 1952 queries over the 25 minutes from its first active bin to now
    assert storm.dns_per_s == pytest.approx(1952 / (25 * 60))
    assert storm.activity[-6:] == (0, 0, 0, 0, 0, 0)  # silent for the last 5 bins and now
    assert sum(storm.activity) == sum(storm.view.state.series[-18:, 0])
    # the row shows what the detector stored, never a number of its own
    mailer = rows["192.0.2.7"]
    assert mailer.sync_r is None
    judged = replace(snap.hosts[3], verdict=replace(snap.hosts[3].verdict, sync_r=-0.25))
    assert host_row(judged, snap).sync_r == -0.25

"""The dga-nx behaviour sweep: generated-name storms over a grid of behaviours (family,
names per hour, share resolving, bursts), and the benign NXDOMAIN habits, each judged by
the real detector at every bin boundary of a day.

Per case: whether dga-nx ever fired, and the time from the host's first NXDOMAIN answer
to the first evaluation at which it fired (an alert is written at that bin boundary).
``python -m scripts.bench.dga_sweep`` prints the whole grid; tests/scenarios/test_dga_envelope.py
pins a subset. Host state comes from testkit's slow, obvious Host (testkit/dgahosts.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from wormwatch.config import Config
from wormwatch.detect import evaluate
from wormwatch.model import C_NX, N_COUNTERS, HostState

from testkit import dgahosts
from testkit.hoststates import Host, at

FAMILIES = ("conficker-c", "cryptolocker", "hash", "dictionary")
NAMES_PER_HOUR = (10, 30, 100, 500)
SHARE_RESOLVING = (0.0, 0.5)
BURST_S = (0.0, 120.0)
HOURS = 4.0
START_H = 9.0
# each builder takes the host's address (with a default)
BENIGN: dict[str, Callable[..., Host]] = {
    "browser start-up probes": dgahosts.browser_startups,
    "search-domain expansion": dgahosts.search_expansion,
    "typing mistakes": dgahosts.typing_mistakes,
    "dead cloud name retried": dgahosts.dead_cloud_name,
    "anti-virus look-ups": dgahosts.av_lookups,
    "mail server DNSBL look-ups": dgahosts.dnsbl_mail_server,
    "ad-blocked browser": dgahosts.ad_blocked_browser,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """One case's result: fired at all, and minutes from its first NXDOMAIN to the
    first evaluation at which dga-nx fired (None: never)."""

    name: str
    params: dict[str, object]
    is_worm: bool
    fired: bool
    minutes_to_alert: float | None


def _upto(state: HostState, end_bin: int) -> HostState:
    """The state as the aggregate held it at the end of bin ``end_bin``."""
    keep = state.bins <= end_bin
    series = state.series.reshape(-1, N_COUNTERS)[keep]
    return HostState(
        addr=state.addr,
        first_seen_us=state.first_seen_us,
        last_seen_us=state.last_seen_us,
        totals=series.sum(axis=0),
        bins=state.bins[keep],
        series=series,
        sample_nx_names=state.sample_nx_names,
    )


def judge(host: Host, cfg: Config) -> tuple[bool, float | None]:
    """Evaluate ``host`` at every bin boundary where it had an NXDOMAIN answer (the
    signal can only change there) -> (fired, minutes from first NXDOMAIN to firing)."""
    state = host.state()
    bin_us = cfg.bin_s * 1_000_000
    nx_bins = state.bins[state.series[:, C_NX] > 0]
    if nx_bins.shape[0] == 0:
        return False, None
    for b in nx_bins.tolist():
        now_us = (b + 1) * bin_us
        if "dga-nx" in evaluate(_upto(state, b), cfg, now_us=now_us).verdicts:
            return True, (now_us - int(nx_bins[0]) * bin_us) / 60e6
    return False, None


def worm_cases() -> Iterator[tuple[dict[str, object], Host]]:
    for family, per_hour, share, burst in itertools.product(
        FAMILIES, NAMES_PER_HOUR, SHARE_RESOLVING, BURST_S
    ):
        host = dgahosts.dga_client(
            family, names_per_hour=per_hour, hours=HOURS, start=START_H,
            share_resolving=share, burst_s=burst,
        )  # fmt: skip
        # the infected machine's user browses as well (answers that resolve)
        dgahosts.browse(host, START_H - 1.0, HOURS + 2.0, 120)
        params = {"family": family, "per_hour": per_hour, "resolving": share, "burst_s": burst}
        yield params, host


def run(cfg: Config | None = None) -> list[Outcome]:
    """Every worm case of the grid, then every benign habit."""
    cfg = cfg or Config()
    out = []
    for params, host in worm_cases():
        fired, minutes = judge(host, cfg)
        out.append(Outcome("dga", params, True, fired, minutes))
    for name, make in BENIGN.items():
        fired, minutes = judge(make(), cfg)
        out.append(Outcome(name, {}, False, fired, minutes))
    return out


def median_minutes(outcomes: list[Outcome]) -> float | None:
    times = [o.minutes_to_alert for o in outcomes if o.minutes_to_alert is not None]
    return float(np.median(times)) if times else None


__all__ = ["BENIGN", "Outcome", "at", "judge", "median_minutes", "run", "worm_cases"]

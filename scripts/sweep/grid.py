"""The sweep's grid: which worm and benign cases it builds, by parameters.

Each function returns cases with distinct source addresses (172.16.0.0/12,
one per case), so that all of them share one capture.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from testkit import dgasweep, profiles
from testkit.behaviours import Case

STORM_RATES = (5, 10, 15, 20, 40, 100)
BROWSE_RATES = (0, 6, 12, 24, 60)
MX_RATES = (0.1, 0.2, 0.5, 1, 2, 10, 60)
SCAN_RATES = (0.05, 0.1, 0.2, 1, 5, 30, 300)
# (period in minutes, burst length in seconds): every burst shorter than its period
BOT_SHAPES = tuple(
    (p, b) for p in (2, 5, 10, 20, 30) for b in (20, 60, 150, 300, 600) if b < p * 60
)
BOT_LAGS = (0, 1, 2, 3, 5)
BOT_JITTERS = (0, 30)
NAT_USERS = (5, 20, 100)
# domain generators: the families of testkit/dgagen.py, names per hour, share resolving,
# steady or one 2-minute burst an hour, with and without SMB scanning
DGA_FAMILIES = ("conficker-c", "cryptolocker", "hash", "dictionary")
DGA_RATES = (10, 30, 100, 500)
DGA_RESOLVING = (0.0, 0.5)
DGA_BURSTS = (0.0, 120.0)
# MX bursts and scans that alternate: (period in minutes, burst s, lag in minutes)
ALTERNATING = ((10, 150, 5), (20, 300, 10), (30, 600, 15), (60, 600, 30))


class Addresses:
    """One source address per case."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"172.16.{self.n // 250}.{self.n % 250 + 1}"


def storms(addr: Addresses) -> Iterator[Case]:
    for rate in STORM_RATES:
        for browse in BROWSE_RATES:
            for history in (False, True) if browse else (False,):
                yield profiles.keyword_storm(addr(), rate=rate, browse_rate=browse, history=history)


def mailers(addr: Addresses) -> Iterator[Case]:
    for rate in MX_RATES:
        for history in (False, True):
            yield profiles.mass_mailer(addr(), rate=rate, history=history)


def scanners(addr: Addresses) -> Iterator[Case]:
    for rate in SCAN_RATES:
        for history in (False, True):
            yield profiles.scanner(addr(), rate=rate, history=history)


def bots(addr: Addresses) -> Iterator[Case]:
    for seed, (period, burst) in enumerate(BOT_SHAPES):
        for lag in BOT_LAGS:
            for jitter in BOT_JITTERS:
                yield profiles.bot(
                    addr(),
                    period_min=period,
                    burst_s=burst,
                    lag_min=lag,
                    jitter_s=jitter,
                    seed=seed,
                )
    for baseline in ("file-shares", "nat-20"):
        for lag in (0, 1):
            yield profiles.bot(addr(), period_min=10, burst_s=150, lag_min=lag, baseline=baseline)


def alternating(addr: Addresses) -> Iterator[Case]:
    """Bots whose MX bursts and scans alternate: bot-sync must not fire."""
    for period, burst, lag in ALTERNATING:
        case = profiles.bot(addr(), period_min=period, burst_s=burst, lag_min=lag)
        case.name = f"alternating period={period}m burst={burst}s offset={lag}m"
        case.signal = None
        yield case


def nats(addr: Addresses) -> Iterator[Case]:
    for users in NAT_USERS:
        for worm in ("storm", "bot", "scan"):
            yield profiles.nat_infected(addr(), users=users, worm=worm)


def generators(addr: Addresses) -> Iterator[Case]:
    grid = itertools.product(DGA_FAMILIES, DGA_RATES, DGA_RESOLVING, DGA_BURSTS, (False, True))
    for seed, (family, rate, resolving, burst, smb) in enumerate(grid):
        yield profiles.dga_worm(
            addr(), family=family, per_hour=rate, resolving=resolving, burst_s=burst, smb=smb,
            seed=seed,
        )  # fmt: skip


def benign(addr: Addresses) -> Iterator[Case]:
    for profile in profiles.BENIGN:
        yield profiles.benign(addr(), profile)
    # the habits that draw NXDOMAIN answers (the dga-nx look-alikes)
    for habit in dgasweep.BENIGN:
        yield profiles.dga_habit(addr(), habit)


def everything() -> dict[str, list[Case]]:
    """Every family of cases, by name."""
    addr = Addresses()
    return {
        "keyword-storm": list(storms(addr)),
        "mx-client": list(mailers(addr)),
        "smb-scan": list(scanners(addr)),
        "bot-sync": list(bots(addr)),
        "alternating": list(alternating(addr)),
        "nat": list(nats(addr)),
        "dga-nx": list(generators(addr)),
        "benign": list(benign(addr)),
    }

"""One :class:`~testkit.behaviours.Case` per worm or benign profile, by its parameters.

Worms start at ``T0`` (midnight of the test day, plus ``phase_s`` so bursts
do not line up with bin edges); the user's history is the day before
(from 23 hours earlier, so it stays inside the default one-day window).
Rates are per minute; the capture ends at ``END``.
"""

from __future__ import annotations

from collections.abc import Callable

from wormwatch.model import RCODE_NXDOMAIN

from testkit import dgahosts, dgasweep
from testkit.behaviours import (
    MIN_US,
    T0,
    Case,
    browse,
    bursts,
    file_shares,
    mass_mail,
    nth,
    scan,
    storm,
)

Build = Callable[[Case], None]
HOUR_US = 60 * MIN_US
END = T0 + 4 * HOUR_US
HISTORY_US = T0 - 23 * HOUR_US


def _worm(kind: str, addr: str, signal: str, phase_s: float, seed: int, **params: object) -> Case:
    """A worm case named by its parameters, starting ``phase_s`` after ``T0``."""
    text = " ".join(
        f"{k}={v:g}" if isinstance(v, int | float) and not isinstance(v, bool) else f"{k}={v}"
        for k, v in params.items()
    )
    start = T0 + int(phase_s * 1e6)
    return Case(f"{kind} {text}", addr, signal, dict(params), start_us=start, seed=seed)


def keyword_storm(
    addr: str, *, rate: float, browse_rate: float, history: bool, phase_s: float = 17, seed: int = 0
) -> Case:
    """A Mytob-like storm for an hour on a PC whose user browses at ``browse_rate``."""
    case = _worm(
        "storm", addr, "keyword-storm", phase_s, seed,
        rate=rate, browse=browse_rate, history=history,
    )  # fmt: skip
    start = case.start_us
    if browse_rate:
        browse(case, HISTORY_US if history else start - 10 * MIN_US, END, browse_rate)
    case.cross_us = nth(storm(case, start, start + HOUR_US, rate), 100)
    return case


def mass_mailer(
    addr: str, *, rate: float, history: bool, phase_s: float = 5, seed: int = 0
) -> Case:
    """MX queries of new domains at ``rate`` for two hours."""
    case = _worm("mx", addr, "mx-client", phase_s, seed, rate=rate, history=history)
    start = case.start_us
    if history:
        browse(case, HISTORY_US, END, 12)
    ts = case.times(start, start + 2 * HOUR_US, rate)
    mass_mail(case, ts)
    case.cross_us = nth(ts, 10)
    return case


def scanner(addr: str, *, rate: float, history: bool, phase_s: float = 9, seed: int = 0) -> Case:
    """SYNs to 445 of ``rate`` new targets a minute for three hours; with
    ``history``, a day as a client of four file servers first."""
    case = _worm("scan", addr, "smb-scan", phase_s, seed, rate=rate, history=history)
    start = case.start_us
    if history:
        # its four file servers were first contacted 23 hours before: they leave the
        # one-day window an hour into the scan, so the threshold is 30 scan targets
        file_shares(case, HISTORY_US, END, 2)
    ts = case.times(start, start + 3 * HOUR_US, rate)
    scan(case, ts)
    case.cross_us = nth(ts, 30)
    return case


def bot(
    addr: str,
    *,
    period_min: float,
    burst_s: float,
    lag_min: float,
    jitter_s: float = 0,
    baseline: str = "none",
    phase_s: float = 23,
    seed: int = 0,
) -> Case:
    """MX bursts and scans from one command loop, for 3.5 hours. ``baseline``:
    the user's own SYNs ("none", "file-shares": 2 a minute to 4 servers all
    day, "nat-20": 20 users' browsing and file shares on the same address)."""
    case = _worm(
        "bot", addr, "bot-sync", phase_s, seed, period_min=period_min, burst_s=burst_s,
        lag_min=lag_min, jitter_s=jitter_s, baseline=baseline,
    )  # fmt: skip
    start = case.start_us
    if baseline == "file-shares":
        file_shares(case, HISTORY_US, END, 2)
    elif baseline == "nat-20":
        browse(case, T0 - HOUR_US, END, 20 * 6)
        file_shares(case, T0 - HOUR_US, END, 5 * 2, n_servers=8)
    ends = bursts(
        case,
        start,
        start + int(3.5 * HOUR_US),
        period_s=period_min * 60,
        burst_s=burst_s,
        lag_s=lag_min * 60,
        jitter_s=jitter_s,
    )
    case.cross_us = ends[2] if len(ends) >= 3 else None
    return case


def nat_infected(addr: str, *, users: int, worm: str, seed: int = 0) -> Case:
    """A NAT gateway of ``users`` browsing users (6 queries a minute each, a
    tenth of them on file shares) with one infected user behind it."""
    signal = {"storm": "keyword-storm", "bot": "bot-sync", "scan": "smb-scan"}[worm]
    start = T0 + 11_000_000
    case = Case(
        f"nat users={users} worm={worm}",
        addr,
        signal,
        {"users": users, "worm": worm},
        start,
        seed=seed,
    )
    browse(case, T0 - HOUR_US, END, users * 6)
    file_shares(case, T0 - HOUR_US, END, max(1, users // 10) * 2, n_servers=8)
    if worm == "storm":
        case.cross_us = nth(storm(case, start, start + HOUR_US, 20), 100)
    elif worm == "bot":
        ends = bursts(case, start, start + 3 * HOUR_US, period_s=600, burst_s=150, lag_s=0)
        case.cross_us = ends[2]
    else:
        ts = case.times(start, start + 3 * HOUR_US, 5)
        scan(case, ts)
        case.cross_us = nth(ts, 30 - 8)
    return case


def dga_worm(
    addr: str,
    *,
    family: str,
    per_hour: float,
    resolving: float,
    burst_s: float,
    smb: bool,
    phase_s: float = 31,
    seed: int = 0,
) -> Case:
    """A domain generator of ``family`` asking ``per_hour`` names an hour for three hours
    (``resolving`` of them resolve; with ``burst_s``, each hour's names in one burst of
    that long) on a machine whose user browses 120 resolving names an hour, from an hour
    before; with ``smb``, it also scans 445 (5 new targets a minute), as Conficker does.
    The threshold is crossed at its 30th NXDOMAIN answer (``min_nx``)."""
    case = _worm(
        "dga", addr, "dga-nx", phase_s, seed, family=family, per_hour=per_hour,
        resolving=resolving, burst_s=burst_s, smb=smb,
    )  # fmt: skip
    start_h = phase_s / 3600
    host = dgahosts.dga_client(
        family, addr=addr, names_per_hour=per_hour, hours=3.0, start=start_h,
        share_resolving=resolving, burst_s=burst_s, seed=seed + 1,
    )  # fmt: skip
    dgahosts.browse(host, start_h - 1.0, 5.0, 120, seed=seed + 2)
    case.add_host(host)
    if smb:
        scan(case, case.times(case.start_us, case.start_us + 3 * HOUR_US, 5))
    nx = sorted(t for t, _, _, _, rcode in case.answers if rcode == RCODE_NXDOMAIN)
    case.cross_us = nth(nx, 30)
    return case


def dga_habit(addr: str, habit: str) -> Case:
    """A benign NXDOMAIN habit (``habit`` in testkit.dgasweep.BENIGN) on its own host."""
    case = Case(f"benign {habit}", addr, None, {"profile": habit})
    case.add_host(dgasweep.BENIGN[habit](addr))
    return case


# --- benign profiles --------------------------------------------------------------------


def benign(addr: str, profile: str, *, seed: int = 0) -> Case:
    """A host that must not be flagged (``profile`` in :data:`BENIGN`)."""
    case = Case(f"benign {profile}", addr, None, {"profile": profile}, seed=seed)
    BENIGN[profile](case)
    return case


def _heavy_browser(case: Case) -> None:
    browse(case, HISTORY_US, END, 60, webmail=0.05)


def _nat_gateway(users: int, *, day: bool) -> Build:
    def build(case: Case) -> None:
        since = HISTORY_US if day else T0 - HOUR_US
        browse(case, since, END, users * 6)
        file_shares(case, since, END, users // 10 * 2, n_servers=8)
        # a few mail clients autoconfiguring: the MX of two domains now and then
        ts = case.times(since, END, 2 / 60)
        case.queries(ts, ["example.edu" if i % 2 else "example.org" for i in range(len(ts))], 15)

    return build


def _file_server_client(case: Case) -> None:
    browse(case, HISTORY_US, END, 6)
    file_shares(case, HISTORY_US, END, 3)


def _backup_server(n_hosts: int) -> Build:
    def build(case: Case) -> None:
        # every night at 01:00, connections to each client it backs up
        for night in (T0 - 23 * HOUR_US, T0 + HOUR_US):
            for h in range(n_hosts):
                ts = case.times(night, night + HOUR_US, 20 / 60)
                case.syns(ts, [f"198.51.100.{100 + h}"] * len(ts))

    return build


def _admin_dig_mx(n_domains: int, n_each: int) -> Build:
    def build(case: Case) -> None:
        browse(case, HISTORY_US, END, 6)
        file_shares(case, HISTORY_US, END, 1)
        t = T0 + 2 * HOUR_US
        names = [f"customer{d}.example" for d in range(n_domains) for _ in range(n_each)]
        case.queries([t + i * 20_000_000 for i in range(len(names))], names, 15)

    return build


def _probe(every_s: int) -> Build:
    def build(case: Case) -> None:
        # checks the MX record of its domain and three SMB servers together
        step = every_s * 1_000_000
        ts = list(range(HISTORY_US, END, step))
        case.queries(ts, ["example.org"] * len(ts), 15)
        for s in range(3):
            case.syns([t + 200_000 + s for t in ts], [f"198.51.100.{20 + s}"] * len(ts))

    return build


def _smtp_probe(case: Case) -> None:
    ts = list(range(HISTORY_US, END, 10_000_000))
    case.queries(ts, ["smtp.example.net"] * len(ts))


BENIGN: dict[str, Build] = {
    "heavy browsing 60/min": _heavy_browser,
    "NAT gateway of 50 users (a day)": _nat_gateway(50, day=True),
    "NAT gateway of 200 users": _nat_gateway(200, day=False),
    "file-server client": _file_server_client,
    "backup server, 24 hosts": _backup_server(24),
    "backup server, 48 hosts": _backup_server(48),
    "admin dig mx, 2 domains x 5": _admin_dig_mx(2, 5),
    "admin dig mx, 6 domains x 3": _admin_dig_mx(6, 3),
    "monitoring probe MX+SMB every 1 min": _probe(60),
    "monitoring probe MX+SMB every 5 min": _probe(300),
    "monitoring probe smtp A every 10 s": _smtp_probe,
}

"""Hosts for dga-nx tests and the behaviour sweep: a DGA-infected client, and the benign
habits that also draw NXDOMAIN answers (testkit/hoststates.py's Host, slow and obvious).

Each builder returns a :class:`~testkit.hoststates.Host` whose queries and the answers it
received are logged, so the same host serves as synthetic state (``host.state()``) and as
a pcap (``write_pcap``) replayed through the real pipeline.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from wormwatch.model import QTYPE_A, QTYPE_MX, RCODE_NOERROR, RCODE_NXDOMAIN

from testkit import dgagen
from testkit.hoststates import Host, at, spread

DAY = date(2026, 11, 26)


def _ask(host: Host, ts_us: int, name: str, rcode: int, qtype: int = QTYPE_A) -> None:
    """A query and the resolver's answer 20 ms later."""
    host.query(ts_us, name, qtype)
    host.answer(ts_us + 20_000, name, rcode, qtype)


def browse(host: Host, start: float, hours: float, per_hour: int, seed: int = 11) -> Host:
    """Ordinary look-ups of well-known names that resolve."""
    rng = np.random.default_rng(seed)
    n = int(per_hour * hours)
    for i, t in enumerate(spread(at(start), at(start + hours), n, rng).tolist()):
        _ask(host, t, "www." + dgagen.HUMAN_DOMAINS[i % len(dgagen.HUMAN_DOMAINS)], RCODE_NOERROR)
    return host


def dga_client(
    family: str = "conficker-c",
    *,
    addr: str = "192.0.2.150",
    names_per_hour: float = 250.0,
    hours: float = 4.0,
    start: float = 9.0,
    share_resolving: float = 0.0,
    burst_s: float = 0.0,
    seed: int = 1,
) -> Host:
    """A client whose generator asks ``names_per_hour`` names of ``family`` (nearly all
    NXDOMAIN: ``share_resolving`` of them resolve, the controller's live domains). With
    ``burst_s`` > 0 the names of each hour come in one burst of that many seconds."""
    rng = np.random.default_rng(seed)
    n = max(1, round(names_per_hour * hours))
    names = dgagen.FAMILIES[family](DAY, n)
    if burst_s > 0:
        hour_of = np.arange(n) * int(hours) // n if hours >= 1 else np.zeros(n, np.int64)
        offsets = rng.uniform(0, burst_s, n)
        times = np.sort(at(start) + hour_of * 3_600_000_000 + (offsets * 1e6).astype(np.int64))
    else:
        times = spread(at(start), at(start + hours), n, rng)
    host = Host(addr)
    for t, name in zip(times.tolist(), names, strict=True):
        resolves = rng.random() < share_resolving
        _ask(host, t, name, RCODE_NOERROR if resolves else RCODE_NXDOMAIN)
    return host


def browser_startups(addr: str = "192.0.2.160", n_startups: int = 10) -> Host:
    """Chromium's start-up probes (3 random 7-15 letter single labels, NXDOMAIN, also
    expanded with the search domain), ``n_startups`` times a day, and browsing."""
    host = browse(Host(addr), 8.0, 10.0, 120)
    for k in range(n_startups):
        t = at(8 + k)
        for j, label in enumerate(dgagen.browser_probes(k)):
            _ask(host, t + j * 1000, label, RCODE_NXDOMAIN)
            _ask(host, t + j * 1000 + 500, label + ".campus.example", RCODE_NXDOMAIN)
    return host


def search_expansion(addr: str = "192.0.2.161") -> Host:
    """Every name first tried under the search domain (``name.campus.example``,
    NXDOMAIN), then as typed (resolves)."""
    host = Host(addr)
    rng = np.random.default_rng(12)
    for i, t in enumerate(spread(at(8), at(18), 1500, rng).tolist()):
        name = "www." + dgagen.HUMAN_DOMAINS[i % len(dgagen.HUMAN_DOMAINS)]
        _ask(host, t, name + ".campus.example", RCODE_NXDOMAIN)
        _ask(host, t + 30_000, name, RCODE_NOERROR)
    return host


def typing_mistakes(addr: str = "192.0.2.162") -> Host:
    """A person's typing mistakes (NXDOMAIN, a browser retry each) among browsing."""
    host = browse(Host(addr), 8.0, 10.0, 150)
    for i, name in enumerate(dgagen.TYPOS):
        t = at(8.2 + i * 0.4)
        _ask(host, t, name, RCODE_NXDOMAIN)
        _ask(host, t + 1_000_000, "www." + name, RCODE_NXDOMAIN)
    return host


def dead_cloud_name(addr: str = "192.0.2.163") -> Host:
    """A device retrying one dead cloud name every 30 s all day."""
    host = Host(addr)
    for k in range(2880):
        _ask(host, at(k / 120), "telemetry.deadvendor-cloud.com", RCODE_NXDOMAIN)
    return host


def av_lookups(addr: str = "192.0.2.164") -> Host:
    """Anti-virus / reputation look-ups: hashed labels under the vendor's domain, which
    resolve (a few 'unknown file' NXDOMAIN answers too)."""
    host = Host(addr)
    names = dgagen.av_lookups(3000)
    rng = np.random.default_rng(13)
    for i, t in enumerate(spread(at(8), at(18), len(names), rng).tolist()):
        _ask(host, t, names[i], RCODE_NXDOMAIN if i % 10 == 0 else RCODE_NOERROR)
    return host


def dnsbl_mail_server(addr: str = "192.0.2.25", *, spam_senders: bool = False) -> Host:
    """A mail server: DNS blocklist look-ups of connecting addresses (NXDOMAIN = not
    listed); with ``spam_senders``, also MX look-ups of spammers' made-up sender domains
    (NXDOMAIN), which only the allowlist tells from a generator."""
    host = Host(addr)
    rng = np.random.default_rng(14)
    zones = ("zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org")
    spam_domains = dgagen.conficker_c(DAY, 300)
    for i, t in enumerate(spread(at(0), at(24), 6000, rng).tolist()):
        ip = f"{i % 250}.{i // 250 % 250}.2.198"
        _ask(host, t, f"{ip}.{zones[i % 3]}", RCODE_NXDOMAIN)
        if spam_senders and i % 20 == 0:
            _ask(host, t + 5_000, spam_domains[i // 20], RCODE_NXDOMAIN, QTYPE_MX)
    return host


def forwarding_resolver(addr: str = "198.51.100.53") -> Host:
    """A resolver forwarding its clients' queries upstream: it receives every answer,
    including the NXDOMAIN storm of an infected client behind it."""
    host = dga_client(addr=addr, names_per_hour=250.0, hours=4.0)
    return browse(host, 8.0, 10.0, 600)


def ad_blocked_browser(
    addr: str = "192.0.2.165",
    *,
    hours: float = 8.0,
    per_min: float = 10.0,
    blocked: float = 0.2,
    cdn_share: float = 0.1,
    cdn_suffixes: tuple[str, ...] = ("cloudfront.net",),
    seed: int = 15,
) -> Host:
    """A browser behind an ad blocker (Pi-hole / AdGuard style): ``per_min`` queries a
    minute from 08:00, ``blocked`` of them answered NXDOMAIN; of those, ``cdn_share`` are
    random CDN host names (``d1a2b3c4d5e6f7.cloudfront.net``, a new one each time) and the
    rest tracker hosts (``dgagen.TRACKER_DOMAINS``, the first ones called most: weight
    1/rank). The rest resolve (well-known sites and random CDN names alike)."""
    rng = np.random.default_rng(seed)
    n = round(per_min * 60 * hours)
    trackers = dgagen.TRACKER_DOMAINS
    weights = 1.0 / np.arange(1, len(trackers) + 1)
    cdn = iter(dgagen.random_hosts(f"cdn-{seed}", n, cdn_suffixes))
    host = Host(addr)
    for i, t in enumerate(spread(at(8), at(8 + hours), n, rng).tolist()):
        draw = rng.random()
        if draw < blocked * cdn_share:
            _ask(host, t, next(cdn), RCODE_NXDOMAIN)
        elif draw < blocked:
            domain = trackers[int(rng.choice(len(trackers), p=weights / weights.sum()))]
            label = dgagen.TRACKER_HOSTS[int(rng.integers(len(dgagen.TRACKER_HOSTS)))]
            _ask(host, t, f"{label}.{domain}", RCODE_NXDOMAIN)
        elif draw < blocked + 0.1:
            _ask(host, t, next(cdn), RCODE_NOERROR)
        else:
            _ask(
                host, t, "www." + dgagen.HUMAN_DOMAINS[i % len(dgagen.HUMAN_DOMAINS)], RCODE_NOERROR
            )
    return host

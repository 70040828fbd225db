"""Synthetic HostState builder for detector tests: a slow, obvious aggregator.

It follows the column meanings of ``wormwatch.model`` (per-bin counters,
"new" distinct counts per bin, name-prefix counts of length 1..5, a few
sample names) one event at a time, so a test can describe traffic instead
of counters.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from wormwatch.config import DEFAULT_KEYWORDS
from wormwatch.model import (
    C_A,
    C_AAAA,
    C_ANSWERS,
    C_KW,
    C_KW_A,
    C_KW_NAMES_NEW,
    C_MX,
    C_MX_DOM_NEW,
    C_NAMES_NEW,
    C_NX,
    C_NX_DOMS_NEW,
    C_NX_NAMES_NEW,
    C_NX_SCORE,
    C_OTHER,
    C_PTR,
    C_QUERIES,
    C_RCODE_ERR,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_BIN,
    C_SYN_DST_NEW,
    N_COUNTERS,
    QTYPE_A,
    QTYPE_AAAA,
    QTYPE_MX,
    QTYPE_PTR,
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    HostState,
)

from testkit import frames
from testkit.pcap import write_frames
from testkit.reference_dganame import score_name

RESOLVER = "198.51.100.53"
DAY_US = int(datetime(2026, 11, 26, tzinfo=UTC).timestamp()) * 1_000_000
_QTYPE_COL = {QTYPE_A: C_A, QTYPE_AAAA: C_AAAA, QTYPE_MX: C_MX, QTYPE_PTR: C_PTR}
_PORT_COL = {135: C_SYN135, 139: C_SYN139, 445: C_SYN445}


def at(hours: float) -> int:
    """Microseconds of packet time ``hours`` after midnight of the test day."""
    return DAY_US + round(hours * 3600 * 1_000_000)


class Host:
    """Collects one host's events and builds its HostState."""

    def __init__(
        self,
        addr: str = "192.0.2.10",
        *,
        bin_s: int = 60,
        keywords: Iterable[str] = DEFAULT_KEYWORDS,
        n_samples: int = 5,
    ) -> None:
        self.addr = addr
        self.bin_us = bin_s * 1_000_000
        self.keywords = tuple(k.encode() for k in keywords)
        self.n_samples = n_samples
        self.rows: dict[int, np.ndarray] = {}
        self.bin_dsts: dict[int, set[str]] = {}
        self.names: set[bytes] = set()
        self.mx_names: set[bytes] = set()
        self.dsts: set[str] = set()
        self.prefixes: dict[bytes, int] = {}
        self.samples: list[bytes] = []
        self.mx_samples: list[bytes] = []
        self.first_us: int | None = None
        self.last_us = 0
        # (ts_us, dst, qtype or 0, name or b"", port) per event, for write_pcap
        self.log: list[tuple[int, str, int, bytes, int]] = []
        # (ts_us, name, qtype, rcode) per DNS answer this host received
        self.answer_log: list[tuple[int, bytes, int, int]] = []
        self.nx_names: set[bytes] = set()
        self.nx_domains: set[bytes] = set()
        self.nx_samples: list[bytes] = []

    def _row(self, ts_us: int) -> np.ndarray:
        self.first_us = ts_us if self.first_us is None else min(self.first_us, ts_us)
        self.last_us = max(self.last_us, ts_us)
        b = ts_us // self.bin_us
        if b not in self.rows:
            self.rows[b] = np.zeros(N_COUNTERS, np.int64)
        return self.rows[b]

    def query(self, ts_us: int, name: bytes | str, qtype: int = QTYPE_A) -> Host:
        name = name.encode() if isinstance(name, str) else name
        self.log.append((ts_us, RESOLVER, qtype, name, 53))
        row = self._row(ts_us)
        row[C_QUERIES] += 1
        row[_QTYPE_COL.get(qtype, C_OTHER)] += 1
        first_label = name.split(b".")[0]
        keyword = any(first_label.startswith(k) for k in self.keywords)
        if keyword:
            row[C_KW] += 1
            row[C_KW_A] += qtype == QTYPE_A
        if name not in self.names:
            self.names.add(name)
            row[C_NAMES_NEW] += 1
            row[C_KW_NAMES_NEW] += keyword
            if len(self.samples) < self.n_samples:
                self.samples.append(name)
        if qtype == QTYPE_MX and name not in self.mx_names:
            self.mx_names.add(name)
            row[C_MX_DOM_NEW] += 1
            if len(self.mx_samples) < self.n_samples:
                self.mx_samples.append(name)
        for length in range(1, 6):
            if len(name) >= length:
                p = name[:length]
                self.prefixes[p] = self.prefixes.get(p, 0) + 1
        return self

    def answer(
        self, ts_us: int, name: bytes | str, rcode: int = RCODE_NOERROR, qtype: int = QTYPE_A
    ) -> Host:
        """A DNS answer the resolver sends this host (the dga-nx counters)."""
        name = name.encode() if isinstance(name, str) else name
        self.answer_log.append((ts_us, name, qtype, rcode))
        row = self._row(ts_us)
        row[C_ANSWERS] += 1
        if rcode != RCODE_NXDOMAIN:
            row[C_RCODE_ERR] += rcode != RCODE_NOERROR
            return self
        row[C_NX] += 1
        if qtype == QTYPE_PTR or not name:
            return self
        # dga-nx reads registrable domains by the PSL's ICANN section alone
        score, reg_start, _, is_listed = score_name(name.lower().decode("latin-1"), False)
        if not is_listed:
            return self
        if name not in self.nx_names:
            self.nx_names.add(name)
            row[C_NX_NAMES_NEW] += 1
        domain = name.lower()[reg_start:]
        if domain not in self.nx_domains:
            self.nx_domains.add(domain)
            row[C_NX_DOMS_NEW] += 1
            row[C_NX_SCORE] += round(score * 1000)
            if len(self.nx_samples) < self.n_samples:
                self.nx_samples.append(name)
        return self

    def queries(self, ts_us: Iterable[int], names: Iterable[bytes | str], qtype: int = 1) -> Host:
        for t, n in zip(ts_us, names, strict=True):
            self.query(int(t), n, qtype)
        return self

    def syn(self, ts_us: int, dst: str, port: int = 445) -> Host:
        self.log.append((ts_us, dst, 0, b"", port))
        row = self._row(ts_us)
        row[_PORT_COL[port]] += 1
        b = ts_us // self.bin_us
        seen = self.bin_dsts.setdefault(b, set())
        if dst not in seen:
            seen.add(dst)
            row[C_SYN_DST_BIN] += 1
        if dst not in self.dsts:
            self.dsts.add(dst)
            row[C_SYN_DST_NEW] += 1
        return self

    def state(self) -> HostState:
        bins = np.array(sorted(self.rows), np.int64)
        series = np.array([self.rows[b] for b in bins.tolist()], np.int64).reshape(-1, N_COUNTERS)
        return HostState(
            addr=self.addr,
            first_seen_us=self.first_us if self.first_us is not None else 0,
            last_seen_us=self.last_us,
            totals=series.sum(axis=0),
            bins=bins,
            series=series,
            sample_names=list(self.samples),
            sample_mx_names=list(self.mx_samples),
            prefixes=dict(self.prefixes),
            sample_nx_names=list(self.nx_samples),
        )


def spread(start_us: int, end_us: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sorted random packet times in ``[start_us, end_us)``."""
    return np.sort(rng.integers(start_us, end_us, n))


STORM_PREFIXES = ("mail.", "mx1.", "smtp.", "mail1.", "relay.", "mailhost.", "mx0.", "mx.", "ns1.")


def study_host(addr: str = "192.0.2.66", seed: int = 1) -> tuple[Host, dict[str, int]]:
    """The study's infected host: 32,721 A and 7 PTR queries, 12:00-17:30.

    The keyword A-query rate swings between ~40 and ~160 a minute (a machine
    rate that follows the worm's work list); 99% of the A names begin with a
    mail-server keyword, the rest are ordinary web names.
    """
    rng = np.random.default_rng(seed)
    n_a, n_ptr = 32_721, 7
    minutes = np.arange(330)
    weight = 1.0 + 0.6 * np.sin(minutes / 25.0)
    per_min = rng.multinomial(n_a, weight / weight.sum())
    ts = np.concatenate(
        [
            at(12 + m / 60) + np.sort(rng.integers(0, 60_000_000, k))
            for m, k in zip(minutes.tolist(), per_min.tolist(), strict=True)
        ]
    )
    domains = [f"example{i}.com" for i in range(3000)]
    is_kw = rng.random(n_a) < 0.99
    pre = rng.integers(0, len(STORM_PREFIXES), n_a)
    dom = rng.integers(0, len(domains), n_a)
    names = [
        (STORM_PREFIXES[p] if k else "www.") + domains[d]
        for k, p, d in zip(is_kw.tolist(), pre.tolist(), dom.tolist(), strict=True)
    ]
    host = Host(addr).queries(ts.tolist(), names)
    for i, t in enumerate(spread(at(12), at(17.5), n_ptr, rng).tolist()):
        host.query(t, f"{i}.2.0.192.in-addr.arpa", QTYPE_PTR)
    return host, {"A": n_a, "PTR": n_ptr, "keyword_A": int(is_kw.sum())}


# --- scenario hosts --------------------------------------------------------------


def scanner(
    n_targets: int,
    *,
    addr: str = "192.0.2.44",
    start: float = 10.0,
    hours: float = 0.2,
    seed: int = 3,
) -> Host:
    """SYNs to 445 (one retransmission each) and 139 towards ``n_targets`` hosts."""
    rng = np.random.default_rng(seed)
    host = Host(addr)
    for i, t in enumerate(spread(at(start), at(start + hours), n_targets, rng).tolist()):
        dst = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        host.syn(t, dst, 445).syn(t + 3_000_000, dst, 445).syn(t + 50, dst, 139)
    return host


def mass_mailer(
    n_domains: int, *, addr: str = "192.0.2.55", start: float = 9.0, hours: float = 1.0
) -> Host:
    """MX queries for ``n_domains`` different domains."""
    host = Host(addr)
    times = spread(at(start), at(start + hours), n_domains, np.random.default_rng(5))
    for i, t in enumerate(times.tolist()):
        host.query(t, f"victim{i}.example", QTYPE_MX)
    return host


def bot(phase_shift_bins: int, *, addr: str = "192.0.2.77", n_bursts: int = 8) -> Host:
    """MX bursts and SYN bursts every 30 minutes from 10:00; the SYN bursts
    start ``phase_shift_bins`` minutes after the MX bursts. Burst sizes vary
    (25..55 MX queries, a few more SYNs, some spilling into the next bin)."""
    host = Host(addr)
    k = 0
    for b in range(n_bursts):
        start = at(10) + b * 1_800_000_000
        n = 25 + 10 * (b % 4)
        for j in range(n):
            host.query(start + j * 1_000_000, f"d{k}.example", QTYPE_MX)
            k += 1
        syn_start = start + phase_shift_bins * 60_000_000 + 20_000_000
        for j in range(n + 5):
            host.syn(syn_start + j * 1_000_000, f"10.1.{b}.{j}", 445)
    return host


# --- as a pcap (struct frames, not scapy: the study host is 32k packets) -----------


def frame(src: str, dst: str, qtype: int, name: bytes, port: int, seq: int) -> bytes:
    """One Ethernet frame: a DNS query over UDP (port 53) or a TCP SYN."""
    sport = 1024 + seq % 60000
    if port == 53:
        return frames.query(name, qtype, src=src, dst=dst, ident=seq & 0xFFFF, sport=sport)
    return frames.syn(port, src=src, dst=dst, sport=sport, seq=seq)


def answer_frame(client: str, name: bytes, qtype: int, rcode: int, seq: int) -> bytes:
    """One Ethernet frame: the resolver's DNS answer (QR=1, RD, RA) to ``client``."""
    message = frames.dns(name, qtype, flags=0x8180 | rcode, ident=seq & 0xFFFF)
    datagram = frames.udp(message, sport=53, dport=1024 + seq % 60000)
    return frames.ether(frames.ipv4(datagram, src=RESOLVER, dst=client))


def write_pcap(path: Path, hosts: Iterable[Host]) -> Path:
    """All events of ``hosts`` (and the answers they received) as one pcap, in time order."""
    hosts = list(hosts)
    events = sorted(
        [(ev[0], i, host.addr, ev) for host in hosts for i, ev in enumerate(host.log)]
        + [(a[0], -1 - i, host.addr, a) for host in hosts for i, a in enumerate(host.answer_log)]
    )
    return write_frames(
        path,
        (
            (ts_us, answer_frame(addr, *ev[1:], seq) if i < 0 else frame(addr, *ev[1:], seq))
            for seq, (ts_us, i, addr, ev) in enumerate(events)
        ),
    )


# (ts_us, src, dst, qtype or 0, name or b"", port): one DNS query (port 53) or SYN
Event = tuple[int, str, str, int, bytes, int]
# (ts_us, client, name, qtype, rcode): one DNS answer the resolver sends ``client``
Answer = tuple[int, str, bytes, int, int]


def write_events(path: Path, events: Iterable[Event], answers: Iterable[Answer] = ()) -> Path:
    """``events`` and ``answers`` as one pcap of Ethernet frames, in time order (at the same
    time, an event before an answer)."""
    sent, received = list(events), list(answers)
    merged = sorted(
        [(e[0], 0, i) for i, e in enumerate(sent)] + [(a[0], 1, i) for i, a in enumerate(received)]
    )
    return write_frames(
        path,
        (
            (ts_us, answer_frame(*received[i][1:], seq) if is_answer else frame(*sent[i][1:], seq))
            for seq, (ts_us, is_answer, i) in enumerate(merged)
        ),
    )

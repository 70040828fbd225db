"""Shared types of the data flow: what each stage hands the next.

source -> :class:`Batch` -> decode -> :class:`Events` -> classify -> keyword flags
-> aggregate -> per-host state -> detect -> verdicts -> present.

Everything here is plain data (numpy arrays and dataclasses); no stage logic.
Addresses travel as two uint64 words (``hi``, ``lo``) of a 128-bit IPv6 address;
IPv4 addresses are IPv4-mapped (``::ffff:a.b.c.d``: ``hi == 0``,
``lo == 0x0000_FFFF_0000_0000 | ipv4``), so one key type serves both families.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
U16 = npt.NDArray[np.uint16]
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
BOOL = npt.NDArray[np.bool_]

# --- link types (LINKTYPE_* values of the pcap/pcapng file formats) ---------
LINKTYPE_NULL: Final = 0  # BSD loopback: 4-byte address family, writer's byte order
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW_OLD: Final = 12  # DLT_RAW as some writers store it
LINKTYPE_RAW_BSD: Final = 14  # DLT_RAW of OpenBSD and BSD/OS, as their writers store it
LINKTYPE_RAW: Final = 101  # raw IPv4 or IPv6, by the version nibble
LINKTYPE_LOOP: Final = 108  # OpenBSD loopback: family in network byte order
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276

# --- per-packet decode status ----------------------------------------------
ST_OK: Final = 0  # decoded, produced at least one event
ST_IGNORED: Final = 1  # decoded fine, nothing relevant (not a DNS query or SYN to 135/139/445)
ST_TRUNCATED: Final = 2  # the capture holds fewer bytes than the headers say
ST_MALFORMED: Final = 3  # impossible header values, bad DNS name, ...
ST_UNSUPPORTED: Final = 4  # link type we do not decode
ST_FRAGMENT: Final = 5  # an IP fragment that is not the first one
N_STATUS: Final = 6
STATUS_NAMES: Final = ("ok", "ignored", "truncated", "malformed", "unsupported", "fragment")

# --- event kinds --------------------------------------------------------------
KIND_DNS: Final = 1  # a DNS query (QR=0, opcode QUERY) to port 53
KIND_SYN: Final = 2  # a TCP SYN without ACK to 135, 139 or 445
KIND_ANSWER: Final = 3  # a DNS answer (QR=1, opcode QUERY) from port 53, for its destination

# --- DNS response codes (RFC 1035 4.1.1) ----------------------------------------------
RCODE_NOERROR: Final = 0
RCODE_NXDOMAIN: Final = 3  # the name does not exist

# --- DNS qtypes we count apart (RFC 1035, RFC 3596) ---------------------------
QTYPE_A: Final = 1
QTYPE_NS: Final = 2
QTYPE_PTR: Final = 12
QTYPE_MX: Final = 15
QTYPE_AAAA: Final = 28

SYN_PORTS: Final = (135, 139, 445)
NAME_MAX: Final = 255  # RFC 1035 2.3.4: a name is at most 255 octets on the wire
NAME_SLOT: Final = 256  # bytes per name slot in Events.names

V4_MAPPED_PREFIX: Final = 0x0000_FFFF_0000_0000

# The "schema" number of every JSON-lines record (wormwatch.records, and the event
# log's kernel): bumped on any incompatible change (DESIGN.md), never for added keys.
SCHEMA: Final = 1


@dataclass(slots=True)
class Batch:
    """A run of captured packets in one buffer; packet ``i`` is
    ``data[offsets[i] : offsets[i] + caplens[i]]``.

    Made by a source without copying packet bytes where it can (a memory-mapped
    file, a chunk of standard input, pcapy-ng's ``next_batch`` buffer).
    ``linktypes`` is per packet (a pcapng file may mix interfaces); ``wirelens``
    is the original length (``caplens`` where the source does not know it).

    A replay may leave out the packets its walker found irrelevant (ones the decoder
    would surely call ``ignored``): ``n_skipped`` of them, with ``skipped_bytes``
    captured bytes, came before or among these ``n`` packets and count as ignored.
    """

    data: U8
    ts_us: I64
    offsets: I64
    caplens: I32
    wirelens: I32
    linktypes: I32
    n_skipped: int = 0
    skipped_bytes: int = 0

    @property
    def n(self) -> int:
        return int(self.ts_us.shape[0])

    @staticmethod
    def empty() -> Batch:
        z64 = np.zeros(0, np.int64)
        z32 = np.zeros(0, np.int32)
        return Batch(np.zeros(0, np.uint8), z64, z64.copy(), z32, z32.copy(), z32.copy())


@dataclass(slots=True)
class Records:
    """The per-packet arrays a source fills before it hands them on as a :class:`Batch`:
    timestamp, offset in the buffer, captured and original length, link type."""

    ts_us: I64
    offsets: I64
    caplens: I32
    wirelens: I32
    linktypes: I32

    @staticmethod
    def allocate(shape: int | tuple[int, int]) -> Records:
        """Uninitialised arrays of ``shape`` (a row per file for a merge's runs)."""
        i64, i32 = np.int64, np.int32
        return Records(
            np.empty(shape, i64), np.empty(shape, i64), np.empty(shape, i32),
            np.empty(shape, i32), np.empty(shape, i32),
        )  # fmt: skip

    def batch(self, data: U8, n: int, n_skipped: int = 0, skipped_bytes: int = 0) -> Batch:
        """The first ``n`` records as a batch over ``data`` (views, no copy)."""
        return Batch(
            data, self.ts_us[:n], self.offsets[:n], self.caplens[:n], self.wirelens[:n],
            self.linktypes[:n], n_skipped, skipped_bytes,
        )  # fmt: skip


@dataclass(slots=True)
class Events:
    """Columnar events decoded from one batch; row ``i`` is one event.

    Arrays may be longer than ``n`` (buffers reused between batches): only
    ``[:n]`` is valid, and only until the decoder's next call.
    ``names[i, :name_lens[i]]`` is the first question's name, lower-cased
    ASCII letters, labels joined by ``.``, no trailing dot, other bytes as sent
    (escaping is the presenter's job). Empty for SYNs and unparsable names.
    ``qtype`` is 0 for SYNs and for queries whose question could not be read.
    ``sport`` is the UDP/TCP source port; ``status`` the event's packet's decode
    status (``ST_*``: ``ok``, or the first problem met in the packet).
    ``rcode`` is an answer's RCODE (``kind == KIND_ANSWER``; its name and qtype are
    those of its first question, as for a query), 0 for other events.
    """

    n: int
    ts_us: I64
    src_hi: U64
    src_lo: U64
    dst_hi: U64
    dst_lo: U64
    kind: U8
    dport: U16
    qtype: U16
    names: U8  # shape (capacity, NAME_SLOT)
    name_lens: I32
    sport: U16
    status: U8
    rcode: U8

    @staticmethod
    def allocate(capacity: int, n: int = 0) -> Events:
        """Zeroed columns for ``capacity`` events, of which the first ``n`` count."""
        return Events(
            n,
            *(np.zeros((capacity, *shape), dtype) for _, dtype, shape in EVENT_COLUMNS),
        )

    def rows(self, lo: int, hi: int) -> Events:
        """Events ``lo:hi`` as views of these columns (no copy)."""
        return Events(hi - lo, *(getattr(self, name)[lo:hi] for name, _, _ in EVENT_COLUMNS))

    def take(self, idx: I64) -> Events:
        """The events at the row indices ``idx``, copied."""
        return Events(
            int(idx.shape[0]), *(getattr(self, name)[idx] for name, _, _ in EVENT_COLUMNS)
        )

    def owned(self) -> Events:
        """A copy of the ``n`` valid rows that no decoder will overwrite."""
        n = self.n
        return Events(n, *(getattr(self, name)[:n].copy() for name, _, _ in EVENT_COLUMNS))


# The columns of Events, in field order: name, dtype, shape past the first axis.
# Allocating, slicing, copying and splicing events all walk this one list.
EVENT_COLUMNS: Final[tuple[tuple[str, type[np.generic], tuple[int, ...]], ...]] = (
    ("ts_us", np.int64, ()),
    ("src_hi", np.uint64, ()),
    ("src_lo", np.uint64, ()),
    ("dst_hi", np.uint64, ()),
    ("dst_lo", np.uint64, ()),
    ("kind", np.uint8, ()),
    ("dport", np.uint16, ()),
    ("qtype", np.uint16, ()),
    ("names", np.uint8, (NAME_SLOT,)),
    ("name_lens", np.int32, ()),
    ("sport", np.uint16, ()),
    ("status", np.uint8, ()),
    ("rcode", np.uint8, ()),
)


@dataclass(slots=True)
class DecodeStats:
    """Running totals of the decode stage."""

    packets: int = 0
    bytes: int = 0
    status: list[int] = field(default_factory=lambda: [0] * N_STATUS)
    dns_queries: int = 0
    syns: int = 0
    dns_answers: int = 0
    # IP fragment reassembly (wormwatch.reassemble.Reassembler.counters)
    fragments: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        out = {"packets": self.packets, "bytes": self.bytes}
        out.update({name: self.status[i] for i, name in enumerate(STATUS_NAMES)})
        out["dns_queries"] = self.dns_queries
        out["syns"] = self.syns
        out["dns_answers"] = self.dns_answers
        out.update({f"frag_{name}": count for name, count in self.fragments.items()})
        return out


def addr_words(text: str) -> tuple[int, int]:
    """``"192.0.2.1"`` or ``"2001:db8::1"`` -> (hi, lo) as used in events."""
    ip = ipaddress.ip_address(text)
    if ip.version == 4:
        return 0, V4_MAPPED_PREFIX | int(ip)
    value = int(ip)
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF


def addr_text(hi: int, lo: int) -> str:
    """Inverse of :func:`addr_words`: IPv4-mapped addresses print as IPv4."""
    hi = int(hi)
    lo = int(lo)
    if hi == 0 and (lo >> 32) == 0xFFFF:
        # dotted quad by hand: ipaddress costs ~15 us per call, and a summary
        # of 100,000 hosts formats every one of them
        return f"{(lo >> 24) & 255}.{(lo >> 16) & 255}.{(lo >> 8) & 255}.{lo & 255}"
    if hi == 0 and (lo >> 32) == 0:
        # inet_ntop writes these as ::a.b.c.d, ipaddress (and so every record) does not
        return str(ipaddress.IPv6Address(lo))
    # the libc's RFC 5952 text, as ipaddress writes it, at ~1/20 of its cost
    return socket.inet_ntop(socket.AF_INET6, ((hi << 64) | lo).to_bytes(16, "big"))


# --- per-host, per-time-bin counters (columns of HostState.series) -----------
# Columns 0 .. C_RCODE_ERR add up across sensors (the delta API's); the rest come from sets.
C_QUERIES: Final = 0  # DNS query events, all qtypes
C_A: Final = 1
C_AAAA: Final = 2
C_MX: Final = 3
C_PTR: Final = 4
C_OTHER: Final = 5  # any other qtype, including 0 (no readable question)
C_KW: Final = 6  # queries whose name the keyword classifier marked
C_KW_A: Final = 7  # keyword queries of qtype A
C_SYN135: Final = 8
C_SYN139: Final = 9
C_SYN445: Final = 10
# DNS answers this host received (it is their destination), for dga-nx
C_ANSWERS: Final = 11  # answers, any RCODE
C_NX: Final = 12  # NXDOMAIN answers
C_RCODE_ERR: Final = 13  # answers with another error RCODE (SERVFAIL, REFUSED, ...)
C_SYN_DST_BIN: Final = 14  # distinct SYN destinations within this bin
C_SYN_DST_NEW: Final = 15  # SYN destinations never seen from this host before this bin
C_MX_DOM_NEW: Final = 16  # MX names never asked by this host before this bin
C_NAMES_NEW: Final = 17  # query names never asked by this host before this bin
# NXDOMAIN answers for names under a listed public suffix (not reverse look-ups, not
# local or search-domain names), by name and by registrable domain never seen by this
# host in an NXDOMAIN answer before this bin; and the sum of those new domains' name
# scores in thousandths (mean = C_NX_SCORE / C_NX_DOMS_NEW / 1000)
C_NX_NAMES_NEW: Final = 18
C_NX_DOMS_NEW: Final = 19
C_NX_SCORE: Final = 20
C_KW_NAMES_NEW: Final = 21  # keyword query names never asked by this host before this bin
N_COUNTERS: Final = 22
COUNTER_NAMES: Final = (
    "queries", "A", "AAAA", "MX", "PTR", "other", "keyword", "keyword_A", "syn135", "syn139",
    "syn445", "answers", "nxdomain", "rcode_error", "syn_dst_bin", "syn_dst_new",
    "mx_domains_new", "names_new", "nx_names_new", "nx_domains_new", "nx_score_milli",
    "keyword_names_new",
)  # fmt: skip


@dataclass(slots=True)
class HostState:
    """Everything the aggregate stage knows about one source host.

    ``totals`` are counters since first seen (columns as in ``series``; for the
    ``*_NEW`` columns the total is the exact distinct count). ``bins`` are bin
    indices (``ts_us // bin_us``), ascending, of the bins kept in the window;
    ``series[i]`` are that bin's counters (int32, as the aggregate stores them: a
    read-out of 100,000 hosts then holds half the bytes). ``prefixes`` maps a name
    prefix of length 1..5 to how many of the host's queries start with it.
    """

    addr: str
    first_seen_us: int
    last_seen_us: int
    totals: I64
    bins: I64
    series: I32 | I64
    sample_names: list[bytes] = field(default_factory=list)
    sample_mx_names: list[bytes] = field(default_factory=list)
    prefixes: dict[bytes, int] = field(default_factory=dict)
    # the first few names of new NXDOMAIN registrable domains (dga-nx evidence)
    sample_nx_names: list[bytes] = field(default_factory=list)


Explain = Callable[[dict[bytes, int]], dict[str, object]]  # name prefixes -> evidence


@dataclass(slots=True)
class Verdict:
    """The detect stage's judgement of one host: a 0-100 score, the signal
    names that fired (``keyword-storm``, ``mx-client``, ``smb-scan``,
    ``bot-sync``) and per-signal evidence (JSON-serialisable).

    ``sync_r`` is the host's MX/SYN correlation as the detector measured it
    (bot-sync's r when it fired, else the same rule over the window's series),
    for every host whose counts could make bot-sync fire; None otherwise.
    Presenters read it; nobody downstream computes it again. It is not part
    of any JSON record (those carry the evidence). ``explain`` builds this
    evaluation's evidence, from the host's name-prefix counts, when an alert or
    a presenter needs it (:meth:`explained`; most verdicts are not news).
    """

    score: float = 0.0
    verdicts: tuple[str, ...] = ()
    evidence: dict[str, object] = field(default_factory=dict)
    sync_r: float | None = None
    explain: Explain | None = field(default=None, compare=False, repr=False)

    def explained(self, prefixes: dict[bytes, int]) -> Verdict:
        """This verdict with its evidence built (itself when it has it)."""
        if self.explain is None:
            return self
        return Verdict(self.score, self.verdicts, self.explain(prefixes), self.sync_r)


@dataclass(slots=True)
class HostView:
    """A host as the presenters see it."""

    state: HostState
    verdict: Verdict


@dataclass(slots=True)
class Snapshot:
    """One frame of what the sensor knows, for the live table and summaries. Rates
    are per second of packet time over the last refresh interval; ``idle_s`` is
    packet-time seconds (wall seconds, live) since the last relevant event, None
    before anything arrived."""

    source: str
    is_live: bool
    start_us: int
    now_us: int
    wall_elapsed_s: float
    packets_per_s: float
    dns_per_s: float
    syn_per_s: float
    hosts_tracked: int
    hosts_dropped: int
    decode: dict[str, int]
    kernel_dropped: int | None
    idle_s: float | None
    network_sync_r: float | None
    hosts: list[HostView]
    bin_s: int = 60
    is_finished: bool = False
    events_untracked: int = 0  # events of new hosts the full host table refused
    keys_refused: int = 0  # distinct-set keys a full table refused (AggregateCounts)
    keys_dropped: int = 0  # and dropped as last seen before the window
    # live capture: what the kernel received, and what the interface dropped
    kernel_received: int | None = None
    interface_dropped: int | None = None
    # hosts holding each verdict now, over every host judged (not only ``hosts``)
    flagged: dict[str, int] = field(default_factory=dict)
    # central: one row per sensor for the sensors panel (wormwatch.cluster.top.sensor_rows)
    sensors: list[dict[str, Any]] = field(default_factory=list)
    # live filter, text -> (best matches, how many): wormwatch.finder; None: ``hosts`` only
    find_hosts: Callable[[str], tuple[list[HostView], int]] | None = None

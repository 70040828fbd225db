"""The mergeable delta of the aggregate: one sensor's per-host state of one
bin of packet time, for the hosts of one shard, as compact columns.

In: a closed bin of a sensor's aggregate (:mod:`wormwatch.aggregate.export` builds it).
Out: bytes on the wire (:func:`encode`) and back (:func:`decode`), merged
into another aggregate by :mod:`wormwatch.aggregate.merge`.

What a delta carries, per host of the shard seen in the bin:

* ``hi``/``lo`` the address words, ``first_us``/``last_us`` its first and last
  event in the bin, ``counts`` the additive counters (columns 0 to
  ``N_ADDITIVE - 1`` of :mod:`wormwatch.model`: queries by type, keyword
  queries, SYNs by port, DNS answers received by RCODE kind);
* ``targets``: every distinct SYN destination of the host in the bin;
* ``names``: every distinct name hash (salt 0), MX name hash (salt 1),
  NXDOMAIN name hash (salt 2, the names dga-nx counts) and keyword name hash
  (salt 4, the names keyword-storm counts);
* ``domains``: every distinct registrable domain of those NXDOMAIN names (its
  hash, as the aggregate's salt-3 key) with its name score in thousandths (the
  score is the registrable label's, so one per domain);
* ``prefixes``: name-prefix keys with their counts;
* ``samples``: up to the sample count of names the sensor had not sent for
  the host lately (within the window: ``wormwatch.aggregate.sent``; salt 0
  names, 1 MX names, 2 NXDOMAIN names of new domains),
  with the packet time it first saw each and, for salt 2, where the name's
  registrable domain starts (samples of one domain are one sample).

Counts add and sets union, so the counters that depend on what a host did
before (new targets, new names, new NXDOMAIN names and domains with their
scores) are derived again by the merging side. A delta's identity
(:attr:`Delta.key`) is where it comes from, ``(sensor, shard, bin, part)``,
and a digest of what it carries: a re-sent or re-read delta has the same
identity and is merged only once, while a sensor restarted within a bin, whose
parts are numbered from 0 again, sends that bin's later events under other
identities (its deltas carry other data). Neither the digest nor any run
state is on the wire: both sides compute it from the columns.

Versions: ``WWD2`` added the ``domains`` table and the samples' domain
offsets (columns after the ``WWD1`` ones). A ``WWD1`` delta still decodes:
no domains table (its NXDOMAIN domains, if any, came as salt-3 names, merged
without their scores) and no offsets. ``WWD3`` has ``WWD2``'s columns and adds
the salt-4 keyword names; a ``WWD1`` or ``WWD2`` delta has none
(:attr:`Delta.keyword_names` is False), and its new names count as new
keyword names too, as every new name counted for keyword-storm before.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from wormwatch.errors import WormwatchError
from wormwatch.model import C_RCODE_ERR, I64, U64

# counters 0..C_RCODE_ERR add up (queries, SYNs, DNS answers); the rest are derived
# from sets (names, targets, NXDOMAIN names and domains with their scores)
N_ADDITIVE = C_RCODE_ERR + 1
DEFAULT_SHARDS = 16

_MAGIC = b"WWD3"
_MAGIC_V2 = b"WWD2"  # the same columns, without the salt-4 keyword names
_MAGIC_V1 = b"WWD1"
# magic, name length, shard, bin, part, bin_s, first and last packet time of the bin
_HEAD = struct.Struct("<4sHIqIqqq")
# what the head carries besides where the delta comes from: bin_s, first and last time
_SPAN = struct.Struct("<qqq")
U32 = npt.NDArray[np.uint32]
U16 = npt.NDArray[np.uint16]
U8 = npt.NDArray[np.uint8]


def _none(dtype: type[np.generic]) -> np.ndarray:
    return np.zeros(0, dtype)


class DeltaError(WormwatchError):
    """A delta that cannot be decoded (truncated, or not a delta)."""


@dataclass(frozen=True, slots=True)
class DeltaId:
    """Where a delta comes from. One sensor run never gives two deltas one
    id; a restarted sensor numbers a bin's parts from 0 again, so equal ids
    carry equal data only together with equal digests (:attr:`Delta.key`)."""

    sensor: str
    shard: int
    bin: int
    part: int


# a delta's identity: where it comes from, and the digest of what it carries
DeltaKey = tuple[DeltaId, int]


@dataclass(slots=True)
class Delta:
    """One (sensor, shard, bin, part) of per-host state; see the module doc."""

    ident: DeltaId
    bin_s: int
    # packet time of the sensor's first and last event in the bin (any host,
    # any shard): merged packet time moves as one process's would
    seen_first_us: int
    seen_last_us: int
    hi: U64
    lo: U64
    first_us: I64
    last_us: I64
    counts: npt.NDArray[np.int32]  # (n, N_ADDITIVE)
    target_host: U32
    target_hi: U64
    target_lo: U64
    name_host: U32
    name_hash: U64
    name_salt: U8
    prefix_host: U32
    prefix_key: U64
    prefix_count: I64
    sample_host: U32
    sample_salt: U8
    sample_us: I64
    sample_lens: U16
    sample_bytes: U8
    # WWD2: distinct NXDOMAIN registrable domains with their name scores
    domain_host: U32 = field(default_factory=lambda: _none(np.uint32))
    domain_hash: U64 = field(default_factory=lambda: _none(np.uint64))
    domain_score: U16 = field(default_factory=lambda: _none(np.uint16))
    # WWD2: per sample, where its registrable domain starts (salt 2; else 0)
    sample_reg: U8 = field(default_factory=lambda: _none(np.uint8))
    # WWD3: the names carry the keyword names (salt 4); False for older deltas
    keyword_names: bool = True

    def __post_init__(self) -> None:
        n = int(self.sample_host.shape[0])
        if self.sample_reg.shape[0] == 0 and n:
            self.sample_reg = np.zeros(n, np.uint8)

    @property
    def n_hosts(self) -> int:
        return int(self.hi.shape[0])

    def nbytes(self) -> int:
        """Its encoded size, without encoding it."""
        head = _HEAD.size + len(self.ident.sensor.encode()) + _COUNT.size * len(_COLUMNS)
        return head + sum(int(getattr(self, col).nbytes) for col, _dtype, _width in _COLUMNS)

    def digest(self) -> int:
        """64 bits of SHA-256 over what the delta carries, as encoded (bin width,
        packet-time span, every column): equal for copies, on the sending and
        the receiving side alike, whatever the delta's wire version."""
        h = hashlib.sha256(_SPAN.pack(self.bin_s, self.seen_first_us, self.seen_last_us))
        for count, arr in _wire_columns(self):
            h.update(count)
            h.update(arr.data)
        return int.from_bytes(h.digest()[:8], "little")

    @property
    def key(self) -> DeltaKey:
        """Its identity: a merge applies each once."""
        return self.ident, self.digest()

    @property
    def msg_id(self) -> str:
        """The ``Nats-Msg-Id`` of the delta: the broker drops a second copy."""
        i = self.ident
        return f"{i.sensor}/{i.shard}/{i.bin}/{i.part}/{self.digest():016x}"

    def sample_names(self) -> list[bytes]:
        """The sample names, in order."""
        ends = np.cumsum(self.sample_lens.astype(np.int64))
        raw = self.sample_bytes.tobytes()
        return [
            raw[e - n : e] for e, n in zip(ends.tolist(), self.sample_lens.tolist(), strict=True)
        ]


# the column arrays in wire order, with their dtypes and row widths
_COLUMNS_V1: tuple[tuple[str, str, int], ...] = (
    ("hi", "<u8", 1),
    ("lo", "<u8", 1),
    ("first_us", "<i8", 1),
    ("last_us", "<i8", 1),
    ("counts", "<i4", N_ADDITIVE),
    ("target_host", "<u4", 1),
    ("target_hi", "<u8", 1),
    ("target_lo", "<u8", 1),
    ("name_host", "<u4", 1),
    ("name_hash", "<u8", 1),
    ("name_salt", "<u1", 1),
    ("prefix_host", "<u4", 1),
    ("prefix_key", "<u8", 1),
    ("prefix_count", "<i8", 1),
    ("sample_host", "<u4", 1),
    ("sample_salt", "<u1", 1),
    ("sample_us", "<i8", 1),
    ("sample_lens", "<u2", 1),
    ("sample_bytes", "<u1", 1),
)
_COLUMNS = (
    *_COLUMNS_V1,
    ("domain_host", "<u4", 1),
    ("domain_hash", "<u8", 1),
    ("domain_score", "<u2", 1),
    ("sample_reg", "<u1", 1),
)
_COUNT = struct.Struct("<I")


def encode(delta: Delta) -> bytes:
    """A small header, then each column as a row count and raw little-endian bytes."""
    name = delta.ident.sensor.encode()
    ident = delta.ident
    head = _HEAD.pack(
        _MAGIC, len(name), ident.shard, ident.bin, ident.part, delta.bin_s,
        delta.seen_first_us, delta.seen_last_us,
    )  # fmt: skip
    parts = [head, name]
    for count, arr in _wire_columns(delta):
        parts.append(count)
        parts.append(arr.tobytes())
    return b"".join(parts)


def _wire_columns(delta: Delta) -> list[tuple[bytes, np.ndarray]]:
    """Each column as on the wire: its packed row count, its little-endian array."""
    out = []
    for col, dtype, _width in _COLUMNS:
        arr = np.ascontiguousarray(getattr(delta, col), dtype=dtype)
        out.append((_COUNT.pack(arr.shape[0]), arr))
    return out


def is_sensor_name(name: str) -> bool:
    """Whether ``name`` is a sensor name: 1-64 ASCII letters, digits, '-' and '_'
    (it becomes part of NATS subjects, and is shown and written wherever a host's
    sensors are)."""
    return 0 < len(name) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)


def decode(data: bytes) -> Delta:
    """The delta encoded in ``data``; :class:`DeltaError` if it is not one."""
    if len(data) < _HEAD.size or data[:4] not in (_MAGIC, _MAGIC_V2, _MAGIC_V1):
        raise DeltaError("not a wormwatch delta (bad magic)")
    columns = _COLUMNS_V1 if data[:4] == _MAGIC_V1 else _COLUMNS
    _magic, name_len, shard, bin_, part, bin_s, first_us, last_us = _HEAD.unpack_from(data)
    off = _HEAD.size + name_len
    try:
        sensor = data[_HEAD.size : off].decode()
    except UnicodeDecodeError:
        raise DeltaError("delta sensor name is not UTF-8") from None
    if not is_sensor_name(sensor):
        raise DeltaError("delta sensor name is not 1-64 ASCII letters, digits, '-' or '_'")
    cols: dict[str, np.ndarray] = {}
    # one writable copy: the kernels compile one signature, for writable arrays
    buf = bytearray(data)
    for col, dtype, width in columns:
        if off + _COUNT.size > len(data):
            raise DeltaError(f"delta truncated before column {col}")
        (rows,) = _COUNT.unpack_from(data, off)
        off += _COUNT.size
        size = rows * width * np.dtype(dtype).itemsize
        if off + size > len(data):
            raise DeltaError(f"delta truncated in column {col}")
        arr = np.frombuffer(buf, dtype=dtype, count=rows * width, offset=off)
        cols[col] = arr.reshape(rows, width) if width > 1 else arr
        off += size
    if off != len(data):
        raise DeltaError("delta has trailing bytes")
    ident = DeltaId(sensor, shard, bin_, part)
    delta = Delta(ident, bin_s, first_us, last_us, **cols, keyword_names=data[:4] == _MAGIC)
    _check(delta)
    return delta


def _check(d: Delta) -> None:
    """A bin of packet time (packet time is never before the epoch), every host
    reference in range, every parallel column the same length."""
    if d.bin_s <= 0:
        raise DeltaError(f"delta bins are {d.bin_s} s long")
    if d.ident.bin < 0:
        raise DeltaError(f"delta bin {d.ident.bin} is before the epoch")
    n = d.n_hosts
    groups = (
        (d.hi, d.first_us, d.last_us, d.counts),
        (d.target_host, d.target_hi, d.target_lo),
        (d.name_host, d.name_hash, d.name_salt),
        (d.prefix_host, d.prefix_key, d.prefix_count),
        (d.sample_host, d.sample_salt, d.sample_us, d.sample_lens, d.sample_reg),
        (d.domain_host, d.domain_hash, d.domain_score),
    )
    if d.lo.shape[0] != n or any(len({a.shape[0] for a in g}) != 1 for g in groups):
        raise DeltaError("delta columns of one table differ in length")
    for refs in (d.target_host, d.name_host, d.prefix_host, d.sample_host, d.domain_host):
        if refs.shape[0] and int(refs.max()) >= n:
            raise DeltaError("delta refers to a host it does not carry")
    if int(d.sample_lens.astype(np.int64).sum()) != d.sample_bytes.shape[0]:
        raise DeltaError("delta sample names do not add up")
    if (d.sample_reg.astype(np.int64) > d.sample_lens.astype(np.int64)).any():
        raise DeltaError("delta sample domain starts past its name")


_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_K3 = np.uint64(0x94D049BB133111EB)


def shard_of(hi: U64, lo: U64, n_shards: int) -> I64:
    """The shard of each address: a fixed hash of it modulo ``n_shards``.

    The same on every sensor and every run (splitmix64's finalizer), so all
    deltas of one host reach the one central process that owns its shard.
    """
    hi, lo = np.asarray(hi, np.uint64), np.asarray(lo, np.uint64)
    with np.errstate(over="ignore"):
        x = (hi * _K1) ^ lo
        x = (x ^ (x >> np.uint64(30))) * _K2
        x = (x ^ (x >> np.uint64(27))) * _K3
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(n_shards)).astype(np.int64)

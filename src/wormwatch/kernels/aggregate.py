"""Aggregate kernels: open-addressing hash tables and per-host counters.

In: event columns of one batch (already decoded and classified) and the
state arrays owned by :mod:`wormwatch.aggregate`. Out: updated state arrays.

One table kernel serves every keyed set in the aggregate stage. A table is
four parallel arrays (``t_a`` int64, ``t_b`` and ``t_c`` uint64 keys, ``t_v``
int64 value); ``t_a == -1`` marks an empty slot; capacity is a power of two.
The value means, by mode:

* ``MODE_ID``: a dense id handed out in insertion order (host index, row).
* ``MODE_TAG``: the last tag seen (a bin index); out = 2 new key, 1 tag
  changed, 0 same tag.
* ``MODE_COUNT``: how many times the key was seen; out = 1 on a new key.

Each kernel walks all selected events of the batch; no per-event helper
calls with array arguments (numba's reference counting would dominate).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from wormwatch.model import (
    C_A,
    C_AAAA,
    C_ANSWERS,
    C_KW,
    C_KW_A,
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
    KIND_DNS,
    KIND_SYN,
    QTYPE_A,
    QTYPE_AAAA,
    QTYPE_MX,
    QTYPE_PTR,
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
)

MODE_ID = 0
MODE_TAG = 1
MODE_COUNT = 2
REMAP_NONE = 0
REMAP_VALUE = 1
REMAP_KEY = 2


@njit(cache=True, nogil=True, inline="always")
def _slot(a: int, b: np.uint64, c: np.uint64, mask: np.uint64) -> np.uint64:
    """Home slot of key (a, b, c): splitmix64 finalizer over the mixed words.

    Scalars only, so calling it per event costs no reference counting.
    """
    x = np.uint64(a) * np.uint64(0x9E3779B97F4A7C15) ^ b ^ (c * np.uint64(0xC2B2AE3D27D4EB4F))
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (x ^ (x >> np.uint64(31))) & mask


# longer than 60 lines: one probe loop for the count, id and tag modes (three copies
# of the loop would be the alternative)
@njit(cache=True, nogil=True)
def table_upsert(
    t_a: np.ndarray,
    t_b: np.ndarray,
    t_c: np.ndarray,
    t_v: np.ndarray,
    used: np.ndarray,
    max_used: int,
    keys_a: np.ndarray,
    keys_b: np.ndarray,
    keys_c: np.ndarray,
    sel: np.ndarray,
    tags: np.ndarray,
    n: int,
    mode: int | np.int64,
    out: np.ndarray,
) -> int:
    """Find or insert ``(keys_a[i], keys_b[i], keys_c[i])`` for selected events.

    ``used[0]`` counts occupied slots. A key that is new when ``used[0]``
    reached ``max_used`` is not inserted: out is -1 for it. Returns how many
    keys were refused that way.
    """
    mask = np.uint64(t_a.shape[0] - 1)
    refused = 0
    for i in range(n):
        if not sel[i]:
            out[i] = -1
            continue
        a = keys_a[i]
        b = np.uint64(keys_b[i])
        c = np.uint64(keys_c[i])
        pos = _slot(a, b, c, mask)
        while t_a[pos] != -1 and not (t_a[pos] == a and t_b[pos] == b and t_c[pos] == c):
            pos = (pos + np.uint64(1)) & mask
        if t_a[pos] == -1:
            if used[0] >= max_used:
                out[i] = -1
                refused += 1
                continue
            t_a[pos] = a
            t_b[pos] = b
            t_c[pos] = c
            if mode == MODE_ID:
                t_v[pos] = used[0]
                out[i] = used[0]
            elif mode == MODE_TAG:
                t_v[pos] = tags[i]
                out[i] = 2
            else:
                t_v[pos] = 1
                out[i] = 1
            used[0] += 1
        elif mode == MODE_ID:
            out[i] = t_v[pos]
        elif mode == MODE_TAG:
            if t_v[pos] != tags[i]:
                t_v[pos] = tags[i]
                out[i] = 1
            else:
                out[i] = 0
        else:
            t_v[pos] += 1
            out[i] = 0
    return refused


@njit(cache=True, nogil=True, inline="always")
def hash_names(names: np.ndarray, name_lens: np.ndarray, n: int, out: np.ndarray) -> None:
    """FNV-1a 64 of each name (0 for an empty name)."""
    for i in range(n):
        length = name_lens[i]
        if length == 0:
            out[i] = 0
            continue
        h = np.uint64(0xCBF29CE484222325)
        for j in range(length):
            h = (h ^ np.uint64(names[i, j])) * np.uint64(0x100000001B3)
        out[i] = h


@njit(cache=True, nogil=True, inline="always")
def pack_prefixes(
    names: np.ndarray, name_lens: np.ndarray, sel: np.ndarray, n: int, out: np.ndarray
) -> None:
    """Per event, the first ``L = min(5, name length)`` bytes of its name
    packed as uint64: the bytes in the low bytes, L in the top byte (0 when
    the event is not selected or the name is empty).

    One key per query is enough for the prefix statistics of length 1..5:
    the count of a shorter prefix is the sum over the keys that start with it.
    """
    for i in range(n):
        length = min(name_lens[i], 5) if sel[i] else 0
        acc = np.uint64(0)
        for j in range(length):
            acc |= np.uint64(names[i, j]) << np.uint64(8 * j)
        out[i] = acc | (np.uint64(length) << np.uint64(56)) if length else np.uint64(0)


@njit(cache=True, nogil=True)
def touch_hosts(
    host_idx: np.ndarray,
    ts_us: np.ndarray,
    n: int,
    first_us: np.ndarray,
    last_us: np.ndarray,
    touched: np.ndarray,
    seq: int,
) -> None:
    """First/last seen per host (timestamps may jump backwards in a capture),
    and ``seq`` (the ingest's number) as the host's last touch."""
    for i in range(n):
        h = host_idx[i]
        if h < 0:
            continue
        touched[h] = seq
        t = ts_us[i]
        if first_us[h] == -1 or t < first_us[h]:
            first_us[h] = t
        last_us[h] = max(last_us[h], t)


@njit(cache=True, nogil=True)
def pick_samples(
    host_idx: np.ndarray,
    is_new: np.ndarray,
    n: int,
    n_taken: np.ndarray,
    n_samples: int,
    out: np.ndarray,
) -> int:
    """The events whose name a host keeps as a sample: in event order, each
    new name of a host that has fewer than ``n_samples`` (``n_taken``, counted
    up here). Writes their indices to ``out``; returns how many."""
    k = 0
    for i in range(n):
        h = host_idx[i]
        if not is_new[i] or h < 0 or n_taken[h] >= n_samples:
            continue
        n_taken[h] += 1
        out[k] = i
        k += 1
    return k


# Salt that keeps a host's MX names apart from its other names in one table.
MX_SALT = 1


@njit(cache=True, nogil=True)
def flag_events(
    host_idx: np.ndarray,
    kind: np.ndarray,
    qtype: np.ndarray,
    name_lens: np.ndarray,
    n: int,
    flags: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> tuple[int, int, int]:
    """Per event of a tracked host (id >= 0): is it a query, a SYN, an MX query,
    a query with a name (``flags``); returns how many SYNs, named queries and
    named MX queries (the most new keys each table can get)."""
    is_dns, is_syn, is_mx, has_name = flags
    n_syn = 0
    n_named = 0
    n_mx = 0
    for i in range(n):
        dns = False
        syn = False
        mx = False
        named = False
        if host_idx[i] >= 0:
            if kind[i] == KIND_DNS:
                dns = True
                mx = qtype[i] == QTYPE_MX
                named = name_lens[i] > 0
            elif kind[i] == KIND_SYN:
                syn = True
        is_dns[i] = dns
        is_syn[i] = syn
        is_mx[i] = mx
        has_name[i] = named
        if syn:
            n_syn += 1
        if named:
            n_named += 1
            if mx:
                n_mx += 1
    return n_syn, n_named, n_mx


@njit(cache=True, nogil=True)
def count_events(
    where: tuple[np.ndarray, np.ndarray, np.ndarray],
    ev: tuple[np.ndarray, ...],
    n: int,
    flags: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    names: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    prefixes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    max_used: int,
    counters: tuple[np.ndarray, np.ndarray],
    out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> int:
    """One batch's queries and SYNs into the distinct sets and the counters.

    ``where`` = (host id, -1 = none; bin row, -1 = none; bin) per event; ``ev`` =
    (kind, qtype, dport, dst_hi, dst_lo, names, name_lens, keyword index);
    ``flags`` those of :func:`flag_events`; each table = (a, b, c, v, used) of a
    :class:`~wormwatch.tables.KeyTable` with room reserved for the keys the flags
    allow; ``counters`` = (host totals, bin rows). Fills ``out`` = (name hash, SYN
    target new ever (2) / in this bin (1), name new (2), MX name new (2)) and
    returns the keys the full tables refused. The tables are updated in the order
    of separate calls (targets, names, MX names, prefixes), so which keys a full
    table refuses does not change.
    """
    host, row, bins = where
    _kind, _qtype, _dport, dst_hi, dst_lo, name_mat, name_lens, _keyword_idx = ev
    _is_dns, is_syn, is_mx, has_name = flags
    name_hash, pair, new_name, new_mx = out
    hash_names(name_mat, name_lens, n, name_hash)
    zeros = np.zeros(n, np.uint64)
    # typed int64, as from Python: a literal mode would compile table_upsert again
    tag = np.int64(MODE_TAG)
    pa, pb, pc, pv, p_used = pairs
    refused = table_upsert(
        pa, pb, pc, pv, p_used, max_used, host, dst_hi, dst_lo, is_syn, bins, n, tag, pair
    )
    na, nb, nc, nv, n_used = names
    refused += table_upsert(
        na, nb, nc, nv, n_used, max_used, host, name_hash, zeros, has_name, bins, n, tag,
        new_name,
    )  # fmt: skip
    refused += table_upsert(
        na, nb, nc, nv, n_used, max_used, host, name_hash, zeros + np.uint64(MX_SALT),
        is_mx & has_name, bins, n, tag, new_mx,
    )  # fmt: skip
    packed = np.empty(n, np.uint64)
    pack_prefixes(name_mat, name_lens, has_name, n, packed)
    seen = np.empty(n, np.int64)
    xa, xb, xc, xv, x_used = prefixes
    refused += table_upsert(
        xa, xb, xc, xv, x_used, max_used, host, packed, zeros, packed != 0, host, n,
        np.int64(MODE_COUNT), seen,
    )  # fmt: skip
    _add_event_counters(host, row, ev, n, pair, new_name, new_mx, counters)
    return refused


@njit(cache=True, nogil=True, inline="always")
def _add_event_counters(host, row, ev, n, pair, new_name, new_mx, counters):  # type: ignore[no-untyped-def]
    """Add 1 to each counter column an event counts in, in its host's totals and
    its bin row (when it has one): the query and its qtype, keyword, SYN port,
    distinct target in the bin and ever, new name, new MX name."""
    kind, qtype, dport, _hi, _lo, _names, _lens, keyword_idx = ev
    totals, rows = counters
    cols = np.empty(6, np.int64)
    for i in range(n):
        h = host[i]
        if h < 0:
            continue
        cols[:] = -1
        if kind[i] == KIND_DNS:
            q = qtype[i]
            cols[0] = C_QUERIES
            cols[1] = (
                C_A if q == QTYPE_A else C_AAAA if q == QTYPE_AAAA
                else C_MX if q == QTYPE_MX else C_PTR if q == QTYPE_PTR else C_OTHER
            )  # fmt: skip
            if keyword_idx[i] >= 0:
                cols[2] = C_KW
                cols[3] = C_KW_A if q == QTYPE_A else -1
        elif kind[i] == KIND_SYN:
            p = dport[i]
            cols[0] = (
                C_SYN135 if p == 135 else C_SYN139 if p == 139 else C_SYN445 if p == 445 else -1
            )
            cols[1] = C_SYN_DST_BIN if pair[i] >= 1 else -1
            cols[2] = C_SYN_DST_NEW if pair[i] == 2 else -1
        cols[4] = C_NAMES_NEW if new_name[i] == 2 else -1
        cols[5] = C_MX_DOM_NEW if new_mx[i] == 2 else -1
        r = row[i]
        for k in range(6):
            c = cols[k]
            if c >= 0:
                totals[h, c] += 1
                if r >= 0:
                    rows[r, c] += 1


@njit(cache=True, nogil=True)
def count_answer_events(
    where: tuple[np.ndarray, np.ndarray, np.ndarray],
    answers: tuple[np.ndarray, ...],
    n: int,
    names: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    max_used: int,
    nx: tuple[int, int, int],
    counters: tuple[np.ndarray, np.ndarray],
    is_new: np.ndarray,
) -> int:
    """One batch's DNS answers into the distinct NXDOMAIN names and domains and
    the answer counters.

    ``where`` = (host id; bin row, -1 = none; bin) per event; ``answers`` = (is an
    answer of a tracked host, rcode, counted towards the distinct NXDOMAIN names and
    domains, name hash, registrable domain hash, name score 0..1); ``names`` the
    (a, b, c, v, used) of the names table with room for two keys per counted
    answer, keyed apart by the salts of ``nx`` = (NXDOMAIN name salt, domain salt, units of
    a score: the new domains' scores are counted in these);
    ``counters`` = (host totals, bin rows). Fills ``is_new`` (the answer named a
    registrable domain new to its host) and returns the keys the table refused.
    Names then domains, as two separate calls would, so which keys a full table
    refuses does not change.
    """
    host, row, bins = where
    is_answer, rcode, counted, name_hash, reg_hashes, scores = answers
    na, nb, nc, nv, n_used = names
    totals, rows = counters
    tag = np.int64(MODE_TAG)
    new_name = np.empty(n, np.int64)
    new_domain = np.empty(n, np.int64)
    name_salts = np.full(n, np.uint64(nx[0]))
    refused = table_upsert(
        na, nb, nc, nv, n_used, max_used, host, name_hash, name_salts, counted, bins, n, tag,
        new_name,
    )  # fmt: skip
    domain_salts = np.full(n, np.uint64(nx[1]))
    refused += table_upsert(
        na, nb, nc, nv, n_used, max_used, host, reg_hashes, domain_salts, counted, bins, n,
        tag, new_domain,
    )  # fmt: skip
    for i in range(n):
        is_new[i] = new_domain[i] == 2
        if not is_answer[i]:
            continue
        h = host[i]
        r = row[i]
        code = rcode[i]
        rcode_col = C_NX if code == RCODE_NXDOMAIN else C_RCODE_ERR if code != RCODE_NOERROR else -1
        _add_answer(totals, rows, h, r, C_ANSWERS, 1)
        _add_answer(totals, rows, h, r, rcode_col, 1)
        if new_name[i] == 2:
            _add_answer(totals, rows, h, r, C_NX_NAMES_NEW, 1)
        if is_new[i]:
            _add_answer(totals, rows, h, r, C_NX_DOMS_NEW, 1)
            # the new domain's name score, in thousandths
            _add_answer(totals, rows, h, r, C_NX_SCORE, np.int64(np.rint(scores[i] * nx[2])))
    return refused


@njit(cache=True, nogil=True, inline="always")
def _add_answer(totals, rows, h, r, col, amount):  # type: ignore[no-untyped-def]
    """Add ``amount`` to column ``col`` (-1 = none) of host ``h``'s totals and of
    bin row ``r`` (-1 = none)."""
    if col < 0:
        return
    totals[h, col] += amount
    if r >= 0:
        rows[r, col] += amount


@njit(cache=True, nogil=True)
def table_remap(
    old_a: np.ndarray,
    old_b: np.ndarray,
    old_c: np.ndarray,
    old_v: np.ndarray,
    mapping: np.ndarray,
    remap: int,
    t_a: np.ndarray,
    t_b: np.ndarray,
    t_c: np.ndarray,
    t_v: np.ndarray,
) -> int:
    """Move the entries of the old table into the (empty) new one.

    ``remap`` says what ``mapping[old host] -> new host or -1`` applies to:
    ``REMAP_NONE`` nothing (growing a table), ``REMAP_VALUE`` the value (the
    host table, whose values are host indices), ``REMAP_KEY`` key ``a``
    (every per-host table). Entries mapped to -1 (evicted hosts) are
    dropped. Returns how many entries were kept.
    """
    mask = np.uint64(t_a.shape[0] - 1)
    kept = 0
    for j in range(old_a.shape[0]):
        a = old_a[j]
        if a == -1:
            continue
        v = old_v[j]
        if remap == REMAP_VALUE:
            v = mapping[v]
            if v == -1:
                continue
        elif remap == REMAP_KEY:
            a = mapping[a]
            if a == -1:
                continue
        b = old_b[j]
        c = old_c[j]
        pos = _slot(a, b, c, mask)
        while t_a[pos] != -1:
            pos = (pos + np.uint64(1)) & mask
        t_a[pos] = a
        t_b[pos] = b
        t_c[pos] = c
        t_v[pos] = v
        kept += 1
    return kept


MERGE_FIRST = 0
MERGE_ADD = 1


@njit(cache=True, nogil=True)
def table_merge(
    t_a: np.ndarray,
    t_b: np.ndarray,
    t_c: np.ndarray,
    t_v: np.ndarray,
    used: np.ndarray,
    max_used: int,
    keys_a: np.ndarray,
    keys_b: np.ndarray,
    keys_c: np.ndarray,
    values: np.ndarray,
    n: int,
    mode: int,
    out: np.ndarray,
    out_old: np.ndarray,
) -> int:
    """Merge keyed values of another aggregate's table into this one.

    ``MERGE_FIRST``: the value is the first bin a key was seen in; the
    table keeps the earliest. out = 2 new key, 3 seen earlier here than
    before (``out_old`` = the bin it was counted in until now), 0 no change.
    ``MERGE_ADD``: the value is a count, added; out = 1 on a new key.
    A new key refused because the table is full has out -1 (returned count).
    Keys with ``keys_a < 0`` are skipped (out -1, not counted as refused).
    """
    mask = np.uint64(t_a.shape[0] - 1)
    refused = 0
    for i in range(n):
        a = keys_a[i]
        out_old[i] = -1
        if a < 0:
            out[i] = -1
            continue
        b = np.uint64(keys_b[i])
        c = np.uint64(keys_c[i])
        pos = _slot(a, b, c, mask)
        while t_a[pos] != -1 and not (t_a[pos] == a and t_b[pos] == b and t_c[pos] == c):
            pos = (pos + np.uint64(1)) & mask
        if t_a[pos] == -1:
            if used[0] >= max_used:
                out[i] = -1
                refused += 1
                continue
            t_a[pos] = a
            t_b[pos] = b
            t_c[pos] = c
            t_v[pos] = values[i]
            used[0] += 1
            out[i] = 2 if mode == MERGE_FIRST else 1
        elif mode == MERGE_ADD:
            t_v[pos] += values[i]
            out[i] = 0
        elif values[i] < t_v[pos]:
            out_old[i] = t_v[pos]
            t_v[pos] = values[i]
            out[i] = 3
        else:
            out[i] = 0
    return refused

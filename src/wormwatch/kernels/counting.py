"""Counting kernels: one batch's events into the aggregate's tables and counters.

In: event columns of one batch (decoded and classified; DNS answers with their
name scores) and the state arrays owned by :mod:`wormwatch.aggregate`. Out: the
batch's flags, distinct sets, prefixes and per-(host, bin) counter columns, in a
few kernel calls per batch; the tables themselves are
:mod:`wormwatch.kernels.aggregate`'s.
"""

import numpy as np
from numba import njit

from wormwatch.kernels.aggregate import (
    MODE_COUNT,
    MODE_TAG,
    hash_names,
    pack_prefixes,
    table_upsert,
)
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
    KIND_DNS,
    KIND_SYN,
    QTYPE_A,
    QTYPE_AAAA,
    QTYPE_MX,
    QTYPE_PTR,
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
)

# Columns of the aggregate's per-host peaks (one float64 row per host): the most
# keyword A queries in one bin row, and the highest keyword-A share of a row's
# queries, taken after each keyword A query (a row's share only falls between
# two of them). Bounds on any window's rows, so a host whose peaks cannot reach
# the keyword storm's per-bin thresholds needs no evaluation for it.
PEAK_KW_A = 0
PEAK_KW_SHARE = 1
N_PEAKS = 2


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
        # -1 is "not seen yet" (a time before the epoch is below it, so max() alone
        # left such a host's last time at -1)
        if first_us[h] == -1 or t < first_us[h]:
            first_us[h] = t
        if last_us[h] == -1 or t > last_us[h]:
            last_us[h] = t


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


# Salts that keep a host's MX names, and its keyword names, apart from its other
# names in one table (2 and 3 are the NXDOMAIN names' and domains': answers.py).
MX_SALT = 1
KEYWORD_SALT = 4


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
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    names: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    prefixes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    max_used: int,
    counters: tuple[np.ndarray, np.ndarray, np.ndarray],
    out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    keyword_apart: bool,
) -> int:
    """One batch's queries and SYNs into the distinct sets and the counters.

    ``where`` = (host id, -1 = none; bin row, -1 = none; bin) per event; ``ev`` =
    (kind, qtype, dport, dst_hi, dst_lo, names, name_lens, keyword index);
    ``flags`` those of :func:`flag_events`; each table = (a, b, c, v, w, used) of a
    :class:`~wormwatch.tables.KeyTable` with room reserved for the keys the flags
    allow (the prefixes' ``w`` keeps each key's latest bin); ``counters`` = (host
    totals, bin rows, host peaks). Fills ``out`` = (name hash, SYN target new ever
    (2) / in this bin (1), name new (2), MX name new (2), keyword name new (2): kept
    apart under their own salt when ``keyword_apart``) and returns the keys the full
    tables refused. The tables are updated in the order of separate calls (targets,
    names, MX names, keyword names, prefixes), so which keys a full table refuses
    does not change.
    """
    host, row, bins = where
    _kind, _qtype, _dport, dst_hi, dst_lo, name_mat, name_lens, keyword_idx = ev
    _is_dns, is_syn, is_mx, has_name = flags
    name_hash, pair, new_name, new_mx, new_kw = out
    hash_names(name_mat, name_lens, n, name_hash)
    zeros = np.zeros(n, np.uint64)
    # typed int64, as from Python: a literal mode would compile table_upsert again
    tag = np.int64(MODE_TAG)
    pa, pb, pc, pv, pw, p_used = pairs
    refused = table_upsert(
        pa, pb, pc, pv, pw, p_used, max_used, host, dst_hi, dst_lo, is_syn, bins, n, tag, pair
    )
    refused += _count_names(
        names, max_used, (host, bins), name_hash, (has_name, is_mx, keyword_idx >= 0), n,
        (new_name, new_mx, new_kw), keyword_apart,
    )  # fmt: skip
    packed = np.empty(n, np.uint64)
    pack_prefixes(name_mat, name_lens, has_name, n, packed)
    seen = np.empty(n, np.int64)
    xa, xb, xc, xv, xw, x_used = prefixes
    refused += table_upsert(
        xa, xb, xc, xv, xw, x_used, max_used, host, packed, zeros, packed != 0, bins, n,
        np.int64(MODE_COUNT), seen,
    )  # fmt: skip
    _add_event_counters(host, row, ev, n, pair, (new_name, new_mx, new_kw), counters)
    return int(refused)


@njit(cache=True, nogil=True, inline="always")
def _count_names(names, max_used, where, name_hash, flags, n, new, keyword_apart):  # type: ignore[no-untyped-def]
    """The names table's part of :func:`count_events`: each name (salt 0), MX name
    (salt 1) and, when ``keyword_apart``, keyword name (salt 4) into the table;
    ``new`` = whether each is new. A keyword name not kept apart is new when the
    name is (the cells of a delta keep them apart, for the merging side)."""
    host, bins = where
    has_name, is_mx, is_keyword = flags
    new_name, new_mx, new_kw = new
    na, nb, nc, nv, nw, n_used = names
    zeros = np.zeros(n, np.uint64)
    tag = np.int64(MODE_TAG)
    refused = table_upsert(
        na, nb, nc, nv, nw, n_used, max_used, host, name_hash, zeros, has_name, bins, n, tag,
        new_name,
    )  # fmt: skip
    refused += table_upsert(
        na, nb, nc, nv, nw, n_used, max_used, host, name_hash, zeros + np.uint64(MX_SALT),
        is_mx & has_name, bins, n, tag, new_mx,
    )  # fmt: skip
    is_kw = has_name & is_keyword
    if keyword_apart:
        refused += table_upsert(
            na, nb, nc, nv, nw, n_used, max_used, host, name_hash, zeros + np.uint64(KEYWORD_SALT),
            is_kw, bins, n, tag, new_kw,
        )  # fmt: skip
    else:
        new_kw[:n] = np.where(is_kw, new_name[:n], 0)
    return refused


@njit(cache=True, nogil=True, inline="always")
def _add_event_counters(host, row, ev, n, pair, new, counters):  # type: ignore[no-untyped-def]
    """Add 1 to each counter column an event counts in, in its host's totals and
    its bin row (when it has one): the query and its qtype, keyword, SYN port,
    distinct target in the bin and ever, new name, new MX name, new keyword name
    (``new``); and raise the host's peaks after a keyword A query."""
    kind, qtype, dport, _hi, _lo, _names, _lens, keyword_idx = ev
    new_name, new_mx, new_kw = new
    totals, rows, peaks = counters
    cols = np.empty(7, np.int64)
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
        cols[6] = C_KW_NAMES_NEW if new_kw[i] == 2 else -1
        r = row[i]
        for k in range(7):
            c = cols[k]
            if c >= 0:
                totals[h, c] += 1
                if r >= 0:
                    rows[r, c] += 1
        if cols[3] >= 0 and r >= 0:
            raise_peaks(peaks, h, rows[r])


@njit(cache=True, nogil=True, inline="always")
def raise_peaks(peaks, h, row):  # type: ignore[no-untyped-def]
    """Raise host ``h``'s peaks (``PEAK_*`` columns) to those of its bin ``row``."""
    kw_a = row[C_KW_A]
    share = kw_a / max(row[C_QUERIES], 1)
    peaks[h, PEAK_KW_A] = max(peaks[h, PEAK_KW_A], kw_a)
    peaks[h, PEAK_KW_SHARE] = max(peaks[h, PEAK_KW_SHARE], share)


@njit(cache=True, nogil=True)
def count_answer_events(
    where: tuple[np.ndarray, np.ndarray, np.ndarray],
    answers: tuple[np.ndarray, ...],
    n: int,
    names: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
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
    (a, b, c, v, w, used) of the names table with room for two keys per counted
    answer, keyed apart by the salts of ``nx`` = (NXDOMAIN name salt, domain salt, units of
    a score: the new domains' scores are counted in these);
    ``counters`` = (host totals, bin rows). Fills ``is_new`` (the answer named a
    registrable domain new to its host) and returns the keys the table refused.
    Names then domains, as two separate calls would, so which keys a full table
    refuses does not change.
    """
    host, row, bins = where
    is_answer, rcode, counted, name_hash, reg_hashes, scores = answers
    na, nb, nc, nv, nw, n_used = names
    totals, rows = counters
    tag = np.int64(MODE_TAG)
    new_name = np.empty(n, np.int64)
    new_domain = np.empty(n, np.int64)
    name_salts = np.full(n, np.uint64(nx[0]))
    refused = table_upsert(
        na, nb, nc, nv, nw, n_used, max_used, host, name_hash, name_salts, counted, bins, n,
        tag, new_name,
    )  # fmt: skip
    domain_salts = np.full(n, np.uint64(nx[1]))
    refused += table_upsert(
        na, nb, nc, nv, nw, n_used, max_used, host, reg_hashes, domain_salts, counted, bins,
        n, tag, new_domain,
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

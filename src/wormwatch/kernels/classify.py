"""Classify kernel: which query names start with a mail-server keyword.

In: the decoded event columns (kind, names, name_lens) and the keyword table
as a 2-D uint8 array (one lower-case keyword per row, zero padded) with its
lengths. Out: per event the index of the first matching keyword, or -1.

Names are lower-cased by the decoder and keywords hold no dot, so "the first
label starts with the keyword" is a plain prefix match on the name.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from wormwatch.model import KIND_DNS


@njit(cache=True, nogil=True)
def match_keywords(
    kinds: np.ndarray,
    names: np.ndarray,
    name_lens: np.ndarray,
    n: int,
    kw_bytes: np.ndarray,
    kw_lens: np.ndarray,
    out: np.ndarray,
) -> int:
    """Write the matching keyword's index (or -1) per event; return #matches."""
    n_kw = kw_lens.shape[0]
    n_match = 0
    for i in range(n):
        out[i] = -1
        if kinds[i] != KIND_DNS:
            continue
        length = name_lens[i]
        for k in range(n_kw):
            kl = kw_lens[k]
            if kl > length:
                continue
            j = 0
            while j < kl and names[i, j] == kw_bytes[k, j]:
                j += 1
            if j == kl:
                out[i] = k
                n_match += 1
                break
    return n_match

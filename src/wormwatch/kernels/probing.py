"""Open addressing with linear probing, as the kernels' small tables of slots use it:
an ``index`` of slot numbers (-1 empty), each slot remembering its key's home position.

Inlined into the fragment pool (kernels/fragpool.py) and the DNS-over-TCP flow table
(kernels/dnstcp.py).
"""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True, inline="always")
def unindex(index, slot, meta, home_col):  # type: ignore[no-untyped-def]
    """Takes ``slot`` out of ``index`` (``meta[s, home_col]``: slot s's home position):
    the later entries of its probe run shift back over the hole, so lookups need no
    tombstones."""
    mask = index.shape[0] - 1
    hole = meta[slot, home_col]
    while index[hole] != slot:
        hole = (hole + 1) & mask
    j = hole
    while True:
        j = (j + 1) & mask
        s = index[j]
        if s < 0:
            break
        home = meta[s, home_col]
        # s stays unless its home lies cyclically outside (hole, j]
        if (hole < j and (home <= hole or home > j)) or (hole > j and home <= hole and home > j):
            index[hole] = s
            hole = j
    index[hole] = -1

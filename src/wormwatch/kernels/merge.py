"""The numba kernel that merges several capture files' records by packet time.

per-file runs of record timestamps (one row per file, filled by the walkers of
``wormwatch.kernels.pcapwalk``) -> **this kernel** -> (file, record) pairs in packet-time
order -> ``wormwatch.source.merge`` gathers the records' offsets into one ``Batch``.

The rule is mergecap's: the next record out is the earliest of the files' *next* records,
ties going to the file named last (its ``is_earlier`` holds for equal times, and its scan
keeps the last file that passes). A file's own order is never changed, so a file whose
time goes backwards stays as it is (mergecap does the same). Times compare to the
microsecond, the pipeline's packet time: records of two nanosecond files less than a
microsecond apart are a tie here, where mergecap orders them by their nanoseconds.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def merge_heads(
    ts_us: np.ndarray,
    counts: np.ndarray,
    cursors: np.ndarray,
    is_finished: np.ndarray,
    out_file: np.ndarray,
    out_record: np.ndarray,
) -> int:
    """Emits (file, record) pairs in packet-time order into the output arrays.

    Args:
        ts_us: (files, run) timestamps of each file's buffered run of records.
        counts: records buffered per file.
        cursors: next unread record per file (advanced in place).
        is_finished: per file, whether nothing follows its buffered run.
        out_file, out_record: filled from index 0.

    Returns:
        How many pairs were written. Fewer than the outputs hold means either every
        file is drained or an unfinished file's run is used up: it must be refilled
        before anything can follow, since its next record may be the earliest.
    """
    n_files = ts_us.shape[0]
    n = 0
    while n < out_file.shape[0]:
        best = -1
        best_ts = 0
        for f in range(n_files):
            c = cursors[f]
            if c < counts[f]:
                t = ts_us[f, c]
                if best < 0 or t <= best_ts:
                    best = f
                    best_ts = t
            elif not is_finished[f]:
                return n
        if best < 0:
            return n
        out_file[n] = best
        out_record[n] = cursors[best]
        cursors[best] += 1
        n += 1
    return n

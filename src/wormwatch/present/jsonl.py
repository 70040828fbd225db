"""JSON lines output: alerts, host summaries and the network summary.

In: alert dicts from :mod:`wormwatch.alerts`, :class:`~wormwatch.model.HostView`
and :class:`~wormwatch.model.Snapshot` from the pipeline. Out: one JSON object
per line, UTF-8, every object with ``"schema": 1`` (DESIGN.md).

Untrusted text: query names are bytes off the wire. They pass
:func:`wormwatch.detect.name_text` before they enter a record (invalid UTF-8
and control characters become visible ``\\xNN``/``\\uNNNN`` escapes). The
writer also escapes U+0085, U+2028 and U+2029 inside strings, which JSON allows
raw but which line-splitting tools take for line breaks, so one record is
always exactly one line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
from collections.abc import Callable, Mapping
from types import TracebackType

import numpy as np

from wormwatch.detect import iso_time, name_text
from wormwatch.errors import WormwatchError
from wormwatch.model import (
    C_A,
    C_AAAA,
    C_KW,
    C_KW_A,
    C_MX,
    C_MX_DOM_NEW,
    C_NAMES_NEW,
    C_OTHER,
    C_PTR,
    C_QUERIES,
    C_SYN135,
    C_SYN139,
    C_SYN445,
    C_SYN_DST_NEW,
    HostView,
    Snapshot,
)

SCHEMA = 1
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def host_record(view: HostView, bin_s: int) -> dict[str, object]:
    """The DESIGN.md host summary of one host, with a few extra keys.

    Extra keys (beyond DESIGN.md): ``keyword_A``, ``distinct_names``,
    ``mx_domains``, ``active_bins`` (bins of ``bin_s`` seconds with any event,
    within the window), ``sample_names``, ``sample_mx_names`` and, for a
    flagged host, ``evidence``.
    """
    st = view.state
    t = [int(x) for x in st.totals]
    record: dict[str, object] = {
        "schema": SCHEMA,
        "event_type": "host",
        "src_ip": st.addr,
        "first_seen": iso_time(st.first_seen_us),
        "last_seen": iso_time(st.last_seen_us),
        "queries": {
            "total": t[C_QUERIES],
            "A": t[C_A],
            "AAAA": t[C_AAAA],
            "MX": t[C_MX],
            "PTR": t[C_PTR],
            "other": t[C_OTHER],
        },
        "keyword_queries": t[C_KW],
        "syn": {"135": t[C_SYN135], "139": t[C_SYN139], "445": t[C_SYN445]},
        "syn_targets": t[C_SYN_DST_NEW],
        "score": round(float(view.verdict.score), 1),
        "verdicts": list(view.verdict.verdicts),
        "keyword_A": t[C_KW_A],
        "distinct_names": t[C_NAMES_NEW],
        "mx_domains": t[C_MX_DOM_NEW],
        "bin_s": int(bin_s),
        "active_bins": int(st.bins.shape[0]),
        "sample_names": [name_text(n) for n in st.sample_names],
        "sample_mx_names": [name_text(n) for n in st.sample_mx_names],
    }
    if view.verdict.verdicts:
        record["evidence"] = view.verdict.evidence
    return record


def summary_record(
    snap: Snapshot, *, network_sync: Mapping[str, object] | None = None
) -> dict[str, object]:
    """The end-of-run network record: what was seen, decode health, sync.

    ``network_sync`` is :func:`wormwatch.detect.network_evidence`'s output
    (or None when there was nothing to correlate).
    """
    flagged: dict[str, int] = {}
    for view in snap.hosts:
        for name in view.verdict.verdicts:
            flagged[name] = flagged.get(name, 0) + 1
    return {
        "schema": SCHEMA,
        "event_type": "network",
        "timestamp": iso_time(snap.now_us),
        "source": snap.source,
        "first_seen": iso_time(snap.start_us),
        "last_seen": iso_time(snap.now_us),
        "hosts_tracked": snap.hosts_tracked,
        "hosts_dropped": snap.hosts_dropped,
        "events_untracked": snap.events_untracked,
        "hosts_flagged": flagged,
        "decode": dict(snap.decode),
        "kernel_received": snap.kernel_received,
        "kernel_dropped": snap.kernel_dropped,
        "interface_dropped": snap.interface_dropped,
        "network_sync_r": snap.network_sync_r,
        "network_sync": dict(network_sync) if network_sync is not None else None,
    }


def _plain(obj: object) -> object:
    """``json`` fallback: numpy values, bytes (as safe names), sets."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, bytes):
        return name_text(obj)
    if isinstance(obj, set | frozenset | tuple):
        return sorted(obj) if isinstance(obj, set | frozenset) else list(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def _finite(obj: object) -> object:
    """A copy with NaN and infinities replaced by null (strict JSON has none)."""
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _dumps(obj: object) -> str:
    return json.dumps(
        obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain
    )


def _no_line_breaks(text: str) -> str:
    for raw, escaped in _LINE_BREAKS.items():
        if raw in text:
            text = text.replace(raw, escaped)
    return text


def json_string_body(text: str) -> bytes:
    """``text`` as the inside of a JSON string (no quotes), UTF-8, one line."""
    return _no_line_breaks(_dumps(text)[1:-1]).encode("utf-8", errors="backslashreplace")


def encode_line(record: Mapping[str, object]) -> bytes:
    """One record as one UTF-8 line ending in ``\\n``."""
    try:
        text = _dumps(record)
    except ValueError:
        text = _dumps(_finite(record))
    return (_no_line_breaks(text) + "\n").encode("utf-8", errors="backslashreplace")


class ReopenRequests:
    """Log rotation's signal (SIGHUP, logrotate's ``postrotate``): writers that share
    this reopen their file by its path before their next write once it moves on.

    The signal handler only counts (:meth:`request`); the reopening happens between
    two whole writes, so no line is torn or lost.
    """

    def __init__(self) -> None:
        self.generation = 0

    def request(self) -> None:
        self.generation += 1


class JsonLinesWriter:
    """Appends JSON lines to a file (``"-"`` = standard output).

    Each line goes to the operating system in one ``write`` as soon as it is
    made (no user-space buffer), so a crash of the sensor loses nothing
    already written, and the file is opened in append mode so a restart adds
    to it. If the file ends in a partial line (a previous writer died or the
    disk filled up), a newline is written first so the next record starts
    on its own line.

    Args:
        path: the file, or ``-``.
        reopen: rotation requests; a regular file is reopened by its path (and
            created anew if it was moved away) before the next write after one.
        owner: ``(uid, gid)`` to give a file this writer creates (root opening the
            outputs for the user it will drop to, who then can rotate them).
        warn: where a one-line warning goes when a reopen fails (the writer then
            keeps writing to the file it has open).

    Raises:
        WormwatchError: the file cannot be opened or written (disk full,
            closed pipe, permission), with a one-line message.
    """

    def __init__(
        self,
        path: str,
        *,
        reopen: ReopenRequests | None = None,
        owner: tuple[int, int] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.n_written = 0
        self._label = "standard output" if path == "-" else path
        self._reopen = reopen
        self._generation = reopen.generation if reopen is not None else 0
        self._owner = owner
        self._warn = warn
        try:
            self._fd = os.dup(1) if path == "-" else self._open()
            self._is_file = stat.S_ISREG(os.fstat(self._fd).st_mode)
            self._end_partial_line()
        except OSError as err:
            raise self._error("cannot open", err) from None

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_APPEND
        try:
            fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return os.open(self.path, flags)
        if self._owner is not None:
            try:
                os.fchown(fd, *self._owner)
            except OSError:
                os.close(fd)
                raise
        return fd

    def _follow_rotation(self) -> None:
        """Reopen by path once after each rotation request (regular files only)."""
        if self._reopen is None or self._reopen.generation == self._generation:
            return
        self._generation = self._reopen.generation
        if not self._is_file:
            return
        try:
            fd = self._open()
        except OSError as err:
            if self._warn is not None:
                reason = str(self._error("cannot reopen", err)).split(": ", 1)[-1]
                self._warn(
                    f"cannot reopen {self.path} after SIGHUP ({reason}); "
                    "still writing to the file it had open"
                )
            return
        old, self._fd = self._fd, fd
        os.close(old)
        self._end_partial_line()

    def _end_partial_line(self) -> None:
        if self.path == "-":
            return
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                self._write_all(b"\n")

    def _error(self, what: str, err: OSError) -> WormwatchError:
        if err.errno == errno.EPIPE:
            reason = "the reader closed the pipe"
        elif err.errno == errno.ENOSPC:
            reason = "no space left on device; free some space"
        elif err.errno in (errno.EACCES, errno.EPERM):
            reason = "permission denied; choose a writable path"
        else:
            reason = err.strerror or str(err)
        return WormwatchError(f"{what} JSON lines output {self._label}: {reason}")

    def _write_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    def write(self, record: Mapping[str, object]) -> None:
        """Append one record as one line."""
        self.write_lines(encode_line(record), 1)

    def write_lines(self, lines: bytes | memoryview, n_lines: int) -> None:
        """Append ``n_lines`` whole lines (each ending in ``\n``) in one write."""
        if self._fd < 0:
            raise WormwatchError(f"JSON lines output {self._label} is already closed")
        self._follow_rotation()
        try:
            start = os.lseek(self._fd, 0, os.SEEK_END) if self._is_file else -1
        except OSError:
            start = -1
        try:
            self._write_all(lines)
        except OSError as err:
            # A full disk can take part of a line before it refuses the rest:
            # cut the file back to where the line began, so every line in it
            # still parses (the lines already written stay).
            if start >= 0:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)
            raise self._error("cannot write to", err) from None
        self.n_written += n_lines

    def truncate(self) -> None:
        """Empty the file (after a pending reopen), for a rewrite in place."""
        self._follow_rotation()
        try:
            os.ftruncate(self._fd, 0)
        except OSError as err:
            raise self._error("cannot rewrite", err) from None

    def close(self) -> None:
        """Close the file; closing twice is harmless."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)
            except OSError as err:
                raise self._error("cannot close", err) from None

    def __enter__(self) -> JsonLinesWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""JSON lines sink: appends records to a file, one object per line.

In: record dicts shaped by :mod:`wormwatch.records` (alerts, sensor
conditions, host and network summaries). Out: one JSON object per line,
UTF-8, appended and handed to the operating system as it is written. The
writer only encodes and writes; it never shapes a record.

Untrusted text: query names are bytes off the wire. They pass
:func:`wormwatch.text.name_text` before they enter a record (invalid UTF-8
and control characters become visible ``\\xNN``/``\\uNNNN`` escapes); stray
``bytes`` values get the same rule here. The writer also escapes U+0085,
U+2028 and U+2029 inside strings, which JSON allows raw but which
line-splitting tools take for line breaks, so one record is always exactly
one line. :func:`refuse_shared_paths` says, before a run (a sensor's or a central's),
when one output would destroy another output or an input.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

import numpy as np

from wormwatch.control import ReopenRequests
from wormwatch.errors import WormwatchError
from wormwatch.text import name_text

_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


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


def no_line_breaks(text: str) -> str:
    """``text`` with U+0085, U+2028 and U+2029 escaped (JSON allows them raw)."""
    for raw, escaped in _LINE_BREAKS.items():
        if raw in text:
            text = text.replace(raw, escaped)
    return text


def json_string_body(text: str) -> bytes:
    """``text`` as the inside of a JSON string (no quotes), UTF-8, one line."""
    return no_line_breaks(_dumps(text)[1:-1]).encode("utf-8", errors="backslashreplace")


def encode_line(record: Mapping[str, object]) -> bytes:
    """One record as one UTF-8 line ending in ``\\n``."""
    try:
        text = _dumps(record)
    except ValueError:
        text = _dumps(_finite(record))
    return (no_line_breaks(text) + "\n").encode("utf-8", errors="backslashreplace")


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
            if self._owner is not None and os.geteuid() == 0:
                return self._open_for_dropped(flags)
            return os.open(self.path, flags)
        if self._owner is not None:
            try:
                os.fchown(fd, *self._owner)
            except OSError:
                os.close(fd)
                raise
        return fd

    def _open_for_dropped(self, flags: int) -> int:
        """Root opening an existing file for the user it will drop to: that user may
        own the folder, and so the name. A symbolic link follows only when root made
        it; one the user made could point root's appends at any file (/etc/...)."""
        try:
            return os.open(self.path, flags | os.O_NOFOLLOW)
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
        owner = os.lstat(self.path).st_uid
        if owner != 0:
            raise WormwatchError(
                f"cannot open JSON lines output {self.path}: it is a symbolic link of uid "
                f"{owner}, which root does not follow; remove it, or make it root's"
            )
        return os.open(os.path.realpath(self.path), flags | os.O_NOFOLLOW)

    def _follow_rotation(self) -> None:
        """Reopen by path once after each rotation request (regular files only)."""
        if self._reopen is None or self._reopen.generation == self._generation:
            return
        self._generation = self._reopen.generation
        # standard output has no path to reopen, even when the shell points it at a file
        if not self._is_file or self.path == "-":
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


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one regular file (or would: neither exists yet)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b) and stat.S_ISREG(os.stat(a).st_mode)
    except OSError:
        return False
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_shared_paths(outputs: dict[str, str | None], inputs: Sequence[str]) -> None:
    """One line when an output would destroy another output or an input: the summary
    is renamed over its path at the end (an alerts file of the same path was lost),
    and appending to a capture being read breaks it. Two appending logs may share a
    file; ``-`` and devices (``/dev/null``) may be named by several."""
    named = [(option, path) for option, path in outputs.items() if path and path != "-"]
    for option, path in named:
        for source in inputs:
            if source != "-" and _same_file(path, source):
                raise WormwatchError(f"{option} {path} is also an input; name another file")
    summary = outputs.get("--summary")
    for option, path in named:
        if summary and option != "--summary" and summary != "-" and _same_file(path, summary):
            raise WormwatchError(
                f"--summary and {option} name one file ({path}): the summary would replace "
                f"what {option} wrote; name two files"
            )

"""Every file a run writes, opened and checked before anything is captured.

In: the run's options (``--alerts``, ``--events``, ``--summary``, ``--summary-every``,
``--user``) and SIGHUP's reopen requests. Out: open writers, kept across the privilege
drop, that follow log rotation. Errors are one :class:`~wormwatch.errors.WormwatchError`
line.

Live capture started as root drops to ``--user`` (default ``nobody``) once the
capture is open. So, before that:

- the alerts and event files are opened (created, and given to that user, when
  new) and their descriptors kept: appending needs no more permission;
- the summary is written by renaming a new file into its directory, so no reader
  ever sees half of one. Whether the user can create files there is tried for real
  (:func:`~wormwatch.source.privileges.can_create_in`). If not, a summary written
  once at the end goes through a descriptor opened now, rewritten in place; a
  periodic one (``--summary-every``) cannot, and the run stops with one line that
  names the user, the directory and the fixes. The same goes for a summary that
  another user owns in a sticky directory (mode 1777: only its owner may rename
  over it). A periodic rewrite that fails later is one warning, tried again at
  the next one; the capture goes on.

SIGHUP (logrotate's ``postrotate``; counted from start-up on, :mod:`wormwatch.control`)
makes every writer reopen its file by path before its next write: a moved file is
created anew. The dropped user can create it only in a directory it may write
(systemd's ``LogsDirectory=`` gives it one); elsewhere logrotate's ``create`` must make
the new file, which is then opened as it is. A reopen that fails keeps writing to the
old file and says so once.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from wormwatch.control import ReopenRequests
from wormwatch.errors import WormwatchError
from wormwatch.present.sinks.jsonl import JsonLinesWriter, refuse_shared_paths
from wormwatch.source.privileges import DropTarget, can_create_in, drop_target, sticky_owner
from wormwatch.text import escape_text

if TYPE_CHECKING:
    from wormwatch.present.sinks.events import EventLog


def _fixes(target: DropTarget | None, directory: str) -> str:
    if target is None:
        return "choose a directory you can write"
    return (
        f"use --user with a user who can, a directory {target.name} owns "
        f"(install -d -o {target.name} {directory}), or systemd's LogsDirectory="
    )


def _warn(message: str) -> None:
    print(f"wormwatch: warning: {escape_text(message)}", file=sys.stderr, flush=True)


def _who(target: DropTarget | None) -> str:
    if target is None:
        return f"this process (uid {os.geteuid()})"
    return f"user {target.name} (the sensor drops to it after opening the capture)"


def _note_rotation(paths: list[str], target: DropTarget | None) -> None:
    """Say at start-up, once per directory, when rotated files could not be created
    anew by the user the sensor drops to."""
    if target is None:
        return
    by_dir: dict[str, list[str]] = {}
    for path in paths:
        by_dir.setdefault(os.path.dirname(os.path.abspath(path)), []).append(path)
    for directory, files in by_dir.items():
        if os.path.isdir(directory) and not can_create_in(directory, target):
            _warn(
                f"user {target.name} cannot create files in {directory}: after log "
                f"rotation (SIGHUP), {' and '.join(files)} can be reopened only if "
                "logrotate's `create` made them anew (contrib/logrotate)"
            )


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _check_in_place(path: str) -> None:
    """A summary that is not a regular file is written in place at the end: say now,
    not after the run, when ``path`` cannot be (a directory, a socket, a disk)."""
    if path == "-":
        return
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise WormwatchError(f"cannot write summary {path}: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise WormwatchError(f"cannot write summary {path}: it is a directory; name a file")
    if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        raise WormwatchError(
            f"cannot write summary {path}: not a regular file, a pipe or a character device"
        )


class SummaryFile:
    """Where host summaries go: renamed into place, or rewritten through a kept
    descriptor when the writer will not be allowed to create files beside it."""

    def __init__(
        self,
        path: str,
        *,
        is_periodic: bool,
        target: DropTarget | None,
        reopen: ReopenRequests,
    ) -> None:
        self.path = path
        self.kept: JsonLinesWriter | None = None
        self._said: set[str] = set()
        self._reopen = reopen
        self.is_renamed = path != "-" and (not os.path.exists(path) or os.path.isfile(path))
        if not self.is_renamed:
            _check_in_place(path)
            return
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise WormwatchError(
                f"cannot write summary {path}: directory {directory} does not exist"
            )
        if _is_dir(path + ".tmp"):
            raise WormwatchError(
                f"cannot write summary {path}: {path}.tmp, where it is written before its "
                "rename into place, is a directory"
            )
        # in a sticky directory (mode 1777) only a file's owner may rename over it
        blocked = [p for p in (path, path + ".tmp") if sticky_owner(p, target) is not None]
        if can_create_in(directory, target) and not blocked:
            return
        if is_periodic and blocked:
            raise WormwatchError(
                f"--summary-every rewrites {path} by renaming a new file over it, but "
                f"{directory} is sticky and {blocked[0]} belongs to another user, so "
                f"{_who(target)} cannot replace it: remove it, or choose another directory"
            )
        if is_periodic:
            raise WormwatchError(
                f"--summary-every rewrites {path} by renaming a new file into {directory}, "
                f"but {_who(target)} cannot create files there: {_fixes(target, directory)}"
            )
        self.is_renamed = False
        owner = (target.uid, target.gid) if target is not None else None
        try:
            self.kept = JsonLinesWriter(path, reopen=reopen, owner=owner, warn=_warn)
        except WormwatchError:
            raise WormwatchError(
                f"cannot write summary {path}: permission denied, and {_who(target)} "
                f"cannot create files in {directory}: {_fixes(target, directory)}"
            ) from None

    @contextlib.contextmanager
    def failures_said_once(self) -> Iterator[None]:
        """Around a periodic rewrite: a failure (a full disk, a file swapped under
        the sensor) is said once and the rewrite tried again next time, while the
        capture and its alerts go on (it ended the run)."""
        try:
            yield
        except WormwatchError as err:
            if str(err) not in self._said:
                self._said.add(str(err))
                _warn(str(err))

    def open_for_rewrite(self) -> JsonLinesWriter:
        """A writer for one whole summary; :meth:`commit` when it is complete."""
        if self.kept is not None:
            self.kept.truncate()
            return self.kept
        if not self.is_renamed:
            return JsonLinesWriter(self.path)
        tmp = self.path + ".tmp"
        try:
            if os.path.exists(tmp):
                os.unlink(tmp)
        except OSError as err:
            raise WormwatchError(
                f"cannot write summary {self.path}: {tmp}: {err.strerror}"
            ) from None
        return JsonLinesWriter(tmp)

    def commit(self, writer: JsonLinesWriter) -> None:
        """Finish one summary: rename it into place (or keep the descriptor open)."""
        if writer is self.kept:
            return
        writer.close()
        if self.is_renamed:
            try:
                os.replace(self.path + ".tmp", self.path)
            except OSError as err:
                raise WormwatchError(
                    f"cannot write summary {self.path}: renaming the new one into place: "
                    f"{err.strerror}"
                ) from None

    def close(self) -> None:
        if self.kept is not None:
            self.kept.close()


class Outputs:
    """The run's writers, opened before the capture (see the module docstring).

    Args:
        alerts, events, summary: paths from the command line, or None.
        summary_every_s: ``--summary-every`` (a periodic summary needs the rename).
        user: ``--user``; only a live capture started as root drops to it.
        reopen: SIGHUP's requests (:class:`~wormwatch.control.RunSignals`).
        inputs: the capture files and config read, which no output may be.
    """

    def __init__(
        self,
        *,
        alerts: str | None,
        events: str | None,
        summary: str | None,
        summary_every_s: float | None,
        user: str | None,
        is_live: bool,
        reopen: ReopenRequests,
        inputs: Sequence[str] = (),
    ) -> None:
        self.reopen = reopen
        paths = {"--alerts": alerts, "--events": events, "--summary": summary}
        refuse_shared_paths(paths, inputs)
        target = drop_target(user) if is_live else None
        self.summary = (
            SummaryFile(
                summary, is_periodic=bool(summary_every_s), target=target, reopen=self.reopen
            )
            if summary
            else None
        )
        owner = (target.uid, target.gid) if target is not None else None
        self.alerts: JsonLinesWriter | None = None
        self.events: EventLog | None = None
        try:
            _note_rotation([p for p in (alerts, events) if p and p != "-"], target)
            if alerts:
                self.alerts = self._writer(alerts, owner)
            if events:
                # its line kernels are imported (and loaded) only by a run that logs
                from wormwatch.present.sinks.events import EventLog  # noqa: PLC0415

                self.events = EventLog(self._writer(events, owner))
        except WormwatchError:
            self.close()
            raise

    def _writer(self, path: str, owner: tuple[int, int] | None) -> JsonLinesWriter:
        return JsonLinesWriter(path, reopen=self.reopen, owner=owner, warn=_warn)

    def close(self) -> None:
        """Close every file (idempotent)."""
        for writer in (self.alerts, self.events.writer if self.events else None):
            if writer is not None:
                writer.close()
        if self.summary is not None:
            self.summary.close()

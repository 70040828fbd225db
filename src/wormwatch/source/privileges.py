"""Giving up root once the capture is open.

Place in the flow: between opening the source and reading its first packet.
Opening an AF_PACKET socket needs root (or CAP_NET_RAW/CAP_NET_ADMIN); reading
an open one does not, so the parsing of untrusted packets runs as an
unprivileged user. Numba kernels must be compiled or loaded before the drop
(``wormwatch.warmup.warm_up()``): the unprivileged user usually cannot write
numba's cache next to the installed package.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from typing import Final

from wormwatch.errors import WormwatchError

DEFAULT_USER: Final = "nobody"


@dataclass(frozen=True, slots=True)
class DropTarget:
    """The account a root process will drop to."""

    name: str
    uid: int
    gid: int


def drop_target(user: str | None) -> DropTarget | None:
    """Who :func:`drop_privileges` will switch to, or None when nothing will change
    (not running as root, or ``user`` is root itself).

    Raises:
        WormwatchError: the user does not exist.
    """
    if os.geteuid() != 0:
        return None
    name = user or DEFAULT_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError as err:
        raise WormwatchError(
            f"--user {name}: no such user (create it, or name an existing one with --user)"
        ) from err
    if entry.pw_uid == 0:
        return None
    return DropTarget(name, entry.pw_uid, entry.pw_gid)


def can_create_in(directory: str, target: DropTarget | None) -> bool:
    """Whether ``target`` (this process when None) can create and remove a file in
    ``directory``: tried for real, by a child process that drops to ``target``
    first, so ACLs, read-only mounts and root-squashed NFS answer as they will."""
    if target is None:
        return os.access(directory, os.W_OK | os.X_OK)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's exit code is the answer
        code = 1
        try:
            os.setgroups(os.getgrouplist(target.name, target.gid))
            os.setresgid(target.gid, target.gid, target.gid)
            os.setresuid(target.uid, target.uid, target.uid)
            probe = os.path.join(directory, f".wormwatch-probe-{os.getpid()}")
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def sticky_owner(path: str, target: DropTarget | None) -> int | None:
    """The owner of ``path`` when it stops ``target`` (this process when None)
    from renaming another file over it or removing it: the directory is sticky
    (mode 1777, as /tmp), and neither it nor ``path`` is the user's. None when
    nothing stops it (root, no sticky bit, the user's own, or no file yet)."""
    uid = target.uid if target is not None else os.geteuid()
    try:
        parent = os.stat(os.path.dirname(os.path.abspath(path)))
        owner = os.stat(path).st_uid
    except OSError:
        return None
    if uid == 0 or not parent.st_mode & stat.S_ISVTX or uid in (parent.st_uid, owner):
        return None
    return owner


def drop_privileges(user: str | None) -> str | None:
    """Switch this process to ``user`` (default ``nobody``) if it runs as root.

    Supplementary groups become the user's own groups; real, effective and saved
    ids all change, so root cannot be regained. Open sockets stay usable.

    Args:
        user: the account to run as; None means ``nobody``.

    Returns:
        The user dropped to, or None when not running as root (nothing to drop).

    Raises:
        WormwatchError: the user does not exist, or the switch failed.
    """
    if os.geteuid() != 0:
        return None
    name = user or DEFAULT_USER
    target = drop_target(name)
    if target is None:
        return name
    entry = pwd.getpwnam(name)
    try:
        os.initgroups(name, entry.pw_gid)
        os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
        os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
    except OSError as err:
        raise WormwatchError(f"cannot switch to user {name}: {err}") from err
    if os.getresuid() != (entry.pw_uid,) * 3:
        raise WormwatchError(f"cannot switch to user {name}: still running as uid {os.getuid()}")
    return name

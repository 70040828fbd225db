"""Capture files in memory: mapped read-only, alone or several side by side.

a checked capture file -> **this module** -> its bytes as a ``uint8`` array (``data``) and a
buffer for ``struct`` (``buffer``) -> the record walkers of ``wormwatch.source.pcapfile``,
whose batches point into the same array -> decode stage.

A file replayed alone is mapped on its own (:class:`FileMapping`). Files merged by packet
time (``wormwatch.source.merge``) are mapped next to each other in one range of addresses
(:class:`SplicedFiles`): a batch is one buffer plus offsets (the decode kernels take one
``data`` array), so packets of several files in one batch need one buffer. Copying them
would cost a memory copy of every packet; instead an anonymous mapping reserves the whole
range and each file is mapped over its part of it with ``MAP_FIXED`` (the way a C program
splices mappings), so nothing is copied and the page cache serves every file as it does for
a single one. Each file starts on a page boundary. Python's ``mmap`` objects own the ranges:
a range is unmapped, overlays included, when the last array using it goes away.

Pages behind the reading are let go (``release``) so resident memory stays flat; they stay
in the page cache, and a later touch faults them back in unchanged.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from wormwatch.errors import WormwatchError
from wormwatch.model import U8
from wormwatch.source.pcapng import Bytes

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
)
_libc.madvise.restype = ctypes.c_int
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_FIXED = 0x10  # linux/mman.h; the mmap module does not export it
_MAP_NORESERVE = 0x4000  # asm-generic/mman.h; neither this one (before Python 3.13)
# linux/mman.h (Linux 5.14): fault pages in, read-only, without touching them from here
_MADV_POPULATE_READ = 22

# How far past its reader another thread maps a file in (``map_ahead`` of the replay
# sources), and in what steps. Resident memory grows by at most this much (~1.5 batches'
# span of a mix in which 70% of the packets are bulk traffic); 32 MB was no faster on
# the replay benchmark. A merged replay shares it out among its files.
MAP_AHEAD_BYTES = 16 << 20
MAP_STEP_BYTES = 4 << 20


def _drop_pages(base: int, lo: int, hi: int) -> None:
    """``MADV_DONTNEED`` on the whole pages of ``base + lo .. base + hi``, through ctypes,
    which lets go of the GIL for the call: ``mmap.madvise`` holds it, and dropping a
    batch's ~10 MB of page-table entries then stalled the aggregating thread for
    ~0.2 ms a batch. A failure is no harm (the pages merely stay)."""
    lo = _round_up(lo)
    hi -= hi % mmap.PAGESIZE
    if hi > lo:
        _libc.madvise(base + lo, hi - lo, mmap.MADV_DONTNEED)


def map_in(base: int, lo: int, hi: int) -> bool:
    """``MADV_POPULATE_READ`` on the pages of ``base + lo .. base + hi``: faults them into
    the process at once, through ctypes, outside the GIL. False when the kernel refuses
    (older than 5.14: the reader then faults them in itself, as before)."""
    lo -= lo % mmap.PAGESIZE
    hi = _round_up(hi)
    return hi <= lo or _libc.madvise(base + lo, hi - lo, _MADV_POPULATE_READ) == 0


def _round_up(n: int) -> int:
    return -(-n // mmap.PAGESIZE) * mmap.PAGESIZE


class Mapped(Protocol):
    """A capture file's bytes in memory: ``data`` as an array, ``buffer`` for ``struct``."""

    @property
    def data(self) -> U8: ...

    @property
    def buffer(self) -> Bytes: ...

    def release(self, lo: int, hi: int) -> None:
        """Lets this process's pages between byte ``lo`` and ``hi`` go (they stay cached)."""

    def map_in(self, lo: int, hi: int) -> bool:
        """Maps the pages between byte ``lo`` and ``hi`` in now (False: it cannot)."""

    def shrunk_to(self) -> int | None:
        """The file's size now if its writer cut it below what is mapped, else None."""


class FileMapping:
    """A capture file mapped read-only on its own, read front to back."""

    def __init__(self, path: str) -> None:
        try:
            with open(path, "rb") as file:
                self._mm = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as err:
            raise WormwatchError(
                f"file {path}: cannot map it any more ({err}); "
                "was it moved or emptied during the replay?"
            ) from None
        self._mm.madvise(mmap.MADV_SEQUENTIAL)
        self._mapped_size = len(self._mm)
        self.buffer: Bytes = self._mm
        self.data: U8 = np.frombuffer(self._mm, dtype=np.uint8)

    def release(self, lo: int, hi: int) -> None:
        if self.data.shape[0]:
            _drop_pages(self.data.ctypes.data, lo, hi)

    def map_in(self, lo: int, hi: int) -> bool:
        data = self.data  # kept here: the mapping outlives the call even if closed
        return bool(data.shape[0]) and map_in(data.ctypes.data, lo, hi)

    def shrunk_to(self) -> int | None:
        try:
            size = self._mm.size()  # fstat of the mapped file itself, however renamed
        except (OSError, ValueError):
            return None
        if size >= self._mapped_size:
            return None
        _zero_beyond(self.data.ctypes.data, size, self._mapped_size)
        return size


class SplicedFiles:
    """Files mapped next to each other; ``data[starts[k] : starts[k] + sizes[k]]`` is file k.

    Args:
        paths: regular files, already checked to be readable captures.

    Raises:
        WormwatchError: a file can no longer be opened or mapped.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        # the sizes first (the reservation needs their total), then each file opened,
        # mapped and closed in turn: a merge of more files than the open-file limit
        # works (they were all opened at once: "Too many open files" past ~1,000)
        self.sizes = [_size(path) for path in paths]
        self.paths = list(paths)
        self._idents: list[tuple[int, int]] = []
        self.starts = [0] * len(paths)
        total = 0
        for k, size in enumerate(self.sizes):
            self.starts[k] = total
            total += _round_up(max(size, 1))
        # the reservation: owned (and finally unmapped, overlays and all) by Python;
        # read-only, private and unreserved, so it is not counted against memory (a
        # writable one failed with ENOMEM once the files' total passed memory's size)
        self._mm: mmap.mmap | None = mmap.mmap(
            -1, total, flags=mmap.MAP_PRIVATE | _MAP_NORESERVE, prot=mmap.PROT_READ
        )
        base = int(np.frombuffer(self._mm, np.uint8).ctypes.data)
        for k, path in enumerate(paths):
            fd = _open(path)
            try:
                # a file cut since its size was read is mapped as it is now
                info = os.fstat(fd)
                self._idents.append((info.st_dev, info.st_ino))
                self.sizes[k] = min(self.sizes[k], info.st_size)
                if self.sizes[k]:
                    _overlay(base + self.starts[k], self.sizes[k], fd, path)
            finally:
                os.close(fd)
        # read front to back, as one file is (the kernel then lets pages behind go sooner)
        self._mm.madvise(mmap.MADV_SEQUENTIAL)
        data: U8 = np.frombuffer(self._mm, dtype=np.uint8)
        data.flags.writeable = False
        self.data = data

    def release(self, k: int, lo: int, hi: int) -> None:
        """Drops this process's pages of file ``k`` between offsets ``lo`` and ``hi``
        (whole pages inside them), keeping resident memory flat; they stay cached."""
        if self._mm is None:
            return
        _drop_pages(self.data.ctypes.data + self.starts[k], lo, hi)

    def view(self, k: int) -> FileView:
        """File ``k`` alone, as a walker reads it."""
        return FileView(
            self.data[self.starts[k] : self.starts[k] + self.sizes[k]], lambda: self.shrunk_to(k)
        )

    def shrunk_to(self, k: int) -> int | None:
        """File ``k``'s size now if its writer cut it below what is mapped, else None
        (its pages past that end are then zero pages: touched, they would kill the
        process with SIGBUS)."""
        try:
            info = os.stat(self.paths[k])
        except OSError:
            return None
        # a file replaced under its name leaves the mapped one as it was
        if (info.st_dev, info.st_ino) != self._idents[k] or info.st_size >= self.sizes[k]:
            return None
        if self._mm is not None:
            _zero_beyond(self.data.ctypes.data + self.starts[k], info.st_size, self.sizes[k])
        return info.st_size

    def close(self) -> None:
        """Lets go of the range (arrays still using it keep it alive)."""
        self._mm = None
        self.data = np.zeros(0, dtype=np.uint8)


class FileView:
    """One file of a :class:`SplicedFiles`: its bytes, for a walker.

    Its pages are let go by the merge, which knows what the batches still use, so
    ``release`` does nothing here; ``map_in`` maps them in as a single file's does.
    """

    def __init__(self, data: U8, shrunk_to: Callable[[], int | None]) -> None:
        self.data = data
        self.buffer: Bytes = data.data
        self.shrunk_to = shrunk_to

    def release(self, lo: int, hi: int) -> None:
        """The merge lets pages go (``SplicedFiles.release``): nothing to do."""

    def map_in(self, lo: int, hi: int) -> bool:
        data = self.data  # file k's part of the range: it starts on a page boundary
        return bool(data.shape[0]) and map_in(data.ctypes.data, lo, hi)


def note_cut(warnings: list[str], path: str, size: int) -> None:
    """Warns once that a file was cut to ``size`` bytes while it was mapped."""
    text = (
        f"file {path}: cut to {size} bytes during the replay (rewritten by its writer?); "
        "the packets before the cut were read"
    )
    if text not in warnings:
        warnings.append(text)


def _zero_beyond(address: int, size: int, mapped: int) -> None:
    """Maps zero pages over a file's mapped whole pages past ``size`` (up to ``mapped``).

    A file cut while mapped (tcpdump restarted, or rotating with -G, onto the same name)
    has no pages there any more: a touch raised SIGBUS and killed the replay. Its last
    partial page reads zeros past the end by itself.
    """
    lo, hi = _round_up(size), _round_up(mapped)
    if hi > lo:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_FIXED
        _libc.mmap(address + lo, hi - lo, mmap.PROT_READ, flags, -1, 0)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as err:
        raise _gone(path, err) from None


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as err:
        raise _gone(path, err) from None


def _gone(path: str, err: OSError) -> WormwatchError:
    return WormwatchError(
        f"file {path}: cannot open it any more ({err.strerror}); "
        "was it moved or removed during the replay?"
    )


def _overlay(address: int, size: int, fd: int, path: str) -> None:
    got = _libc.mmap(address, size, mmap.PROT_READ, mmap.MAP_SHARED | _MAP_FIXED, fd, 0)
    if got == _MAP_FAILED or got != address:
        err = ctypes.get_errno()
        raise WormwatchError(
            f"file {path}: cannot map it ({os.strerror(err)}); "
            "give --concatenate to read the files one after the other"
        )

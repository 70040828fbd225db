"""Capture files checked when a replay opens them: path -> :class:`Header`.

paths given to ``wormwatch replay`` -> **this module** -> what each file's header says
(pcap or pcapng, byte order, time resolution, link type) -> ``wormwatch.source.pcapfile``
and ``wormwatch.source.merge`` walk the files. Every problem a path can have before its
first record is one :class:`~wormwatch.errors.WormwatchError` that says what to do:
missing, unreadable, a directory, empty, not a capture (gzip, Kuznetzov's format, ...),
a header cut short.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from wormwatch.errors import WormwatchError
from wormwatch.kernels.pcapwalk import BT_SHB, PCAP_FILE_HEADER
from wormwatch.source.pcapng import read_section_header
from wormwatch.source.stdin import PCAP_MAGICS as _PCAP_MAGICS
from wormwatch.source.stdin import compression

_KUZNETZOV_MAGICS = (0xA1B2CD34, 0x34CDB2A1)
_LINKTYPE_MASK = 0xFFFF  # the upper bits of the header's link type carry FCS information
# enough for a pcap file header (24 bytes) or a pcapng section header (28)
_HEAD_BYTES = 32


@dataclass(frozen=True, slots=True)
class Header:
    """A file checked when the replay was opened, and what its header said."""

    path: str
    is_pcapng: bool
    is_big: bool = False
    is_nano: bool = False
    linktype: int = 0


def check_file(path: str) -> Header:
    """Checks that ``path`` is a readable capture and reads its header."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise WormwatchError(f"file {path}: no such file; check the path") from None
    except OSError as err:
        raise WormwatchError(f"file {path}: cannot read it ({err.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise WormwatchError(f"file {path} is a directory; name the capture files in it")
    if not stat.S_ISREG(info.st_mode):
        raise WormwatchError(
            f"file {path} is not a regular file; to read a pipe, give - and pipe it to stdin"
        )
    if info.st_size == 0:
        raise WormwatchError(f"file {path} is empty (0 bytes); the capture was never written")
    head = _read_head(path)
    magic = int.from_bytes(head[:4].ljust(4, b"\0"), "little")
    if len(head) >= 4 and magic == BT_SHB:
        section = read_section_header(head, 0, info.st_size)
        if isinstance(section, str):
            raise WormwatchError(
                f"file {path}: {section}; it is not a complete pcapng capture "
                "(a cut-off copy?), write or copy it again"
            )
        return Header(path, is_pcapng=True)
    if len(head) < 4 or magic not in _PCAP_MAGICS:
        raise WormwatchError(_bad_magic_message(path, head))
    if len(head) < PCAP_FILE_HEADER:
        raise WormwatchError(
            f"file {path}: pcap header truncated ({len(head)} of {PCAP_FILE_HEADER} bytes); "
            "the file was cut off, write or copy it again"
        )
    is_big, is_nano = _PCAP_MAGICS[magic]
    linktype = int.from_bytes(head[20:24], "big" if is_big else "little") & _LINKTYPE_MASK
    return Header(path, is_pcapng=False, is_big=is_big, is_nano=is_nano, linktype=linktype)


def _read_head(path: str) -> bytes:
    """The first bytes of a file: enough for a pcap header or a pcapng section header."""
    try:
        with open(path, "rb") as file:
            return file.read(_HEAD_BYTES)
    except PermissionError:
        raise WormwatchError(
            f"file {path}: permission denied; run as a user who may read it"
        ) from None
    except OSError as err:
        raise WormwatchError(f"file {path}: cannot read it ({err.strerror})") from None


def _bad_magic_message(path: str, head: bytes) -> str:
    seen = " ".join(f"{b:02x}" for b in head[:4])
    hint = "give a capture written by tcpdump -w or Wireshark"
    if packed := compression(head):
        hint = f"it is {packed[0]}-compressed: {packed[1]} it first"
    elif int.from_bytes(head[:4].ljust(4, b"\0"), "little") in _KUZNETZOV_MAGICS:
        hint = "it is Kuznetzov's modified pcap: convert it with editcap -F pcap"
    return (
        f"file {path}: not a pcap or pcapng file (it starts with bytes {seen}, "
        f"not a pcap magic a1b2c3d4/a1b23c4d or pcapng 0a0d0d0a); {hint}"
    )

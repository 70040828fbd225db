"""Keys without a terminal: byte decoding and view-state transitions; then
TerminalInput on a real pseudo-terminal, restored on every way out."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import termios
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from wormwatch.present.live.keys import Key, KeyDecoder, decode_keys
from wormwatch.present.live.terminal import TerminalInput
from wormwatch.present.live.view import SORT_KEYS, ViewState, handle_key, matches_filter

# --- decoding -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "keys"),
    [
        (b"q", ["q"]),
        (b"ps?/", ["p", "s", "?", "/"]),
        (b"\x1b[A\x1b[B", [Key.UP, Key.DOWN]),
        (b"\x1bOA\x1bOB", [Key.UP, Key.DOWN]),  # application cursor mode
        (b"\x1b[1;5A", [Key.UP]),  # Ctrl+Up: a modified arrow is still an arrow
        (b"\x1b[5~\x1b[6~", [Key.PAGE_UP, Key.PAGE_DOWN]),
        (b"\x1b[H\x1b[F\x1b[1~\x1b[4~", [Key.HOME, Key.END, Key.HOME, Key.END]),
        (b"\r\n", [Key.ENTER, Key.ENTER]),
        (b"\x7f\x08", [Key.BACKSPACE, Key.BACKSPACE]),
        (b"\x1b", [Key.ESCAPE]),
        (b"\x1bq", [Key.ESCAPE, "q"]),
        (b"\x1b[15~x", ["x"]),  # F5 is consumed, not typed
        (b"\x1b[<0;10;5M", []),  # a mouse report is consumed
        (b"\x00\x01\xff\xc3\xa9", []),  # other control bytes and non-ASCII are ignored
    ],
)
def test_decode_keys(data: bytes, keys: list[str]) -> None:
    assert decode_keys(data) == keys


def test_sequence_split_across_reads() -> None:
    decoder = KeyDecoder()
    assert decoder.feed(b"s\x1b") == ["s"]
    assert decoder.has_pending
    assert decoder.feed(b"[") == []
    assert decoder.feed(b"Bq") == [Key.DOWN, "q"]
    assert not decoder.has_pending
    assert decoder.flush() == []


def test_lone_escape_is_resolved_by_flush() -> None:
    decoder = KeyDecoder()
    assert decoder.feed(b"\x1b") == []
    assert decoder.flush() == [Key.ESCAPE]
    assert decoder.feed(b"q") == ["q"]


# --- state transitions ------------------------------------------------------------

ROWS = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.1.0.9")


def press(state: ViewState, *keys: str) -> ViewState:
    for key in keys:
        state = handle_key(state, key)
    return state


def test_q_quits_and_p_toggles_pause() -> None:
    assert press(ViewState(), "q").is_quitting
    assert press(ViewState(), "p").is_paused
    assert not press(ViewState(), "p", "p").is_paused


def test_s_cycles_every_sort_column_and_wraps() -> None:
    state = ViewState()
    seen = []
    for _ in SORT_KEYS:
        seen.append(state.sort)
        state = handle_key(state, "s")
    assert seen == list(SORT_KEYS)
    assert state.sort == SORT_KEYS[0]


def test_arrows_move_the_selection_within_the_rows() -> None:
    state = ViewState(rows=ROWS)
    state = press(state, Key.DOWN)
    assert state.selected == "10.0.0.1"  # first press selects the top row
    state = press(state, Key.DOWN, Key.DOWN)
    assert state.selected == "10.0.0.3"
    state = press(state, Key.DOWN, Key.DOWN, Key.DOWN)
    assert state.selected == "10.1.0.9"  # clamped at the bottom
    state = press(state, Key.UP)
    assert state.selected == "10.0.0.3"
    assert press(state, Key.HOME).selected == "10.0.0.1"
    assert press(state, Key.PAGE_DOWN).selected == "10.1.0.9"
    assert press(ViewState(), Key.DOWN).selected is None  # nothing to select


def test_the_first_move_goes_where_its_key_points() -> None:
    """With nothing selected, End selects the last row and PgDn a page down,
    not the first row."""
    assert press(ViewState(rows=ROWS), Key.END).selected == "10.1.0.9"
    assert press(ViewState(rows=ROWS), Key.PAGE_DOWN).selected == "10.1.0.9"
    assert press(ViewState(rows=ROWS), Key.UP).selected == "10.0.0.1"
    assert press(ViewState(rows=ROWS), Key.HOME).selected == "10.0.0.1"
    gone = ViewState(rows=ROWS, selected="10.9.9.9")  # the selected host left the list
    assert press(gone, Key.END).selected == "10.1.0.9"


def test_selection_follows_the_host_not_the_position() -> None:
    state = ViewState(rows=ROWS, selected="10.0.0.2")
    reordered = replace(state, rows=("10.0.0.2", "10.1.0.9", "10.0.0.1", "10.0.0.3"))
    assert press(reordered, Key.DOWN).selected == "10.1.0.9"


def test_enter_toggles_detail_and_selects_the_top_row_if_needed() -> None:
    state = press(ViewState(rows=ROWS), Key.ENTER)
    assert state.is_detail_open
    assert state.selected == "10.0.0.1"
    assert not press(state, Key.ENTER).is_detail_open
    assert not press(state, Key.ESCAPE).is_detail_open
    assert not press(ViewState(), Key.ENTER).is_detail_open  # no rows, no panel


def test_enter_opens_a_panel_when_the_open_ones_host_left_the_rows() -> None:
    """The selected host dropped out of the list (or the filter): its panel is
    not drawn, so Enter must open the top row's, not close an invisible one."""
    gone = ViewState(rows=ROWS, selected="10.9.9.9", is_detail_open=True)
    state = press(gone, Key.ENTER)
    assert state.is_detail_open
    assert state.selected == "10.0.0.1"


def test_filter_typing_applies_on_enter_and_cancels_on_escape() -> None:
    state = press(ViewState(rows=ROWS), "/", "1", "0", ".", "1", "x", "q")
    assert state.filter_draft == "10.1"  # x and q are not address characters
    assert not state.is_quitting  # q while typing is not quit
    assert state.filter == ""
    applied = press(state, ".", Key.ENTER)
    assert applied.filter == "10.1."
    assert applied.filter_draft is None
    edited = press(applied, "/", Key.BACKSPACE, Key.BACKSPACE, "0", Key.ESCAPE)
    assert edited.filter == "10.1."  # Esc keeps the filter that was applied
    cleared = press(applied, "/", *[Key.BACKSPACE] * 5, Key.ENTER)
    assert cleared.filter == ""


def test_help_opens_and_any_key_closes_it_but_q_quits() -> None:
    state = press(ViewState(), "?")
    assert state.is_help_open
    closed = press(state, "s")
    assert not closed.is_help_open
    assert closed.sort == "score"  # the key only closed the help
    assert press(state, "q").is_quitting


@pytest.mark.parametrize(
    ("addr", "text", "expected"),
    [
        ("10.1.2.3", "", True),
        ("10.1.2.3", "10.1.", True),
        ("10.11.2.3", "10.1.", False),
        ("10.1.2.3", "10.1.0.0/16", True),
        ("10.2.2.3", "10.1.0.0/16", False),
        ("10.1.2.3", "10.1.2.3/32", True),
        ("2001:db8::1", "2001:DB8:", True),
        ("2001:db8::1", "2001:db8::/32", True),
        ("10.1.2.3", "2001:db8::/32", False),
        ("10.1.2.3", "10.1.0.0/99", False),
        # the address itself in another spelling than the table's
        ("2001:db8::1", "2001:0DB8:0000:0000:0000:0000:0000:0001", True),
        ("2001:db8::1", "2001:db8:0:0:0:0:0:2", False),
        ("192.0.2.7", "::ffff:192.0.2.7", True),
        ("fe80::2", "fe80::2%eth0", True),
        ("2001:db8::1", "2001:db8::1::", False),
    ],
)
def test_matches_filter(addr: str, text: str, expected: bool) -> None:
    assert matches_filter(addr, text) is expected


# --- TerminalInput on a pseudo-terminal -------------------------------------------


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    try:
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


def _lflag(fd: int) -> int:
    return int(termios.tcgetattr(fd)[3])


def test_cbreak_reads_keys_without_blocking_and_restores(pty_pair: tuple[int, int]) -> None:
    master, slave = pty_pair
    before = termios.tcgetattr(slave)
    with TerminalInput(slave) as term:
        assert term.is_active
        assert not _lflag(slave) & (termios.ICANON | termios.ECHO)
        assert _lflag(slave) & termios.ISIG  # Ctrl-C still interrupts
        assert term.read_keys() == []  # nothing typed: returns at once
        os.write(master, b"s\x1b[Bq")
        assert term.wait(1.0)
        assert term.read_keys() == ["s", Key.DOWN, "q"]
        os.write(master, b"\x1b")
        assert term.wait(1.0)
        assert term.read_keys() == []  # maybe the start of an arrow...
        assert term.read_keys() == [Key.ESCAPE]  # ...no: a lone Esc
    assert termios.tcgetattr(slave) == before
    assert not term.is_active


def test_restored_after_an_exception(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    before = termios.tcgetattr(slave)
    restored = []
    with pytest.raises(RuntimeError), TerminalInput(slave, on_restore=lambda: restored.append(1)):
        raise RuntimeError("crash inside the live screen")
    assert termios.tcgetattr(slave) == before
    assert restored == [1]


def test_keys_come_from_the_terminal_when_stdin_is_the_capture(
    pty_pair: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``wormwatch replay -``: stdin is the pcap, keys come from the tty."""
    master, slave = pty_pair
    monkeypatch.setattr(sys, "stdin", io.BytesIO(b"\xd4\xc3\xb2\xa1"))
    before = termios.tcgetattr(slave)
    with TerminalInput(tty_path=os.ttyname(slave)) as term:
        assert term.is_active
        assert term.fd not in (slave, master)  # its own descriptor of the tty
        os.write(master, b"q")
        assert term.wait(1.0)
        assert term.read_keys() == ["q"]
        fd = term.fd
    assert termios.tcgetattr(slave) == before
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)  # closed again


def test_no_terminal_anywhere_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with TerminalInput(tty_path=str(tmp_path / "missing")) as term:
        assert not term.is_active
        assert term.read_keys() == []


def test_not_a_terminal_changes_nothing(tmp_path: Path) -> None:
    with (tmp_path / "f").open("w+b") as f, TerminalInput(f.fileno()) as term:
        assert not term.is_active
        assert term.read_keys() == []
        assert not term.wait(0.0)


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from wormwatch.present.live.terminal import TerminalInput
    slave = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
    term = TerminalInput(slave, on_restore=lambda: os.write(1, b"restored\\n"))
    term.open()
    os.write(1, b"cbreak\\n")
    how = sys.argv[2]
    if how == "sigterm":
        os.kill(os.getpid(), signal.SIGTERM)
    elif how == "exit":
        sys.exit(3)
    elif how == "interrupt":
        raise KeyboardInterrupt
    elif how == "crash":
        raise RuntimeError("boom")
    """
)


@pytest.mark.parametrize(
    ("how", "returncode"),
    [("sigterm", -signal.SIGTERM), ("exit", 3), ("interrupt", -signal.SIGINT), ("crash", 1)],
)
def test_restored_when_the_process_dies(
    pty_pair: tuple[int, int], how: str, returncode: int
) -> None:
    """SIGTERM (signal handler), sys.exit and an uncaught Ctrl-C (atexit), and
    a crash (excepthook: restored before the traceback is printed) all leave
    the terminal as it was, and the process still ends the same way."""
    _, slave = pty_pair
    before = termios.tcgetattr(slave)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, os.ttyname(slave), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=30,
        check=False,
    )
    assert done.returncode == returncode
    assert done.stdout.startswith(b"cbreak\nrestored\n")
    assert done.stdout.count(b"restored") == 1
    if how == "crash":
        assert done.stdout.endswith(b"RuntimeError: boom\n")
    assert termios.tcgetattr(slave) == before

"""safe_text and name_cell: hostile names reach the terminal as visible escapes."""

from __future__ import annotations

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from wormwatch.present.safe import name_cell, safe_text

HOSTILE = [
    (b"mail.\x1b[31mred\x1b[0m.example", "mail.\\x1b\\x5b31mred\\x1b\\x5b0m.example"),
    (b"bell\x07.example", "bell\\x07.example"),
    (b"over\rwrite.example", "over\\x0dwrite.example"),
    (b"new\nline", "new\\x0aline"),
    (b"[bold]smtp.example[/bold]", "\\x5bbold\\x5dsmtp.example\\x5b/bold\\x5d"),
    (b"[link=https://evil.example]x[/link]", "\\x5blink=https://evil.example\\x5dx\\x5b/link\\x5d"),
    (b"bad\xff\xfeutf8", "bad\\xff\\xfeutf8"),
    (b"del\x7f", "del\\x7f"),
    (b"nul\x00", "nul\\x00"),
    (b"back\\x1bslash", "back\\\\x1bslash"),
    # C1 CSI (U+009B) encoded as UTF-8, and a bidi override
    ("c1\u009b31m".encode(), "c1\\u009b31m"),
    ("bidi\u202etxt".encode(), "bidi\\u202etxt"),
    ("zero\u200bwidth".encode(), "zero\\u200bwidth"),
]


@pytest.mark.parametrize(("raw", "expected"), HOSTILE)
def test_safe_text_escapes_hostile_bytes(raw: bytes, expected: str) -> None:
    assert safe_text(raw) == expected


def test_plain_names_are_unchanged() -> None:
    assert safe_text(b"mail.example.com") == "mail.example.com"
    assert safe_text("smtp.example.org") == "smtp.example.org"
    assert safe_text("bücher.example".encode()) == "bücher.example"


def test_str_input_keeps_its_backslashes_but_loses_controls() -> None:
    # a str is text another stage made (e.g. text.name_text): its escapes stay
    assert safe_text("mail\\x1b.example") == "mail\\x1b.example"
    assert safe_text("esc\x1b[2J") == "esc\\x1b\\x5b2J"
    assert safe_text("lone\udcffbyte") == "lone\\xffbyte"


def test_result_never_holds_control_or_bracket() -> None:
    every_byte = bytes(range(256))
    text = safe_text(every_byte)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)
    assert "[" not in text
    assert "]" not in text


def test_max_len_truncates_without_splitting_an_escape() -> None:
    assert safe_text(b"abcdefgh", max_len=5) == "abcd…"
    assert safe_text(b"abcdefgh", max_len=8) == "abcdefgh"
    # "ab\x1bcd" -> "ab\\x1bcd": a cut inside the escape moves before it
    assert safe_text(b"ab\x1bcd", max_len=4) == "ab…"
    assert safe_text(b"ab\x1bcd", max_len=7) == "ab\\x1b…"
    assert len(safe_text(b"x" * 300, max_len=40)) == 40


def test_markup_parsing_of_safe_text_is_harmless() -> None:
    """If someone parses safe text as markup anyway, nothing is interpreted."""
    raw = b"[bold red]x[/] [link=http://evil.example]y[/link]"
    markup = Text.from_markup(safe_text(raw))
    assert markup.plain == safe_text(raw)
    assert not markup.spans


def _render(cell: Text, width: int = 60) -> str:
    console = Console(record=True, width=width, force_terminal=True, color_system="truecolor")
    # no header: rich's own bold header would be the only ESC bytes
    table = Table(show_header=False)
    table.add_row(cell)
    console.print(table)
    return console.export_text(styles=True)


@pytest.mark.parametrize(("raw", "expected"), HOSTILE)
def test_name_cell_renders_escaped_on_a_terminal_console(raw: bytes, expected: str) -> None:
    out = _render(name_cell(raw), width=80)
    assert expected in out
    # the only ESC bytes are rich's own styling (none here: the cell is unstyled)
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "\r" not in out


def test_name_cell_for_a_255_byte_name_stays_on_one_line() -> None:
    name = (b"mail" + b"\x1b" * 4 + b"x" * 60 + b".") * 3 + b"[bold]" + b"y" * 42
    assert len(name) == 255
    out = _render(name_cell(name), width=60)
    body = [line for line in out.splitlines() if "mail" in line]
    assert len(body) == 1
    assert "\x1b" not in out
    assert body[0].rstrip().endswith("… │")
    assert "mail\\x1b\\x1b" in body[0]


def test_name_cell_does_not_wrap_or_interpret_markup() -> None:
    cell = name_cell(b"[bold]evil[/bold]")
    assert cell.plain == "\\x5bbold\\x5devil\\x5b/bold\\x5d"
    assert not cell.spans
    assert cell.no_wrap


def test_max_len_after_escaped_backslashes_does_not_split_an_escape() -> None:
    """Escaped backslashes (``\\\\``) before an escape: the cut is found from the start
    of the text, so it cannot begin reading in the middle of a ``\\\\`` pair and cut
    the ``\\u202e`` after it in half."""
    raw = b"[\\\\\\\xe2\x80\xae\xff"  # '[' three backslashes, U+202E, an invalid byte
    assert safe_text(raw) == "\\x5b\\\\\\\\\\\\\\u202e\\xff"
    assert safe_text(raw, max_len=16) == "\\x5b\\\\\\\\\\\\…"

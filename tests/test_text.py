"""Packet time as text and the one escaping rule, shared by JSON, terminal and HTML."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from wormwatch.present.safe import safe_text
from wormwatch.text import escape_text, iso_time, iso_time_us, name_text, names_text, utc_time

HOSTILE = b"\x1b[31mmail\x07.[b]\\x1b.\xff\xc2\x9b\xe2\x80\xae.example"


def test_time_text() -> None:
    assert iso_time(1_700_000_060_500_001) == "2023-11-14T22:14:20.500001+00:00"
    assert utc_time(1_700_000_060_500_001) == "2023-11-14 22:14:20"
    assert utc_time(1_700_000_060_500_001, with_date=False) == "22:14:20"


def test_escaping_rule() -> None:
    assert name_text(HOSTILE) == ("\\x1b[31mmail\\x07.[b]\\\\x1b.\\xff\\u009b\\u202e.example")
    # the terminal's rule is the same one with the brackets escaped too
    assert safe_text(HOSTILE) == escape_text(HOSTILE, brackets=True)
    assert safe_text(HOSTILE) == name_text(HOSTILE).replace("[", "\\x5b").replace("]", "\\x5d")


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("mail\u3164\u115f\u2800x.example", "mail\\u3164\\u115f\\u2800x.example"),
        ("ma\u0336il.example", "ma\\u0336il.example"),
        ("mail\u00a0.example\u3000", "mail\\u00a0.example\\u3000"),
        ("m\u00e4il.b\u00fccher.example", "m\u00e4il.b\u00fccher.example"),
    ],
    ids=["drawn-as-nothing", "struck-through", "other-spaces", "letters-kept"],
)
def test_what_makes_a_name_look_like_another_is_escaped(name: str, shown: str) -> None:
    # letters that draw as nothing, combining marks and non-ASCII spaces passed raw:
    # "mail" then blanks; accented letters are letters and stay as they are
    assert name_text(name.encode()) == shown
    assert escape_text(name) == shown


def test_code_points_beyond_the_bmp_escape_with_eight_digits() -> None:
    # a tag character (format) and a private-use one: \U and 8 hex digits, as
    # \u and 4 digits would read as another character followed by a digit
    assert name_text("a\U000e0041b\U000f0000.example".encode()) == (
        "a\\U000e0041b\\U000f0000.example"
    )


def test_str_keeps_another_stages_escapes() -> None:
    made = name_text(b"a\x00b")
    assert escape_text(made) == made
    assert escape_text("tab\there") == "tab\\x09here"


def test_iso_time_is_what_datetime_writes() -> None:
    """The fast formatter equals ``datetime.isoformat`` across days, before the
    epoch, at day and second edges, and for years with fewer than four digits."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rng = random.Random(5)
    day_us = 86_400_000_000
    edges = [0, -1, 1, day_us - 1, day_us, -day_us, -day_us - 1, 999_999, 1_000_000]
    wide = [rng.randrange(-62_135_596_800_000_000, 253_402_300_799_999_999) for _ in range(5000)]
    near = [1_795_000_000_000_000 + rng.randrange(-10 * day_us, 10 * day_us) for _ in range(5000)]
    for ts_us in edges + wide + near + [-62_135_596_800_000_000, 253_402_300_799_999_999]:
        want = (epoch + timedelta(microseconds=ts_us)).isoformat(timespec="microseconds")
        assert iso_time(ts_us) == want, ts_us
    for beyond in (253_402_300_800_000_000, -62_135_596_800_000_001):
        with pytest.raises(OverflowError):
            iso_time(beyond)


def test_iso_time_round_trips() -> None:
    for ts_us in (0, 1_700_000_060_500_001, 1_795_000_000_000_000):
        assert iso_time_us(iso_time(ts_us)) == ts_us


def test_names_text_is_name_text_of_each() -> None:
    plain = [b"mail.example.com", b"a b", b"", b"x[1].example"]
    hostile = [b"ok.example", b"\x1b[31mred", b"caf\xc3\xa9", b"\xff\\", b"\xe2\x80\x8bzw"]
    for names in (plain, hostile, hostile[::-1], [], [b"\\"]):
        assert names_text(names) == [name_text(n) for n in names]

"""Label values safe to print (`count/labels.py`): which characters are escaped, how, and the length cut."""
from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logtaild.count.labels import ESCAPED_CATEGORIES, MARKER, cut, escape, label_value, needs_escape, printable

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None)
#: text that reaches every escaped category often: controls, format characters, separators, astral tags
HOSTILE = st.text(st.one_of(
    st.characters(),
    st.characters(categories=("Cc", "Cf", "Zl", "Zp")),
    st.sampled_from("\\\x1b\x07\u202e\u2066\U000e0041\u2064\u180e\u200b\ufeff\u00ad\u2028\x9b\x7f"),
), max_size=80)


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in ESCAPED_CATEGORIES


@SETTINGS
@given(HOSTILE)
def test_an_escaped_value_holds_no_control_format_or_separator_character(text: str) -> None:
    out = escape(text)
    assert not any(map(_unsafe, out))


@SETTINGS
@given(HOSTILE, st.integers(16, 300))
def test_a_label_value_is_safe_and_within_its_length(text: str, max_bytes: int) -> None:
    out = label_value(text, max_bytes)
    assert not any(map(_unsafe, out))
    assert len(out.encode("utf-8")) <= max_bytes


@SETTINGS
@given(HOSTILE)
def test_escaping_is_unambiguous(text: str) -> None:
    """Unescaping the output gives the input back: no two values share an escaped form."""
    out = escape(text)
    back = out.encode("ascii", "backslashreplace").decode("unicode_escape")
    assert back == text


@SETTINGS
@given(HOSTILE)
def test_printable_never_escapes_twice(text: str) -> None:
    assert printable(escape(text)) == escape(text)
    assert printable(text) == (escape(text) if any(map(_unsafe, text)) else text)


@pytest.mark.parametrize(("raw", "escaped"), [
    ("/\x1b[2J\x07", "/\\x1b[2J\\x07"),
    ("/del\x7f\x9b", "/del\\x7f\\x9b"),
    ("/rtl\u202eevil", "/rtl\\u202eevil"),
    ("/iso\u2066x\u2069", "/iso\\u2066x\\u2069"),
    ("/tag\U000e0041", "/tag\\U000e0041"),     # a tag character (Cf, astral)
    ("/inv\u2064x\u180e", "/inv\\u2064x\\u180e"),  # INVISIBLE PLUS, MONGOLIAN VOWEL SEPARATOR
    ("/zw\u200b\ufeff\u00ad", "/zw\\u200b\\ufeff\\u00ad"),
    ("/ls\u2028\u2029", "/ls\\u2028\\u2029"),
    ("/back\\slash", "/back\\\\slash"),
    ("/caf\u00e9/\u65e5\u672c \U0001f600", "/caf\u00e9/\u65e5\u672c \U0001f600"),  # ordinary text stays readable
])
def test_escape(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped
    assert needs_escape(raw) == any(map(_unsafe, raw))


def test_every_code_point_of_the_escaped_categories_is_escaped() -> None:
    """The table scans three planes; check that no other plane holds such a character."""
    missed = [hex(code) for code in range(sys.maxunicode + 1)
              if _unsafe(chr(code)) and escape(chr(code)) == chr(code)]
    assert missed == []


def test_a_short_value_is_not_cut() -> None:
    assert cut("/a" * 128, 256) == "/a" * 128
    assert cut("é" * 128, 256) == "é" * 128  # 256 bytes exactly


@pytest.mark.parametrize("unit", ["a", "é", "日", "\U0001f600"])
def test_a_cut_ends_on_a_character_boundary_with_the_marker(unit: str) -> None:
    out = cut("/" + unit * 300, 256)
    assert out.endswith(MARKER) and len(out.encode("utf-8")) <= 256
    assert len(out.encode("utf-8")) > 256 - len(MARKER.encode("utf-8")) - len(unit.encode("utf-8"))
    assert out.removesuffix(MARKER) == "/" + unit * (len(out) - 2)


def test_a_cut_never_splits_an_escape_sequence() -> None:
    for pad in range(12):
        out = label_value("/" + "a" * pad + "\U000e0041" * 40, 64)
        head = out.removesuffix(MARKER)
        assert len(out.encode()) <= 64
        assert head.encode("ascii").decode("unicode_escape") == "/" + "a" * pad + "\U000e0041" * (
            (len(head) - 1 - pad) // 10)


def test_a_cut_after_an_escaped_backslash_keeps_the_pair() -> None:
    out = label_value("/" + "\\" * 200, 64)
    assert out.removesuffix(MARKER).count("\\") % 2 == 0


@SETTINGS
@given(st.text(min_size=300, max_size=400), st.text(max_size=50), st.text(max_size=50))
def test_long_values_with_the_same_start_get_the_same_cut(start: str, end1: str, end2: str) -> None:
    assert label_value(start + end1, 256) == label_value(start + end2, 256)

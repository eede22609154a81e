"""Window counts and the report text: golden output, QPS formatting, escaping, grouping."""
from __future__ import annotations

import time

import pytest

from logtaild.count.labels import escape
from logtaild.count.window import RULE, Window, format_qps, format_report
from tests.support.clock import utc  # noqa: F401 (an autouse fixture: the tests run in UTC)

# Sun Nov 22 10:15:00 2026 UTC
WALL = 1795342500.0


def test_wall_constant_is_the_issue_example_time() -> None:
    assert time.ctime(WALL) == "Sun Nov 22 10:15:00 2026"


def test_golden_report_is_the_issue_example() -> None:
    counts = {("", "/help", "200"): 32, ("", "/", "500"): 1, ("", "/", "200"): 103}  # unsorted on purpose
    assert format_report(counts, 10.0, WALL) == (
        "Sun Nov 22 10:15:00 2026\n"
        "=============================\n"
        "/\t200\t10.3\n"
        "/\t500\t0.1\n"
        "/help\t200\t3.2\n"
        "TOTAL\t200\t13.5\n"
        "TOTAL\t500\t0.1\n"
        "TOTAL\tall\t13.6\n"
    )
    assert RULE == "=" * 29


def test_rows_sorted_by_route_then_status() -> None:
    counts = {("", "/b", "404"): 1, ("", "/a", "500"): 1, ("", "/b", "200"): 1, ("", "/a", "200"): 1,
              ("", "/A", "200"): 1}
    rows = format_report(counts, 1.0, WALL).splitlines()[2:]
    assert rows == [
        "/A\t200\t1", "/a\t200\t1", "/a\t500\t1", "/b\t200\t1", "/b\t404\t1",
        "TOTAL\t200\t3", "TOTAL\t404\t1", "TOTAL\t500\t1", "TOTAL\tall\t5",
    ]


def test_empty_window() -> None:
    assert format_report({}, 10.0, WALL) == (
        "Sun Nov 22 10:15:00 2026\n=============================\nTOTAL\tall\t0\n")


def test_zero_length_window_does_not_divide_by_zero() -> None:
    assert format_report({("", "/", "200"): 1}, 0.0, WALL).endswith("TOTAL\tall\t1000000000\n")


@pytest.mark.parametrize(("qps", "text"), [
    (13.6, "13.6"), (0.1, "0.1"), (10.3, "10.3"), (13.5, "13.5"), (3.2, "3.2"),
    (1.0, "1"), (10.0, "10"), (100.0, "100"), (1000.5, "1000.5"),
    (2.345, "2.35"), (2.344, "2.34"), (1 / 3, "0.33"), (2 / 3, "0.67"), (1.999, "2"), (0.105, "0.1"),
    (0.001, "0.01"), (0.004999, "0.01"), (1e-12, "0.01"), (0.01, "0.01"),
    (0.0, "0"), (-1.0, "0"),
])
def test_format_qps(qps: float, text: str) -> None:
    assert format_qps(qps) == text


def test_format_qps_never_more_than_two_decimals() -> None:
    for n in range(1, 2000):
        text = format_qps(n / 997)
        whole, _, frac = text.partition(".")
        assert len(frac) <= 2 and not frac.endswith("0") and text != "0", (n, text)


@pytest.mark.parametrize(("raw", "escaped"), [
    ("/\x1b[2J", "/\\x1b[2J"),            # ESC: clear screen
    ("/a\rTOTAL", "/a\\x0dTOTAL"),         # CR: overwrite the row
    ("/a\nTOTAL\tall\t999", "/a\\x0aTOTAL\\x09all\\x09999"),  # newline + tabs: a forged row
    ("/bell\x07", "/bell\\x07"),           # BEL
    ("/back\\slash", "/back\\\\slash"),    # a literal backslash cannot imitate an escape
    ("/\\x1b", "/\\\\x1b"),
    ("/rtl\u202eevil", "/rtl\\u202eevil"),  # RIGHT-TO-LEFT OVERRIDE
    ("/iso\u2066x\u2069", "/iso\\u2066x\\u2069"),
    ("/ls\u2028x", "/ls\\u2028x"),
    ("/del\x7f\x9b", "/del\\x7f\\x9b"),    # DEL and the C1 CSI
    ("/nul\x00", "/nul\\x00"),
    ("/caf\u00e9/\u65e5\u672c", "/caf\u00e9/\u65e5\u672c"),  # ordinary non-ASCII stays readable
])
def test_escape(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped


def test_crafted_route_cannot_forge_a_row_or_move_the_cursor() -> None:
    evil = "/x\t200\t9999\nTOTAL\tall\t9999\r\x1b[1A\x1b[2K\u202e"
    text = format_report({("", evil, "200"): 10}, 10.0, WALL)
    lines = text.splitlines()
    assert len(lines) == 5  # header, rule, one route row, TOTAL 200, TOTAL all
    assert [line.count("\t") for line in lines[2:]] == [2, 2, 2]
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert lines[2] == "/x\\x09200\\x099999\\x0aTOTAL\\x09all\\x099999\\x0d\\x1b[1A\\x1b[2K\\u202e\t200\t1"
    assert lines[-1] == "TOTAL\tall\t1"


def test_grouping_by_file_when_several_groups() -> None:
    counts = {
        ("/var/log/b.tsv", "/", "200"): 20,
        ("/var/log/a.tsv", "/x", "500"): 10,
        ("/var/log/a.tsv", "/", "200"): 30,
        ("/var/log/\x1b[31mred", "/", "200"): 10,
    }
    assert format_report(counts, 10.0, WALL) == (
        "Sun Nov 22 10:15:00 2026\n"
        "=============================\n"
        "[/var/log/\\x1b[31mred]\n"
        "/\t200\t1\n"
        "[/var/log/a.tsv]\n"
        "/\t200\t3\n"
        "/x\t500\t1\n"
        "[/var/log/b.tsv]\n"
        "/\t200\t2\n"
        "TOTAL\t200\t6\n"
        "TOTAL\t500\t1\n"
        "TOTAL\tall\t7\n"
    )


def test_single_named_group_still_gets_its_header() -> None:
    text = format_report({("/var/log/a.tsv", "/", "200"): 10}, 10.0, WALL)
    assert text.splitlines()[2:] == ["[/var/log/a.tsv]", "/\t200\t1", "TOTAL\t200\t1", "TOTAL\tall\t1"]


def test_window_reports_differences_and_its_measured_length() -> None:
    window = Window(100.0, {("", "/", "200"): 5})
    counts, length = window.close({("", "/", "200"): 8, ("", "/new", "404"): 2}, 110.5)
    assert counts == {("", "/", "200"): 3, ("", "/new", "404"): 2}
    assert length == 10.5
    # the next window starts where this one ended, from the totals it saw
    counts, length = window.close({("", "/", "200"): 8, ("", "/new", "404"): 3}, 112.0)
    assert counts == {("", "/new", "404"): 1}  # keys with nothing new are left out
    assert length == 1.5
    counts, length = window.close({("", "/", "200"): 8, ("", "/new", "404"): 3}, 113.0)
    assert counts == {}
    assert format_report(counts, length, WALL).endswith("=\nTOTAL\tall\t0\n")


def test_window_without_base_counts_everything() -> None:
    counts, length = Window(0.0).close({("", "/", "200"): 4}, 2.0)
    assert counts == {("", "/", "200"): 4} and length == 2.0
    assert format_report(counts, length, WALL).splitlines()[2:] == ["/\t200\t2", "TOTAL\t200\t2", "TOTAL\tall\t2"]


def test_invisible_characters_are_shown() -> None:
    assert escape("/a\u200bb\ufeff\u00ad") == "/a\\u200bb\\ufeff\\u00ad"


def test_a_config_key_with_a_newline_gives_a_one_line_error(tmp_path) -> None:
    import pytest as _pytest

    from logtaild.config import ConfigError, load
    path = tmp_path / "c.yaml"
    path.write_text('"bad\\nkey": 1\n')
    with _pytest.raises(ConfigError) as err:
        load(str(path))
    assert "\n" not in str(err.value) and "'bad\\nkey': unknown key" in str(err.value)

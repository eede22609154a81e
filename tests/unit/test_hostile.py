"""Hostile input: every line in an access log was typed by a stranger.

Property tests (hypothesis) of every parser in `parsers.PARSERS`, of `FileStream` and of
`Aggregator.feed`: no exception but ParseError escapes a parser and none at all escapes the others;
memory stays bounded (tracemalloc) whatever the line lengths; good lines after bad ones are still
counted; the terminal report escapes control characters; the exposition is valid UTF-8 and holds
exactly the routes that were counted.
"""
from __future__ import annotations

import math
import os
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from logtaild.count import slots
from logtaild.count.aggregate import Aggregator
from logtaild.count.formats import REASONS, ParseError
from logtaild.count.labels import escape, printable
from logtaild.count.parsers import PARSERS
from logtaild.count.record import AccessRecord
from logtaild.count.routes import RouteLimiter
from logtaild.count.window import format_report
from logtaild.export.collector import build_registry
from logtaild.export.snapshot import FileSnapshot, Snapshot
from logtaild.tail.filestream import FileStream

#: By default a fixed (derandomized) set of examples, so CI is deterministic; HOSTILE_EXAMPLES=2000
#: explores that many random ones per test instead.
_EXAMPLES = os.environ.get("HOSTILE_EXAMPLES")
SETTINGS = settings(max_examples=int(_EXAMPLES or 60), derandomize=not _EXAMPLES, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FRAGMENTS = [
    b"\t", b" ", b"\x00", b"\xff", b"\xc3", b"\xc3\xa9", b"\xed\xa0\x80", b"\x1b[2J", b"\x1b]0;pwned\x07",
    b"\r", b"\x07", b"\x7f", b"\xc2\x85", b"\xe2\x80\xae", b"GET", b"POST", b"BREW", b"/", b"/a", b"?q=1",
    b"#f", b"http://h", b"*", b"200", b"500", b"99", b"600", b"0", b"-1", b"-", b"1_0", b"1e308", b"nan",
    b"inf", b"9" * 40, b'"', b"\\", b"\\x22", b"\\xff", b"[", b"]", b"{", b"}", b":", b",", b"null", b"true",
    b'"path"', b'"status"', b'"bytes"', b'"latency_ms"', b'"service"', b'"request"', b'"\\ud800"',
    b"[10/Oct/2000:13:55:36 -0700]", b"HTTP/1.1", b"<script>alert(1)</script>",
]
GOOD_ROUTE = "/good-Zq9"
GOOD = {
    "tsv": b"10.0.0.1\tGET /good-Zq9\t200\t10\t5",
    "combined": b'10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /good-Zq9 HTTP/1.1" 200 10 "-" "curl"',
    "json": b'{"path": "/good-Zq9", "method": "GET", "status": 200, "bytes": 10, "latency_ms": 5}',
}
TEMPLATES = {
    "tsv": [b"%s\t%s %s\t%s\t%s", b"%s\t%s %s\t%s\t%s\t%s"],
    "combined": [b'%s - - [10/Oct/2000:13:55:36 -0700] "%s %s HTTP/1.1" %s %s', b'%s - %s [%s] "%s" %s %s "%s"'],
    "json": [b'{"path": "%s", "method": "%s", "status": %s, "bytes": %s}',
             b'{"request": "%s %s", "status_code": "%s", "latency_ms": %s, "service": "%s"}'],
}

fragment_soup = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map(b"".join)
hostile_line = st.one_of(
    st.binary(max_size=200),
    fragment_soup,
    st.text(max_size=80).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"", b"\t", b"\t\t\t\t", b"\t" * 1000, b"\x00" * 64, b"\xff\xfe", b" " * 10]),
)


@st.composite
def templated_line(draw: st.DrawFn, fmt: str) -> bytes:
    """A line shaped like the format with hostile values in its fields: the hard cases for a parser."""
    template = draw(st.sampled_from(TEMPLATES[fmt]))
    holes = template.count(b"%s")
    return template % tuple(draw(fragment_soup) for _ in range(holes))


def lines_for(fmt: str) -> st.SearchStrategy[bytes]:
    return st.one_of(hostile_line, templated_line(fmt))


def check_record(record: AccessRecord) -> None:
    """What the rest of the program relies on when a parser accepts a line."""
    assert isinstance(record, AccessRecord)
    for value in (record.route, record.method, record.status, *(v for kv in record.labels for v in kv)):
        assert isinstance(value, str)
        value.encode("utf-8")  # strict: no lone surrogates, so label values are valid UTF-8
    assert len(record.status) == 3 and record.status.isdigit() or record.status == "-"
    assert isinstance(record.bytes, int) and record.bytes >= 0
    assert record.latency_ms is None or (math.isfinite(record.latency_ms) and record.latency_ms >= 0)


# ---- parsers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", sorted(PARSERS))
@SETTINGS
@given(data=st.data())
def test_a_parser_accepts_or_raises_parse_error_with_a_known_reason(fmt: str, data: st.DataObject) -> None:
    line = data.draw(lines_for(fmt))
    try:
        record = PARSERS[fmt](line)
    except ParseError as exc:
        assert exc.reason in REASONS
        return
    check_record(record)


@pytest.mark.parametrize("fmt", sorted(PARSERS))
def test_the_good_line_of_each_format_parses(fmt: str) -> None:
    record = PARSERS[fmt](GOOD[fmt])
    assert (record.route, record.method, record.status, record.bytes) == (GOOD_ROUTE, "GET", "200", 10)


@pytest.mark.parametrize("fmt", sorted(PARSERS))
@pytest.mark.parametrize("line", [b"\t" * 4, b"\x00" * 10, b"\xff" * 10, b"\t" * 100_000, b"x" * 1_000_000,
                                  b"{" * 100_000, b"[" * 100_000, b'{"path": "' + b"a" * 1_000_000 + b'"}'])
def test_pathological_lines_are_malformed_not_crashes(fmt: str, line: bytes) -> None:
    with pytest.raises(ParseError):
        PARSERS[fmt](line)


# ---- the aggregator and the exposition --------------------------------------------------------------------

def exposition(agg: Aggregator, bounds_s: list[float]) -> str:
    from logtaild.tail.filestream import StreamStats

    def snap() -> Snapshot:
        return Snapshot([FileSnapshot("access.log", {}, agg.snapshot(), bounds_s, agg.lines, dict(agg.malformed),
                                      StreamStats(), agg.limiter.distinct)], "test")

    return generate_latest(build_registry(snap)).decode("utf-8")  # strict


@pytest.mark.parametrize("fmt", sorted(PARSERS))
@SETTINGS
@given(data=st.data())
def test_good_lines_after_bad_ones_are_all_counted(fmt: str, data: st.DataObject) -> None:
    bad = data.draw(st.lists(lines_for(fmt), max_size=40))
    good_at = data.draw(st.lists(st.integers(0, len(bad)), min_size=1, max_size=10))
    lines = list(bad)
    for index in sorted(good_at, reverse=True):
        lines.insert(index, GOOD[fmt])
    lines.insert(0, GOOD[fmt])  # admitted first, so hostile routes cannot push it over the route cap
    bounds = [5.0, 100.0, 500.0]
    agg = Aggregator(RouteLimiter(50), bounds, PARSERS[fmt])  # tsv: the fast path too
    # fed in random batches, as FileStream hands them over
    cuts = sorted(data.draw(st.lists(st.integers(0, len(lines)), max_size=5)))
    for start, end in zip([0, *cuts], [*cuts, len(lines)]):
        agg.feed(lines[start:end])
    counted = {key: slots.count(slot) for key, slot in agg.slots.items()}
    good = sum(n for (route, *_rest), n in counted.items() if route == GOOD_ROUTE)
    assert good == len(good_at) + 1
    assert agg.lines == len(lines)
    assert sum(counted.values()) + sum(agg.malformed.values()) == len(lines)
    assert set(agg.malformed) == set(REASONS)

    text = exposition(agg, [b / 1000 for b in bounds])
    families = {f.name: f for f in text_string_to_metric_families(text)}
    exported = {s.labels["route"] for s in families["logtaild_http_requests"].samples}
    assert exported == {route for route, *_rest in agg.slots}
    total = sum(s.value for s in families["logtaild_http_requests"].samples)
    assert total == sum(counted.values())


def test_a_huge_byte_count_does_not_break_the_exposition() -> None:
    agg = Aggregator(RouteLimiter(10), [5.0])
    agg.feed([b"1.1.1.1\tGET /\t200\t" + b"9" * 400] * 2 + [b"1.1.1.1\tGET /x\t200\t1\t1e308"] * 2)
    text = exposition(agg, [0.005])
    assert agg.malformed["bytes"] == 2  # a size of 2**63 or more is garbage, not a count
    assert 'route="/",' not in text
    assert 'logtaild_http_requests_total{method="GET",route="/x",status="200"} 2.0' in text


# ---- FileStream ---------------------------------------------------------------------------------------------

MAX_LINE = 256


def drain(stream: FileStream) -> list[bytes]:
    return [line for batch in stream.poll() for line in batch]


@SETTINGS
@given(chunks=st.lists(st.one_of(hostile_line, st.binary(min_size=200, max_size=900),
                                 st.builds(lambda n, b: b * n, st.integers(1, 700),
                                           st.sampled_from([b"\t", b"\x00", b"a\n"]))),
                       max_size=25),
       polls=st.lists(st.booleans(), max_size=25))
def test_filestream_hands_out_exactly_the_complete_lines_up_to_the_cap(
        tmp_path_factory: pytest.TempPathFactory, chunks: list[bytes], polls: list[bool]) -> None:
    path = tmp_path_factory.mktemp("fs") / "access.log"
    path.write_bytes(b"")
    stream = FileStream(str(path), from_start=True, max_line=MAX_LINE, chunk=97)
    out: list[bytes] = []
    with open(path, "ab", buffering=0) as handle:
        for index, chunk in enumerate(chunks):
            handle.write(chunk)
            if index < len(polls) and polls[index]:
                out += drain(stream)
    out += drain(stream)
    out += drain(stream)  # a partial line at EOF stays held, however often we poll
    content = b"".join(chunks)
    *complete, tail = content.split(b"\n")
    assert out == [line for line in complete if len(line) <= MAX_LINE]
    assert stream.stats.lines_cut == sum(len(line) > MAX_LINE for line in complete) + (len(tail) > MAX_LINE)
    assert stream.stats.bytes_read == len(content)
    [position] = stream.positions()
    assert position.offset == len(content) - len(tail)  # a checkpoint never skips the held partial line
    stream.close()


def _peak_while(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def test_a_10mb_line_is_cut_in_bounded_memory_and_the_next_line_counts(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    with open(path, "wb") as handle:
        handle.write(b"1.1.1.1\tGET /before\t200\t1\n")
        for _ in range(10):
            handle.write(b"\x00\xff\t" * 349_525 + b"x")  # 10 MiB, NULs, invalid UTF-8, tabs, no newline
        handle.write(b"\n1.1.1.1\tGET /after\t200\t1\n")
    stream = FileStream(str(path), from_start=True)  # default cap 64 KiB, chunk 256 KiB
    agg = Aggregator(RouteLimiter(10), [5.0])

    def run() -> None:
        for batch in stream.poll():
            agg.feed(batch)

    _, peak = _peak_while(run)
    assert peak < 3 * 1024 * 1024, f"peak {peak} bytes for a 10 MiB line"
    assert {route for route, *_rest in agg.slots} == {"/before", "/after"}
    assert stream.stats.lines_cut == 1 and agg.lines == 2
    stream.close()


def test_a_partial_line_at_eof_forever_is_held_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"1.1.1.1\tGET /a\t200\t1")
    stream = FileStream(str(path), from_start=True, max_line=4096)

    def idle_polls() -> list[bytes]:
        return [line for _ in range(2000) for line in drain(stream)]

    out, peak = _peak_while(idle_polls)
    assert out == [] and peak < stream.chunk + 64 * 1024  # one read buffer, nothing that grows per poll
    assert stream.positions()[0].offset == 0  # not consumed: a restart would read it again

    def growing() -> list[bytes]:  # a writer that never ends its line: 1 MiB in 1 KiB steps
        got = []
        with open(path, "ab", buffering=0) as handle:
            for _ in range(1024):
                handle.write(b"y" * 1024)
                got += drain(stream)
        return got

    out, peak = _peak_while(growing)
    assert out == [] and peak < stream.chunk + 4 * stream.max_line + 64 * 1024 and stream.stats.lines_cut == 1
    with open(path, "ab") as handle:
        handle.write(b"\n1.1.1.1\tGET /b\t200\t1\n")
    assert drain(stream) == [b"1.1.1.1\tGET /b\t200\t1"]
    stream.close()


# ---- the report ---------------------------------------------------------------------------------------------

CONTROL = {*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A),
           0x200E, 0x200F, 0x200B, 0x200C, 0x200D, 0xFEFF, 0x061C, 0x00AD}


@SETTINGS
@given(st.text(max_size=60))
def test_escape_leaves_no_control_character(text: str) -> None:
    out = escape(text)
    assert not any(ord(ch) in CONTROL for ch in out)
    if not any(ord(ch) in CONTROL or ch == "\\" for ch in text):
        assert out == text  # ordinary text is left alone


@SETTINGS
@given(routes=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=8, unique=True),
       group=st.text(max_size=20))
def test_a_report_cannot_be_repainted_or_forged_by_a_route(routes: list[str], group: str) -> None:
    counts = {(group, route, "200"): 3 for route in routes}
    counts[("", "/ok", "200")] = 1
    report = format_report(counts, 1.0, wall=0.0)
    assert not any(ord(ch) in CONTROL - {0x09, 0x0A} for ch in report)
    lines = report.split("\n")
    groups = len({g for g, _r, _s in counts})
    # ctime, rule, per-group headers, one row per route, per-status totals, the overall total, ""
    assert len(lines) == 2 + (groups if groups > 1 or group else 0) + len(counts) + 1 + 1 + 1
    for route in routes:
        assert f"{printable(route)}\t200\t3" in lines


@pytest.mark.parametrize("fmt", sorted(PARSERS))
def test_hostile_lines_reach_the_report_escaped(fmt: str) -> None:
    lines = {
        "tsv": b"1.1.1.1\tGET /x\x1b[2J\x07\xc2\x9b31m\t200\t1",
        "combined": b'1.1.1.1 - - [10/Oct/2000:13:55:36 -0700] "GET /x\\x1B[2J\\x07\\xC2\\x9B31m HTTP/1.1" 200 1',
        "json": b'{"path": "/x\\u001b[2J\\u0007\\u009b31m", "status": 200}',
    }
    agg = Aggregator(RouteLimiter(10), [5.0], PARSERS[fmt])
    agg.feed([lines[fmt]])
    assert agg.lines == 1 and sum(agg.malformed.values()) == 0
    counts = {("", route, status): n for (route, status), n in agg.counts_by_route_status().items()}
    report = format_report(counts, 1.0, wall=0.0)
    assert "/x\\x1b[2J\\x07\\x9b31m\t200\t1" in report
    assert "\x1b" not in report and "\x07" not in report and "\x9b" not in report


def test_every_parser_has_a_good_line_and_templates() -> None:
    assert {"tsv"} <= set(PARSERS) and set(GOOD) >= set(PARSERS) and set(TEMPLATES) >= set(PARSERS)

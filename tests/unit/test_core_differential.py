"""The compiled core against the Python path: the same lines give the same counts.

Two aggregators per example, one counting with the compiled core (`compiled=None`, the process's
choice) and one with the Python path only (`compiled=False`), are fed the same random and hostile
batches (hypothesis), the real-world fixtures and a flood of keys past the core's table bound. Their
slots (keys, counts, bytes, buckets), malformed reasons and lines, admitted routes must be identical;
latency sums may differ in the last bits only (the core adds a batch's latencies before adding them to
the slot). A machine without the compiled core skips these tests, except under `CI=true`, where the
missing core is a failure.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logtaild.count import core, slots
from logtaild.count.aggregate import Aggregator
from logtaild.count.formats import parse_tsv
from logtaild.count.parsers import make_combined_parser
from logtaild.count.routes import RouteLimiter
from logtaild.tail.filestream import Chunk, FileStream

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = [ROOT / "tests" / "fixtures", ROOT.parent / "shared" / "fixtures"]
BOUNDS_MS = [1.0, 5.0, 25.0, 100.0, 1000.0]
_EXAMPLES = os.environ.get("HOSTILE_EXAMPLES")
SETTINGS = settings(max_examples=int(_EXAMPLES or 150), derandomize=not _EXAMPLES, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True)
def _needs_the_compiled_core() -> None:
    if core.DESCRIPTION.startswith("python (forced"):
        pytest.skip(f"{core.ENV}=python: this run tests the Python core alone")
    if not core.available():
        message = f"the compiled core is not built here ({core.DESCRIPTION})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


# ---- what is fed ---------------------------------------------------------------------------------------

FRAGMENTS = [b"\t", b" ", b"  ", b"\x00", b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b"\r", b"\n", b"\x0b", b'"',
             b"\\", b"\\x22", b'\\"', b"[", b"]", b"-", b"?", b"#", b"/", b"//", b":", b",", b"GET", b"BREW",
             b"CONNECT", b"HTTP/1.1", b"http://h", b"*", b"200", b"404", b"99", b"600", b"1e3", b"1_0", b"nan",
             b"inf", b"9" * 25, b".", b"0.5", b"007"]
soup = st.lists(st.sampled_from(FRAGMENTS), max_size=12).map(b"".join)
segment = st.one_of(
    st.integers(0, 10**12).map(lambda n: b"%d" % n),
    st.builds(lambda: str(uuid.uuid4()).encode()) | st.just(b"123E4567-E89B-12D3-A456-426614174000"),
    st.sampled_from([b"deadbeefcafebabe", b"deadbeefcafebab1", b"0123456789abcdef0", b"abc", b"users", b"",
                     b"1a", b"12345678-1234-1234-1234-12345678901", b"\xc3\xa9t\xc3\xa9", b"7\n", b"x.png"]),
    soup,
)
path = st.lists(segment, min_size=1, max_size=5).map(lambda parts: b"/" + b"/".join(parts))
query = st.sampled_from([b"", b"?a=1", b"?q=/7", b"#frag", b"?x#y", b"?"])
method = st.sampled_from([b"GET", b"POST", b"HEAD", b"BREW", b"CONNECT", b"", b"G\xc3\xa9T", b"get"])
target = st.one_of(st.builds(lambda p, q: p + q, path, query),
                   st.sampled_from([b"*", b"host:443", b"http://h/users/12", b"http://h?next=/admin", b"", b"-"]))
request = st.one_of(
    st.builds(lambda m, t, v: m + b" " + t + v, method, target, st.sampled_from([b" HTTP/1.1", b"", b" HTTP/2.0 x"])),
    st.sampled_from([b"-", b"", b"GET", b"\x16\x03\x01\x00\xa5"]), soup)
status = st.sampled_from([b"200", b"404", b"500", b"301", b"99", b"600", b"20x", b"", b"2000"]) | soup
size = st.sampled_from([b"0", b"512", b"-", b"-1", b"abc", b"1_0", b" 7", b"12\r", b"1.5", b"", b"007",
                        b"%d" % (2**63 - 1), b"%d" % 2**63, b"9" * 18, b"9" * 19]) | st.integers(0, 10**7).map(
                            lambda n: b"%d" % n)
latency = st.sampled_from([b"0", b"-0", b"5", b"5.", b".5", b"0.004", b"1000", b"1e3", b"nan", b"inf", b"abc", b"",
                           b"2.5\r", b"1e999", b"1.2.3", b"0.1234567890123456", b"123456789012345.6", b"00000.5",
                           b"1" * 400]) | st.floats(0, 5000, allow_nan=False).map(lambda f: repr(f).encode())


@st.composite
def tsv_lines(draw: st.DrawFn) -> list[bytes]:
    """Batches sharing a few keys (so the core's table is hit with good and bad values), and odd lines."""
    keys = draw(st.lists(st.tuples(request, status), min_size=1, max_size=6))
    good = [(b"GET /users/%d HTTP/1.1" % n, b"200") for n in range(3)] + [(b"GET /a?x=1", b"404")]
    key = st.sampled_from(keys + good)
    keyed = st.builds(lambda k, b, t, five: b"\t".join([b"10.0.0.1", *k, b, *([t] if five else [])]),
                      key, size, latency, st.booleans())
    odd = st.one_of(st.binary(max_size=60), soup, st.lists(soup, max_size=7).map(b"\t".join))
    line = st.sampled_from(range(10)).flatmap(lambda k: keyed if k < 8 else odd)
    n = draw(st.integers(0, 80))
    return draw(st.lists(line, min_size=n, max_size=n))


client = st.sampled_from([b"10.0.0.1", b"::1", b"[2001:db8::1]", b"10.0.0.2, 10.0.0.1", b'"10.5.1.1, 1.1.1.1"',
                          b"", b"-", b"a\tb"]) | soup
ident = st.sampled_from([b"-", b"", b"frank", b"a b", b"[x"]) | soup
when = st.sampled_from([b"[10/Oct/2000:13:55:36 -0700]", b"[]", b"[" + b"x" * 64 + b"]", b"[" + b"x" * 65 + b"]",
                        b"[a\nb]", b"[10/Oct/2000]"]) | soup.map(lambda s: b"[" + s + b"]")
trailing = st.lists(st.sampled_from([b'"-"', b'"Mozilla/5.0 (X11)"', b'"a \\" b"', b'"unclosed', b"0.005", b"-",
                                     b"12", b"1e3", b"abc", b'"x"y', b"0.004\t", b"\r", b"  "]) | soup,
                    max_size=4).map(lambda parts: b"".join(b" " + p for p in parts))


@st.composite
def combined_lines(draw: st.DrawFn) -> list[bytes]:
    keys = draw(st.lists(st.tuples(request, status), min_size=1, max_size=6))
    good = [(b"GET /users/%d HTTP/1.1" % n, b"200") for n in range(3)] + [(b"GET /a?x=1 HTTP/1.0", b"404")]
    key = st.sampled_from(keys + good)

    def join(c: bytes, i: bytes, u: bytes, t: bytes, k: tuple[bytes, bytes], b: bytes, rest: bytes) -> bytes:
        return b"%s %s %s %s \"%s\" %s %s%s" % (c, i, u, t, k[0], k[1], b, rest)

    plain = st.builds(join, st.just(b"10.0.0.1"), st.just(b"-"), st.just(b"-"),
                      st.just(b"[10/Oct/2000:13:55:36 -0700]"), key, size, trailing)
    shaped = st.builds(join, client, ident, ident, when, key, size, trailing)
    odd = st.one_of(st.binary(max_size=60), soup)
    line = st.sampled_from(range(10)).flatmap(lambda k: plain if k < 6 else shaped if k < 9 else odd)
    n = draw(st.integers(0, 80))
    return draw(st.lists(line, min_size=n, max_size=n))


# ---- the comparison ------------------------------------------------------------------------------------

def _pair(fmt: str, unit: str | None, max_routes: int, max_series: int,
          rules: list[tuple[str, str]]) -> tuple[Aggregator, Aggregator]:
    def one(compiled: bool | None) -> Aggregator:
        parser = parse_tsv if fmt == "tsv" else make_combined_parser(unit)
        limiter = RouteLimiter(max_routes, rules, max_series=max_series)
        return Aggregator(limiter, BOUNDS_MS, parser, compiled=compiled)

    fast, ref = one(None), one(False)
    assert fast.core_name == "compiled" and ref.core_name == "python"
    return fast, ref


def _feed(aggs: tuple[Aggregator, Aggregator], lines: list[bytes], sizes: list[int]) -> None:
    start = 0
    for size_ in [*sizes, len(lines)]:
        batch = lines[start:start + size_]
        start += size_
        for agg in aggs:
            agg.feed(list(batch))
        if start >= len(lines):
            break


def assert_same(fast: Aggregator, ref: Aggregator) -> None:
    assert fast.slots.keys() == ref.slots.keys()
    for key, slot in fast.slots.items():
        want = ref.slots[key]
        assert len(slot) == len(want), key
        assert slots.count(slot) == slots.count(want), key
        assert slots.byte_count(slot) == slots.byte_count(want), key
        assert slots.bucket_counts(slot) == slots.bucket_counts(want), key
        assert type(slot[slots.COUNT]) is int and type(slot[slots.BYTES]) is int, key
        assert slots.latency_sum_ms(slot) == pytest.approx(slots.latency_sum_ms(want), rel=1e-12, abs=1e-9), key
    assert fast.malformed == ref.malformed
    assert (fast.first_malformed, fast.last_malformed) == (ref.first_malformed, ref.last_malformed)
    assert fast.lines == ref.lines
    assert fast.limiter.distinct == ref.limiter.distinct


RULES = [(r"^/users/[^/]+$", "/users/:name")]
caps = st.tuples(st.sampled_from([1, 3, 1000]), st.sampled_from([2, 5, 20_000]), st.sampled_from([[], RULES]))


@SETTINGS
@given(lines=tsv_lines(), sizes=st.lists(st.integers(1, 30), max_size=8), cap=caps)
def test_tsv_the_compiled_core_counts_what_the_python_path_counts(
        lines: list[bytes], sizes: list[int], cap: tuple[int, int, list[tuple[str, str]]]) -> None:
    aggs = _pair("tsv", None, *cap)
    _feed(aggs, lines, sizes)
    assert_same(*aggs)


@SETTINGS
@given(lines=combined_lines(), sizes=st.lists(st.integers(1, 30), max_size=8), cap=caps,
       unit=st.sampled_from([None, "seconds", "milliseconds", "microseconds"]))
def test_combined_the_compiled_core_counts_what_the_python_path_counts(
        lines: list[bytes], sizes: list[int], cap: tuple[int, int, list[tuple[str, str]]], unit: str | None) -> None:
    aggs = _pair("combined", unit, *cap)
    _feed(aggs, lines, sizes)
    assert_same(*aggs)


def _fixture_lines() -> list[bytes]:
    lines: list[bytes] = []
    for folder in FIXTURES:
        for path in sorted(folder.glob("*.log")):
            lines += path.read_bytes().splitlines()
    return lines


@pytest.mark.parametrize("unit", [None, "seconds"])
def test_the_real_world_fixtures_count_the_same(unit: str | None) -> None:
    lines = _fixture_lines()
    assert len(lines) > 3000
    fast, ref = _pair("combined", unit, 1000, 20_000, [])
    for aggs_lines in (lines, lines[::-1]):
        _feed((fast, ref), aggs_lines, [7, 100, 1000])
    assert_same(fast, ref)
    assert fast._core is not None and fast._core.stats()["counted"] > len(lines)  # most counted in C


def test_the_fixtures_as_tsv_are_malformed_the_same_way() -> None:
    fast, ref = _pair("tsv", None, 1000, 20_000, [])
    _feed((fast, ref), _fixture_lines(), [50])
    assert_same(fast, ref)


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("fmt", ["tsv", "combined", "json"])
def test_past_the_table_bound_the_core_empties_itself_and_counts_the_same(fmt: str, native: bool) -> None:
    from logtaild.count.formats import make_json_parser

    limits = core.limits()
    n = limits["max_entries"] + 5000  # raw keys are dropped first, then the path keys fill the table too
    if fmt == "tsv":
        lines = [b"1\tGET /p%d HTTP/1.1\t200\t%d\t%d.5" % (i, i, i % 50) for i in range(n)]
    elif fmt == "json":
        lines = [b'{"path": "/p%d", "method": "GET", "status": 200, "bytes": %d, "latency_ms": 0.%03d}' % (
            i, i, i % 1000) for i in range(n)]
    else:
        lines = [b'1 - - [10/Oct/2000:13:55:36 -0700] "GET /p%d HTTP/1.1" 200 %d "-" "ua" 0.%03d' % (i, i, i % 1000)
                 for i in range(n)]
    if native:
        from logtaild.count.native import NativeSpec

        parser = parse_tsv if fmt == "tsv" else make_json_parser() if fmt == "json" else make_combined_parser("seconds")
        fast, ref = (Aggregator(RouteLimiter(1000), BOUNDS_MS, parser, native=NativeSpec(), compiled=c)
                     for c in (None, False))
    elif fmt == "json":
        fast, ref = _json_pair({}, 1000, 20_000, [])
    else:
        fast, ref = _pair(fmt, "seconds" if fmt == "combined" else None, 1000, 20_000, [])
    _feed((fast, ref), lines + lines, [4096] * 100)
    assert_same(fast, ref)
    if native:
        assert all(_native_of(slot) == _native_of(ref.slots[key]) for key, slot in fast.slots.items())
    assert fast._core is not None
    stats = fast._core.stats()
    assert stats["evictions"] >= 1 and stats["clears"] >= 1 and stats["entries"] <= limits["max_entries"]
    assert stats["key_bytes"] <= limits["max_key_bytes"]


def test_sums_past_a_64_bit_integer_stay_exact() -> None:
    big = 2**63 - 1
    lines = [b"1\tGET / HTTP/1.1\t200\t%d\t1" % big] * 5
    fast, ref = _pair("tsv", None, 1000, 20_000, [])
    _feed((fast, ref), lines, [1, 4])  # the first line binds the key, the next four add in C
    assert_same(fast, ref)
    assert slots.byte_count(fast.slots["/", "GET", "200", ()]) == 5 * big


@pytest.mark.parametrize(("env", "word"), [("python", "python"), ("compiled", "compiled"), ("", "compiled")])
def test_the_version_line_names_the_core(env: str, word: str) -> None:
    argv = [sys.executable, "-c", "from logtaild.cli import main; main()", "--version"]
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, core.ENV: env}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"core: {word}" in done.stdout


# ---- format strings (nginx log_format, Apache LogFormat) -----------------------------------------------

FORMAT_STRINGS = [
    ("nginx", '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
              '"$http_user_agent" $request_time $upstream_response_time'),
    ("nginx", '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
              '"$http_user_agent" rt=$request_time uct="$upstream_connect_time" urt="$upstream_response_time"'),
    ("nginx", 'escape=none $remote_addr $time_local "$request" $status $bytes_sent $request_time '
              '$http_x_forwarded_for'),
    ("apache", '%h %l %u %t "%r" %>s %b %D'),
]
times = st.sampled_from([b"0.004", b"-", b"0.004, 0.012", b"0.004, 0.012 : 0.001", b"- : 0.5", b"-, -", b"1.2.3",
                         b"0.5,0.25", b"", b" 0.5", b"0.004 ,0.1", b"1e3", b"9" * 20, b"0.1234567890123456"]) | soup


@st.composite
def format_lines(draw: st.DrawFn, index: int) -> list[bytes]:
    keys = draw(st.lists(st.tuples(request, status), min_size=1, max_size=6))
    good = [(b"GET /users/%d HTTP/1.1" % n, b"200") for n in range(3)] + [(b"GET /a?x=1 HTTP/1.0", b"404")]
    key = st.sampled_from(keys + good)
    good_when = b"10/Oct/2000:13:55:36 -0700"

    def make(c: bytes, t: bytes, k: tuple[bytes, bytes], b: bytes, lat: bytes, up: bytes, extra: bytes) -> bytes:
        if index == 0:
            return b'%s - - [%s] "%s" %s %s "-" "ua" %s %s%s' % (c, t, k[0], k[1], b, lat, up, extra)
        if index == 1:
            return b'%s - - [%s] "%s" %s %s "-" "ua" rt=%s uct="%s" urt="%s"%s' % (c, t, k[0], k[1], b, lat, up, up,
                                                                                  extra)
        if index == 2:
            return b'%s %s "%s" %s %s %s %s%s' % (c, t, k[0], k[1], b, lat, up, extra)
        return b'%s - - [%s] "%s" %s %s %s%s' % (c, t, k[0], k[1], b, lat, extra)

    good_size = st.sampled_from([b"512", b"0", b"-", b"123456"])
    good_time = st.sampled_from([b"0.004", b"-", b"1.5", b"0.25", b"12"])
    good_times = st.sampled_from([b"0.004", b"-", b"0.004, 0.012", b"0.004, 0.012 : 0.001", b"-, 0.5"])
    good_key = st.sampled_from(good) | key
    plain = st.builds(make, st.just(b"10.0.0.1"), st.just(good_when), good_key, good_size, good_time, good_times,
                      st.sampled_from([b"", b" ", b"\r", b"\t "]))
    shaped = st.builds(make, client, st.sampled_from([good_when, b"10/Oct/2000:13:55:36", b"x" * 70]) | soup, key,
                       good_size | size, good_time | latency | soup, good_times | times,
                       st.sampled_from([b"", b" x", b'"']) | soup)
    odd = st.one_of(st.binary(max_size=60), soup)
    line = st.sampled_from(range(10)).flatmap(lambda k: plain if k < 6 else shaped if k < 9 else odd)
    n = draw(st.integers(0, 80))
    return draw(st.lists(line, min_size=n, max_size=n))


def _format_pair(index: int, max_routes: int, max_series: int,
                 rules: list[tuple[str, str]]) -> tuple[Aggregator, Aggregator]:
    from logtaild.count.logformat import compile_format

    server, text = FORMAT_STRINGS[index]

    def one(compiled: bool | None) -> Aggregator:
        limiter = RouteLimiter(max_routes, rules, max_series=max_series)
        return Aggregator(limiter, BOUNDS_MS, compile_format(server, text), compiled=compiled)

    fast, ref = one(None), one(False)
    assert fast.core_name == "compiled" and ref.core_name == "python"
    return fast, ref


@pytest.mark.parametrize("index", range(len(FORMAT_STRINGS)))
@SETTINGS
@given(data=st.data(), sizes=st.lists(st.integers(1, 30), max_size=8), cap=caps)
def test_format_strings_the_compiled_core_counts_what_the_python_path_counts(
        index: int, data: st.DataObject, sizes: list[int], cap: tuple[int, int, list[tuple[str, str]]]) -> None:
    lines = data.draw(format_lines(index))
    aggs = _format_pair(index, *cap)
    _feed(aggs, lines, sizes)
    assert_same(*aggs)
    fast, ref = aggs
    assert [slots.upstream_sum_ms(s, BOUNDS_MS) for s in fast.slots.values()] == pytest.approx(
        [slots.upstream_sum_ms(s, BOUNDS_MS) for s in ref.slots.values()], rel=1e-12, abs=1e-9)
    assert [slots.upstream_bucket_counts(s, BOUNDS_MS) for s in fast.slots.values()] == [
        slots.upstream_bucket_counts(s, BOUNDS_MS) for s in ref.slots.values()]


def test_a_format_with_label_fields_or_an_unread_field_is_counted_by_python() -> None:
    from logtaild.count.logformat import compile_format

    assert getattr(compile_format("nginx", FORMAT_STRINGS[0][1], label_fields={"vhost": "$remote_user"}),
                   "core_format", None) is None
    assert getattr(compile_format("nginx", '$msec $status "$request"'), "core_format", None) is None


# ---- native histograms -----------------------------------------------------------------------------------

def _native_of(slot: list[float]) -> tuple[object, object]:
    detail = slot[-1]
    return (None, None) if detail is None else (detail.native, detail.upstream)  # type: ignore[attr-defined]


@pytest.mark.parametrize("which", ["tsv", "combined", "nginx", "json"])
@settings(max_examples=int(_EXAMPLES or 60), derandomize=not _EXAMPLES, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), sizes=st.lists(st.integers(1, 30), max_size=8),
       spec=st.sampled_from([(3, 160), (0, 4), (8, 0)]))
def test_native_histograms_count_the_same(which: str, data: st.DataObject, sizes: list[int],
                                          spec: tuple[int, int]) -> None:
    from logtaild.count.logformat import compile_format
    from logtaild.count.native import NativeSpec

    native = NativeSpec(schema=spec[0], max_buckets=spec[1])
    if which == "tsv":
        lines, parser = data.draw(tsv_lines()), lambda: parse_tsv
    elif which == "combined":
        lines, parser = data.draw(combined_lines()), lambda: make_combined_parser("seconds")
    elif which == "json":
        from logtaild.count.formats import make_json_parser

        lines, parser = data.draw(json_lines()), lambda: make_json_parser(latency_unit="seconds")
    else:
        lines, parser = data.draw(format_lines(0)), lambda: compile_format(*FORMAT_STRINGS[0])
    fast, ref = (Aggregator(RouteLimiter(1000), BOUNDS_MS, parser(), native=native, compiled=c) for c in (None, False))
    assert fast.core_name == "compiled"
    _feed((fast, ref), lines, sizes)
    assert fast.slots.keys() == ref.slots.keys()
    for key, slot in fast.slots.items():
        assert _native_of(slot) == _native_of(ref.slots[key]), key
        assert slots.count(slot) == slots.count(ref.slots[key])


# ---- json ------------------------------------------------------------------------------------------------

JSON_KEYS = [b"path", b"route", b"uri", b"request", b"method", b"status_code", b"status", b"bytes", b"body_bytes_sent",
             b"latency_ms", b"duration_ms", b"service", b"code", b"ip", b"ua", b"pa\\u0074h", b"st\\u0061tus", b""]
json_string = st.one_of(
    st.sampled_from([b"/users/12", b"/users/13?x=1", b"/a#f", b"/", b"", b"-", b"*", b"http://h/users/7", b"abc",
                     b"GET /users/12 HTTP/1.1", b"GET /x", b"BREW /x", b"CONNECT h:443", b"GET  /x", b"/\\u0041",
                     b"/a\\/1", b"\\\"", b"\\ud800", b"\\u00e9", b"\\x41", b"\\", b"\xc3\xa9t\xc3\xa9", b"\xff",
                     b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"a\tb", b"a\x00b", b"\x7f", b"GET", b"get",
                     b"200", b"404", b"99", b"2000", b"512", b"007", b"1_0", b" 7", b"5.", b".5", b"0.004", b"nan",
                     b"inf", b"1e3", b"auth-service", b"users/%d"]),
    soup, st.builds(lambda p: b"/users/" + p, segment))
json_number = st.sampled_from([
    b"200", b"404", b"500", b"200.0", b"2e2", b"2E+2", b"-1", b"-0", b"0", b"007", b"01", b"1e999", b"-1e999",
    b"9" * 25, b"9" * 70, b"1" * 5000, b"NaN", b"Infinity", b"-Infinity", b"0.5", b"11.855", b"1.5E+3",
    b"5.", b".5", b"+5", b"1.", b"-", b"512", b"99999999999999999", b"0.1234567890123456",
    b"123456789012345.6", b"1e-400",
]) | st.integers(0, 10**7).map(lambda n: b"%d" % n)
json_scalar = st.one_of(json_string.map(lambda s: b'"' + s + b'"'), json_number, st.sampled_from([
    b"true", b"false", b"null", b"nul", b"True", b"{}", b"[]", b'{"a": [1, {"b": 2}]}', b'[1, "x", null, [true]]',
    b"[1,]", b'{"a" 1}', b'{"a":1,}', b"[" * 70 + b"]" * 70, b"[" * 2000 + b"]" * 2000, b'"unclosed', b"'x'"]))
json_ws = st.sampled_from([b"", b" ", b"  ", b"\t", b"\r", b"\n", b"\x0b", b"\xc2\xa0"])


@st.composite
def json_object(draw: st.DrawFn, good: bool) -> bytes:
    if good:  # the shape of real telemetry, so the table is hit with good and bad values
        fields = [(b"path", draw(st.sampled_from([b'"/users/%d"' % n for n in range(4)] + [b'"/a?x=1"', b'"/b"']))),
                  (b"method", draw(st.sampled_from([b'"GET"', b'"POST"']))),
                  (b"status", draw(st.sampled_from([b"200", b"404", b'"200"']))),
                  (b"bytes", draw(st.sampled_from([b"512", b"0", b'"-"', b"null"]) | json_number)),
                  (b"latency_ms", draw(st.sampled_from([b"11.855", b"0", b"350", b'"1.5"', b"null"]) | json_number))]
        if draw(st.booleans()):
            fields.append((b"service", draw(st.sampled_from([b'"auth"', b'"api"', b'""', b"7", b"null"]))))
        fields = draw(st.permutations(fields))
    else:
        fields = draw(st.lists(st.tuples(st.sampled_from(JSON_KEYS), json_scalar), max_size=8))
    ws = draw(json_ws)
    body = (b"," + ws).join(b'"%s"%s:%s%s' % (k, draw(json_ws), draw(json_ws), v) for k, v in fields)
    return draw(st.sampled_from([b"", b" ", b"\xef\xbb\xbf", b"\t"])) + b"{" + ws + body + ws + b"}" + draw(
        st.sampled_from([b"", b"", b" ", b"\r", b" x", b"}", b",", b"\x00"]))


@st.composite
def json_lines(draw: st.DrawFn) -> list[bytes]:
    good, odd = json_object(True), json_object(False)
    cut = st.tuples(odd | good, st.integers(0, 200)).map(lambda pair: pair[0][:pair[1]])  # truncated lines
    other = st.one_of(st.binary(max_size=60), soup, st.sampled_from([b"[1]", b"1", b'"x"', b"null", b"{}", b""]))
    line = st.sampled_from(range(10)).flatmap(lambda k: good if k < 5 else odd if k < 8 else cut if k < 9 else other)
    n = draw(st.integers(0, 60))
    return draw(st.lists(line, min_size=n, max_size=n))


JSON_OPTIONS = [
    {},
    {"latency_unit": "seconds"},
    {"fields": {"route": "uri", "status": "code", "service": ""}, "latency_unit": "microseconds"},
    {"fields": {"path": "request", "request": "request", "bytes": "status"}},
]


def _json_pair(options: dict[str, object], max_routes: int, max_series: int,
               rules: list[tuple[str, str]]) -> tuple[Aggregator, Aggregator]:
    from logtaild.count.formats import make_json_parser

    def one(compiled: bool | None) -> Aggregator:
        limiter = RouteLimiter(max_routes, rules, max_series=max_series)
        return Aggregator(limiter, BOUNDS_MS, make_json_parser(**options), compiled=compiled)  # type: ignore[arg-type]

    fast, ref = one(None), one(False)
    assert fast.core_name == "compiled" and ref.core_name == "python"
    return fast, ref


@pytest.mark.parametrize("index", range(len(JSON_OPTIONS)))
@SETTINGS
@given(lines=json_lines(), sizes=st.lists(st.integers(1, 30), max_size=8), cap=caps)
def test_json_the_compiled_core_counts_what_the_python_path_counts(
        index: int, lines: list[bytes], sizes: list[int], cap: tuple[int, int, list[tuple[str, str]]]) -> None:
    aggs = _json_pair(JSON_OPTIONS[index], *cap)
    _feed(aggs, lines, sizes)
    assert_same(*aggs)


def _json_hostile() -> list[bytes]:
    """Lines Python reads in its own way, each beside a plain one with the same fields (so the key is bound)."""
    plain = b'{"path": "/users/1", "method": "GET", "status": 200, "bytes": 5, "latency_ms": 1.5}'
    big = b"x" * (1 << 20)
    return [
        plain,
        b'{"path": "/users/1", "method": "GET", "status": 200, "bytes": 5, "latency_ms": 1.5, "path": "/other"}',
        b'{"path": "/users/1", "method": "GET", "status": 200, "status": 404, "bytes": 5}',
        b'{"pa\\u0074h": "/x", "path": "/users/1", "method": "GET", "status": 200}',
        b'{"path": "/users/\\u0031", "method": "GET", "status": 200}',
        b'{"path": "/users/1", "method": "GET", "status": 200, "bytes": 1e2, "latency_ms": 1e1}',
        b'{"path": "/users/1", "method": "GET", "status": 200, "latency_ms": NaN}',
        b'{"path": "/users/1", "method": "GET", "status": 200, "x": NaN, "y": -Infinity}',
        b'{"path": "/users/1", "method": "GET", "status": 200, "x": ' + b"1" * 5000 + b"}",
        b'{"path": "/users/1", "method": "GET", "status": 200, "x": ' + b"[" * 100 + b"]" * 100 + b"}",
        b'{"path": "/users/1", "method": "GET", "status": 200, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"path": "/users/1", "method": "GET", "status": 200, "x": "' + big + b'"}',
        b'{"path": "/users/1", "method": "GET", "status": 200, "x": [' + b"1," * (1 << 19) + b"1]}",
        b'{"path": "/users/' + big + b'", "method": "GET", "status": 200}',
        b'{"path": "/users/1", "method": "GET", "status": 200, "x": "\xff"}',
        b'{"path": "/users/1", "method": "GET", "status": 200, "x": "\xed\xa0\x80"}',
        b'{"path": "/users/1", "method": "GET", "status": 200, "x": "\\ud800"}',
        b'\xef\xbb\xbf' + plain,
        plain[:-1],
        plain + b" {}",
        b"[" + plain + b"]",
        b'{"path": "/users/1", "method": "GET", "status": 200.0}',
        b'{"path": "/users/1", "method": "GET", "status": "200", "bytes": "007", "latency_ms": "5."}',
        b'{"path": "/users/1", "method": "GET", "status": 200, "bytes": -0, "latency_ms": -0.0}',
        b'{"path": null, "request": "GET /users/2?q=1 HTTP/1.1", "status": 200}',
        b'{"path": 7, "status": 200}',
        b'{"path": "/users/1", "method": "GET", "status": true}',
        b'{"path": "/users/1", "method": "GET", "status": 200, "service": false}',
        b'{"path": "/users/1", "method": "GET", "status": 200, "service": 1.5e3}',
        b'{"path": "/users/1", "method": "GET", "status": 200, "bytes": 5, "latency_ms": 1.5}\r',
        b'\t{ "path" : "/users/1" ,\n"method":"GET","status":200 }\t',
    ]


@pytest.mark.parametrize("index", range(len(JSON_OPTIONS)))
def test_json_hostile_lines_count_the_same(index: int) -> None:
    lines = _json_hostile()
    fast, ref = _json_pair(JSON_OPTIONS[index], 1000, 20_000, [])
    _feed((fast, ref), lines + lines[::-1] + lines, [1, 3, 7, 100])
    assert_same(fast, ref)
    if index == 0:
        assert fast._core is not None and fast._core.stats()["counted"] >= 6  # the plain ones in C


def test_json_with_label_fields_or_dotted_keys_is_counted_by_python() -> None:
    from logtaild.count.formats import make_json_parser

    assert getattr(make_json_parser(label_keys={"region": "region"}), "core_format", None) is None
    assert getattr(make_json_parser(upstream_key="upstream"), "core_format", None) is None
    assert getattr(make_json_parser({"route": "http.path"}), "core_format", None) is None
    assert getattr(make_json_parser({"route": "\ud800"}), "core_format", None) is None  # no UTF-8 spelling
    assert getattr(make_json_parser(), "core_format", None) is not None


def _fixtures_as_json(ensure_ascii: bool) -> list[bytes]:
    """The real-world fixtures as JSON telemetry (their requests, statuses, sizes), the odd lines as they are."""
    import json
    import re

    shape = re.compile(rb'^(\S+) \S+ \S+ \[[^\]]*\] "((?:[^"\\]|\\.)*)" (\S+) (\S+)')
    out = []
    for line in _fixture_lines():
        match = shape.match(line)
        if match is None:
            out.append(line)
            continue
        request, status, size = (group.decode("utf-8", "surrogateescape") for group in match.groups()[1:])
        fields = {"ip": match.group(1).decode("latin-1"), "request": request,
                  "status": int(status) if status.isdigit() else status, "bytes": int(size) if size.isdigit() else size}
        try:
            out.append(json.dumps(fields, ensure_ascii=ensure_ascii).encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:
            out.append(line)
    return out


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_json_the_real_world_fixtures_count_the_same(ensure_ascii: bool) -> None:
    lines = _fixtures_as_json(ensure_ascii)
    fast, ref = _json_pair({}, 1000, 20_000, [])
    _feed((fast, ref), lines + lines[::-1], [7, 100, 1000])
    assert_same(fast, ref)
    assert fast._core is not None and fast._core.stats()["counted"] > len(lines) // 2


def test_json_the_fixtures_as_they_are_are_malformed_the_same_way() -> None:
    fast, ref = _json_pair({}, 1000, 20_000, [])
    _feed((fast, ref), _fixture_lines(), [50])
    assert_same(fast, ref)


# ---- whole chunks: the tailer's read buffers handed to the core (scan_chunk) ------------------------------

def _three(fmt: str, cap: tuple[int, int, list[tuple[str, str]]]) -> tuple[Aggregator, Aggregator, Aggregator]:
    """Compiled fed chunks, compiled fed lists, Python fed lists."""
    from logtaild.count.formats import make_json_parser
    from logtaild.count.logformat import compile_format

    def one(compiled: bool | None) -> Aggregator:
        parser = parse_tsv if fmt == "tsv" else make_combined_parser("seconds") if fmt == "combined" \
            else make_json_parser() if fmt == "json" else compile_format(*FORMAT_STRINGS[0])
        return Aggregator(RouteLimiter(cap[0], cap[2], max_series=cap[1]), BOUNDS_MS, parser, compiled=compiled)

    aggs = one(None), one(None), one(False)
    assert [a.core_name for a in aggs] == ["compiled", "compiled", "python"]
    return aggs


def _tailed(blob: bytes, chunk: int, max_line: int) -> tuple[list[Sequence[bytes]], int]:
    """The batches a FileStream hands out for a file holding `blob`, read `chunk` bytes at a time."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "access.log"
        path.write_bytes(blob)
        stream = FileStream(str(path), from_start=True, chunk=chunk, max_line=max_line)
        try:
            return list(stream.poll()), stream.stats.lines_cut
        finally:
            stream.close()


HUGE = [b"1\tGET /" + b"a" * 3000 + b" HTTP/1.1\t200\t1\t1.5",  # a raw key past the core's longest
        b'1 - - [10/Oct/2000:13:55:36 -0700] "GET /' + b"b" * 3000 + b' HTTP/1.1" 200 1 "-" "ua" 0.5 0.4',
        b"1\tGET /users/1 HTTP/1.1\t200\t" + b"7" * 5000,
        b'{"path": "/' + b"c" * 3000 + b'", "method": "GET", "status": 200, "bytes": 1, "latency_ms": 2.5}', b""]


@SETTINGS
@given(data=st.data(), fmt=st.sampled_from(["tsv", "combined", "nginx", "json"]), chunk=st.integers(1, 400),
       max_line=st.sampled_from([12, 60, 65536]), eol=st.sampled_from([b"\n", b"\r\n"]),
       final_newline=st.booleans(), cap=caps)
def test_chunks_from_the_tailer_count_what_lists_count(
        data: st.DataObject, fmt: str, chunk: int, max_line: int, eol: bytes, final_newline: bool,
        cap: tuple[int, int, list[tuple[str, str]]]) -> None:
    """Lines split across reads, CRLF, empty lines, no final newline, lines past max_line and past the
    core's longest key: the compiled core fed the tailer's chunks counts what it counts fed their lines,
    and what the Python path counts, line for line."""
    lines = data.draw(tsv_lines() if fmt == "tsv" else combined_lines() if fmt == "combined"
                      else json_lines() if fmt == "json" else format_lines(0))
    lines += data.draw(st.lists(st.sampled_from(HUGE), max_size=3))
    lines = data.draw(st.permutations(lines))
    blob = eol.join(lines) + (eol if final_newline and lines else b"")
    batches, cut = _tailed(blob, chunk, max_line)
    chunked, listed, ref = _three(fmt, cap)
    for batch in batches:
        chunked.feed(batch)
        listed.feed(list(batch))
        ref.feed(list(batch))
    assert_same(chunked, ref)
    assert_same(listed, ref)
    whole = blob.split(b"\n")
    unterminated = whole.pop()  # held by the stream as a partial line: never counted
    assert chunked.lines + cut == len(whole) + (len(unterminated) > max_line)  # a long partial is cut too
    assert sum(len(batch) for batch in batches) == chunked.lines


def test_a_big_read_is_one_chunk_and_the_core_counts_it_without_lines() -> None:
    lines = [b"10.0.0.%d\tGET /users/%d HTTP/1.1\t%d\t%d\t%d.5" % (i % 7, i % 50, 200 + i % 3, i, i % 90)
             for i in range(20_000)]
    batches, cut = _tailed(b"\n".join(lines) + b"\n", 1 << 20, 65536)
    assert cut == 0 and all(isinstance(batch, Chunk) for batch in batches)
    chunked, _listed, ref = _three("tsv", (1000, 20_000, []))
    for batch in batches:
        chunked.feed(batch)
    ref.feed(lines)
    assert_same(chunked, ref)
    assert chunked._core is not None and chunked._core.stats()["counted"] > 19_000


def test_scan_chunk_stays_inside_its_span() -> None:
    counter = core.counter("tsv", BOUNDS_MS, True)
    assert counter is not None
    line = b"1\tGET / HTTP/1.1\t200\t5\t1.5\n"
    assert counter.scan_chunk(line, 0, len(line)) == (0, b"GET / HTTP/1.1\t200", 0)  # unknown: stops at once
    slot = slots.new_slot(BOUNDS_MS)
    counter.bind(b"GET / HTTP/1.1\t200", slot)
    blob = line * 3
    assert counter.scan_chunk(blob, 0, 10**9) == (len(blob), None, 3)  # end clamped to the buffer
    assert counter.scan_chunk(blob, len(line), 2 * len(line)) == (2 * len(line), None, 1)
    assert counter.scan_chunk(blob, -7, -1) == (len(blob), None, 3)  # a negative end is the buffer's end
    assert counter.scan_chunk(blob, 50, 10) == (10, None, 0)  # start past end: nothing
    assert counter.scan_chunk(line[:-1], 0, len(line) - 1) == (len(line) - 1, None, 1)  # no final newline
    assert counter.scan_chunk(b"\n" + line, 0, len(line) + 1) == (0, None, 0)  # an empty line: Python decides
    assert counter.scan_chunk(line.replace(b"\n", b"\r\n"), 0, len(line) + 1)[0] == 0  # `1.5\r`: Python's
    counter.flush()
    assert slots.count(slot) == 3 + 1 + 3 + 1
    with pytest.raises(TypeError):
        counter.scan_chunk(bytearray(line), 0, 1)  # type: ignore[arg-type]

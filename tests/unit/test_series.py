"""What a file can export, bounded: route length, the series cap and its overflow series, label values
escaped when their series is created, and exact totals under every cap."""
from __future__ import annotations

import copy
import tracemalloc
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from logtaild.config import Config, FileConfig, RoutesConfig
from logtaild.count import slots as layout
from logtaild.count.aggregate import Aggregator
from logtaild.count.labels import ESCAPED_CATEGORIES, MARKER, escape
from logtaild.count.parsers import PARSERS, parse_combined
from logtaild.count.record import AccessRecord
from logtaild.count.routes import OVERFLOW_METHOD, OVERFLOW_ROUTE, RouteLimiter, overflow_key
from logtaild.count.window import format_report
from logtaild.export.collector import build_registry
from logtaild.export.snapshot import FileSnapshot, Snapshot
from logtaild.export.status import StatusBoard
from logtaild.run.service import Service
from logtaild.tail.filestream import StreamStats

BOUNDS_MS = [5.0, 100.0]
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)
HOSTILE_TEXT = st.text(st.one_of(
    st.characters(),
    st.characters(categories=("Cc", "Cf", "Zl", "Zp")),
    st.sampled_from("\\\x1b\x07\u202e\u2066\U000e0041\u2064\u180e\u200b\ufeff\u00ad\u2028\x9b\x7f/?# \t"),
), max_size=300)


def make(max_routes: int = 1000, max_series: int = 20_000, max_length: int = 256,
         rules: list[tuple[str, str]] | None = None) -> Aggregator:
    limiter = RouteLimiter(max_routes, rules or [], max_length=max_length, max_series=max_series)
    return Aggregator(limiter, BOUNDS_MS)


def tsv(route: bytes, status: bytes = b"200", method: bytes = b"GET", size: int = 10) -> bytes:
    return b"1.1.1.1\t%s %s\t%s\t%d\t7" % (method, route, status, size)


def total(agg: Aggregator) -> int:
    return sum(layout.counts(agg.slots.values()))


def _unsafe(text: str) -> bool:
    return any(unicodedata.category(ch) in ESCAPED_CATEGORIES for ch in text)


def _values(agg: Aggregator) -> list[str]:
    return [value for route, method, status, labels in agg.slots
            for value in (route, method, status, *(v for _n, v in labels))]


# ---- the route length --------------------------------------------------------------------------------------

def test_a_long_route_is_cut_to_max_length_with_the_marker() -> None:
    agg = make()
    agg.feed([tsv(b"/long/" + b"z" * 8000 + tail) for tail in (b"1", b"2", b"/x")])
    [(route, _m, _s, _l)] = agg.slots
    assert route.endswith(MARKER) and len(route.encode()) <= 256 and route.startswith("/long/zzz")
    assert total(agg) == 3  # three long routes with the same start share the cut value


def test_the_cut_is_on_a_character_boundary() -> None:
    agg = make(max_length=64)
    agg.feed([tsv(("/" + "é" * 100).encode())])
    [(route, *_rest)] = agg.slots
    assert route == "/" + "é" * 30 + MARKER and len(route.encode()) == 64


def test_an_escaped_route_is_cut_after_escaping() -> None:
    agg = make(max_length=64)
    agg.feed([tsv(b"/" + b"\x1b" * 100)])
    [(route, *_rest)] = agg.slots
    assert route == "/" + "\\x1b" * 15 + MARKER and len(route.encode()) <= 64


def test_routes_are_cut_before_the_route_cap() -> None:
    """Routes that differ only past the limit take one place under the cap."""
    agg = make(max_routes=2)
    agg.feed([tsv(b"/a/" + b"z" * 300 + b"%d" % n) for n in range(50)] + [tsv(b"/b")])
    assert sorted(route for route, *_rest in agg.slots) == ["/a/" + "z" * 250 + MARKER, "/b"]


# ---- escaping when the series is created ----------------------------------------------------------------

@pytest.mark.parametrize(("fmt", "line"), [
    ("tsv", b"1.1.1.1\tGET /x\x1b[2J\x07\xe2\x80\xae\xf3\xa0\x81\x81\xe2\x81\xa4\xe1\xa0\x8e\t200\t1"),
    ("combined", b'1.1.1.1 - - [10/Oct/2000:13:55:36 -0700] "GET /x\\x1B[2J\\x07\\xE2\\x80\\xAE\\xF3\\xA0\\x81\\x81'
                 b'\\xE2\\x81\\xA4\\xE1\\xA0\\x8E HTTP/1.1" 200 1'),
    ("json", b'{"path": "/x\\u001b[2J\\u0007\\u202e\\udb40\\udc41\\u2064\\u180e", "method": "GET", "status": 200}'),
])
def test_hostile_characters_are_escaped_in_the_label_value(fmt: str, line: bytes) -> None:
    agg = Aggregator(RouteLimiter(), BOUNDS_MS, PARSERS[fmt])
    agg.feed([line, line])
    assert list(agg.slots) == [("/x\\x1b[2J\\x07\\u202e\\U000e0041\\u2064\\u180e", "GET", "200", ())]
    assert total(agg) == 2


def test_a_literal_backslash_escape_in_a_url_is_not_an_escape_character() -> None:
    agg = make()
    agg.feed([tsv(b"/a\\x1b"), tsv(b"/a\x1b"), tsv(b"/a\\x1b")])
    assert {route: layout.count(slot) for (route, *_r), slot in agg.slots.items()} == {
        "/a\\\\x1b": 2, "/a\\x1b": 1}


def test_label_field_values_are_escaped_and_cut() -> None:
    agg = make(max_length=32)
    evil = "svc\x1b]0;pwned\x07" + "\u202e" * 20
    for _ in range(3):
        agg.add_record(AccessRecord("/", "GET", "200", 1, None, (("service", evil),)))
    [key] = agg.slots
    assert key[3] == (("service", "svc\\x1b]0;pwned\\x07\\u202e…"),)
    assert total(agg) == 3


def test_a_raw_label_that_looks_escaped_gets_its_own_series() -> None:
    agg = make()
    agg.add_record(AccessRecord("/", "GET", "200", 1, None, (("service", "a\x1b"),)))
    agg.add_record(AccessRecord("/", "GET", "200", 1, None, (("service", "a\\x1b"),)))
    assert sorted(key[3][0][1] for key in agg.slots) == ["a\\\\x1b", "a\\x1b"]


@SETTINGS
@given(st.lists(HOSTILE_TEXT, min_size=1, max_size=6))
def test_no_label_value_holds_a_control_format_or_separator_character(routes: list[str]) -> None:
    agg = make(max_routes=4, max_series=6)
    for route in routes:
        agg.slot_for(route, "GET", "200", (("service", route),))
        agg.feed([tsv(route.encode("utf-8", "surrogatepass").replace(b"\t", b"").replace(b" ", b""))])
    values = _values(agg)
    assert not any(map(_unsafe, values))
    assert all(len(value.encode("utf-8", "surrogatepass")) <= 256 for value in values)


@SETTINGS
@given(HOSTILE_TEXT)
def test_a_route_through_the_combined_parser_is_safe(route: str) -> None:
    """nginx writes bytes outside 0x20-0x7e as \\xHH; the parser decodes them, the series escapes them."""
    raw = "/" + route
    logged = "".join(ch if 0x20 < ord(ch) < 0x7F and ch not in '"\\' else
                     "".join(f"\\x{b:02X}" for b in ch.encode("utf-8", "surrogatepass")) for ch in raw)
    agg = Aggregator(RouteLimiter(), BOUNDS_MS, parse_combined)
    agg.feed([b'1.1.1.1 - - [10/Oct/2000:13:55:36 -0700] "GET ' + logged.encode() + b' HTTP/1.1" 200 1'])
    assert agg.lines == 1
    assert not any(map(_unsafe, _values(agg)))


def test_merged_counts_are_not_escaped_twice() -> None:
    worker = make()
    worker.feed([tsv(b"/a\x1b\\"), tsv(b"/" + b"z" * 400)])
    parent = make()
    parent.feed([tsv(b"/a\x1b\\")])
    parent.merge_slots(worker.slots)
    assert set(parent.slots) == set(worker.slots)
    assert layout.count(parent.slots["/a\\x1b\\\\", "GET", "200", ()]) == 2


def test_a_state_file_from_before_escaping_is_made_safe() -> None:
    stored = [["/old\x1b", "GET", "200", [["service", "s\u202e"]], [4, 40, 0.0, 0, 0, 0]]]
    agg = make()
    agg.merge_slots(layout.from_json(stored, BOUNDS_MS, True))
    assert list(agg.slots) == [("/old\\x1b", "GET", "200", (("service", "s\\u202e"),))]


# ---- the series cap ----------------------------------------------------------------------------------------

def test_past_max_series_new_label_sets_count_under_the_overflow_series_of_their_status() -> None:
    agg = make(max_series=3)
    lines = [tsv(b"/r%d" % n, status) for n in range(10) for status in (b"200", b"503")]
    agg.feed(lines + lines)
    assert len(agg.slots) == 3 + 2
    assert agg.slots[OVERFLOW_ROUTE, OVERFLOW_METHOD, "200", ()][layout.COUNT] == 2 * 10 - 4
    assert agg.slots[OVERFLOW_ROUTE, OVERFLOW_METHOD, "503", ()][layout.COUNT] == 2 * 10 - 2
    assert total(agg) == len(lines) * 2
    by_status = {}
    for (_r, _m, status, _l), slot in agg.slots.items():
        by_status[status] = by_status.get(status, 0) + layout.count(slot)
    assert by_status == {"200": 20, "503": 20}  # per status: exact


def test_series_created_before_the_cap_keep_counting() -> None:
    agg = make(max_series=2)
    agg.feed([tsv(b"/a"), tsv(b"/b"), tsv(b"/c"), tsv(b"/a"), tsv(b"/b")])
    assert {key[0]: layout.count(slot) for key, slot in agg.slots.items()} == {"/a": 2, "/b": 2, OVERFLOW_ROUTE: 1}


def test_the_overflow_series_keeps_label_names() -> None:
    key = ("/a", "GET", "404", (("service", "api"), ("team", "x")))
    assert overflow_key(key) == (OVERFLOW_ROUTE, OVERFLOW_METHOD, "404", (("service", OVERFLOW_ROUTE),
                                                                          ("team", OVERFLOW_ROUTE)))


def test_the_series_cap_holds_over_merged_counts() -> None:
    one, two = make(max_series=5), make(max_series=5)
    one.feed([tsv(b"/a%d" % n) for n in range(8)])
    two.feed([tsv(b"/b%d" % n) for n in range(8)])
    one.merge_slots(two.slots)
    assert len(one.slots) == 5 + 1 and total(one) == 16
    assert one.slots[OVERFLOW_ROUTE, OVERFLOW_METHOD, "200", ()][layout.COUNT] == 3 + 8


def test_a_flood_of_every_method_and_status_stays_bounded_and_exact() -> None:
    agg = make(max_routes=50, max_series=300)
    methods = [b"GET", b"POST", b"PROPFIND", b"BREW", b"PATCH"]
    lines = [tsv(b"/f%d/%s" % (n, b"z" * (n % 700)), b"%d" % (100 + n % 500), methods[n % 5], n)
             for n in range(20_000)]
    agg.feed(lines)
    assert len(agg.slots) <= 300 + 500
    assert total(agg) == len(lines)
    assert sum(layout.byte_counts(agg.slots.values())) == sum(range(20_000))
    assert {method for _r, method, _s, _l in agg.slots} <= {"GET", "POST", "PATCH", "OTHER", OVERFLOW_METHOD}


def test_the_route_cap_then_the_series_cap_totals_stay_exact() -> None:
    agg = make(max_routes=3, max_series=5)
    lines = [tsv(b"/r%d" % (n % 40), b"%d" % (200 + n % 3), b"GET" if n % 2 else b"POST") for n in range(1000)]
    agg.feed(lines)
    assert total(agg) == 1000 and len(agg.slots) <= 5 + 3
    assert escape("/r0") == "/r0"


# ---- the self-metrics ----------------------------------------------------------------------------------

def _snapshot(agg: Aggregator) -> Snapshot:
    return Snapshot([FileSnapshot("access.log", {}, agg.snapshot(), [b / 1000 for b in BOUNDS_MS], agg.lines,
                                  dict(agg.malformed), StreamStats(), agg.limiter.distinct)], "test")


def _registry(agg: Aggregator) -> CollectorRegistry:
    return build_registry(lambda: _snapshot(agg))


def test_series_gauge_and_overflow_counters() -> None:
    agg = make(max_routes=3, max_series=4)
    # /a /b /c admitted; /d and /e past the route cap: __other__ GET 200 is the 4th series; then the
    # series cap: /a POST, __other__ POST (route-capped too) and /b 404 go to the overflow series
    agg.feed([tsv(b"/a"), tsv(b"/b"), tsv(b"/c"), tsv(b"/d"), tsv(b"/e"),
              tsv(b"/a", method=b"POST"), tsv(b"/f", method=b"POST"), tsv(b"/b", b"404")])
    reg = _registry(agg)
    file = {"file": "access.log"}
    assert reg.get_sample_value("logtaild_series", file) == 4 + 2
    assert reg.get_sample_value("logtaild_routes", file) == 3
    assert reg.get_sample_value("logtaild_route_overflow_total", file) == 2
    assert reg.get_sample_value("logtaild_series_overflow_total", file) == 3
    req = "logtaild_http_requests_total"
    assert reg.get_sample_value(req, {"route": OVERFLOW_ROUTE, "method": OVERFLOW_METHOD, "status": "200"}) == 2
    assert reg.get_sample_value(req, {"route": OVERFLOW_ROUTE, "method": OVERFLOW_METHOD, "status": "404"}) == 1
    assert sum(s.value for f in reg.collect() if f.name == "logtaild_http_requests" for s in f.samples) == 8


def test_label_values_on_metrics_show_the_escaped_text() -> None:
    agg = make()
    agg.feed([tsv(b"/x\x1b[31m\xe2\x80\xae\\")])
    body = generate_latest(_registry(agg)).decode()
    # the exposition escapes the backslashes of the escaped value once more, as for any label value
    assert 'route="/x\\\\x1b[31m\\\\u202e\\\\\\\\"' in body
    assert "\x1b" not in body and "\u202e" not in body


# ---- the config reaches the aggregators ------------------------------------------------------------------

def test_the_service_builds_its_aggregators_with_the_configured_caps(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(tsv(b"/r%d/" % n + b"z" * 100) + b"\n" for n in range(5)))
    config = Config(files=(FileConfig(str(log)),), from_start=True,
                    routes=RoutesConfig(max_length=32, max_series=3))
    service = Service(config, once=True)
    try:
        service.scan(initial=True)
        service.read_to_end()
        [source] = service.sources.values()
        keys = list(source.agg.slots)
        assert len(keys) == 3 + 1 and (OVERFLOW_ROUTE, OVERFLOW_METHOD, "200", ()) in keys
        assert all(len(key[0].encode()) <= 32 for key in keys)
        assert total(source.agg) == 5
    finally:
        service.close()


# ---- memory: long requests are not kept by the caches -----------------------------------------------------

def test_distinct_long_requests_leave_nothing_in_the_raw_caches() -> None:
    agg = make()
    agg.feed([tsv(b"/warm")])
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for n in range(300):  # 300 distinct 60 KB requests: 18 MB if the caches kept their keys
            agg.feed([tsv(b"/r%d/" % n + b"z" * 60_000)] * 2)
        current, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current - base < 2_000_000
    assert total(agg) == 601 and all(len(route.encode()) <= 256 for route, *_rest in agg.slots)


def test_a_copied_limiter_keeps_its_rules_and_caps() -> None:
    """The catch-up worker deep-copies the limiter (an RE2 set cannot be copied as is)."""
    limiter = RouteLimiter(3, [(r"^/blog/.+", "/blog/*")], max_length=32, max_series=7)
    limiter.admit("/a")
    copied = copy.deepcopy(limiter)
    assert copied.normalize("/blog/x/1") == "/blog/*" and copied.admit("/a") == "/a"
    assert (copied.max_routes, copied.max_length, copied.max_series, copied.distinct) == (3, 32, 7, 1)


# ---- one text everywhere ----------------------------------------------------------------------------------

def test_metrics_status_page_and_report_show_the_same_text() -> None:
    agg = make()
    agg.feed([tsv(b"/x\x1b[2J\xe2\x80\xae\\y")])
    shown = "/x\\x1b[2J\\u202e\\\\y"
    assert [key[0] for key in agg.slots] == [shown]
    # the report: the label value as it is
    report = format_report({("", r, s): n for (r, s), n in agg.counts_by_route_status().items()}, 1.0, wall=0.0)
    assert f"{shown}\t200\t1" in report.splitlines()
    # the status page and /status.json: the label value, HTML-escaped (nothing here to escape) only
    status_board = StatusBoard(lambda: _snapshot(agg), clock=lambda: 100.0, wall=lambda: 5000.0)
    assert f'<td class="route">{shown}</td>' in status_board.html_body("nonce").decode()
    assert [route["route"] for route in status_board.status()["routes"]] == [shown]
    # /metrics: the label value, with the exposition's own backslash escaping on top
    assert 'route="/x\\\\x1b[2J\\\\u202e\\\\\\\\y"' in generate_latest(_registry(agg)).decode()

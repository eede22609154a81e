"""The status board: the ring of samples, p95, the colours, and HTML that no route can break out of."""
from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logtaild.count import slots as layout
from logtaild.count.labels import printable
from logtaild.export.snapshot import FileSnapshot, Objective, Snapshot
from logtaild.export.status import StatusBoard, judge, quantile
from logtaild.tail.filestream import StreamStats
from tests.support.clock import FakeClock

BOUNDS = [0.1, 0.5, 1.0]  # seconds; slots hold one count per bucket plus +Inf


class Counts:
    """A fake service: cumulative slots per (route, status) that tests advance."""

    def __init__(self, objectives: dict[str, Objective] | None = None) -> None:
        self.slots: dict[tuple[str, str], list[float]] = {}
        self.lines = 0
        self.objectives = objectives or {}
        self.stats = StreamStats(size=100, offset=60, inode=42, last_rotation=0.0)
        self.last_tick = 5000.0

    def add(self, route: str, status: str, n: int, bucket: int = 0) -> None:
        slot = self.slots.setdefault((route, status), layout.new_slot([b * 1000 for b in BOUNDS]))
        buckets = [0] * (len(BOUNDS) + 1)
        buckets[bucket] = n
        layout.merge_slot(slot, layout.filled(n, 0, 0.0, buckets))
        self.lines += n

    def snapshot(self) -> Snapshot:
        slots = [((route, "GET", status, ()), list(slot)) for (route, status), slot in self.slots.items()]
        file = FileSnapshot("access.log", {}, slots, BOUNDS, self.lines, {"fields": 0}, self.stats, len(slots),
                            {route: self.objectives.get(route, Objective()) for route, _s in self.slots})
        return Snapshot([file], "9.9", last_tick=self.last_tick)


def board(counts: Counts, clock: FakeClock) -> StatusBoard:
    return StatusBoard(counts.snapshot, window=30.0, spacing=5.0, clock=clock, wall=lambda: 5000.5)


def by_route(status: dict) -> dict[str, dict]:
    return {r["route"]: r for r in status["routes"]}


def test_quantile_interpolates_like_histogram_quantile() -> None:
    assert quantile(0.95, BOUNDS, [0, 0, 0, 0]) is None
    assert quantile(0.5, BOUNDS, [10, 0, 0, 0]) == pytest.approx(0.05)
    assert quantile(0.95, BOUNDS, [50, 50, 0, 0]) == pytest.approx(0.1 + 0.4 * 0.9)
    assert quantile(0.95, BOUNDS, [90, 0, 0, 10]) == 1.0  # in +Inf: the highest finite bound


@pytest.mark.parametrize(("requests", "errors", "slow", "p95", "state"), [
    (0, None, None, None, "grey"),
    (1000, 0.0005, 0.005, 0.1, "green"),     # burn 0.5
    (1000, 0.001, 0.0, 0.1, "green"),        # burn exactly 1: spending the budget, not over it
    (1000, 0.0015, 0.0, 0.1, "yellow"),      # error burn 1.5
    (1000, 0.0, 0.015, 0.1, "yellow"),       # latency burn 1.5
    (1000, 0.0, 0.0, 0.4, "yellow"),         # p95 at 80% of the 0.5 s threshold
    (1000, 0.0025, 0.0, 0.1, "red"),         # error burn 2.5
    (1000, 0.5, None, None, "red"),          # an errors incident, no latency in the log
    (1000, 0.0, 0.2, 0.6, "red"),
])
def test_colours(requests: int, errors: float | None, slow: float | None, p95: float | None, state: str) -> None:
    assert judge(requests, errors, slow, p95, Objective())[0] == state


def test_rates_come_from_a_short_moving_window() -> None:
    counts, clock = Counts({"/slow": Objective(latency_threshold_s=0.1)}), FakeClock(1000.0)
    b = board(counts, clock)                       # sample at t=0
    for _step in range(1, 7):                      # 60 s of 10 req/s on /, views every 10 s
        counts.add("/", "200", 100)
        clock.now += 10
        status = b.status()
    routes = by_route(status)
    assert status["window_seconds"] == 30.0        # the oldest sample inside the 30 s window
    assert routes["/"]["qps"] == pytest.approx(10.0) and routes["/"]["state"] == "green"
    assert status["files"][0]["lines_per_second"] == pytest.approx(10.0)
    assert len(b._ring) <= 30 / 5 + 2

    counts.add("/", "500", 50)                     # an incident starts
    counts.add("/", "200", 50)
    counts.add("/slow", "200", 10, bucket=1)       # slower than its 0.1 s threshold
    clock.now += 10
    routes = by_route(b.status())
    assert routes["/"]["state"] == "red" and routes["/"]["error_ratio"] == pytest.approx(50 / 300)
    assert routes["/slow"]["state"] == "red" and routes["/slow"]["slow_ratio"] == 1.0
    assert routes["/slow"]["p95_seconds"] == pytest.approx(0.1 + 0.4 * 0.95)

    for _ in range(5):                             # it ends; 40 s later the window no longer holds it
        counts.add("/", "200", 100)
        clock.now += 10
        routes = by_route(b.status())
    assert routes["/"]["state"] == "green" and routes["/"]["error_ratio"] == 0.0
    assert routes["/slow"]["state"] == "grey" and routes["/slow"]["qps"] == 0.0


def test_after_a_quiet_spell_the_span_says_how_old_the_baseline_is() -> None:
    counts, clock = Counts(), FakeClock(1000.0)
    b = board(counts, clock)
    counts.add("/", "200", 3600)
    clock.now += 3600
    status = b.status()
    assert status["window_seconds"] == 3600.0 and by_route(status)["/"]["qps"] == pytest.approx(1.0)
    counts.add("/", "200", 50)
    clock.now += 0.5                               # a view right after: compared with the older sample
    assert b.status()["window_seconds"] == 3600.5
    clock.now += 5
    counts.add("/", "200", 55)
    status = b.status()
    assert status["window_seconds"] == 5.5 and by_route(status)["/"]["qps"] == pytest.approx(105 / 5.5)


def test_files_and_loop() -> None:
    counts, clock = Counts(), FakeClock(1000.0)
    status = board(counts, clock).status()
    [file] = status["files"]
    assert (file["path"], file["inode"], file["offset"], file["lag_bytes"], file["last_rotation"]) == (
        "access.log", 42, 60, 40, None)
    assert status["loop"]["ok"] and status["loop"]["seconds_since_tick"] == pytest.approx(0.5)
    counts.last_tick = 4000.0
    assert not board(counts, clock).status()["loop"]["ok"]


# ---- the views ----------------------------------------------------------------------------------------

def serve(b: StatusBoard, path: str) -> tuple[str, dict[str, str], bytes]:
    seen: dict = {}

    def inner(environ, start_response):
        start_response("404 Not Found", [])
        return [b"inner"]

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(b.wrap(inner)({"PATH_INFO": path}, start_response))
    return seen["status"], seen["headers"], body


class Cells(HTMLParser):
    """The text of every `td.route` cell, and every tag seen."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.routes: list[str] = []
        self._in_route = False

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self._in_route = tag == "td" and ("class", "route") in attrs
        if self._in_route:
            self.routes.append("")

    def handle_endtag(self, tag):
        self._in_route = False

    def handle_data(self, data):
        if self._in_route:
            self.routes[-1] += data


PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "span", "table", "thead",
             "tbody", "tr", "th", "td", "dl", "dt", "dd", "a", "b", "div",
             "svg", "rect", "line", "text", "polygon", "polyline"}  # the charts (charts.py)


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(st.lists(st.text(min_size=1, max_size=50), min_size=1, max_size=5, unique=True))
def test_no_route_can_add_markup_to_the_page(routes: list[str]) -> None:
    counts, clock = Counts(), FakeClock(1000.0)
    for route in routes:
        counts.add(route, "200", 1)
    status, headers, body = serve(board(counts, clock), "/")
    page = body.decode("utf-8")
    parser = Cells()
    parser.feed(page)
    assert parser.tags <= PAGE_TAGS
    assert sorted(parser.routes) == sorted(printable(route) for route in routes)
    assert "<script" not in page.lower()


def test_the_page_forbids_script_and_the_json_cannot_be_sniffed_as_html() -> None:
    counts, clock = Counts(), FakeClock(1000.0)
    b = board(counts, clock)
    counts.add("/<script>alert(1)</script>", "500", 3)
    clock.now += 2
    status, headers, body = serve(b, "/")
    assert status == "200 OK" and headers["Content-Type"] == "text/html; charset=utf-8"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert f'<style nonce="{nonce}">' in body.decode() and len(nonce) >= 16
    assert nonce not in serve(b, "/")[1]["Content-Security-Policy"]  # a new nonce per response
    assert b'<meta http-equiv="refresh"' in body and b"&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert headers["X-Content-Type-Options"] == "nosniff"

    status, headers, body = serve(b, "/status.json")
    assert headers["Content-Type"] == "application/json" and b"<" not in body and body.isascii()
    data = json.loads(body)
    [route] = data["routes"]
    assert route["route"] == "/<script>alert(1)</script>" and route["state"] == "red"
    assert set(data["legend"]) == {"green", "yellow", "red", "grey"}


def test_other_paths_pass_through_and_take_a_sample_when_due() -> None:
    counts, clock = Counts(), FakeClock(1000.0)
    b = board(counts, clock)
    assert serve(b, "/metrics")[2] == b"inner" and len(b._ring) == 1
    clock.now += 6
    assert serve(b, "/healthz")[2] == b"inner" and len(b._ring) == 2

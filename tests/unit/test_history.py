"""The status page's history: points equal the report windows, the rings stay bounded, the charts and
`/status.json` carry the same series, and the page stays small with 1,000 routes."""
from __future__ import annotations

import io
import json
import random
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from logtaild.config import Config, FileConfig, SloConfig
from logtaild.count.labels import escape
from logtaild.count.window import Window
from logtaild.export import charts
from logtaild.export.history import (
    CLASSES,
    COARSE_POINTS,
    COARSE_STEP,
    POINT_BYTES,
    History,
    bytes_per_route,
    fine_points,
    quantile,
)
from logtaild.export.snapshot import Objective
from logtaild.export.status import JSON_HISTORY_ROUTES, TOP_ROUTES, StatusBoard
from logtaild.run.service import Service
from tests.support.clock import FakeClock
from tests.support.daemon import parse_reports
from tests.unit.test_status import BOUNDS, Counts

START = 1_800_000_000.0  # wall clock of the first window's start (a multiple of COARSE_STEP)


class Run:
    """A fake service (`Counts`), its report window and a history, moved one report window at a time."""

    def __init__(self, interval: float = 10.0, objectives: dict[str, Objective] | None = None) -> None:
        self.counts = Counts(objectives)
        self.clock = FakeClock(1000.0)
        self.wall = START
        self.interval = interval
        self.history = History(interval)
        self.window = Window(self.clock(), self.totals())
        self.board = StatusBoard(self.counts.snapshot, clock=self.clock, wall=lambda: self.wall,
                                 history=self.history)
        self.reports: list[dict[tuple[str, str, str], int]] = []

    def totals(self) -> dict[tuple[str, str, str], int]:
        out: dict[tuple[str, str, str], int] = {}
        for (route, status), slot in self.counts.slots.items():
            out["access.log", route, status] = int(slot[0])
        return out

    def step(self, seconds: float | None = None) -> None:
        """Close the report window as the loop does: report, then record the point."""
        seconds = self.interval if seconds is None else seconds
        self.clock.advance(seconds)
        self.wall += seconds
        counts, length = self.window.close(self.totals(), self.clock())
        self.reports.append(counts)
        self.history.record(self.counts.snapshot(), self.wall, length)


def serve(board: StatusBoard, url: str) -> tuple[str, dict[str, str], bytes]:
    """GET `url` (a path and maybe a query) from the board's WSGI middleware."""
    path, _, query = url.partition("?")
    seen: dict[str, object] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(board.wrap(lambda e, s: [b"inner"])({"PATH_INFO": path, "QUERY_STRING": query},
                                                          start_response))
    return str(seen["status"]), dict(seen["headers"]), body  # type: ignore[call-overload]


def by_class(report: dict[tuple[str, str, str], int], route: str) -> dict[str, int]:
    out = dict.fromkeys(CLASSES, 0)
    for (_path, r, status), n in report.items():
        if r == route:
            out[status[0] + "xx"] += n
    return out


def traffic(run: Run, rng: random.Random, routes: list[str]) -> None:
    for route in routes:
        for status in ("200", "301", "404", "503"):
            if rng.random() < 0.8:
                run.counts.add(route, status, rng.randint(1, 40), bucket=rng.randrange(4))


# ---- the points -------------------------------------------------------------------------------------

def test_each_point_holds_exactly_its_report_windows_counts() -> None:
    run, rng = Run(), random.Random(5)
    routes = ["/", "/a", "/b"]
    for step in range(40):
        traffic(run, rng, routes if step % 7 else routes[:1])   # some windows without /a and /b
        run.step(10.0 + (step % 3) * 0.25)                      # windows of slightly different lengths
    view = run.history.view(3600, run.wall, [("access.log", r) for r in routes], ["access.log"])
    assert len(view.times.end) == 40
    assert view.times.end == [START + sum(10.0 + (s % 3) * 0.25 for s in range(k + 1)) for k in range(40)]
    for k, report in enumerate(run.reports):
        assert view.times.seconds[k] == pytest.approx(10.0 + (k % 3) * 0.25)
        for route in routes:
            series = view.routes["access.log", route]
            assert {c: series.counts[c][k] for c in CLASSES} == by_class(report, route), (k, route)

    data = json.loads(serve(run.board, "/status.json")[2])   # the same, as rates in /status.json
    for route in data["routes"]:
        history = route["history"]
        assert history["t"] == [round(t, 3) for t in view.times.end]
        for k, report in enumerate(run.reports):
            for c in CLASSES:
                assert round(history[c][k] * view.times.seconds[k]) == by_class(report, route["route"])[c]
    [file] = data["files"]
    lines = [sum(r.values()) for r in run.reports]
    assert [round(v * s) for v, s in zip(file["history"]["lines_per_s"], view.times.seconds)] == lines
    assert file["history"]["lag_bytes"] == [40] * 40


def test_p95_and_burn_rate_of_a_point_come_from_that_window_alone() -> None:
    run = Run(objectives={"/": Objective(latency_threshold_s=0.5, latency_objective=0.9,
                                         availability_objective=0.9)})
    run.counts.add("/", "200", 100, bucket=0)
    run.step()
    run.counts.add("/", "200", 80, bucket=2)                    # slower than 0.5 s
    run.counts.add("/", "500", 20, bucket=0)
    run.step()
    data = json.loads(serve(run.board, "/status.json")[2])
    history = data["routes"][0]["history"]
    assert history["p95"] == [pytest.approx(quantile(0.95, BOUNDS, [100, 0, 0, 0]), abs=1e-4),
                              pytest.approx(quantile(0.95, BOUNDS, [20, 0, 80, 0]), abs=1e-4)]
    assert history["5xx"] == [0.0, 2.0] and history["2xx"] == [10.0, 8.0]
    assert history["burn_rate"] == [0.0, pytest.approx(0.8 / 0.1)]   # 80% slow against a 10% budget


def test_an_incident_is_a_step_in_the_very_window_it_starts_in() -> None:
    run = Run()
    for _ in range(10):
        run.counts.add("/blog", "200", 100)
        run.step()
    run.counts.add("/blog", "200", 50)
    run.counts.add("/blog", "500", 50)                          # half of the requests fail
    run.step()
    data = json.loads(serve(run.board, "/status.json")[2])
    assert data["routes"][0]["history"]["5xx"] == [0.0] * 10 + [5.0]


def test_the_real_service_records_one_point_per_report(tmp_path: Path) -> None:
    """Service's own loop steps, with a fake clock: each report on stdout is one point."""
    log = tmp_path / "access.log"
    log.write_text("")
    out, clock = io.StringIO(), FakeClock(100.0)
    config = Config(files=(FileConfig(str(log)),), from_start=True, interval=10.0,
                    slo=(SloConfig(route=".*", availability=0.9),))
    service = Service(config, out=out, clock=clock)
    service.history = History(config.interval)
    rng = random.Random(3)
    try:
        service.scan(initial=True)
        service._open_window(clock())
        for _ in range(6):
            with log.open("a") as handle:
                for _line in range(rng.randint(5, 60)):
                    route, status = rng.choice(["/", "/x"]), rng.choice(["200", "302", "404", "500"])
                    handle.write(f"1.2.3.4\tGET {route}\t{status}\t100\t5\n")
            service.step()
            clock.advance(10)
            service._run_due(clock())
    finally:
        service.close()
    reports = parse_reports(out.getvalue())
    view = service.history.view(3600, time.time(), [(str(log), "/"), (str(log), "/x")], [str(log)])
    assert len(reports) == len(view.times.end) == 6
    for k, report in enumerate(reports):
        for route in ("/", "/x"):
            got = {c: view.routes[str(log), route].counts[c][k] for c in CLASSES}
            want = dict.fromkeys(CLASSES, 0)
            for r, status, qps in report.rows:
                if r == route:
                    want[status[0] + "xx"] += round(qps * 10)
            assert got == want
        assert view.files[str(log)].lines[k] == round(report.totals["all"] * 10)


# ---- the rings ----------------------------------------------------------------------------------------

def test_two_hours_fine_ring_keeps_the_last_hour_coarse_points_are_exact_sums() -> None:
    run, rng = Run(interval=10.0), random.Random(9)
    added: dict[str, int] = dict.fromkeys(CLASSES, 0)
    per_bucket: dict[int, list[int]] = {}
    for _step in range(720):                                    # 2 hours of 10 s windows
        before = {s: int(slot[0]) for (_r, s), slot in run.counts.slots.items()}
        buckets_before = {s: list(slot[3:]) for (_r, s), slot in run.counts.slots.items()}
        traffic(run, rng, ["/"])
        run.step()
        bucket = int((run.wall - 1e-6) // COARSE_STEP)          # the 5 minutes this window ends in
        acc = per_bucket.setdefault(bucket, [0, 0, 0, 0])
        for (_r, s), slot in run.counts.slots.items():
            added[s[0] + "xx"] += int(slot[0]) - before.get(s, 0)
            for i, n in enumerate(slot[3:]):
                acc[i] += int(n) - int(buckets_before.get(s, [0] * 4)[i])
    key = ("access.log", "/")
    hour = run.history.view(3600, run.wall, [key], [])
    assert len(hour.times.end) == 360 and run.history.fine.capacity == fine_points(10.0) == 361
    day = run.history.view(86400, run.wall, [key], [])
    series = day.routes[key]
    assert {c: sum(series.counts[c]) for c in CLASSES} == added   # nothing lost, nothing twice
    assert sum(day.times.seconds) == pytest.approx(7200)
    coarse = run.history.coarse
    assert coarse.written == 23                                   # 24 buckets; the last is still open
    first = day.routes[key]
    for k in range(coarse.written):
        assert day.times.seconds[k] == pytest.approx(COARSE_STEP)
        want = quantile(0.95, BOUNDS, per_bucket[int(START // COARSE_STEP) + k])
        assert first.p95[k] == pytest.approx(want, rel=1e-6)      # from the summed buckets


def test_memory_per_route_is_bounded_and_routes_that_leave_are_dropped() -> None:
    assert POINT_BYTES == 40
    assert bytes_per_route(10.0) == 40 * (361 + COARSE_POINTS) == 25_960
    assert fine_points(0.01) == 3600 and fine_points(3600) == 2
    run = Run(interval=60.0)
    run.counts.add("/once", "200", 1)
    run.counts.add("/gone", "200", 1)
    for _ in range(200):                                          # the fine ring wraps three times
        run.counts.add("/", "200", 1)
        run.step()
    assert run.history.fine.written > run.history.fine.capacity > run.history.coarse.written
    for ring in (run.history.fine, run.history.coarse):
        columns = ring.routes["access.log", "/"]                   # requests in every point: as many as written
        points = min(ring.capacity, ring.written)                   # (the fine ring wrapped: all of it)
        assert len(columns.counts) == 7 * points and len(columns.p95) == points
        assert (columns.counts.itemsize, columns.size.itemsize, columns.p95.itemsize) == (4, 8, 4)
        once = ring.routes["access.log", "/once"]                  # requests in the first point only: one
        assert len(once.counts) == 7 and len(once.size) == len(once.p95) == 1
    fine = run.history.view(3600, run.wall, [("access.log", "/once")], []).routes["access.log", "/once"]
    assert fine.requests() == [0] * 60 and fine.p95 == [None] * 60    # the first point has left the hour
    del run.counts.slots["/gone", "200"]
    run.step()
    assert ("access.log", "/gone") not in run.history.fine.routes
    assert ("access.log", "/gone") not in run.history.coarse.routes


def test_ranges_pick_their_points_and_the_newest_minutes_are_in_the_day_view() -> None:
    run = Run(interval=10.0)
    for _ in range(100):
        run.counts.add("/", "200", 10)
        run.step()
    key = ("access.log", "/")
    assert len(run.history.view(900, run.wall, [key], []).times.end) == 90
    assert len(run.history.view(3600, run.wall, [key], []).times.end) == 100
    day = run.history.view(86400, run.wall, [key], [])
    assert day.times.end[-1] == run.wall and sum(day.routes[key].counts["2xx"]) == 1000
    assert json.loads(serve(run.board, "/status.json?range=15m")[2])["history"]["points"] == 90
    assert json.loads(serve(run.board, "/status.json?range=nonsense")[2])["history"]["range"] == "1h"


# ---- the page -----------------------------------------------------------------------------------------

class Svg(HTMLParser):
    """Every text inside an <svg>, and the classes of its shapes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.texts: list[str] = []
        self.shapes: set[str] = set()
        self.svgs = 0

    def handle_starttag(self, tag, attrs):
        if tag == "svg":
            self.depth += 1
            self.svgs += 1
        elif self.depth and tag in ("polygon", "polyline"):
            self.shapes.add(dict(attrs).get("class", ""))

    def handle_endtag(self, tag):
        if tag == "svg":
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.texts.append(data)


HOSTILE = "/<script>alert(1)</script>\u202e\x1b[2J"


def test_the_page_draws_each_route_and_file_and_no_log_text_gets_into_an_svg() -> None:
    run = Run()
    for step in range(30):
        run.counts.add("/", "200", 100, bucket=0)
        run.counts.add("/", "404", 5)
        run.counts.add(HOSTILE, "500" if step > 20 else "200", 20, bucket=1)
        run.step()
    status, headers, body = serve(run.board, "/")
    page = body.decode()
    svg = Svg()
    svg.feed(page)
    assert svg.svgs == 2 * 3 + 2                                  # 3 per route, 2 per file
    assert {"c2xx", "c4xx", "c5xx", "p95", "p95l", "lines", "lag"} <= svg.shapes
    assert all(re.fullmatch(r"[\w ≤%,./:()-]*", t) for t in svg.texts), svg.texts  # the page's words only
    assert html_text(escape(HOSTILE)) in page and "<script" not in page.lower()
    assert "\u202e" not in page and "\x1b" not in page
    assert '<b aria-current="page">1h</b>' in page and 'href="?range=15m"' in page
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert '<b aria-current="page">24h</b>' in serve(run.board, "/?range=24h")[2].decode()


def html_text(value: str) -> str:
    import html
    return html.escape(value, quote=True)


def test_with_1000_routes_the_page_shows_the_worst_and_busiest_and_stays_under_256_kib() -> None:
    run, rng = Run(interval=30.0), random.Random(1)
    routes = [f"/api/v1/items/{n}/details" for n in range(1000)]
    for step in range(121):                                      # a full hour at 30 s
        for n, route in enumerate(routes):
            run.counts.add(route, "200", 1 + n % 50 + rng.randint(0, 3), bucket=step % 3)
            run.counts.add(route, "404", 1 + rng.randint(0, 2))
            if n == 999 or rng.random() < 0.5:
                run.counts.add(route, "500", 40 if n == 999 and step > 110 else 1)
        run.step()
    status, headers, body = serve(run.board, "/")
    page = body.decode()
    assert len(body) < 256 * 1024, len(body)
    svg = Svg()
    svg.feed(page)
    assert svg.svgs == TOP_ROUTES * 3 + 2
    assert "975 more routes" in page
    shown = re.findall(r'<td class="route">([^<]*)</td>', page)
    assert len(shown) == TOP_ROUTES and shown[0] == "/api/v1/items/999/details"   # the red one, first
    data = json.loads(serve(run.board, "/status.json")[2])
    with_history = [r for r in data["routes"] if r["history"] is not None]
    assert len(with_history) == JSON_HISTORY_ROUTES and with_history == data["routes"][:JSON_HISTORY_ROUTES]
    everything = json.loads(serve(run.board, "/status.json?routes=all")[2])
    assert all(len(r["history"]["t"]) == 120 for r in everything["routes"])


def test_chart_helpers() -> None:
    assert [charts.nice(v) for v in (0, 0.7, 1, 1.2, 2.2, 4, 7, 12)] == [1, 1, 1, 2, 2.5, 5, 10, 20]
    axis = charts.Axis(0.0, 100.0)
    assert (axis.x(0), axis.x(100), axis.x(-5), axis.x(500)) == (charts.X0, charts.X1, charts.X0, charts.X1)
    ends = [float(t) for t in range(1, 1001)]
    cols = charts.columns(ends, charts.Axis(0.0, 1000.0))
    assert len(cols) <= charts.MAX_COLUMNS and sorted(i for c in cols for i in c) == list(range(1000))
    assert charts.axis_for([], [], 0.0) is None
    assert charts.axis_for([600.0, 610.0], [10.0, 10.0], 0.0) == charts.Axis(590.0, 610.0)


def test_a_route_whose_counters_start_over_counts_from_zero_and_nothing_goes_negative() -> None:
    run = Run()
    run.counts.add("/", "200", 100)
    run.step()
    run.counts.slots.clear()                                      # e.g. a reload rebuilt the counts
    run.counts.add("/", "200", 7)
    run.step()
    view = run.history.view(3600, run.wall, [("access.log", "/")], ["access.log"])
    assert view.routes["access.log", "/"].counts["2xx"] == [100, 7]
    assert min(view.files["access.log"].lines) >= 0


def test_two_files_each_route_is_charted_under_its_file_and_each_file_has_its_series() -> None:
    history, wall = History(10.0), START
    files = {"a.log": Counts(), "b.log": Counts()}
    for step in range(5):
        for n, counts in enumerate(files.values()):
            counts.add("/", "200", 10 * (n + 1))
            counts.add(f"/only-{n}", "404", step)
        wall += 10
        snaps = [counts.snapshot() for counts in files.values()]
        for path, snap in zip(files, snaps):
            snap.files[0].path = path
        merged = snaps[0]
        merged.files.append(snaps[1].files[0])
        history.record(merged, wall, 10.0)
    board = StatusBoard(lambda: merged, clock=FakeClock(1000.0), wall=lambda: wall, history=history)
    data = json.loads(serve(board, "/status.json")[2])
    routes = {(r["file"], r["route"]): r["history"] for r in data["routes"]}
    assert routes["a.log", "/"]["2xx"] == [1.0] * 5 and routes["b.log", "/"]["2xx"] == [2.0] * 5
    assert routes["b.log", "/only-1"]["4xx"] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert [f["history"]["lines_per_s"] for f in data["files"]] == [[1.0, 1.1, 1.2, 1.3, 1.4],
                                                                   [2.0, 2.1, 2.2, 2.3, 2.4]]
    page = serve(board, "/")[2].decode()
    assert page.count('a.log: <span class="name">') == 2 and page.count('b.log: <span class="name">') == 2
    svg = Svg()
    svg.feed(page)
    assert svg.svgs == 4 * 3 + 2 * 2

"""p50, p95, p99 and the mean per route on /status.json and the page: from the native buckets of the window."""
from __future__ import annotations

import json
import math
import random

import pytest

from logtaild.count import slots as layout
from logtaild.count.aggregate import Aggregator
from logtaild.count.latency import Timing, classic_quantile, timing
from logtaild.count.native import NativeSpec, growth_factor
from logtaild.count.routes import RouteLimiter
from logtaild.export.snapshot import FileSnapshot, Snapshot
from logtaild.export.status import StatusBoard
from logtaild.tail.filestream import StreamStats
from tests.support.clock import FakeClock

BOUNDS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
SPEC = NativeSpec(schema=3)


def _exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


class Service:
    def __init__(self, native: NativeSpec | None) -> None:
        self.agg = Aggregator(RouteLimiter(), [b * 1000 for b in BOUNDS_S], native=native)

    def feed(self, route: str, latencies_ms: list[float]) -> None:
        self.agg.feed([f"1.1.1.1\tGET {route} HTTP/1.1\t200\t1\t{ms}".encode() for ms in latencies_ms])

    def snapshot(self) -> Snapshot:
        slots = self.agg.snapshot()
        return Snapshot([FileSnapshot("a.log", {}, slots, BOUNDS_S, self.agg.lines, {}, StreamStats(), 1)], "1")


def test_the_window_percentiles_are_within_a_bucket_of_the_exact_ones() -> None:
    rng = random.Random(5)
    service, clock = Service(SPEC), FakeClock(100.0)
    board = StatusBoard(service.snapshot, window=30.0, spacing=5.0, clock=clock, wall=lambda: 1.0)
    before = [round(rng.lognormvariate(math.log(200), 0.5), 3) for _ in range(2000)]
    service.feed("/api", before)  # counted before the window: not in it
    clock.now += 60
    board.status()
    inside = [round(rng.lognormvariate(math.log(20), 0.8), 3) for _ in range(3000)]
    service.feed("/api", inside)
    clock.now += 10
    status = board.status()
    (route,) = status["routes"]
    factor = growth_factor(3) * (1 + 1e-12)
    for q, name in ((0.5, "p50_seconds"), (0.95, "p95_seconds"), (0.99, "p99_seconds")):
        exact = _exact(inside, q) / 1000.0
        assert exact / factor <= route[name] <= exact * factor, (name, route[name], exact)
    assert route["mean_seconds"] == pytest.approx(sum(inside) / len(inside) / 1000.0, rel=1e-9)
    json.dumps(status, allow_nan=False)
    page = board.html_body("n").decode()
    assert "<th>p50</th><th>p95</th><th>p99</th><th>mean</th>" in page
    assert f'<td class="p50">{route["p50_seconds"] * 1000:.0f} ms</td>' in page


def test_without_native_buckets_the_classic_ones_are_used() -> None:
    service, clock = Service(None), FakeClock(100.0)
    board = StatusBoard(service.snapshot, window=30.0, spacing=5.0, clock=clock, wall=lambda: 1.0)
    service.feed("/x", [20.0] * 50 + [70.0] * 50)
    clock.now += 10
    (route,) = board.status()["routes"]
    assert route["p50_seconds"] == pytest.approx(0.025)  # rank 50: the top of (0.01, 0.025], where 20 ms are
    assert route["p95_seconds"] == pytest.approx(0.05 + 0.05 * 0.9)
    assert route["mean_seconds"] == pytest.approx(0.045)


def test_no_latency_no_percentiles() -> None:
    service, clock = Service(SPEC), FakeClock(100.0)
    board = StatusBoard(service.snapshot, window=30.0, spacing=5.0, clock=clock, wall=lambda: 1.0)
    service.agg.feed([b"1.1.1.1\tGET / HTTP/1.1\t200\t1"])
    clock.now += 10
    (route,) = board.status()["routes"]
    assert [route[k] for k in ("p50_seconds", "p95_seconds", "p99_seconds", "mean_seconds")] == [None] * 4
    assert '<td class="p50">–</td>' in board.html_body("n").decode()


def test_timing_difference_and_counter_restarts() -> None:
    slot = layout.new_slot([b * 1000 for b in BOUNDS_S], detailed=True)
    for ms in (3.0, 3.0, 40.0):
        layout.observe(slot, [b * 1000 for b in BOUNDS_S], 1, ms, SPEC)
    older = timing([layout.copy_slot(slot)], len(BOUNDS_S) + 1)
    layout.observe(slot, [b * 1000 for b in BOUNDS_S], 1, 400.0, SPEC)
    newer = timing([slot], len(BOUNDS_S) + 1)
    delta = newer.minus(older)
    assert (delta.count, delta.sum_ms) == (1, 400.0)
    assert delta.native is not None and delta.native.count() == 1
    (p50, _p95, _p99), mean = delta.percentiles(BOUNDS_S)
    assert p50 is not None and 0.4 / growth_factor(3) <= p50 <= 0.4 * growth_factor(3) and mean == 0.4
    assert older.minus(newer) is older  # went down: the counters started over, all of it counts
    assert Timing(0.0, [0] * 9).percentiles(BOUNDS_S) == ([None, None, None], None)
    assert classic_quantile(0.5, [0.1], [0, 4]) == 0.1

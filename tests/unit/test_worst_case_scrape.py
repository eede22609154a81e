"""The largest /metrics body one file can produce at the default caps, built and measured.

docs/security.md (the bounds under "Hostile log lines") states the figures this test checks; change
both together. The worst case: 1,000 routes plus `__other__` (routes.max), each route label exactly
256 bytes (routes.max_length) of a character the exposition escapes again (`"` -> `\\"`, twice the
bytes), every method label (nine methods and OTHER) on every route, with a latency (so a histogram per
route and method), two statuses per route and method until routes.max_series (20,000) series exist,
then one overflow series for each status code 100-599 (route and method `__other__`). The body is
rendered by the real families and exposition code, through the registry /metrics uses.
"""
from __future__ import annotations

from prometheus_client.exposition import choose_encoder

from logtaild.config import Config
from logtaild.count.aggregate import Aggregator
from logtaild.count.formats import KNOWN_METHODS
from logtaild.count.record import AccessRecord
from logtaild.count.routes import DEFAULT_MAX_LENGTH, DEFAULT_MAX_ROUTES, DEFAULT_MAX_SERIES, RouteLimiter
from logtaild.export.collector import build_registry
from logtaild.export.snapshot import FileSnapshot, Snapshot
from logtaild.tail.filestream import StreamStats

#: the figures in docs/security.md: the worst body, and its number of lines (samples and comments)
WORST_BYTES = 131_400_000
WORST_LINES = 224_307


def _route(n: int) -> str:
    head = f"/{n}"
    return head + '"' * (DEFAULT_MAX_LENGTH - len(head))


def _worst_aggregator(bounds_s: list[float]) -> Aggregator:
    """Every cap at its default, filled the way that makes the scrape largest."""
    limiter = RouteLimiter()
    assert (limiter.max_routes, limiter.max_length, limiter.max_series) == (
        DEFAULT_MAX_ROUTES, DEFAULT_MAX_LENGTH, DEFAULT_MAX_SERIES) == (1000, 256, 20_000)
    agg = Aggregator(limiter, [b * 1000 for b in bounds_s])
    methods = [*sorted(KNOWN_METHODS), "OTHER"]
    routes = [_route(n) for n in range(DEFAULT_MAX_ROUTES + 2)]  # the last two go to __other__
    pairs = [(route, method) for route in routes for method in methods]
    # two statuses per pair, three in turn (so no status holds every pair and each can still
    # overflow), first one per pair (every pair gets its histogram before the cap is reached); the
    # biggest byte count and a latency past the last bucket: the longest numbers
    for turn in (0, 1):
        for i, (route, method) in enumerate(pairs):
            agg.add_record(AccessRecord(route, method, ("200", "404", "503")[(i + turn) % 3], 10 ** 18, 20_000.0))
    for code in range(100, 600):
        agg.add_record(AccessRecord(_route(5000), "GET", str(code), 10 ** 18, 20_000.0))
    return agg


def test_the_worst_scrape_at_the_defaults_is_the_documented_size() -> None:
    bounds_s = list(Config().bucket_bounds())
    agg = _worst_aggregator(bounds_s)
    assert len(agg.slots) == DEFAULT_MAX_SERIES + 500  # the cap, plus one overflow series per status
    assert max(len(route.encode()) for route, *_rest in agg.slots) == DEFAULT_MAX_LENGTH

    def snapshot() -> Snapshot:
        return Snapshot([FileSnapshot("/var/log/nginx/access.log", {}, agg.snapshot(), bounds_s, agg.lines,
                                      dict(agg.malformed), StreamStats(), agg.limiter.distinct)], "0.1.0")

    registry = build_registry(snapshot)
    body = b"".join(registry.exposition(choose_encoder("")[0]) or [])
    assert WORST_BYTES * 0.99 < len(body) <= WORST_BYTES
    assert abs(body.count(b"\n") - WORST_LINES) < 50  # process_* lines vary a little by platform

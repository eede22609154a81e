"""RouteLimiter: id normalization, configured rules, and the cardinality cap (count and memory)."""
from __future__ import annotations

import random
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logtaild.count.routes import ID_PLACEHOLDER, OVERFLOW_ROUTE, RouteLimiter, normalize_id_bytes, normalize_ids


@pytest.mark.parametrize(("raw", "expected"), [
    ("/", "/"),
    ("*", "*"),
    ("/users/123", "/users/:id"),
    ("/users/123/posts/0", "/users/:id/posts/:id"),
    ("/users/123/", "/users/:id/"),
    ("/v2/items", "/v2/items"),                       # a digit inside a word is not an id
    ("/orders/550e8400-e29b-41d4-a716-446655440000", "/orders/:id"),
    ("/orders/550E8400-E29B-41D4-A716-446655440000/items", "/orders/:id/items"),
    ("/orders/550e8400e29b41d4a716446655440000", "/orders/:id"),   # 32 hex, no dashes
    ("/blob/0123456789abcdef", "/blob/:id"),          # 16 hex chars with digits
    ("/blob/0123456789abcde", "/blob/0123456789abcde"),  # 15: too short
    ("/blob/deadbeefcafebabe", "/blob/deadbeefcafebabe"),  # long hex without a digit: a word
    ("/accessibility", "/accessibility"),
    ("/a%20b/123", "/a%20b/:id"),                     # percent-encoding kept as written
    ("/files/%31%32%33", "/files/%31%32%33"),         # encoded digits are not decoded
    ("/n/\u0663\u0664", "/n/\u0663\u0664"),           # non-ASCII digits are not ids
    ("/550e8400-e29b-41d4-a716-44665544000", "/550e8400-e29b-41d4-a716-44665544000"),  # 35 chars
    ("no-slash-123", "no-slash-123"),
    ("//7//", "//:id//"),
    ("/1/2/3", "/:id/:id/:id"),                       # adjacent ids share their "/"
])
def test_normalize_ids(raw: str, expected: str) -> None:
    assert normalize_ids(raw) == expected


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(["/", "1", "07", "a", "F", "-", "x", "\u00e9", "\u0663", "\n",
                                 "/0123456789abcdef", "/00000000-0000-0000-0000-000000000000"]),
                max_size=20).map("".join))
def test_ids_replaced_in_bytes_give_the_route_of_the_decoded_path(path: str) -> None:
    """The aggregator normalizes raw bytes before decoding; it must agree with the str version."""
    assert normalize_id_bytes(path.encode()) == normalize_ids(path).encode()


def test_normalize_ids_returns_the_same_object_when_unchanged() -> None:
    route = "/static/app.js"
    assert normalize_ids(route) is route


def test_rules_first_match_wins_then_builtin() -> None:
    limiter = RouteLimiter(rules=[
        (r"^/blog/[^/]+$", "/blog/:slug"),
        (r"^/blog/.*", "/blog/*"),        # would also match /blog/x, but the first rule wins
        (r"^/static/.*", "/static/*"),
    ])
    assert limiter.normalize("/blog/hello-world") == "/blog/:slug"
    assert limiter.normalize("/blog/2024/hello") == "/blog/*"
    assert limiter.normalize("/static/js/app.123.js") == "/static/*"
    # no rule matches: only the built-in id patterns apply
    assert limiter.normalize("/users/42") == "/users/:id"
    # a rule's output still goes through the built-in patterns
    assert RouteLimiter(rules=[(r"^/u/", "/user/")]).normalize("/u/42") == "/user/:id"


def test_rule_replaces_every_occurrence_with_groups() -> None:
    limiter = RouteLimiter(rules=[(r"/v(\d+)/", r"/v\1x/")], builtin=False)
    assert limiter.normalize("/v1/a/v2/b") == "/v1x/a/v2x/b"


def test_builtin_off_keeps_ids() -> None:
    assert RouteLimiter(builtin=False).normalize("/users/123") == "/users/123"


def test_admit_caps_distinct_values() -> None:
    limiter = RouteLimiter(max_routes=2)
    assert limiter.admit("/a") == "/a"
    assert limiter.admit("/users/1") == "/users/:id"
    assert limiter.admit("/users/2") == "/users/:id"      # same value after normalization
    assert limiter.admit("/c") == OVERFLOW_ROUTE
    assert limiter.admit("/a") == "/a"                    # admitted values stay admitted
    assert limiter.distinct == 2


def test_overflow_value_itself_is_never_admitted() -> None:
    limiter = RouteLimiter(max_routes=5)
    assert limiter.admit(OVERFLOW_ROUTE) == OVERFLOW_ROUTE
    assert limiter.distinct == 0
    assert ID_PLACEHOLDER == ":id"


def _random_routes(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    bits = rnd.getrandbits
    # ids that normalize away (/user/<n>) mixed with values that do not (/p<hex>x)
    return [f"/p{bits(40):x}x/{bits(20)}" if i % 3 else f"/user/{bits(30)}" for i in range(n)]


def test_a_million_random_routes_stay_under_the_cap() -> None:
    limiter = RouteLimiter(max_routes=100)
    seen: set[str] = set()
    start = time.perf_counter()
    for chunk in range(10):
        seen.update(map(limiter.admit, _random_routes(100_000, seed=chunk)))
    assert len(seen) <= 101
    assert len(seen) == 101 and OVERFLOW_ROUTE in seen and "/user/:id" in seen
    assert limiter.distinct == 100
    assert time.perf_counter() - start < 10  # generous; the whole test is about 2 s here


def test_memory_is_flat_past_the_cap() -> None:
    """Past the cap, admitting more routes keeps nothing per route.

    We fill the cap, then trace 100,000 more distinct routes. Each route string is ~25 bytes plus
    ~50 bytes of object header, so keeping even one byte per route would grow memory by ~98 KiB
    and keeping the strings by ~7 MB. The routes are built one at a time inside the traced loop
    (no pre-built list), so the only legitimate growth is the temporaries of one call (a few
    hundred bytes) plus tracemalloc's own noise: 64 KiB is a bound a per-route leak cannot hide in.
    """
    limiter = RouteLimiter(max_routes=100)
    rnd = random.Random(7)
    bits = rnd.getrandbits
    for _ in range(1_000):
        limiter.admit(f"/w{bits(40):x}x")
    assert limiter.distinct == 100
    admit = limiter.admit
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(100_000):
            admit(f"/w{bits(40):x}x/{bits(20)}")
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 64 * 1024
    assert current - base < 16 * 1024
    assert limiter.distinct == 100

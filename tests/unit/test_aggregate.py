"""Aggregator: the TSV fast path agrees with parse_tsv line by line; cache bound; bucket placement."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logtaild.count import core, slots
from logtaild.count.aggregate import Aggregator
from logtaild.count.formats import REASONS, ParseError, parse_tsv
from logtaild.count.record import AccessRecord
from logtaild.count.routes import OVERFLOW_ROUTE, RouteLimiter
from logtaild.tail.filestream import Chunk

BOUNDS_MS = [5.0, 10.0, 25.0, 100.0, 500.0, 1000.0]
RULES = [(r"^/blog/.+", "/blog/*")]


def make(max_routes: int = 1000, cache_max: int = 65536, bounds: list[float] = BOUNDS_MS,
         rules: list[tuple[str, str]] = RULES, compiled: bool | None = None) -> Aggregator:
    """With RULES the path cache keys raw paths; without rules it replaces ids in the bytes first."""
    return Aggregator(RouteLimiter(max_routes, rules), bounds, cache_max=cache_max, compiled=compiled)


# ---- the property: fast path == parse_tsv + add_record ---------------------------------------------

junk = st.binary(max_size=12)
clean_ip = st.sampled_from([b"10.0.0.1", b"::1", b"", b"-", b"\x00", b"\xff"])
ip = st.sampled_from([b"10.0.0.1", b"::1", b"", b"-"]) | junk
method = st.sampled_from([b"GET", b"GET", b"POST", b"OPTIONS", b"BREW", b"get", b"G3T", b"", b"X" * 40])
target = st.sampled_from([
    b"/", b"/a", b"/a?x=1", b"/a#f", b"/users/1", b"/users/22", b"/blog/x", b"/blog/y/z", b"*",
    b"http://h/p?q", b"http://h?next=/a", b"rel", b"", b"/\xff", b"/caf\xc3\xa9", b"/\x00", b"/\x1b[2J",
    b"/users/1/x", b"/users/2/x", b"/u/0123456789abcdef0/\xc3\xa9", b"/u/00000000-0000-0000-0000-000000000000",
    b"/users/:id", b"/1/2", b"/\xff/1", b"/\xff/2",
]) | st.builds(lambda n: b"/r/%d" % n, st.integers(0, 30)) | st.builds(lambda b: b"/x" + b, junk)
request = st.one_of(
    st.builds(lambda m, t: m + b" " + t, method, target),
    st.builds(lambda m, t: m + b" " + t + b" HTTP/1.1", method, target),
    junk,
)
status = st.sampled_from([b"200", b"404", b"500", b"200", b"404", b"99", b"600", b"abc", b"20", b" 200", b""]) | junk
size = st.sampled_from([b"0", b"512", b"-", b"-1", b"-0", b"abc", b"1_0", b" 7", b"12\r", b"1.5", b"9" * 5000,
                        b"1" * 40, b""]) | st.builds(lambda n: b"%d" % n, st.integers(0, 10**6)) | junk
latency = st.sampled_from([b"0", b"-0", b"5", b"5.0", b"10", b"0.5", b"1000", b"1e3", b"nan", b"inf", b"-1",
                           b"abc", b"", b"2.5\r", b"1e999"]) | st.builds(
    lambda n: repr(n).encode(), st.floats(0, 2000, allow_nan=False)) | junk


def _join(fields: list[bytes]) -> bytes:
    return b"\t".join(fields)


odd_line = st.one_of(
    st.lists(junk, min_size=0, max_size=7).map(_join),        # wrong field counts
    st.integers(0, 6).map(lambda n: b"\t" * n),                # tabs only
    st.binary(max_size=40),                                    # anything, NULs included
    st.builds(lambda c, n: _join([b"1", b"GET /" + c * n, b"200", b"1"]), st.sampled_from([b"x", b"7"]),
              st.integers(1000, 70000)),  # very long fields
    st.builds(lambda *f: _join(list(f)), ip, request, status, size),            # random fields
    st.builds(lambda *f: _join(list(f)), ip, request, status, size, latency),
)


good_request = st.builds(lambda m, t: m + b" " + t, st.sampled_from([b"GET", b"POST", b"BREW"]),
                         st.sampled_from([b"/", b"/a?x=1", b"/users/1", b"/users/22", b"/blog/x", b"*",
                                          b"/users/3?a", b"/\xff/7"]))
good_status = st.sampled_from([b"200", b"404", b"500"])
edge_size = st.sampled_from([b"0", b"-", b"-1", b"-0", b"abc", b"1_0", b" 7", b"12\r", b"1.5", b"9" * 5000, b"",
                             b"%d" % (2**63 - 1), b"%d" % 2**63])
edge_latency = st.sampled_from([b"0", b"-0", b"5", b"10", b"1000", b"1e3", b"nan", b"inf", b"-1", b"abc", b"",
                                b"2.5\r", b"1e999"])


@st.composite
def lines_strategy(draw: st.DrawFn) -> list[bytes]:
    """Lines sharing a few (request, status) pairs, so the cache is hit with both good and bad
    sizes and latencies, mixed with odd lines."""
    good_keys = [(b"GET /", b"200"), (b"GET /a?x=1", b"200"), (b"POST /users/7", b"404"), (b"BREW *", b"500"),
                 (b"GET /blog/x HTTP/1.1", b"200")]
    keys = good_keys + draw(st.lists(st.tuples(good_request | request, good_status | status), max_size=4))
    key = st.sampled_from(keys)
    keyed4 = st.builds(lambda i, k, b: _join([i, *k, b]), clean_ip, key, size | edge_size)
    keyed5 = st.builds(lambda i, k, b, t: _join([i, *k, b, t]), clean_ip, key, size | edge_size,
                       latency | edge_latency)
    # explicit proportions (one_of's are not): 4 keyed 4-field, 4 keyed 5-field, 2 odd lines in 10
    line = st.sampled_from(range(10)).flatmap(lambda k: keyed4 if k < 4 else keyed5 if k < 8 else odd_line)
    n = draw(st.integers(0, 60))  # hypothesis keeps plain lists short; ask for a length instead
    return draw(st.lists(line, min_size=n, max_size=n))


def _reference(lines: list[bytes], max_routes: int,
               rules: list[tuple[str, str]] = RULES) -> tuple[Aggregator, dict[str, int]]:
    ref = make(max_routes, rules=rules)
    malformed = dict.fromkeys(REASONS, 0)
    for raw in lines:
        try:
            record = parse_tsv(raw)
        except ParseError as exc:
            malformed[exc.reason] += 1
        else:
            ref.add_record(record)
    return ref, malformed


def _assert_same_slots(fast: Aggregator, ref: Aggregator) -> None:
    assert fast.slots.keys() == ref.slots.keys()
    for key, slot in fast.slots.items():
        want = ref.slots[key]
        assert slots.count(slot) == slots.count(want), key
        assert slots.byte_count(slot) == slots.byte_count(want), key
        assert slots.bucket_counts(slot) == slots.bucket_counts(want), key
        # the fast path sums a batch's cache hits before its misses: float addition order differs
        assert slots.latency_sum_ms(slot) == pytest.approx(slots.latency_sum_ms(want), rel=1e-12, abs=1e-9), key


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lines=lines_strategy(), batch_sizes=st.lists(st.integers(0, 12), max_size=30),
       max_routes=st.sampled_from([1, 3, 1000]), cache_max=st.sampled_from([1, 2, 65536]),
       rules=st.sampled_from([RULES, []]))
def test_fast_path_equals_parse_tsv_line_by_line(
        lines: list[bytes], batch_sizes: list[int], max_routes: int, cache_max: int,
        rules: list[tuple[str, str]]) -> None:
    """The cache fills only after a batch, so many small batches are what exercise the fast path."""
    fast = make(max_routes, cache_max, rules=rules)
    start = 0
    for n in [*batch_sizes, len(lines)]:  # the last batch takes whatever is left
        fast.feed(lines[start:start + n])
        start += n
    ref, malformed = _reference(lines, max_routes, rules)
    _assert_same_slots(fast, ref)
    assert fast.malformed == malformed
    assert fast.lines == len(lines)
    assert ref.lines == len(lines) - sum(malformed.values())
    assert fast.limiter.distinct == ref.limiter.distinct <= max_routes
    assert fast.counts_by_route_status() == ref.counts_by_route_status()
    assert len(fast._cache) <= cache_max


def test_fast_path_examples_against_reference() -> None:
    """A fixed mix, fed twice so the second pass runs entirely on cache hits."""
    lines = [
        b"1\tGET /\t200\t10\t5", b"1\tGET /\t200\t20\t5.5", b"1\tGET /\t200\t-\t1",
        b"1\tGET /\t200\t-5\t1", b"1\tGET /\t200\t5\tnan", b"1\tGET /\t200\t5\t-0",
        b"1\tGET /\t200\t1_0", b"1\tGET /\t200\t 7", b"1\tGET /\t200\t8\r",
        b"1\tGET /users/7\t404\t1\t10", b"1\tGET /users/8\t404\t1\t10.0001",
        b"1\tGET /\xff\t200\t1", b"\t\t\t", b"", b"x\x00y",
    ]
    fast = make()
    fast.feed(lines)
    fast.feed(lines)
    ref, malformed = _reference(lines + lines, 1000)
    _assert_same_slots(fast, ref)
    assert fast.malformed == malformed == {
        "fields": 4, "request": 2, "status": 0, "bytes": 2, "latency": 2, "encoding": 2}
    root = fast.slots["/", "GET", "200", ()]
    # per pass 7 valid lines: 10, 20, "-" = 0, 5 (latency -0), "1_0" = 10, " 7", "8\r"
    assert slots.count(root) == 2 * 7
    assert slots.byte_count(root) == 2 * (10 + 20 + 0 + 5 + 10 + 7 + 8)
    users = fast.slots["/users/:id", "GET", "404", ()]
    assert slots.count(users) == 4
    assert slots.bucket_counts(users) == [0, 2, 2, 0, 0, 0, 0]  # 10 -> le=10; 10.0001 -> le=25
    assert fast.lines == 30


# ---- the cache bound -------------------------------------------------------------------------------

def test_raw_cache_is_bounded() -> None:
    agg = make(max_routes=10, cache_max=50)
    for chunk in range(20):
        agg.feed([b"1\tGET /p%d\t200\t1" % (chunk * 100 + i) for i in range(100)])
        assert len(agg._cache) <= 50
    # everything still counted, the excess under the overflow route
    assert sum(map(slots.count, agg.slots.values())) == 2000
    assert slots.count(agg.slots[OVERFLOW_ROUTE, "GET", "200", ()]) == 2000 - 10
    assert agg.limiter.distinct == 10


def test_cache_hit_counts_into_the_slot_of_the_first_parse() -> None:
    agg = make(compiled=False)  # the Python path's cache (the compiled core keeps its own)
    agg.feed([b"1\tGET /a?x=1\t200\t3"])
    assert agg._cache == {b"GET /a?x=1\t200": agg.slots["/a", "GET", "200", ()]}
    agg.feed([b"2\tGET /a?x=1\t200\t4\t1.5"])  # a hit, now with latency
    assert agg.slots["/a", "GET", "200", ()] == [2, 7, 1.5, 1, 0, 0, 0, 0, 0, 0]


@pytest.mark.skipif(not core.available(), reason="needs the compiled core")
def test_with_the_compiled_core_python_keeps_no_copy_of_its_keys() -> None:
    """The core binds raw and path keys for every later line; a copy here would only double the
    memory each distinct line costs (54,000 lines at the series cap: about 8 MB)."""
    agg = make()
    agg.feed([b"1\tGET /a?x=%d\t200\t3" % i for i in range(100)] + [b"1\tGET /users/%d\t200\t3" % i for i in range(50)])
    assert agg.core_name == "compiled"
    assert agg._cache == {} and agg._old == {} and agg._paths == {}
    assert agg.counts_by_route_status() == {("/a", "200"): 100, ("/users/:id", "200"): 50}
    assert agg._core is not None and agg._core.stats()["entries"] > 0


@pytest.mark.skipif(not core.available(), reason="needs the compiled core")
def test_the_core_adds_its_counts_when_the_slots_are_read_not_per_batch() -> None:
    """A busy file is read in many batches between two scrapes: the core's deltas go into the slots
    when they are read (`slots`, `snapshot`, a report's counts), and every read sees every line fed."""
    agg = make()
    data = b"".join(b"1\tGET /users/%d\t200\t3\t1.5\n" % i for i in range(10))
    agg.feed(Chunk(data, 0, len(data)))
    agg.feed(Chunk(data, 0, len(data)))
    key = ("/users/:id", "GET", "200", ())
    # the first batch was decided in Python (RULES: no path keys), the second is still in the core
    assert slots.count(agg._slots[key]) == 10 and agg._core is not None and agg._core.stats()["counted"] == 10
    assert agg.counts_by_route_status() == {("/users/:id", "200"): 20}
    agg.feed(Chunk(data, 0, len(data)))
    assert dict(agg.snapshot())[key] == [30, 90, 45.0, 30, 0, 0, 0, 0, 0, 0]
    assert agg.slots[key] == [30, 90, 45.0, 30, 0, 0, 0, 0, 0, 0]


def test_ids_share_one_path_cache_entry_without_a_parse() -> None:
    """`/users/17` then `/users/18?x`: the second raw request hits the (method, path, status) cache
    (the Python path's; the compiled core has its own path keys, test_core_differential.py)."""
    agg = Aggregator(RouteLimiter(1000), BOUNDS_MS, compiled=False)
    agg.feed([b"1\tGET /users/17\t200\t3\t1"])
    agg.feed([b"1\tGET /users/18?x=1\t200\t4\t2", b"1\tGET /users/18/a\t200\t4\t2"])
    assert agg._paths.keys() == {(b"GET", b"/users/:id", b"200"), (b"GET", b"/users/:id/a", b"200")}
    assert agg.slots["/users/:id", "GET", "200", ()][:3] == [2, 7, 3.0]
    assert len(agg._cache) == 3


def test_a_full_raw_cache_keeps_its_keys_one_more_generation() -> None:
    agg = make(cache_max=2, compiled=False)  # the Python path's caches (the compiled core keeps its own)
    agg.feed([b"1\tGET /a\t200\t1", b"1\tGET /b\t200\t1", b"1\tGET /c\t200\t1"])
    assert set(agg._old) == {b"GET /a\t200", b"GET /b\t200"} and set(agg._cache) == {b"GET /c\t200"}
    agg._paths.clear()  # so only the old generation can still place /a
    agg.feed([b"1\tGET /a\t200\t5"])
    assert set(agg._cache) == {b"GET /c\t200", b"GET /a\t200"}
    assert agg.slots["/a", "GET", "200", ()][:2] == [2, 6]


def test_configured_rules_keep_ids_apart_in_the_path_cache() -> None:
    """A rule may treat /v/1 and /v/2 differently, so with rules the path key keeps the raw path."""
    agg = Aggregator(RouteLimiter(1000, [(r"^/v/1$", "/v/one")]), BOUNDS_MS)
    agg.feed([b"1\tGET /v/1\t200\t1", b"1\tGET /v/2\t200\t1", b"1\tGET /v/1\t200\t1"])
    assert agg.counts_by_route_status() == {("/v/one", "200"): 2, ("/v/:id", "200"): 1}


@pytest.mark.parametrize("first", [b"1\tGET /\t200\t1", b"1\tGET /\t200\t1\t1"])
def test_a_batch_mixing_field_counts_counts_every_line(first: bytes) -> None:
    """The batch's first line picks the fast loop; lines of the other shape take the slow path."""
    agg = make()
    lines = [first, b"1\tGET /\t200\t2", b"1\tGET /\t200\t4\t3", b"1\tGET /\t200\t8",
             b"1\tGET /\t200\t16\t30"]
    agg.feed(lines)
    agg.feed(lines)
    slot = agg.slots["/", "GET", "200", ()]
    with_latency = 2 * (2 + (first.count(b"\t") == 4))
    assert slots.count(slot) == 10 and slots.byte_count(slot) == 2 * (30 + 1)
    assert sum(slots.bucket_counts(slot)) == with_latency
    assert agg.malformed == dict.fromkeys(agg.malformed, 0)


# ---- histogram buckets -----------------------------------------------------------------------------

@pytest.mark.parametrize(("latency", "bucket"), [
    (b"0", 0), (b"4.999", 0), (b"5", 0), (b"5.0", 0), (b"5.000001", 1), (b"10", 1), (b"10.5", 2),
    (b"25", 2), (b"100", 3), (b"500", 4), (b"1000", 5), (b"1000.0001", 6), (b"1e9", 6),
])
def test_bucket_placement_at_exact_bounds(latency: bytes, bucket: int) -> None:
    """Buckets are `le` (less or equal): 5 ms goes into le=0.005, just above it into the next."""
    for fed_twice in (False, True):  # first line takes the slow path, the second the cached fast path
        agg = make()
        lines = [b"1\tGET /\t200\t1\t" + latency] * (2 if fed_twice else 1)
        agg.feed(lines)
        slot = agg.slots["/", "GET", "200", ()]
        expected = [0] * (len(BOUNDS_MS) + 1)
        expected[bucket] = len(lines)
        assert slots.bucket_counts(slot) == expected
        assert slots.latency_sum_ms(slot) == float(latency) * len(lines)


def test_service_bounds_conversion_keeps_exact_bounds() -> None:
    """The service hands bounds in ms as round(s * 1000, 9): 5 ms must still equal the 0.005 s bound."""
    from logtaild.config import DEFAULT_BUCKETS
    bounds_ms = [round(b * 1000, 9) for b in DEFAULT_BUCKETS]
    assert bounds_ms == [5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000]
    agg = make(bounds=bounds_ms)
    agg.feed([b"1\tGET /\t200\t1\t75", b"1\tGET /\t200\t1\t75"])
    assert slots.bucket_counts(agg.slots["/", "GET", "200", ()])[4] == 2


def test_four_field_lines_have_no_latency() -> None:
    agg = make()
    agg.feed([b"1\tGET /\t200\t1"] * 3)
    assert agg.slots["/", "GET", "200", ()] == [3, 3, 0.0] + [0] * 7


# ---- counters ---------------------------------------------------------------------------------------

def test_lines_counts_every_line_fed() -> None:
    agg = make()
    agg.feed([])
    assert agg.lines == 0
    agg.feed([b"1\tGET /\t200\t1", b"garbage", b""])
    agg.feed([b"1\tGET /\t200\t1"])
    assert agg.lines == 4
    assert agg.malformed["fields"] == 2
    assert agg.last_malformed == b""  # the last malformed line was the empty one
    agg.feed([b"x" * 500])
    assert agg.last_malformed == b"x" * 200  # kept, but cut


def test_add_record_counts_a_line() -> None:
    agg = make()
    agg.add_record(AccessRecord("/users/5", "GET", "200", 10, 7.5))
    agg.add_record(AccessRecord("/users/6", "GET", "200", 5, None))
    assert agg.lines == 2
    assert agg.slots == {("/users/:id", "GET", "200", ()): [2, 15, 7.5, 0, 1, 0, 0, 0, 0, 0]}


def test_snapshot_is_a_copy() -> None:
    agg = make()
    agg.feed([b"1\tGET /\t200\t1"])
    snap = agg.snapshot()
    agg.feed([b"1\tGET /\t200\t1"])
    assert snap == [(("/", "GET", "200", ()), [1, 1, 0.0] + [0] * 7)]


def test_counts_by_route_status_sums_methods() -> None:
    agg = make()
    agg.feed([b"1\tGET /\t200\t1", b"1\tPOST /\t200\t1", b"1\tPOST /\t500\t1", b"1\tBREW /\t200\t1"])
    assert agg.counts_by_route_status() == {("/", "200"): 3, ("/", "500"): 1}


def test_non_tsv_parser_uses_slow_path_only() -> None:
    def parser(raw: bytes) -> AccessRecord:
        if raw == b"bad":
            raise ParseError("fields")
        return AccessRecord(raw.decode(), "GET", "200", 1, None, (("service", "api"),))

    agg = Aggregator(RouteLimiter(), BOUNDS_MS, parser=parser)
    agg.feed([b"/a", b"/a", b"bad"])
    assert agg._cache == {}
    assert agg.slots == {("/a", "GET", "200", (("service", "api"),)): [2, 2, 0.0] + [0] * 7}
    assert agg.malformed == {**dict.fromkeys(REASONS, 0), "fields": 1}


@pytest.mark.parametrize("latency", [b"inf", b"1e999", b"nan", b"-1"])
def test_fast_path_rejects_non_finite_latency_on_a_cache_hit(latency: bytes) -> None:
    """Regression: the cached path once accepted `inf`, poisoning _sum and the +Inf bucket."""
    agg = make()
    agg.feed([b"1\tGET /\t200\t1\t5"])  # fills the cache
    agg.feed([b"1\tGET /\t200\t1\t" + latency])  # a cache hit with a bad latency
    assert agg.slots["/", "GET", "200", ()] == [1, 1, 5.0, 1, 0, 0, 0, 0, 0, 0]
    assert agg.malformed["latency"] == 1

"""count/native.py: bucket indices, resolution reduction, batch counts, spans and quantiles, with exact numbers."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logtaild.count.native import (
    DEFAULT_ZERO_THRESHOLD,
    NativeHistogram,
    NativeSpec,
    bucket_index,
    growth_factor,
    mantissa_bounds,
    reduced_index,
    upper_bound,
)


@pytest.mark.parametrize(("value", "schema", "index"), [
    (1.0, 3, 0),            # a power of two is the upper bound of its bucket
    (1.0001, 3, 1),
    (0.5, 3, -8),
    (0.1, 3, -26),          # 2^(-26/8) = 0.1051 >= 0.1 > 2^(-27/8) = 0.0964
    (0.001, 3, -79),        # 2^(-79/8) = 0.001052 >= 0.001 > 2^(-80/8) = 0.000977
    (2.5, 3, 11),           # 2^(11/8) = 2.594 >= 2.5 > 2^(10/8) = 2.378
    (3.0, 0, 2),
    (4.0, 0, 2),
    (4.0000001, 0, 3),
    (3.0, -1, 1),           # (1, 4]
    (5.0, -1, 2),           # (4, 16]
    (5.0, -2, 1),           # (1, 16]
    (0.75, -4, 0),          # (2^-16, 1]
    (1.5, 8, 150),          # 2^(150/256) = 1.50250 >= 1.5 > 2^(149/256) = 1.49843
])
def test_bucket_index(value: float, schema: int, index: int) -> None:
    assert bucket_index(value, schema) == index
    assert value <= upper_bound(index, schema)
    assert value > upper_bound(index - 1, schema)


@given(st.floats(min_value=1e-9, max_value=1e6), st.integers(min_value=-4, max_value=8))
def test_the_index_is_the_smallest_bucket_whose_bound_holds_the_value(value: float, schema: int) -> None:
    index = bucket_index(value, schema)
    # bounds are computed by pow(); one ulp of slack either way at the boundary itself
    assert value <= upper_bound(index, schema) * (1 + 1e-15)
    assert value >= upper_bound(index - 1, schema) * (1 - 1e-15)


@given(st.floats(min_value=1e-9, max_value=1e6), st.integers(min_value=-3, max_value=8),
       st.integers(min_value=1, max_value=4))
def test_lowering_the_schema_maps_indices_as_prometheus_does(value: float, schema: int, steps: int) -> None:
    steps = min(steps, schema + 4)
    assert reduced_index(bucket_index(value, schema), steps) == bucket_index(value, schema - steps)


def test_reduced_index_exact() -> None:
    assert [reduced_index(i, 1) for i in (-3, -2, -1, 0, 1, 2, 3, 4)] == [-1, -1, 0, 0, 1, 1, 2, 2]
    assert [reduced_index(i, 2) for i in (-4, -3, 0, 1, 4, 5)] == [-1, 0, 0, 1, 1, 2]
    assert reduced_index(7, 0) == 7


def test_mantissa_table() -> None:
    assert mantissa_bounds(1) == [0.5, 2.0 ** -0.5]
    assert len(mantissa_bounds(8)) == 256 and mantissa_bounds(8)[0] == 0.5
    assert growth_factor(3) == 2.0 ** 0.125 and growth_factor(-2) == 16.0


def test_observe_zero_bucket_and_dense_run() -> None:
    hist = NativeHistogram(NativeSpec(schema=3))
    for value in (0.0, -1.0, DEFAULT_ZERO_THRESHOLD, 1.0, 1.0, 0.5, 1.0001):
        hist.observe(value)
    assert hist.zero == 3
    assert list(hist.buckets()) == [(-8, 1), (0, 2), (1, 1)]
    assert hist.offset == -8 and len(hist.counts) == 10 and hist.populated == 3
    assert hist.count() == 7 and hist.schema == 3


def test_zero_threshold_is_inclusive() -> None:
    hist = NativeHistogram(NativeSpec(schema=0, zero_threshold=0.001))
    for value in (0.001, 0.0010001):
        hist.observe(value)
    assert hist.zero == 1 and list(hist.buckets()) == [(-9, 1)]  # 2^-10 < 0.0010001 <= 2^-9


def test_over_the_bucket_limit_the_resolution_halves() -> None:
    hist = NativeHistogram(NativeSpec(schema=3, max_buckets=4))
    for index in (1, 2, 3, 4):
        hist.observe(upper_bound(index, 3) * 0.99)
    assert hist.schema == 3 and hist.populated == 4
    hist.observe(upper_bound(5, 3) * 0.99)  # a fifth bucket: schema 2, (i + 1) >> 1
    assert hist.schema == 2
    assert list(hist.buckets()) == [(1, 2), (2, 2), (3, 1)]
    for value in (100.0, 1000.0):  # indices 27 and 40 at schema 2: five buckets again, then four
        hist.observe(value)
    assert hist.schema == 1
    assert list(hist.buckets()) == [(1, 4), (2, 1), (14, 1), (20, 1)]


def test_the_resolution_stops_at_schema_minus_4() -> None:
    hist = NativeHistogram(NativeSpec(schema=-3, max_buckets=1))
    hist.observe(1.5)
    hist.observe(1e6)
    assert hist.schema == -4 and list(hist.buckets()) == [(1, 1), (2, 1)]  # (1, 65536], (65536, 2^32]


def test_no_limit() -> None:
    hist = NativeHistogram(NativeSpec(schema=8, max_buckets=0))
    for i in range(1000):
        hist.observe(0.001 * 1.01 ** i)
    assert hist.schema == 8 and hist.populated > 160


def test_add_counts_from_a_higher_schema() -> None:
    hist = NativeHistogram(NativeSpec(schema=3))
    hist.add_counts(5, {1: 1, 4: 2, 5: 3, -3: 1, 9: 0}, 2)
    assert hist.schema == 3 and hist.zero == 2
    assert list(hist.buckets()) == [(0, 1), (1, 3), (2, 3)]
    assert hist.populated == 3


def test_add_counts_from_a_lower_schema_reduces_first() -> None:
    hist = NativeHistogram(NativeSpec(schema=3))
    hist.add_counts(3, {0: 1, 1: 3, 2: 3}, 0)
    hist.add_counts(1, {0: 5, 1: 1}, 1)
    assert hist.schema == 1 and hist.zero == 1
    assert list(hist.buckets()) == [(0, 6), (1, 7)]


def test_add_counts_then_limit() -> None:
    hist = NativeHistogram(NativeSpec(schema=2, max_buckets=2))
    hist.add_counts(2, {0: 1, 1: 1, 2: 1, 3: 1}, 0)
    # four buckets: schema 1 gives {0: 1, 1: 2, 2: 1}, still three; schema 0 gives two
    assert hist.schema == 0 and list(hist.buckets()) == [(0, 1), (1, 3)]


def test_merge_across_schemas() -> None:
    fine, coarse = NativeHistogram(NativeSpec(schema=4)), NativeHistogram(NativeSpec(schema=2))
    for value in (0.003, 0.2, 0.21):
        fine.observe(value)
        coarse.observe(value)
    fine.merge(coarse)
    assert fine.schema == 2 and fine.count() == 6
    assert list(fine.buckets()) == [(bucket_index(0.003, 2), 2), (bucket_index(0.2, 2), 4)]


def test_counts_past_32_bits_widen() -> None:
    hist = NativeHistogram(NativeSpec(schema=0))
    hist.add_counts(0, {3: 0xFFFFFFFF}, 0)
    assert hist.counts.typecode == "I"
    hist.observe(5.0)
    assert hist.counts.typecode == "Q" and list(hist.buckets()) == [(3, 2 ** 32)]


def test_spans_and_deltas() -> None:
    hist = NativeHistogram(NativeSpec(schema=0))
    hist.add_counts(0, {2: 5, 3: 1, 6: 2, 20: 4}, 0)
    assert hist.spans() == ([(2, 5), (13, 1)], [5, -4, -1, 0, 2, 2])
    assert hist.spans(gap=0) == ([(2, 2), (2, 1), (13, 1)], [5, -4, 1, 2])
    assert NativeHistogram(NativeSpec()).spans() == ([], [])


def test_quantile_exact() -> None:
    hist = NativeHistogram(NativeSpec(schema=0))
    assert math.isnan(hist.quantile(0.5))
    for _ in range(4):
        hist.observe(1.5)  # bucket 1: (1, 2]
    assert hist.quantile(0.5) == 2.0 ** 0.5  # halfway through the bucket, exponentially
    assert hist.quantile(1.0) == 2.0 and hist.quantile(0.0) == 1.0
    hist.add_counts(0, {}, 4)  # four zeros: the median is the zero bucket's top
    assert hist.quantile(0.5) == DEFAULT_ZERO_THRESHOLD and hist.quantile(0.25) == DEFAULT_ZERO_THRESHOLD / 2


def _exact(values: list[float], q: float) -> float:
    """The nearest-rank quantile: the value with ceil(q·n) values at or below it."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.0005, max_value=30.0), min_size=1, max_size=400),
       st.integers(min_value=0, max_value=6), st.sampled_from([0.5, 0.9, 0.95, 0.99, 0.999]))
def test_quantiles_are_within_one_bucket_of_the_exact_ones(values: list[float], schema: int, q: float) -> None:
    hist = NativeHistogram(NativeSpec(schema=schema, max_buckets=40))
    for value in values:
        hist.observe(value)
    factor = growth_factor(hist.schema) * (1 + 1e-12)
    exact, estimate = _exact(values, q), hist.quantile(q)
    assert exact / factor <= estimate <= exact * factor


def test_state_form_round_trip_and_lower_stored_schema() -> None:
    hist = NativeHistogram(NativeSpec(schema=3))
    for value in (0.0, 0.01, 0.5, 2.0):
        hist.observe(value)
    data = hist.to_json()
    assert data == [3, 1, -53, [1] + [0] * 44 + [1] + [0] * 15 + [1]]  # 0.01 s: -53, 0.5 s: -8, 2 s: 8
    assert NativeHistogram.from_json(NativeSpec(schema=3), data) == hist
    lower = NativeHistogram.from_json(NativeSpec(schema=1), data)
    assert lower.schema == 1 and lower.count() == 4
    higher = NativeHistogram.from_json(NativeSpec(schema=5), data)  # a histogram never regains resolution
    assert higher == hist
    with pytest.raises(ValueError):
        NativeHistogram.from_json(NativeSpec(), [9, 0, 0, []])
    with pytest.raises(ValueError):
        NativeHistogram.from_json(NativeSpec(), [3, 0, 0, [-1]])


def test_copy_is_independent() -> None:
    hist = NativeHistogram(NativeSpec())
    hist.observe(0.1)
    twin = hist.copy()
    hist.observe(0.1)
    assert twin.count() == 1 and hist.count() == 2


def test_minus_exact_and_across_a_resolution_change() -> None:
    hist = NativeHistogram(NativeSpec(schema=2, max_buckets=3))
    hist.add_counts(2, {0: 2, 1: 1}, 1)
    older = hist.copy()
    hist.add_counts(2, {1: 2, 4: 1}, 0)
    delta = hist.minus(older)
    assert delta is not None and (delta.schema, delta.zero, list(delta.buckets())) == (2, 0, [(1, 2), (4, 1)])
    hist.add_counts(2, {9: 1}, 0)  # a fourth bucket: schema 1 has four too ({0: 2, 1: 3, 2: 1, 5: 1}), 0 three
    assert hist.schema == 0 and list(hist.buckets()) == [(0, 2), (1, 4), (3, 1)]
    delta = hist.minus(older)  # older at schema 2 ({0: 2, 1: 1}) maps to {0: 2, 1: 1} at schema 0
    assert delta is not None and (delta.schema, delta.zero, list(delta.buckets())) == (0, 0, [(1, 3), (3, 1)])
    assert older.minus(hist) is None  # counts went down: started over


def test_merge_at_the_same_schema_adds_the_dense_runs() -> None:
    a, b = NativeHistogram(NativeSpec(schema=0)), NativeHistogram(NativeSpec(schema=0))
    a.add_counts(0, {2: 1, 4: 2}, 1)
    b.add_counts(0, {-1: 3, 4: 1, 9: 5}, 2)
    a.merge(b)
    assert (a.schema, a.zero, a.offset, a.populated) == (0, 3, -1, 4)
    assert list(a.buckets()) == [(-1, 3), (2, 1), (4, 3), (9, 5)]
    empty = NativeHistogram(NativeSpec(schema=0))
    empty.merge(b)
    assert list(empty.buckets()) == list(b.buckets()) and empty.populated == 3 and empty.zero == 2
    big = NativeHistogram(NativeSpec(schema=0))
    big.add_counts(0, {1: 0xFFFFFFFF}, 0)
    big.merge(_one(1))
    assert big.counts.typecode == "Q" and list(big.buckets()) == [(1, 2 ** 32)]
    limited = NativeHistogram(NativeSpec(schema=0, max_buckets=2))
    limited.add_counts(0, {1: 1, 2: 1}, 0)
    limited.merge(_one(3))  # three buckets at schema 0; at -1: 1 and 2 -> 1, 3 -> 2
    assert limited.schema == -1 and list(limited.buckets()) == [(1, 2), (2, 1)]


def _one(index: int) -> NativeHistogram:
    hist = NativeHistogram(NativeSpec(schema=0))
    hist.add_counts(0, {index: 1}, 0)
    return hist

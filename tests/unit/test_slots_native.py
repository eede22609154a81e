"""Detailed slots: the native histograms and exemplars in the slot's extension, merged, copied and stored."""
from __future__ import annotations

import json

from logtaild.count import slots
from logtaild.count.aggregate import Aggregator
from logtaild.count.native import NativeSpec, bucket_index
from logtaild.count.routes import RouteLimiter

BOUNDS_MS = [5.0, 100.0]
KEY = ("/", "GET", "200", ())
SPEC = NativeSpec(schema=3)


def test_a_detailed_slot_is_one_pointer_wider_and_reads_as_before() -> None:
    slot = slots.new_slot(BOUNDS_MS, detailed=True)
    assert len(slot) == slots.width(BOUNDS_MS) + 1 and slot[-1] is None
    assert slots.is_detailed(slot) and not slots.has_upstream(slot, BOUNDS_MS)
    assert slots.native_histogram(slot) is None  # nothing allocated before the first latency
    slots.observe(slot, BOUNDS_MS, 10, None, SPEC)
    assert slot[-1] is None
    slots.observe(slot, BOUNDS_MS, 10, 50.0, SPEC)
    hist = slots.native_histogram(slot)
    assert hist is not None and list(hist.buckets()) == [(bucket_index(0.05, 3), 1)]
    assert slots.bucket_counts(slot) == [0, 1, 0] and slots.bucket_width(slot) == 3
    assert slots.timed([slot]) == [True] and slots.latency_totals([slot]) == (50.0, [0, 1, 0])


def test_upstream_part_and_native_upstream() -> None:
    slot = slots.new_slot(BOUNDS_MS, upstream=True, detailed=True)
    assert slots.has_upstream(slot, BOUNDS_MS)
    slots.observe(slot, BOUNDS_MS, 1, 200.0, SPEC)
    slots.observe_upstream(slot, BOUNDS_MS, 4.0, SPEC)
    assert slots.upstream_bucket_counts(slot, BOUNDS_MS) == [1, 0, 0]
    assert slots.upstream_sum_ms(slot, BOUNDS_MS) == 4.0
    assert slots.upstream_timed([slot], BOUNDS_MS) == [True]
    assert slots.upstream_totals([slot, slot], BOUNDS_MS) == (8.0, [2, 0, 0])
    up = slots.native_histogram(slot, upstream=True)
    assert up is not None and list(up.buckets()) == [(bucket_index(0.004, 3), 1)]


def test_merge_adds_numbers_and_native_buckets_across_schemas() -> None:
    fine = slots.new_slot(BOUNDS_MS, detailed=True)
    coarse = slots.new_slot(BOUNDS_MS, detailed=True)
    slots.observe(fine, BOUNDS_MS, 1, 3.0, NativeSpec(schema=4))
    slots.observe(coarse, BOUNDS_MS, 1, 3.0, NativeSpec(schema=1))
    slots.merge_slot(fine, coarse)
    assert slots.count(fine) == 2 and slots.bucket_counts(fine) == [2, 0, 0]
    hist = slots.native_histogram(fine)
    assert hist is not None and hist.schema == 1 and list(hist.buckets()) == [(bucket_index(0.003, 1), 2)]


def test_merge_into_a_plain_slot_drops_the_extension_and_keeps_the_numbers() -> None:
    plain, detailed = slots.new_slot(BOUNDS_MS), slots.new_slot(BOUNDS_MS, detailed=True)
    slots.observe(detailed, BOUNDS_MS, 5, 1.0, SPEC)
    slots.merge_slot(plain, detailed)
    assert plain == [1, 5, 1.0, 1, 0, 0]
    slots.merge_slot(detailed, plain)  # the other way: numbers only
    assert slots.count(detailed) == 2


def test_merge_creates_missing_histograms_with_the_target_spec() -> None:
    into, source = slots.new_slot(BOUNDS_MS, detailed=True), slots.new_slot(BOUNDS_MS, detailed=True)
    slots.observe(source, BOUNDS_MS, 1, 3.0, NativeSpec(schema=5))
    slots.merge_slot(into, source, NativeSpec(schema=2))
    hist = slots.native_histogram(into)
    assert hist is not None and hist.spec == NativeSpec(schema=2) and hist.schema == 2


def test_exemplars_keep_the_latest_per_bucket() -> None:
    slot = slots.new_slot(BOUNDS_MS, detailed=True)
    slots.observe_exemplar(slot, BOUNDS_MS, 3.0, "aa", 10.0)
    slots.observe_exemplar(slot, BOUNDS_MS, 4.0, "bb", 11.0)
    slots.observe_exemplar(slot, BOUNDS_MS, 500.0, "cc", 12.0)
    assert slots.exemplars(slot) == [("bb", 0.004, 11.0), None, ("cc", 0.5, 12.0)]
    other = slots.new_slot(BOUNDS_MS, detailed=True)
    slots.observe_exemplar(other, BOUNDS_MS, 50.0, "dd", 9.0)
    slots.observe_exemplar(other, BOUNDS_MS, 1.0, "ee", 5.0)
    assert slots.latest_exemplars([slot, other]) == [("bb", 0.004, 11.0), ("dd", 0.05, 9.0), ("cc", 0.5, 12.0)]
    slots.merge_slot(slot, other)
    assert slots.exemplars(slot) == [("bb", 0.004, 11.0), ("dd", 0.05, 9.0), ("cc", 0.5, 12.0)]


def test_copy_slot_is_independent() -> None:
    slot = slots.new_slot(BOUNDS_MS, detailed=True)
    slots.observe(slot, BOUNDS_MS, 1, 3.0, SPEC)
    copy = slots.copy_slot(slot)
    slots.observe(slot, BOUNDS_MS, 1, 3.0, SPEC)
    copied = slots.native_histogram(copy)
    assert copied is not None and copied.count() == 1 and slots.count(copy) == 1


def test_native_totals() -> None:
    a, b, plain = (slots.new_slot(BOUNDS_MS, detailed=True), slots.new_slot(BOUNDS_MS, detailed=True),
                   slots.new_slot(BOUNDS_MS, detailed=True))
    slots.observe(a, BOUNDS_MS, 1, 3.0, SPEC)
    slots.observe(b, BOUNDS_MS, 1, 3.0, SPEC)
    total = slots.native_totals([a, plain, b])
    assert total is not None and total.count() == 2
    first = slots.native_histogram(a)
    assert first is not None and first.count() == 1  # a fresh histogram: the slots are untouched
    assert slots.native_totals([plain]) is None


def test_state_form_with_native_parts_round_trips() -> None:
    slot = slots.new_slot(BOUNDS_MS, upstream=True, detailed=True)
    slots.observe(slot, BOUNDS_MS, 10, 3.0, SPEC)
    slots.observe_upstream(slot, BOUNDS_MS, 2.0, SPEC)
    stored = json.loads(json.dumps(slots.to_json({KEY: slot})))
    hist, up = slots.native_histogram(slot), slots.native_histogram(slot, upstream=True)
    assert hist is not None and up is not None
    assert stored == [["/", "GET", "200", [], [1, 10, 3.0, 1, 0, 0, 2.0, 1, 0, 0],
                       {"native": hist.to_json(), "upstream_native": up.to_json()}]]
    loaded = slots.from_json(stored, BOUNDS_MS, True, upstream=True, native=SPEC)[KEY]
    assert loaded[:-1] == slot[:-1]
    assert slots.native_histogram(loaded) == hist and slots.native_histogram(loaded, upstream=True) == up
    plain = slots.from_json(stored, BOUNDS_MS, True, upstream=True)[KEY]  # native off: dropped
    assert plain == [1, 10, 3.0, 1, 0, 0, 2.0, 1, 0, 0]


def test_old_state_files_load_into_detailed_slots() -> None:
    old = [["/", "GET", "200", [], [3, 30, 105.5, 2, 1, 0]]]
    loaded = slots.from_json(old, BOUNDS_MS, True, native=SPEC)[KEY]
    assert loaded == [3, 30, 105.5, 2, 1, 0, None]


def test_the_aggregator_counts_native_buckets_in_its_tsv_loops_and_parser_path() -> None:
    agg = Aggregator(RouteLimiter(), BOUNDS_MS, native=SPEC)
    agg.feed([b"1.2.3.4\tGET / HTTP/1.1\t200\t10\t3.0", b"1.2.3.4\tGET / HTTP/1.1\t200\t10\t3.0",
              b"1.2.3.4\tGET /x HTTP/1.1\t200\t10\t250"])
    hist = slots.native_histogram(agg.slots[("/", "GET", "200", ())])
    assert hist is not None and list(hist.buckets()) == [(bucket_index(0.003, 3), 2)]
    other = slots.native_histogram(agg.slots[("/x", "GET", "200", ())])
    assert other is not None and list(other.buckets()) == [(bucket_index(0.25, 3), 1)]
    snap = dict(agg.snapshot())
    agg.feed([b"1.2.3.4\tGET / HTTP/1.1\t200\t10\t3.0"])
    copied = slots.native_histogram(snap[("/", "GET", "200", ())])
    live = slots.native_histogram(agg.slots[("/", "GET", "200", ())])
    assert copied is not None and live is not None and copied.count() == 2 and live.count() == 3
    assert copied is hist and hist.frozen and live is not hist  # shared with the snapshot, then copied


def test_a_snapshot_shares_the_histograms_and_the_live_slot_copies_before_counting() -> None:
    bounds = [5.0, 100.0]
    slot = slots.new_slot(bounds, upstream=True, detailed=True)
    slots.observe(slot, bounds, 1, 3.0, SPEC)
    slots.observe_upstream(slot, bounds, 2.0, SPEC)
    slots.observe_exemplar(slot, bounds, 3.0, "ab", 1.0)
    snap = slots.copy_slot(slot)
    assert slots.native_histogram(snap) is slots.native_histogram(slot)  # shared: no copy under the lock
    for count_more in (lambda: slots.observe(slot, bounds, 1, 3.0, SPEC),
                       lambda: slots.observe_upstream(slot, bounds, 2.0, SPEC),
                       lambda: slots.native_part(slot, SPEC).add_counts(3, {0: 5}, 0),
                       lambda: slots.observe_natives([(slot, 3.0)], SPEC),
                       lambda: slots.observe_exemplar(slot, bounds, 4.0, "cd", 2.0)):
        count_more()
        for upstream in (False, True):
            frozen = slots.native_histogram(snap, upstream)
            assert frozen is not None and frozen.count() == 1 and frozen.frozen
    assert slots.exemplars(snap) == [("ab", 0.003, 1.0), None, None]
    live = slots.native_histogram(slot)
    assert live is not None and live.count() == 8 and not live.frozen

"""The slot layout's operations, and the state-file form cron mode has always stored."""
from __future__ import annotations

import json

import pytest

from logtaild.count import slots

BOUNDS_MS = [5.0, 100.0]
KEY = ("/", "GET", "200", ())
API = ("/api", "POST", "500", (("service", "api"),))

#: what cron's `_series_out` wrote for these two slots (json.dumps of the state file's `series`)
STORED = ('[["/", "GET", "200", [], [3, 30, 105.5, 2, 1, 0]], '
          '["/api", "POST", "500", [["service", "api"]], [1, 7, 0.0, 0, 0, 0]]]')


def counted() -> dict[slots.SlotKey, slots.Slot]:
    root, api = slots.new_slot(BOUNDS_MS), slots.new_slot(BOUNDS_MS)
    for size, latency in ((10, 5.0), (10, 0.5 + 99.5), (10, 0.0 + 0.0)):
        slots.observe(root, BOUNDS_MS, size, latency)
    slots.observe(api, BOUNDS_MS, 7, None)
    return {KEY: root, API: api}


def test_a_new_slot_has_a_bucket_per_bound_and_inf() -> None:
    slot = slots.new_slot(BOUNDS_MS)
    assert len(slot) == slots.width(BOUNDS_MS)
    assert slots.bucket_width(slot) == len(BOUNDS_MS) + 1
    assert (slots.count(slot), slots.byte_count(slot), slots.latency_sum_ms(slot)) == (0, 0, 0.0)


def test_observe_places_latency_in_le_buckets() -> None:
    slot = counted()[KEY]
    assert slots.count(slot) == 3 and slots.byte_count(slot) == 30
    assert slots.latency_sum_ms(slot) == 105.0
    assert slots.bucket_counts(slot) == [2, 1, 0]  # 5 and 0 in le=5, 100 in le=100
    slots.observe(slot, BOUNDS_MS, 0, 100.01)
    assert slots.bucket_counts(slot) == [2, 1, 1]


def test_a_line_without_latency_has_no_histogram() -> None:
    both = counted()
    assert slots.timed([both[KEY], both[API]]) == [True, False]
    assert slots.counts(both.values()) == [3, 1]
    assert slots.byte_counts(both.values()) == [30, 7]


def test_merge_adds_position_by_position() -> None:
    into = slots.filled(1, 2, 3.5, [1, 0, 0])
    slots.merge_slot(into, slots.filled(2, 3, 1.0, [0, 1, 1]))
    assert into == slots.filled(3, 5, 4.5, [1, 1, 1])


def test_merge_slots_goes_through_slot_of() -> None:
    target: dict[slots.SlotKey, slots.Slot] = {}

    def slot_of(key: slots.SlotKey) -> slots.Slot:
        _route, method, status, labels = key
        return target.setdefault(("all", method, status, labels), slots.new_slot(BOUNDS_MS))

    source = counted()
    slots.merge_slots(source, slot_of)
    slots.merge_slots(source, slot_of)
    assert slots.count(target["all", "GET", "200", ()]) == 6
    assert slots.count(target["all", "POST", "500", (("service", "api"),)]) == 2


def test_latency_totals_add_up_columns() -> None:
    a, b = slots.filled(1, 0, 2.5, [1, 0, 0]), slots.filled(2, 0, 300.0, [0, 1, 1])
    assert slots.latency_totals([a]) == (2.5, [1, 0, 0])
    assert slots.latency_totals([a, b]) == (302.5, [1, 1, 1])


def test_counts_by_route_status_sums_methods_and_labels() -> None:
    both = counted()
    both["/", "POST", "200", ()] = slots.filled(4, 0, 0.0, [0, 0, 0])
    assert slots.counts_by_route_status(both) == {("/", "200"): 7, ("/api", "500"): 1}


def test_state_file_form_is_unchanged() -> None:
    both = counted()
    both[KEY][slots.LAT_SUM] += 0.5  # a latency sum that is not a whole number
    assert json.dumps(slots.to_json(both)) == STORED
    back = slots.from_json(json.loads(STORED), BOUNDS_MS, same_bounds=True)
    assert back == both
    assert json.dumps(slots.to_json(back)) == STORED


def test_changed_buckets_restart_the_histogram_alone() -> None:
    stored = json.loads(STORED)
    back = slots.from_json(stored, [1.0, 2.0, 3.0], same_bounds=False)
    assert back[KEY] == slots.filled(3, 30, 0.0, [0, 0, 0, 0])
    # same bounds claimed, but a stored slot of another width: the histogram part is dropped too
    assert slots.from_json(stored, [1.0, 2.0, 3.0], same_bounds=True)[KEY] == back[KEY]


@pytest.mark.parametrize("bad", [
    [["/", "GET", "200", []]],                       # no values
    [["/", "GET", "200", [], []]],                   # empty values
    [["/", "GET", "200", [], ["x", 1, 0.0, 0, 0, 0]]],
    [["/", "GET", "200", [["k"]], [1, 1, 0.0, 0, 0, 0]]],
    [5],
])
def test_invalid_series_raise_what_cron_reports(bad: list) -> None:
    with pytest.raises((TypeError, ValueError, KeyError, IndexError)):
        slots.from_json(bad, BOUNDS_MS, same_bounds=True)

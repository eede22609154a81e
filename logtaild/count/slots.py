"""The slot: one series' counters, and the only module that knows how a slot is laid out.

A slot is a plain list `[count, bytes, latency_sum_ms, bucket_0, ..., bucket_n, bucket_inf]`, one per
(route, method, status, extra labels) key. Bucket counts are per bucket, not cumulative; there is one
per latency bound (milliseconds) plus +Inf. It is a list, not an object, because the TSV hot loops in
`aggregate.py` add into it in place once per line; they are the only code outside this module that uses
the index constants, everything else goes through the functions here.

Every number but the latency sum is an int at run time. The alias says `float` because one list holds
both, and mypy's int-to-float promotion lets an int stand wherever a float is declared; the accessors
that hand out counts as `int` convert explicitly.

The state-file form (`to_json`, `from_json`) is the one cron mode has always written:
`[route, method, status, [[name, value], ...], [count, bytes, latency_sum_ms, buckets...]]`.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

ExtraLabels = tuple[tuple[str, str], ...]
SlotKey = tuple[str, str, str, ExtraLabels]  # (route, method, status, extra labels)
Slot = list[float]  # [count, bytes, latency_sum_ms, per-bucket counts...]; a list for in-place speed

#: where each counter sits; only this module and aggregate's TSV loops may use them
COUNT, BYTES, LAT_SUM, BUCKETS = 0, 1, 2, 3


# ---- making and adding ------------------------------------------------------------------------------

def width(bounds_ms: Sequence[float]) -> int:
    """How many numbers a slot for these latency bounds holds."""
    return BUCKETS + len(bounds_ms) + 1


def new_slot(bounds_ms: Sequence[float]) -> Slot:
    """An empty slot for these latency bounds (one bucket per bound, plus +Inf)."""
    return [0, 0, 0.0] + [0] * (len(bounds_ms) + 1)


def filled(count: int, size: int, latency_sum_ms: float, buckets: Iterable[int]) -> Slot:
    """A slot with these numbers (`buckets`: per bucket, +Inf last), for tests and tools."""
    return [count, size, latency_sum_ms, *buckets]


def observe(slot: Slot, bounds_ms: Sequence[float], size: int, latency_ms: float | None) -> None:
    """Count one request of `size` bytes, and its latency when the line has one."""
    slot[COUNT] += 1
    slot[BYTES] += size
    if latency_ms is not None:
        slot[LAT_SUM] += latency_ms
        slot[BUCKETS + bisect_left(bounds_ms, latency_ms)] += 1


def merge_slot(into: Slot, source: Slot) -> None:
    """Add `source`'s numbers into `into`, position by position (slots of the same bounds)."""
    for index, value in enumerate(source):
        into[index] += value


def merge_slots(slots: Mapping[SlotKey, Slot], slot_of: Callable[[SlotKey], Slot]) -> None:
    """Add each slot into the one `slot_of` gives for its key (an aggregator's, through its route cap)."""
    for key, slot in slots.items():
        merge_slot(slot_of(key), slot)


# ---- reading one slot -------------------------------------------------------------------------------

def count(slot: Slot) -> int:
    """Requests counted."""
    return int(slot[COUNT])


def byte_count(slot: Slot) -> int:
    """Response bytes counted."""
    return int(slot[BYTES])


def latency_sum_ms(slot: Slot) -> float:
    """Sum of the latencies counted, in milliseconds."""
    return slot[LAT_SUM]


def bucket_counts(slot: Slot) -> list[int]:
    """Requests per latency bucket (not cumulative; +Inf last)."""
    return [int(n) for n in slot[BUCKETS:]]


def bucket_width(slot: Slot) -> int:
    """How many latency buckets the slot has (+Inf included)."""
    return len(slot) - BUCKETS


# ---- reading many slots at once (a scrape reads every slot: one call, not one per slot) -------------

def counts(slots: Iterable[Slot]) -> list[float]:
    """The request count of each slot, in order (as stored: for sample values)."""
    return [slot[COUNT] for slot in slots]


def byte_counts(slots: Iterable[Slot]) -> list[float]:
    """The response bytes of each slot, in order (as stored: for sample values)."""
    return [slot[BYTES] for slot in slots]


def timed(slots: Iterable[Slot]) -> list[bool]:
    """Whether each slot counted any latency (a slot without one has no histogram)."""
    return [any(slot[BUCKETS:]) for slot in slots]


def latency_totals(slots: Sequence[Slot]) -> tuple[float, list[float]]:
    """(latency sum in ms, per-bucket counts) of slots added up, column by column in slot order."""
    if len(slots) == 1:
        slot = slots[0]
        return slot[LAT_SUM], slot[BUCKETS:]
    columns: list[float] = list(map(sum, islice(zip(*slots), LAT_SUM, None)))
    return columns[0], columns[1:]


def counts_by_route_status(slots: Mapping[SlotKey, Slot]) -> dict[tuple[str, str], int]:
    """Request counts per (route, status), summed over methods and extra labels."""
    out: dict[tuple[str, str], int] = {}
    for (route, _method, status, _labels), slot in slots.items():
        out[route, status] = out.get((route, status), 0) + int(slot[COUNT])
    return out


# ---- the state file ---------------------------------------------------------------------------------

def to_json(slots: Mapping[SlotKey, Slot]) -> list[list[Any]]:
    """The slots as cron's state file stores them (JSON-able lists; see the module docstring)."""
    return [[route, method, status, [list(pair) for pair in labels], list(slot)]
            for (route, method, status, labels), slot in slots.items()]


def from_json(series: Iterable[Any], bounds_ms: Sequence[float], same_bounds: bool) -> dict[SlotKey, Slot]:
    """Stored series (`to_json`'s form) -> {SlotKey: slot} for these bounds.

    The latency sum and buckets are kept only with `same_bounds` and the stored width matching; a
    change of buckets restarts the histogram alone. Invalid data raises TypeError, ValueError,
    KeyError or IndexError, which the caller reports.
    """
    size = width(bounds_ms)
    slots: dict[SlotKey, Slot] = {}
    for route, method, status, labels, values in series:
        key = (str(route), str(method), str(status), tuple((str(k), str(v)) for k, v in labels))
        slot = new_slot(bounds_ms)
        slot[COUNT], slot[BYTES] = int(values[COUNT]), int(values[BYTES])
        if same_bounds and len(values) == size:
            slot[LAT_SUM] = float(values[LAT_SUM])
            slot[BUCKETS:] = [int(v) for v in values[BUCKETS:]]
        slots[key] = slot
    return slots

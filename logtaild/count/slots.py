"""The slot: one series' counters, and the only module that knows how a slot is laid out.

A slot is a plain list `[count, bytes, latency_sum_ms, bucket_0, ..., bucket_n, bucket_inf]`, one per
(route, method, status, extra labels) key. A file whose format has upstream times (nginx's
`$upstream_response_time`) has wider slots: the request part, then `[upstream_sum_ms, upstream buckets...]`
with the same bounds. The upstream part comes after the request buckets so the request part keeps its
indices (the TSV loops add into them); code that reads buckets passes the bucket count (`len(bounds) + 1`)
so it never mistakes the upstream part for request buckets. Bucket counts are per bucket, not
cumulative; there is one per latency bound (milliseconds) plus +Inf. It is a list, not an object,
because the TSV hot loops in `aggregate.py` add into it in place once per line; they are the only
code outside this module that uses the index constants, everything else goes through the functions
here.

Every number but the latency sum is an int at run time. The alias says `float` because one list holds
both, and mypy's int-to-float promotion lets an int stand wherever a float is declared; the accessors
that hand out counts as `int` convert explicitly.

The state-file form (`to_json`, `from_json`) is the one cron mode has always written:
`[route, method, status, [[name, value], ...], [count, bytes, latency_sum_ms, buckets...]]`, the values
being the slot as it is (so with its upstream part, when it has one). Old files, written before a
format had upstream times, load with an empty upstream part.
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

def width(bounds_ms: Sequence[float], upstream: bool = False) -> int:
    """How many numbers a slot for these latency bounds holds (with the upstream part, if asked)."""
    request = BUCKETS + len(bounds_ms) + 1
    return request + 1 + len(bounds_ms) + 1 if upstream else request


def new_slot(bounds_ms: Sequence[float], upstream: bool = False) -> Slot:
    """An empty slot for these latency bounds (one bucket per bound, plus +Inf), and its upstream part."""
    buckets = [0] * (len(bounds_ms) + 1)
    return [0, 0, 0.0, *buckets, 0.0, *buckets] if upstream else [0, 0, 0.0, *buckets]


def has_upstream(slot: Slot, bounds_ms: Sequence[float]) -> bool:
    """Whether the slot has the upstream part (it is as wide as `width(bounds_ms, upstream=True)`)."""
    return len(slot) == width(bounds_ms, upstream=True)


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


def observe_upstream(slot: Slot, bounds_ms: Sequence[float], upstream_ms: float) -> None:
    """Count one upstream time into a slot that has the upstream part (`new_slot(..., upstream=True)`)."""
    base = BUCKETS + len(bounds_ms) + 1
    slot[base] += upstream_ms
    slot[base + 1 + bisect_left(bounds_ms, upstream_ms)] += 1


def merge_slot(into: Slot, source: Slot) -> None:
    """Add `source`'s numbers into `into`, position by position (slots of the same bounds).

    When one has the upstream part and the other not (a reload changed the format), the common part
    is added: the request counts are never lost, upstream times only exist where both have them.
    """
    for index, value in enumerate(source[:len(into)]):
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


def bucket_counts(slot: Slot, buckets: int | None = None) -> list[int]:
    """Requests per latency bucket (not cumulative; +Inf last).

    `buckets` is the bucket count (`len(bounds) + 1`); it is required to read a slot with an upstream
    part, and without it the slot is taken to have none.
    """
    end = len(slot) if buckets is None else BUCKETS + buckets
    return [int(n) for n in slot[BUCKETS:end]]


def bucket_width(slot: Slot, buckets: int | None = None) -> int:
    """How many latency buckets the slot has (+Inf included); `buckets` as in `bucket_counts`."""
    return len(slot) - BUCKETS if buckets is None else buckets


def upstream_sum_ms(slot: Slot, bounds_ms: Sequence[float]) -> float:
    """Sum of the upstream times counted, in milliseconds (0 for a slot without the upstream part)."""
    return slot[BUCKETS + len(bounds_ms) + 1] if has_upstream(slot, bounds_ms) else 0.0


def upstream_bucket_counts(slot: Slot, bounds_ms: Sequence[float]) -> list[int]:
    """Upstream times per bucket (not cumulative; +Inf last); empty for a slot without the part."""
    if not has_upstream(slot, bounds_ms):
        return []
    return [int(n) for n in slot[BUCKETS + len(bounds_ms) + 2:]]


# ---- reading many slots at once (a scrape reads every slot: one call, not one per slot) -------------

def counts(slots: Iterable[Slot]) -> list[float]:
    """The request count of each slot, in order (as stored: for sample values)."""
    return [slot[COUNT] for slot in slots]


def byte_counts(slots: Iterable[Slot]) -> list[float]:
    """The response bytes of each slot, in order (as stored: for sample values)."""
    return [slot[BYTES] for slot in slots]


def timed(slots: Iterable[Slot], buckets: int | None = None) -> list[bool]:
    """Whether each slot counted any latency (a slot without one has no histogram).

    `buckets` as in `bucket_counts`: required when slots have an upstream part.
    """
    if buckets is None:
        return [any(slot[BUCKETS:]) for slot in slots]
    end = BUCKETS + buckets
    return [any(slot[BUCKETS:end]) for slot in slots]


def latency_totals(slots: Sequence[Slot], buckets: int | None = None) -> tuple[float, list[float]]:
    """(latency sum in ms, per-bucket counts) of slots added up, column by column in slot order.

    `buckets` as in `bucket_counts`: required when slots have an upstream part.
    """
    end = None if buckets is None else BUCKETS + buckets
    if len(slots) == 1:
        slot = slots[0]
        return slot[LAT_SUM], slot[BUCKETS:end]
    columns: list[float] = list(map(sum, islice(zip(*slots), LAT_SUM, end)))
    return columns[0], columns[1:]


def upstream_timed(slots: Iterable[Slot], bounds_ms: Sequence[float]) -> list[bool]:
    """Whether each slot counted any upstream time (a slot without the part never did)."""
    start = BUCKETS + len(bounds_ms) + 2
    size = width(bounds_ms, upstream=True)
    return [len(slot) == size and any(slot[start:]) for slot in slots]


def upstream_totals(slots: Sequence[Slot], bounds_ms: Sequence[float]) -> tuple[float, list[float]]:
    """(upstream sum in ms, per-bucket counts) of slots with the upstream part, added up column by column."""
    base = BUCKETS + len(bounds_ms) + 1
    columns: list[float] = list(map(sum, islice(zip(*slots), base, None)))
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


def from_json(series: Iterable[Any], bounds_ms: Sequence[float], same_bounds: bool,
              upstream: bool = False) -> dict[SlotKey, Slot]:
    """Stored series (`to_json`'s form) -> {SlotKey: slot} for these bounds (with the upstream part
    when `upstream`).

    The latency sum and buckets are kept only with `same_bounds` and the stored width matching; a
    change of buckets restarts the histograms alone. A stored slot without the upstream part (an old
    state file, or a format that had none) keeps its request part and starts the upstream part empty;
    a stored upstream part the file no longer has is dropped. Invalid data raises TypeError,
    ValueError, KeyError or IndexError, which the caller reports.
    """
    request = width(bounds_ms)
    full = width(bounds_ms, upstream=True)
    slots: dict[SlotKey, Slot] = {}
    for route, method, status, labels, values in series:
        key = (str(route), str(method), str(status), tuple((str(k), str(v)) for k, v in labels))
        slot = new_slot(bounds_ms, upstream)
        slot[COUNT], slot[BYTES] = int(values[COUNT]), int(values[BYTES])
        if same_bounds and len(values) in (request, full):
            slot[LAT_SUM] = float(values[LAT_SUM])
            slot[BUCKETS:request] = [int(v) for v in values[BUCKETS:request]]
            if upstream and len(values) == full:
                slot[request] = float(values[request])
                slot[request + 1:] = [int(v) for v in values[request + 1:]]
        slots[key] = slot
    return slots

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

A file with native histograms (or exemplars) has one more element, last: its `Detail`, None until
the slot counts its first latency, then an object holding the request's and the upstream's
`NativeHistogram` (count/native.py) and the latest exemplar per classic bucket, each created on first
use. A slot without latencies therefore costs one pointer more, and the numbers keep their indices.
The extension is recognised by its type (the numbers are ints and floats), so `merge_slot` needs no
bounds; the readers here end at the numbers (they never hand the `Detail` out as a count).

A copy (`copy_slot`, what a snapshot takes under the service's lock) shares the native histograms and
marks them frozen instead of copying them: the live slot replaces a frozen histogram by a copy the
next time it counts into it (`native_part`, and the TSV loops' batch), so a snapshot costs one object per
slot and only histograms that change after it are copied, outside the scrape's time under the lock.
Everything that counts into a slot's native histograms goes through `native_part` for that reason.

Every number but the latency sum is an int at run time. The alias says `float` because one list holds
both, and mypy's int-to-float promotion lets an int stand wherever a float is declared; the accessors
that hand out counts as `int` convert explicitly.

The state-file form (`to_json`, `from_json`) is the one cron mode has always written:
`[route, method, status, [[name, value], ...], [count, bytes, latency_sum_ms, buckets...]]`, the values
being the slot's numbers (so with its upstream part, when it has one), and, for a slot with native
histograms, a sixth element `{"native": ..., "upstream_native": ...}` (`NativeHistogram.to_json`'s
form; exemplars are not kept). Old files, written before a format had upstream times or native
histograms, load with an empty upstream part and no native buckets.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, cast

from logtaild.count.native import NativeHistogram, NativeSpec, observe_all

ExtraLabels = tuple[tuple[str, str], ...]
SlotKey = tuple[str, str, str, ExtraLabels]  # (route, method, status, extra labels)
Slot = list[float]  # [count, bytes, latency_sum_ms, per-bucket counts...]; a list for in-place speed

#: where each counter sits; only this module and aggregate's TSV loops may use them
COUNT, BYTES, LAT_SUM, BUCKETS = 0, 1, 2, 3
#: an exemplar: (trace id, the latency in seconds, unix time)
Exemplar = tuple[str, float, float]


class Detail:
    """The last element of a detailed slot once it has a latency: native histograms and exemplars."""

    __slots__ = ("native", "upstream", "exemplars")

    def __init__(self) -> None:
        self.native: NativeHistogram | None = None
        self.upstream: NativeHistogram | None = None
        self.exemplars: list[Exemplar | None] | None = None  # one per classic request bucket

    def copy(self) -> Detail:
        """A copy for a snapshot: the histograms shared and frozen (see the module docstring)."""
        other = Detail.__new__(Detail)
        native, upstream, exemplars = self.native, self.upstream, self.exemplars
        if native is not None:
            native.frozen = True
        if upstream is not None:
            upstream.frozen = True
        other.native, other.upstream = native, upstream
        other.exemplars = exemplars[:] if exemplars is not None else None
        return other


def _numbers(slot: Slot) -> int:
    """How many numbers the slot holds (all of it, or all but its extension)."""
    last: object = slot[-1]  # (an annotation, not cast(): no call per slot)
    return len(slot) - 1 if last is None or isinstance(last, Detail) else len(slot)


def _detail(slot: Slot) -> Detail | None:
    last: object = slot[-1]
    return last if isinstance(last, Detail) else None


def _new_detail(slot: Slot) -> Detail:
    """The slot's Detail, created on first use (the slot must be detailed: `new_slot(..., detailed=True)`)."""
    last: object = slot[-1]
    if isinstance(last, Detail):
        return last
    assert last is None, "a slot without the extension"
    detail = Detail()
    slot[-1] = cast(float, detail)  # the one non-number a slot holds, always last
    return detail


# ---- making and adding ------------------------------------------------------------------------------

def width(bounds_ms: Sequence[float], upstream: bool = False) -> int:
    """How many numbers a slot for these latency bounds holds (with the upstream part, if asked)."""
    request = BUCKETS + len(bounds_ms) + 1
    return request + 1 + len(bounds_ms) + 1 if upstream else request


def new_slot(bounds_ms: Sequence[float], upstream: bool = False, detailed: bool = False) -> Slot:
    """An empty slot for these latency bounds (one bucket per bound, plus +Inf), and its upstream part;
    `detailed`: with the extension for native histograms and exemplars (None until used)."""
    buckets = [0] * (len(bounds_ms) + 1)
    slot: Slot = [0, 0, 0.0, *buckets, 0.0, *buckets] if upstream else [0, 0, 0.0, *buckets]
    if detailed:
        slot.append(cast(float, None))
    return slot


def has_upstream(slot: Slot, bounds_ms: Sequence[float]) -> bool:
    """Whether the slot has the upstream part (its numbers are `width(bounds_ms, upstream=True)` wide)."""
    return _numbers(slot) == width(bounds_ms, upstream=True)


def is_detailed(slot: Slot) -> bool:
    """Whether the slot has the extension (native histograms, exemplars)."""
    return _numbers(slot) != len(slot)


def copy_slot(slot: Slot) -> Slot:
    """An independent copy (the numbers, and a copy of the extension's histograms and exemplars)."""
    copy = slot[:]
    last: object = copy[-1]  # a number, None, or the Detail (a snapshot copies every slot: no cast() call)
    if isinstance(last, Detail):
        copy[-1] = last.copy()  # type: ignore[call-overload]  # the extension, as new_slot puts it
    return copy


def filled(count: int, size: int, latency_sum_ms: float, buckets: Iterable[int]) -> Slot:
    """A slot with these numbers (`buckets`: per bucket, +Inf last), for tests and tools."""
    return [count, size, latency_sum_ms, *buckets]


def observe(slot: Slot, bounds_ms: Sequence[float], size: int, latency_ms: float | None,
            native: NativeSpec | None = None) -> None:
    """Count one request of `size` bytes, and its latency when the line has one (into the native
    buckets too with `native`, the file's spec: the slot must be detailed)."""
    slot[COUNT] += 1
    slot[BYTES] += size
    if latency_ms is not None:
        slot[LAT_SUM] += latency_ms
        slot[BUCKETS + bisect_left(bounds_ms, latency_ms)] += 1
        if native is not None:
            observe_native(slot, native, latency_ms)


def observe_natives(pairs: Iterable[tuple[Slot, float]], spec: NativeSpec) -> None:
    """Count (slot, latency in ms) pairs into the slots' native request histograms, in one loop (the
    TSV loops collect a batch's pairs: a call per line would cost more than the counting)."""
    observe_all(_native_pairs(pairs, spec))


def _native_pairs(pairs: Iterable[tuple[Slot, float]], spec: NativeSpec) -> Iterator[tuple[NativeHistogram, float]]:
    for slot, latency_ms in pairs:
        detail: Detail | None = slot[-1]  # type: ignore[assignment]  # (no cast(): a call per line)
        hist = detail.native if detail is not None else None
        if hist is None or hist.frozen:  # the first latency, or the first since a snapshot
            hist = native_part(slot, spec)
        yield hist, latency_ms / 1000.0


def observe_native(slot: Slot, spec: NativeSpec, latency_ms: float) -> None:
    """Count one latency into the slot's native request histogram (the classic part is the caller's)."""
    detail: Detail | None = slot[-1]  # type: ignore[assignment]  # (no cast(): a call per line)
    hist = detail.native if detail is not None else None
    if hist is None or hist.frozen:  # the first latency, or the first since a snapshot
        hist = native_part(slot, spec)
    hist.observe(latency_ms / 1000.0)


def observe_upstream(slot: Slot, bounds_ms: Sequence[float], upstream_ms: float,
                     native: NativeSpec | None = None) -> None:
    """Count one upstream time into a slot that has the upstream part (`new_slot(..., upstream=True)`),
    and into its native upstream histogram with `native`."""
    base = BUCKETS + len(bounds_ms) + 1
    slot[base] += upstream_ms
    slot[base + 1 + bisect_left(bounds_ms, upstream_ms)] += 1
    if native is not None:
        native_part(slot, native, upstream=True).observe(upstream_ms / 1000.0)


def native_part(slot: Slot, spec: NativeSpec, upstream: bool = False) -> NativeHistogram:
    """The slot's native request (or upstream) histogram, created on first use (a detailed slot).

    Batch counting (the compiled core) adds a batch's bucket counts with its `add_counts`.
    """
    detail = _new_detail(slot)
    hist = detail.upstream if upstream else detail.native
    if hist is None or hist.frozen:  # none yet, or shared with a snapshot: this slot's own from now on
        hist = NativeHistogram(spec) if hist is None else hist.copy()
        if upstream:
            detail.upstream = hist
        else:
            detail.native = hist
    return hist


def observe_exemplar(slot: Slot, bounds_ms: Sequence[float], latency_ms: float, trace_id: str,
                     timestamp: float) -> None:
    """Keep (trace id, latency, time) as the latest exemplar of the latency's classic bucket."""
    detail = _new_detail(slot)
    kept = detail.exemplars
    if kept is None:
        kept = detail.exemplars = [None] * (len(bounds_ms) + 1)
    kept[bisect_left(bounds_ms, latency_ms)] = (trace_id, latency_ms / 1000.0, timestamp)


def merge_slot(into: Slot, source: Slot, native: NativeSpec | None = None) -> None:
    """Add `source`'s numbers into `into`, position by position (slots of the same bounds).

    When one has the upstream part and the other not (a reload changed the format), the common part
    is added: the request counts are never lost, upstream times only exist where both have them.
    Native histograms merge when `into` is detailed (at the lower of the two schemas; a histogram
    `into` lacks is created with `native`, its file's spec, else with the source's), and the later
    exemplar of each bucket is kept.
    """
    common = min(_numbers(into), _numbers(source))
    for index in range(common):
        into[index] += source[index]
    detail = _detail(source)
    if detail is None or not is_detailed(into):
        return
    for upstream, hist in ((False, detail.native), (True, detail.upstream)):
        if hist is not None:
            native_part(into, native or hist.spec, upstream).merge(hist)
    if detail.exemplars is not None:
        mine = _new_detail(into)
        if mine.exemplars is None or len(mine.exemplars) != len(detail.exemplars):
            mine.exemplars = list(detail.exemplars)
        else:
            mine.exemplars = [_later(a, b) for a, b in zip(mine.exemplars, detail.exemplars)]


def _later(a: Exemplar | None, b: Exemplar | None) -> Exemplar | None:
    if a is None:
        return b
    return a if b is None or a[2] >= b[2] else b


def merge_slots(slots: Mapping[SlotKey, Slot], slot_of: Callable[[SlotKey], Slot],
                native: NativeSpec | None = None) -> None:
    """Add each slot into the one `slot_of` gives for its key (an aggregator's, through its route cap);
    `native` as in `merge_slot`."""
    for key, slot in slots.items():
        merge_slot(slot_of(key), slot, native)


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
    end = _numbers(slot) if buckets is None else BUCKETS + buckets
    return [int(n) for n in slot[BUCKETS:end]]


def bucket_width(slot: Slot, buckets: int | None = None) -> int:
    """How many latency buckets the slot has (+Inf included); `buckets` as in `bucket_counts`."""
    return _numbers(slot) - BUCKETS if buckets is None else buckets


def upstream_sum_ms(slot: Slot, bounds_ms: Sequence[float]) -> float:
    """Sum of the upstream times counted, in milliseconds (0 for a slot without the upstream part)."""
    return slot[BUCKETS + len(bounds_ms) + 1] if has_upstream(slot, bounds_ms) else 0.0


def upstream_bucket_counts(slot: Slot, bounds_ms: Sequence[float]) -> list[int]:
    """Upstream times per bucket (not cumulative; +Inf last); empty for a slot without the part."""
    if not has_upstream(slot, bounds_ms):
        return []
    return [int(n) for n in slot[BUCKETS + len(bounds_ms) + 2:width(bounds_ms, upstream=True)]]


def native_histogram(slot: Slot, upstream: bool = False) -> NativeHistogram | None:
    """The slot's native request (or upstream) histogram; None when it has none (yet)."""
    detail = _detail(slot)
    if detail is None:
        return None
    return detail.upstream if upstream else detail.native


def exemplars(slot: Slot) -> list[Exemplar | None] | None:
    """The latest exemplar per classic request bucket (+Inf last); None when the slot kept none."""
    detail = _detail(slot)
    return None if detail is None else detail.exemplars


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
        return [any(slot[BUCKETS:_numbers(slot)]) for slot in slots]
    end = BUCKETS + buckets
    return [any(slot[BUCKETS:end]) for slot in slots]


def latency_totals(slots: Sequence[Slot], buckets: int | None = None) -> tuple[float, list[float]]:
    """(latency sum in ms, per-bucket counts) of slots added up, column by column in slot order.

    `buckets` as in `bucket_counts`: required when slots have an upstream part.
    """
    end = _numbers(slots[0]) if buckets is None else BUCKETS + buckets
    if len(slots) == 1:
        slot = slots[0]
        return slot[LAT_SUM], slot[BUCKETS:end]
    columns: list[float] = list(map(sum, islice(zip(*slots), LAT_SUM, end)))
    return columns[0], columns[1:]


def upstream_timed(slots: Iterable[Slot], bounds_ms: Sequence[float]) -> list[bool]:
    """Whether each slot counted any upstream time (a slot without the part never did)."""
    start = BUCKETS + len(bounds_ms) + 2
    size = width(bounds_ms, upstream=True)
    return [_numbers(slot) == size and any(slot[start:size]) for slot in slots]


def upstream_totals(slots: Sequence[Slot], bounds_ms: Sequence[float]) -> tuple[float, list[float]]:
    """(upstream sum in ms, per-bucket counts) of slots with the upstream part, added up column by column."""
    base = BUCKETS + len(bounds_ms) + 1
    columns: list[float] = list(map(sum, islice(zip(*slots), base, width(bounds_ms, upstream=True))))
    return columns[0], columns[1:]


def native_totals(slots: Iterable[Slot], upstream: bool = False) -> NativeHistogram | None:
    """The native histograms of slots added up (a fresh histogram, at the lowest schema among them);
    None when none of them has one."""
    total: NativeHistogram | None = None
    for slot in slots:
        hist = native_histogram(slot, upstream)
        if hist is None:
            continue
        if total is None:
            total = hist.copy()
        else:
            total.merge(hist)
    return total


def latest_exemplars(slots: Iterable[Slot]) -> list[Exemplar | None] | None:
    """Per classic request bucket, the latest exemplar among slots; None when none kept any."""
    out: list[Exemplar | None] | None = None
    for slot in slots:
        kept = exemplars(slot)
        if kept is None:
            continue
        out = list(kept) if out is None or len(out) != len(kept) else [_later(a, b) for a, b in zip(out, kept)]
    return out


def counts_by_route_status(slots: Mapping[SlotKey, Slot]) -> dict[tuple[str, str], int]:
    """Request counts per (route, status), summed over methods and extra labels."""
    out: dict[tuple[str, str], int] = {}
    for (route, _method, status, _labels), slot in slots.items():
        out[route, status] = out.get((route, status), 0) + int(slot[COUNT])
    return out


# ---- the state file ---------------------------------------------------------------------------------

def to_json(slots: Mapping[SlotKey, Slot]) -> list[list[Any]]:
    """The slots as cron's state file stores them (JSON-able lists; see the module docstring)."""
    return [_series_json(key, slot) for key, slot in slots.items()]


def _series_json(key: SlotKey, slot: Slot) -> list[Any]:
    route, method, status, labels = key
    out: list[Any] = [route, method, status, [list(pair) for pair in labels], slot[:_numbers(slot)]]
    detail = _detail(slot)
    if detail is not None and (detail.native is not None or detail.upstream is not None):
        native: dict[str, Any] = {}
        if detail.native is not None:
            native["native"] = detail.native.to_json()
        if detail.upstream is not None:
            native["upstream_native"] = detail.upstream.to_json()
        out.append(native)
    return out


def from_json(series: Iterable[Any], bounds_ms: Sequence[float], same_bounds: bool,
              upstream: bool = False, native: NativeSpec | None = None,
              detailed: bool = False) -> dict[SlotKey, Slot]:
    """Stored series (`to_json`'s form) -> {SlotKey: slot} for these bounds (with the upstream part
    when `upstream`).

    The latency sum and buckets are kept only with `same_bounds` and the stored width matching; a
    change of buckets restarts the histograms alone. A stored slot without the upstream part (an old
    state file, or a format that had none) keeps its request part and starts the upstream part empty;
    a stored upstream part the file no longer has is dropped. With `native` (the file's spec; the
    slots are then detailed), stored native histograms load at the lower of the stored and the spec's
    schema; without, they are dropped. `detailed`: the slots get the extension even without `native`
    (exemplars only). Invalid data raises TypeError, ValueError, KeyError or IndexError, which the
    caller reports.
    """
    request = width(bounds_ms)
    full = width(bounds_ms, upstream=True)
    detailed = detailed or native is not None
    slots: dict[SlotKey, Slot] = {}
    for route, method, status, labels, values, *more in series:
        key = (str(route), str(method), str(status), tuple((str(k), str(v)) for k, v in labels))
        slot = new_slot(bounds_ms, upstream, detailed)
        slot[COUNT], slot[BYTES] = int(values[COUNT]), int(values[BYTES])
        if same_bounds and len(values) in (request, full):
            slot[LAT_SUM] = float(values[LAT_SUM])
            slot[BUCKETS:request] = [int(v) for v in values[BUCKETS:request]]
            if upstream and len(values) == full:
                slot[request] = float(values[request])
                slot[request + 1:full] = [int(v) for v in values[request + 1:full]]
            if native is not None and more:
                stored = more[0]
                if "native" in stored:
                    detail = _new_detail(slot)
                    detail.native = NativeHistogram.from_json(native, stored["native"])
                if upstream and "upstream_native" in stored:
                    detail = _new_detail(slot)
                    detail.upstream = NativeHistogram.from_json(native, stored["upstream_native"])
        slots[key] = slot
    return slots

"""Latency over a span: `Timing` (what a set of slots counted), the difference of two, and the
percentiles and mean that the status page, /status.json and `--report latency` show.

Percentiles come from the native buckets when the slots have them (then within one bucket's width of
the true value: 9 % at schema 3), else from the classic buckets (`classic_quantile`, as PromQL's
`histogram_quantile` interpolates them: only as good as the bounds are close).
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from logtaild.count import slots as layout
from logtaild.count.native import NativeHistogram

QUANTILES = (0.5, 0.95, 0.99)
K = TypeVar("K", bound=Hashable)


def classic_quantile(q: float, bounds: Sequence[float], buckets: Sequence[int]) -> float | None:
    """Like PromQL histogram_quantile over per-bucket counts (the last bucket is +Inf)."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for index, n in enumerate(buckets):
        if seen + n >= rank and n > 0:
            if index >= len(bounds):  # in the +Inf bucket: the highest finite bound, as Prometheus does
                return bounds[-1] if bounds else None
            lower = bounds[index - 1] if index else 0.0
            return lower + (bounds[index] - lower) * (rank - seen) / n
        seen += n
    return bounds[-1] if bounds else None


@dataclass
class Timing:
    """The latencies some slots counted: the sum (ms), the classic per-bucket counts, the native buckets."""

    sum_ms: float
    buckets: list[int]
    native: NativeHistogram | None = None

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def minus(self, older: Timing | None) -> Timing:
        """What was counted since `older` (all of it when there is none, or the counters started over)."""
        if older is None or len(older.buckets) != len(self.buckets) or any(
                b > n for b, n in zip(older.buckets, self.buckets)):
            return self
        native = self.native
        if native is not None and older.native is not None:
            native = native.minus(older.native)
            if native is None:
                return self
        return Timing(self.sum_ms - older.sum_ms, [n - b for n, b in zip(self.buckets, older.buckets)], native)

    def add(self, other: Timing) -> None:
        """Add another's counts (rows summed into a TOTAL)."""
        if len(other.buckets) == len(self.buckets):
            self.buckets = [a + b for a, b in zip(self.buckets, other.buckets)]
        self.sum_ms += other.sum_ms
        if other.native is not None:
            if self.native is None:
                self.native = other.native.copy()
            else:
                self.native.merge(other.native)

    def percentiles(self, bounds_s: Sequence[float],
                    qs: Sequence[float] = QUANTILES) -> tuple[list[float | None], float | None]:
        """([quantile in seconds per q], mean in seconds); Nones without latencies."""
        count = self.count
        if count <= 0:
            return [None] * len(qs), None
        native = self.native
        if native is not None and native.count() == count:
            values: list[float | None] = [native.quantile(q) for q in qs]
        else:  # no native buckets (off, or not for all of these slots): the classic ones
            values = [classic_quantile(q, bounds_s, self.buckets) for q in qs]
        return values, self.sum_ms / count / 1000.0


def timing(slots: Sequence[layout.Slot], buckets: int) -> Timing:
    """The request latencies of slots (`buckets`: the request part's bucket count, `len(bounds) + 1`),
    the native buckets merged into a fresh histogram."""
    if not slots:
        return Timing(0.0, [0] * buckets)
    sum_ms, counts = layout.latency_totals(slots, buckets)
    return Timing(sum_ms, [int(n) for n in counts], layout.native_totals(slots))


def timings(keyed: Iterable[tuple[K, layout.Slot]], buckets: int) -> dict[K, Timing]:
    """`timing` per key, for (key, slot) pairs (several slots may share a key)."""
    groups: dict[K, list[layout.Slot]] = {}
    for key, slot in keyed:
        groups.setdefault(key, []).append(slot)
    return {key: timing(group, buckets) for key, group in groups.items()}

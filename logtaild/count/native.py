"""Native (exponential) histogram buckets: the bucket math and `NativeHistogram`, one histogram's state.

The buckets follow Prometheus' native histograms: for a schema `s` (-4 to 8), bucket `i` holds the
values in `(2^((i-1)·2^-s), 2^(i·2^-s)]`, so each power of two is split into `2^s` buckets whose bounds
grow by the factor `2^(2^-s)` (about 9 % at schema 3); values at or below the zero threshold go to the
zero bucket. Values are seconds (logtaild's milliseconds / 1000.0).

`bucket_index` computes the index from `math.frexp` (mantissa in [0.5, 1), exponent), as client_golang
does, so that another implementation (the compiled counting core) can reproduce it bit for bit: for
schema > 0 the mantissa is looked up in a table of `2^s` bounds, `pow(2, j/2^s - 1)` as the C library
computes it (Python's `**` calls the same `pow`); for schema <= 0 only the exponent matters. Shifts are
arithmetic (floor) on negative indices.

A `NativeHistogram` keeps its buckets dense between the lowest and the highest index seen, in an
`array('I')` (4 bytes a bucket, widened to 8 bytes the first time a bucket passes 2^32 - 1), created on
the first observation: a latency histogram spans a few powers of two, so a dense run costs less than
any sparse map. When more buckets are populated than `NativeSpec.max_buckets`, the resolution is halved
(schema - 1, index `i` becoming `(i + 1) >> 1`) until the limit holds or the schema is -4; that is
client_golang's third remedy, and the only one used here (no resets, no zero threshold growth: counts
are never thrown away and the zero bucket keeps its meaning). The count is the zero bucket plus the
buckets; the sum is not kept here (the slot's classic latency sum is the same number).
"""
from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import add
from typing import Any

MIN_SCHEMA, MAX_SCHEMA = -4, 8
#: client_golang's default zero threshold (2^-128): in practice only a latency of 0 is in the zero bucket
DEFAULT_ZERO_THRESHOLD = 2.0 ** -128
DEFAULT_SCHEMA = 3
DEFAULT_MAX_BUCKETS = 160

#: for schema s > 0, the `2^s` mantissa bounds `2^(j/2^s) / 2`, j = 0 .. 2^s - 1 (index 0 unused)
_MANTISSA_BOUNDS: list[list[float]] = [[]] + [
    [2.0 ** (j / (1 << s) - 1) for j in range(1 << s)] for s in range(1, MAX_SCHEMA + 1)
]
_frexp, _bisect_left = math.frexp, bisect_left  # module globals: one dict lookup each in `observe`


def mantissa_bounds(schema: int) -> list[float]:
    """The mantissa table `bucket_index` searches for `schema` > 0 (for other implementations to embed)."""
    return list(_MANTISSA_BOUNDS[schema])


def bucket_index(value_s: float, schema: int) -> int:
    """The index of the bucket holding `value_s` (> 0, finite): the smallest `i` with value <= 2^(i·2^-schema)."""
    frac, exp = math.frexp(value_s)
    if schema > 0:
        bounds = _MANTISSA_BOUNDS[schema]
        return bisect_left(bounds, frac) + (exp - 1) * len(bounds)
    key = exp - 1 if frac == 0.5 else exp  # an exact power of two is the upper bound of the bucket below
    shift = -schema
    return (key + (1 << shift) - 1) >> shift


def upper_bound(index: int, schema: int) -> float:
    """The upper bound (inclusive) of bucket `index` at `schema`: 2^(index·2^-schema)."""
    if schema <= 0:
        return math.ldexp(1.0, index << -schema)
    return float(2.0 ** (index / (1 << schema)))


def reduced_index(index: int, steps: int) -> int:
    """The index of bucket `index` once the schema is lowered by `steps` (each step: (i + 1) >> 1)."""
    return ((index - 1) >> steps) + 1 if steps else index


def growth_factor(schema: int) -> float:
    """How much each bucket's upper bound exceeds its lower bound: 2^(2^-schema)."""
    return float(2.0 ** (2.0 ** -schema))


def observe_all(pairs: Iterable[tuple[NativeHistogram, float]]) -> None:
    """`hist.observe(value_s)` for each pair, in one loop: `bucket_index` inlined, and an already
    populated bucket counted without a call (this runs once per line with a latency)."""
    frexp, bisect, tables = _frexp, _bisect_left, _MANTISSA_BOUNDS
    for hist, value_s in pairs:
        if value_s <= hist.spec.zero_threshold:
            hist.zero += 1
            continue
        frac, exp = frexp(value_s)
        schema = hist.schema
        if schema > 0:
            index = bisect(tables[schema], frac) + ((exp - 1) << schema)
        else:
            shift = -schema
            index = ((exp - 1 if frac == 0.5 else exp) + (1 << shift) - 1) >> shift
        at = index - hist.offset
        counts = hist.counts
        if 0 <= at < len(counts) and counts[at]:
            try:
                counts[at] += 1
                continue
            except OverflowError:
                pass  # _add widens the array
        hist._add(index, 1)
        limit = hist.spec.max_buckets
        if limit and hist.populated > limit:
            hist._reduce_to_limit()


@dataclass(frozen=True, slots=True)
class NativeSpec:
    """A file's native histogram settings (config `native_histograms`), shared by its histograms.

    `max_buckets` 0 means no limit.
    """

    schema: int = DEFAULT_SCHEMA
    zero_threshold: float = DEFAULT_ZERO_THRESHOLD
    max_buckets: int = DEFAULT_MAX_BUCKETS


class NativeHistogram:
    """One histogram's native buckets: schema, zero bucket, and the dense run of bucket counts."""

    __slots__ = ("spec", "schema", "zero", "offset", "counts", "populated", "frozen")

    def __init__(self, spec: NativeSpec) -> None:
        self.spec = spec
        self.schema = spec.schema
        self.zero = 0  # observations at or below the zero threshold
        self.offset = 0  # the index of counts[0]
        self.counts: array[int] = array("I")
        self.populated = 0  # buckets with a count > 0 (what the bucket limit counts)
        #: shared with a snapshot: never changed again (slots.py's owner replaces it by a copy first)
        self.frozen = False

    # ---- counting ---------------------------------------------------------------------------------

    def observe(self, value_s: float) -> None:
        """Count one value (seconds); a value at or below the zero threshold (latencies are never
        negative; a negative one counts as zero) goes to the zero bucket."""
        observe_all(((self, value_s),))

    def add_counts(self, schema: int, counts: Mapping[int, int], zero: int) -> None:
        """Add bucket counts computed at `schema` (index -> count) and a zero-bucket count.

        Counts at a higher schema than this histogram's are mapped down to it; at a lower one, this
        histogram is first reduced to that schema (merging never invents resolution). Then the
        resolution is halved while more buckets are populated than the limit allows.
        """
        if schema < self.schema:
            self._reduce(self.schema - max(schema, MIN_SCHEMA))
        steps = schema - self.schema
        self.zero += zero
        for index, n in counts.items():
            if n:
                self._add(reduced_index(index, steps), n)
        limit = self.spec.max_buckets
        if limit and self.populated > limit:
            self._reduce_to_limit()

    def merge(self, other: NativeHistogram) -> None:
        """Add another histogram's counts (any schema).

        At the same schema (the rule: a scrape adds up the slots of each series) the dense runs are
        added as lists, without a call per bucket.
        """
        if other.schema != self.schema or not other.counts:
            self.add_counts(other.schema, dict(other.buckets()), other.zero)
            return
        mine, theirs = self.counts, other.counts
        if not mine:
            start, merged = other.offset, list(theirs)
        else:
            start = min(self.offset, other.offset)
            end = max(self.offset + len(mine), other.offset + len(theirs))
            merged = [0] * (end - start)
            for offset, run in ((self.offset, mine), (other.offset, theirs)):
                at = offset - start
                merged[at:at + len(run)] = map(add, merged[at:at + len(run)], run)
        try:
            self.counts = array("I", merged)
        except OverflowError:
            self.counts = array("Q", merged)
        self.offset = start
        self.populated = len(merged) - merged.count(0)
        self.zero += other.zero
        limit = self.spec.max_buckets
        if limit and self.populated > limit:
            self._reduce_to_limit()

    def _add(self, index: int, n: int) -> None:
        at = index - self.offset
        counts = self.counts
        if not counts:
            self.offset, at = index, 0
            counts.append(0)
        elif at < 0:
            self.counts = counts = array(counts.typecode, bytes(-at * counts.itemsize)) + counts
            self.offset, at = index, 0
        elif at >= len(counts):
            counts.frombytes(bytes((at - len(counts) + 1) * counts.itemsize))
        if counts[at] == 0:
            self.populated += 1
        try:
            counts[at] += n
        except OverflowError:  # past 2^32 - 1 in one bucket: 8 bytes a bucket from now on
            self.counts = counts = array("Q", counts)
            counts[at] += n

    def _reduce_to_limit(self) -> None:
        while self.populated > self.spec.max_buckets and self.schema > MIN_SCHEMA:
            self._reduce(1)

    def _reduce(self, steps: int) -> None:
        """Lower the schema by `steps` (bounded at -4), adding buckets that now share an index."""
        steps = min(steps, self.schema - MIN_SCHEMA)
        if steps <= 0:
            return
        self.schema -= steps
        old = list(self.buckets())
        self.counts = array(self.counts.typecode)
        self.populated = 0
        for index, n in old:
            self._add(reduced_index(index, steps), n)

    # ---- reading ----------------------------------------------------------------------------------

    def buckets(self) -> Iterator[tuple[int, int]]:
        """(index, count) of the populated buckets, lowest index first."""
        offset = self.offset
        return ((offset + at, n) for at, n in enumerate(self.counts) if n)

    def count(self) -> int:
        """Observations counted (zero bucket included)."""
        return self.zero + sum(self.counts)

    def spans(self, gap: int = 2) -> tuple[list[tuple[int, int]], list[int]]:
        """The populated buckets as Prometheus' spans and deltas: ([(offset, length), ...], [delta, ...]).

        The first span's offset is its first index, later ones the number of empty buckets skipped;
        runs of at most `gap` empty buckets stay inside a span (a zero delta costs a byte, a span more).
        """
        spans: list[tuple[int, int]] = []
        deltas: list[int] = []
        previous = 0
        last = None  # index of the last bucket written
        start = 0
        length = 0
        for index, n in self.buckets():
            if last is None:
                start, length = index, 0
            elif index - last - 1 > gap:
                spans.append((start, length))
                start, length = index - last - 1, 0
            else:
                for _ in range(index - last - 1):  # empty buckets kept inside the span
                    deltas.append(-previous)
                    previous = 0
                    length += 1
            deltas.append(n - previous)
            previous = n
            length += 1
            last = index
        if last is not None:
            spans.append((start, length))
        return spans, deltas

    def quantile(self, q: float) -> float:
        """The `q`-quantile (0..1) estimated from the buckets, in seconds; NaN without observations.

        The rank `q·count` is found as histogram_quantile finds it; inside its bucket the estimate is
        interpolated exponentially (linearly inside the zero bucket), so it is never further from the
        true value than the bucket's own width: a factor `growth_factor(schema)` either way.
        """
        total = self.count()
        if total == 0 or math.isnan(q):
            return math.nan
        rank = min(max(q, 0.0), 1.0) * total
        if self.zero and rank <= self.zero:
            return self.spec.zero_threshold * rank / self.zero
        seen = float(self.zero)
        last = 0
        for index, n in self.buckets():
            last = index
            if seen + n >= rank:
                lower, upper = upper_bound(index - 1, self.schema), upper_bound(index, self.schema)
                return float(lower * (upper / lower) ** ((rank - seen) / n))
            seen += n
        return upper_bound(last, self.schema)

    def minus(self, older: NativeHistogram) -> NativeHistogram | None:
        """The observations counted since `older` (an earlier copy of this histogram), as a new histogram
        at the lower of the two schemas; None when any count went down (the counters started over)."""
        newer = self.copy()
        if older.schema < newer.schema:
            newer._reduce(newer.schema - older.schema)
        earlier = dict(older.buckets()) if older.schema == newer.schema else {}
        if older.schema > newer.schema:
            steps = older.schema - newer.schema
            for index, n in older.buckets():
                key = reduced_index(index, steps)
                earlier[key] = earlier.get(key, 0) + n
        out = NativeHistogram(self.spec)
        out.schema = newer.schema
        zero = newer.zero - older.zero
        now = dict(newer.buckets())
        if zero < 0 or any(now.get(index, 0) < n for index, n in earlier.items()):
            return None
        out.zero = zero
        for index, n in now.items():
            if n - earlier.get(index, 0):
                out._add(index, n - earlier.get(index, 0))
        return out

    def copy(self) -> NativeHistogram:
        """An independent copy (snapshots outlive the lock the live histogram is counted under)."""
        other = NativeHistogram.__new__(NativeHistogram)
        other.spec, other.schema, other.zero = self.spec, self.schema, self.zero
        other.offset, other.populated = self.offset, self.populated
        other.counts = self.counts[:]  # a slice of an array is one memcpy
        other.frozen = False
        return other

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NativeHistogram):
            return NotImplemented
        return (self.schema, self.zero, list(self.buckets())) == (other.schema, other.zero, list(other.buckets()))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"NativeHistogram(schema={self.schema}, zero={self.zero}, buckets={dict(self.buckets())})"

    # ---- the state file ---------------------------------------------------------------------------

    def to_json(self) -> list[Any]:
        """`[schema, zero, offset, [counts...]]`: JSON-able, dense as kept."""
        return [self.schema, self.zero, self.offset, list(self.counts)]

    @classmethod
    def from_json(cls, spec: NativeSpec, data: Sequence[Any]) -> NativeHistogram:
        """A histogram from `to_json`'s form, at the spec's schema or the stored one if lower (a
        histogram never regains resolution). Invalid data raises TypeError, ValueError or IndexError."""
        schema, zero, offset, counts = data
        schema, zero, offset = int(schema), int(zero), int(offset)
        if not MIN_SCHEMA <= schema <= MAX_SCHEMA or zero < 0:
            raise ValueError(f"bad native histogram {data!r}")
        hist = cls(spec)
        buckets = {offset + at: int(n) for at, n in enumerate(counts)}
        if any(n < 0 for n in buckets.values()):
            raise ValueError(f"bad native histogram {data!r}")
        hist.add_counts(schema, buckets, zero)
        return hist

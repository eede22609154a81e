"""`Aggregator`: counts parsed lines of one file into plain dict slots, the hot path of logtaild.

A slot (slots.py owns its layout) is kept per (route, method, status, extra labels). For the TSV
format a line's raw `request<TAB>status` bytes map straight to their slot through a bounded cache, so
the common line costs a partition, an rsplit, one dict lookup, int(), float() and a few additions. A raw
key the cache lacks (a new id, a new query string) is placed through a second cache keyed on
(method, id-normalized path, status) bytes, without decoding; only a line neither cache knows goes
through the full checks, in `formats.parse_tsv`'s order, which decide whether and why it is
malformed. Nothing here calls prometheus-client: export/ reads copies of the slots (`snapshot`),
taken under the service's lock.

The compiled core (core.py), where it runs and the format has a scanner in it (tsv, the combined
preset, the nginx and Apache format strings it reads, json), counts first: `_feed_compiled` lets it
count every line whose raw key (or path key, ids replaced) it was told, and each line it stops at goes
through the Python code below, which decides
(normalization, caps, malformed reasons) and tells the core the slot it chose for that key (`bind`).
The core keeps its deltas until someone reads the slots (`slots`, `snapshot`, a merge, a report), then
adds them into the same slot lists, so the slots and their readers are the same with either core, and a
file followed at 10k lines/s costs one flush per scrape or report, not one per batch read;
`LOGTAILD_CORE=python` counts without it.

A file without a configured format has a parser that chooses the format from the first batch
(`parsers.AutoParser`): `feed` asks it before counting, so those lines are counted once, with the
chosen format, and a TSV file still gets the fast loops. A parser whose records carry upstream times
(`has_upstream`) gets slots with the upstream part. With a `NativeSpec` every latency is also counted
into the slot's native histograms (count/native.py, kept in the slot's extension: see slots.py).
"""
from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence

from logtaild.count import core
from logtaild.count.formats import (
    MAX_BYTES,
    REASONS,
    ParseError,
    parse_bytes,
    parse_latency_ms,
    parse_request,
    parse_status,
    parse_tsv,
    path_part,
)
from logtaild.count.native import NativeSpec, mantissa_bounds
from logtaild.count.parsers import AutoParser, has_upstream, label_cap
from logtaild.count.record import AccessRecord
from logtaild.count.routes import OVERFLOW_ROUTE, RouteLimiter, normalize_id_bytes, overflow_key
from logtaild.count.slots import (
    BUCKETS,
    BYTES,
    COUNT,
    LAT_SUM,
    ExtraLabels,
    Slot,
    SlotKey,
    copy_slot,
    counts_by_route_status,
    merge_slots,
    native_part,
    new_slot,
    observe,
    observe_exemplar,
    observe_natives,
    observe_upstream,
)

_INF = math.inf
#: the longest caller's key (its values' total length) `_series` remembers: a label field can carry a
#: whole line's worth of text, which would make the bounded cache large; such keys are escaped again
_SERIES_KEY_LONGEST = 2048
#: the longest raw request the raw and path caches keep (bytes): they are bounded in entries, this
#: bounds them in bytes (about 200 MB at most for the three of them)
_RAW_KEY_LONGEST = 2048


def _key_length(key: SlotKey) -> int:
    route, method, status, labels = key
    return len(route) + len(method) + len(status) + sum(len(value) for _name, value in labels)


class Aggregator:
    """Counts for one followed file."""

    def __init__(
        self,
        limiter: RouteLimiter,
        bounds_ms: Sequence[float],
        parser: Callable[[bytes], AccessRecord] = parse_tsv,
        cache_max: int = 32768,
        native: NativeSpec | None = None,
        exemplars: bool = False,
        wall: Callable[[], float] = time.time,
        compiled: bool | None = None,
    ) -> None:
        self.limiter = limiter
        self.bounds_ms = list(bounds_ms)
        #: native histograms (None: classic buckets only); `exemplars`: keep records' trace ids
        self.native = native
        self.exemplars = exemplars
        self.detailed = native is not None or exemplars
        self.now = 0.0  # the exemplars' time: when the batch was read (set by `feed`)
        self._wall = wall
        self._slots: dict[SlotKey, Slot] = {}  # read through `slots`, which adds the core's deltas first
        self._unflushed = False  # the core holds deltas the slots lack
        self.lines = 0
        self.malformed = dict.fromkeys(REASONS, 0)
        self.last_malformed: bytes = b""
        self.first_malformed: bytes = b""
        self.parser = parser
        self._fast = parser is parse_tsv
        self.upstream = has_upstream(parser)
        self._label_cap = label_cap(parser)
        #: a file without a configured format: asked to choose with each batch until it has decided
        self._auto = parser if isinstance(parser, AutoParser) else None
        self._cache: dict[bytes, Slot] = {}  # b"request<TAB>status" -> slot
        self._old: dict[bytes, Slot] = {}  # the previous generation of _cache
        self._paths: dict[tuple[bytes, bytes, bytes], Slot] = {}  # see _path_key
        self._ids_as_bytes = limiter.bytes_normalizable
        self._cache_max = cache_max
        self._series: dict[SlotKey, Slot] = {}  # a key as callers give it -> its slot; see _new_series
        #: None: the process's choice (core.NAME); False: the Python path only (tests compare the two)
        self._compiled = compiled
        self._core = self._make_core(parser)

    def feed(self, lines: Sequence[bytes]) -> None:
        """Count a batch of complete lines (without their newlines).

        A batch with a `span` (the tailer's Chunk: a read buffer and the range of its whole lines, each
        ending with a newline) goes to the compiled core as it is (`_feed_chunk`); any other path, and an
        undecided format, takes the lines as a list.
        """
        if self.exemplars:
            self.now = self._wall()
        span: tuple[bytes, int, int] | None = getattr(lines, "span", None)
        if self._auto is not None and lines:
            self._use(self._auto.choose(list(lines)))
        if self._core is not None and span is not None:
            head: bytes | None = getattr(lines, "head", None)  # a line before the span (filestream.Chunk)
            if head is not None:
                self.lines += 1
                self._feed_compiled([head], self._core)
            self._feed_chunk(*span, self._core)  # counts self.lines as it scans
            return
        self.lines += len(lines)
        if not isinstance(lines, list):
            lines = list(lines)
        if self._core is not None:
            self._feed_compiled(lines, self._core)
        elif self._fast:
            # one loop per field count; a batch's first line picks it (a file rarely mixes them)
            fast = self._feed_tsv4 if lines and lines[0].count(b"\t") == 3 else self._feed_tsv5
            for line in fast(lines):
                self._feed_tsv_miss(line)
        else:
            for line in lines:
                self._feed_one(line)

    def _make_core(self, parser: Callable[[bytes], AccessRecord]) -> core.Counter | None:
        """The compiled counter for this parser's format, or None (no compiled core, or no scanner)."""
        if parser is parse_tsv:
            return core.counter("tsv", self.bounds_ms, self._ids_as_bytes, compiled=self._compiled,
                                native=self._native_args())
        spec = getattr(parser, "core_format", None)  # set by the formats the core has a scanner for
        if isinstance(spec, tuple) and len(spec) == 2 and spec[0] == "json" and isinstance(spec[1], dict):
            return core.counter("json", self.bounds_ms, self._ids_as_bytes, compiled=self._compiled, program=spec[1],
                                native=self._native_args())
        if isinstance(spec, tuple) and len(spec) == 2 and spec[0] == "program" and isinstance(spec[1], dict):
            return core.counter("program", self.bounds_ms, self._ids_as_bytes, compiled=self._compiled,
                                program=spec[1], upstream=has_upstream(parser), native=self._native_args())
        if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
            return core.counter(spec[0], self.bounds_ms, self._ids_as_bytes, spec[1], compiled=self._compiled,
                                native=self._native_args())
        return None

    @property
    def core_name(self) -> str:
        """Which core counts this file's lines first: "compiled" or "python"."""
        return "python" if self._core is None else "compiled"

    def _feed_compiled(self, lines: list[bytes], counter: core.Counter) -> None:
        """The compiled core counts what it knows; each line it stops at is decided here, then bound.

        `scan` returns the index of the first line it did not count and that line's raw key (None
        when the line is outside the scanner's exact subset: Python's verdict alone counts). For tsv
        the miss path binds through `_remember_raw`, as it fills its own cache; for the other formats
        the key the scanner read is bound to the slot the parser's record went to.
        """
        scan, n, i = counter.scan, len(lines), 0
        self._unflushed = True
        while True:
            i, key = scan(lines, i)
            if i >= n:
                break
            self._decide(lines[i], key, counter)
            i += 1

    def _decide(self, line: bytes, key: bytes | None, counter: core.Counter) -> None:
        """A line the core stopped at: Python's verdict, then the key bound (see `_feed_compiled`)."""
        if self._fast:
            self._feed_tsv_miss(line)
            return
        slot = self._feed_one(line)
        if slot is not None and key is not None:
            counter.bind(key, slot)

    @property
    def slots(self) -> dict[SlotKey, Slot]:
        """Every slot by key, with what the core counted added in: the one way to read the counts.

        Code here that only finds or creates a slot uses `_slots`, so a line Python decides costs no flush.
        """
        self._settle()
        return self._slots

    def _settle(self) -> None:
        if self._unflushed and self._core is not None:
            self._unflushed = False
            self._flush_core(self._core)

    def _flush_core(self, counter: core.Counter) -> None:
        """The core's deltas into the slots, and the native bucket counts of the lines it counted."""
        natives = counter.flush()
        if natives and self.native is not None:
            self._add_natives(natives, self.native)

    def _feed_chunk(self, data: bytes, start: int, end: int, counter: core.Counter) -> None:
        """`_feed_compiled` on a buffer: the core counts the lines of data[start:end] it knows and stops at
        the offset of a line it cannot count; only that line becomes a bytes object, decided here as in
        `_feed_compiled`, and the scan goes on after its newline. `self.lines` grows by the lines each
        scan walked (the core counts them) and by each line decided here, so a chunk is never counted
        with a pass of its own."""
        scan, find, at = counter.scan_chunk, data.find, start
        self._unflushed = True
        while True:
            at, key, walked = scan(data, at, end)
            self.lines += walked
            if at >= end:
                break
            self.lines += 1
            stop = find(b"\n", at, end)
            if stop < 0:  # an unterminated last line: the core read it up to `end` too
                stop = end
            self._decide(data[at:stop], key, counter)
            at = stop + 1

    @staticmethod
    def _add_natives(natives: list[tuple[Slot, bool, dict[int, int], int]], spec: NativeSpec) -> None:
        """Each histogram's batch counts: a bucket it already holds at the same schema is added in place
        (as native.observe_all does for one line), every other count through its `add_counts`."""
        schema = spec.schema
        for slot, upstream, counts, zero in natives:
            hist = native_part(slot, spec, upstream)
            if hist.schema == schema and not zero:
                run, offset, size, rest = hist.counts, hist.offset, len(hist.counts), {}
                for index, n in counts.items():
                    at = index - offset
                    if 0 <= at < size and run[at]:
                        try:
                            run[at] += n
                            continue
                        except OverflowError:
                            pass  # add_counts widens the run
                    rest[index] = n
                counts = rest
            if counts or zero:
                hist.add_counts(schema, counts, zero)

    def _native_args(self) -> tuple[int, float, list[float]] | None:
        """What the compiled core needs to compute native bucket indices as native.bucket_index does."""
        spec = self.native
        if spec is None:
            return None
        return spec.schema, spec.zero_threshold, mantissa_bounds(spec.schema) if spec.schema > 0 else []

    def _use(self, parser: Callable[[bytes], AccessRecord]) -> None:
        """Count with the parser an undecided one chose; stop asking once it has decided for good."""
        if parser is not self.parser:
            self._settle()  # the old core's deltas into the slots before it goes
            self._core = self._make_core(parser)
        self.parser = parser
        self._fast = parser is parse_tsv
        self.upstream = has_upstream(parser)  # detection never picks a format with upstream times
        self._label_cap = label_cap(parser)
        if self._auto is not None and self._auto.decided:
            self._auto = None

    # The two fast loops key the cache on the bytes between the first tab and the number fields:
    # `request<TAB>status`. Cached keys hold exactly one tab, so a hit also proves the field count.
    # A key the cache lacks is looked up in the path cache (_known_slot). Anything else (a new
    # path, another field count, a value int() or float() rejects or that is out of range) is
    # returned and goes through _feed_tsv_miss, which gives the same verdict as parse_tsv.
    # They are the only code outside slots.py that indexes a slot: a call to slots.observe per line
    # would cost more than the rest of the loop body, so they add in place, with slots.py's index
    # constants bound to locals (a local load costs what the literal index did, a global more).

    def _feed_tsv5(self, lines: list[bytes]) -> list[bytes]:
        """`ip, request, status, bytes, latency` lines; returns the ones it could not count."""
        get, known = self._cache.get, self._known_slot
        bounds = self.bounds_ms
        native = self.native
        timed: list[tuple[Slot, float]] = []  # the batch's latencies for the native buckets, counted after
        add_timed = timed.append
        count_at, bytes_at, lat_at, buckets_at = COUNT, BYTES, LAT_SUM, BUCKETS
        slow: list[bytes] = []
        for line in lines:
            try:
                key, size_field, latency_field = line.partition(b"\t")[2].rsplit(b"\t", 2)
                slot = get(key) or known(key)
                size = int(size_field)
                lat = float(latency_field)
            except ValueError:
                slow.append(line)
                continue
            if slot is not None and 0 <= size < MAX_BYTES and 0.0 <= lat < _INF:
                slot[count_at] += 1
                slot[bytes_at] += size
                slot[lat_at] += lat
                slot[buckets_at + bisect_left(bounds, lat)] += 1
                if native is not None:
                    add_timed((slot, lat))
            else:
                slow.append(line)
        if timed and native is not None:
            observe_natives(timed, native)
        return slow

    def _feed_tsv4(self, lines: list[bytes]) -> list[bytes]:
        """`ip, request, status, bytes` lines (no latency); returns the ones it could not count."""
        get, known = self._cache.get, self._known_slot
        count_at, bytes_at = COUNT, BYTES  # see above: slots.py's layout, in place
        slow: list[bytes] = []
        for line in lines:
            try:
                key, size_field = line.partition(b"\t")[2].rsplit(b"\t", 1)
                slot = get(key) or known(key)
                size = int(size_field)
            except ValueError:
                slow.append(line)
                continue
            if slot is not None and 0 <= size < MAX_BYTES:
                slot[count_at] += 1
                slot[bytes_at] += size
            else:
                slow.append(line)
        return slow

    def _feed_tsv_miss(self, line: bytes) -> None:
        """A TSV line the fast loops could not count: find its slot, check its numbers.

        The checks run in parse_tsv's order, so a malformed line gets the same reason either way,
        and a slot (and its route's place under the cap) is only taken for a valid line.
        """
        fields = line.split(b"\t")
        try:
            if len(fields) not in (4, 5):
                raise ParseError("fields", f"{len(fields)} fields")
            request, status = fields[1], fields[2]
            raw_key = request + b"\t" + status
            # with the core, the caches stay empty (it binds the keys itself): no path key to compute
            slot = None if self._core is not None else (self._cache.get(raw_key) or self._known_slot(raw_key))
            labels = self._labels(request, status) if slot is None else None
            size = parse_bytes(fields[3])
            latency = parse_latency_ms(fields[4]) if len(fields) == 5 else None
        except ParseError as exc:
            self._malformed(exc.reason, line)
            return
        if slot is None:
            assert labels is not None  # computed in the try whenever slot is None
            method, route, status_label = labels
            slot = self.slot_for_admitted(self.limiter.admit_normalized(route), method, status_label)
            if self._core is None:  # the core keeps its own path keys: see _remember_raw
                self._remember_path(request, status, slot)
            self._remember_raw(raw_key, slot)
        observe(slot, self.bounds_ms, size, latency, self.native)

    def _remember_path(self, request: bytes, status: bytes, slot: Slot) -> None:
        """Cache a new line's path key (bounded: hostile URLs cannot grow it; hot keys refill at once)."""
        if len(self._paths) >= self._cache_max:
            self._paths.clear()
        path_key = self._path_key(request, status)
        if path_key is not None and len(path_key[1]) <= _RAW_KEY_LONGEST:  # see _remember_raw
            self._paths[path_key] = slot

    def _known_slot(self, key: bytes) -> Slot | None:
        """The slot of a new `request<TAB>status` key if its path key is cached (then key is too)."""
        slot = self._old.get(key)
        if slot is None:
            request, _tab, status = key.partition(b"\t")  # no tab: status b"", never a cached one
            path_key = self._path_key(request, status)
            slot = self._paths.get(path_key) if path_key else None
        if slot is not None:
            self._remember_raw(key, slot)
        return slot

    def _remember_raw(self, key: bytes, slot: Slot) -> None:
        """Cache a raw key; when the cache is full its keys become the old generation.

        Keys still in use move back on their next line for a dict lookup, so a full cache does
        not send every hot key through the path cache again at once. A key longer than
        _RAW_KEY_LONGEST is not kept: 32768 requests of 60 KB would hold 2 GB here, and a line that
        long costs its full path anyway.
        """
        if len(key) > _RAW_KEY_LONGEST:
            return
        if self._core is not None:
            # the core's table holds the key (and its path key) for every later line: a copy here
            # would only double what the series cap costs (54,000 keys: about 8 MB)
            self._core.bind(key, slot)
            return
        if len(self._cache) >= self._cache_max:
            self._old = self._cache.copy()  # a copy: the fast loops hold the bound get() of _cache
            self._cache.clear()
        self._cache[key] = slot

    def _path_key(self, request: bytes, status: bytes) -> tuple[bytes, bytes, bytes] | None:
        """What decides a request's labels: (method, path, status) as bytes; None for no target.

        The path has no query string and, when only the built-in id patterns apply, its ids are
        already replaced: `/users/17?x=1` and `/users/18` share a key, so a long tail of ids costs
        a regex pass, not a full parse. Only valid requests and statuses get a slot in the cache.
        """
        words = request.split(b" ")
        if len(words) not in (2, 3) or not words[1]:
            return None
        path = path_part(words[1])
        if self._ids_as_bytes and path[:1] == b"/":
            path = normalize_id_bytes(path)
        return words[0], path, status

    def _labels(self, request: bytes, status: bytes) -> tuple[str, str, str]:
        """(method, normalized route, status) of raw fields; ParseError when either is invalid."""
        method, route = parse_request(request)
        return method, self.limiter.normalize(route), parse_status(status)

    def _malformed(self, reason: str, line: bytes) -> None:
        self.malformed[reason] += 1
        self.last_malformed = line[:200]
        if not self.first_malformed:
            self.first_malformed = line[:200]

    def _feed_one(self, line: bytes) -> Slot | None:
        """The general path (formats other than TSV): parse, count malformed lines by reason; the slot
        the line went to (None for a malformed line)."""
        try:
            record = self.parser(line)
        except ParseError as exc:
            self._malformed(exc.reason, line)
            return None
        slot = self.slot_for(record.route, record.method, record.status, record.labels)
        observe(slot, self.bounds_ms, record.bytes, record.latency_ms, self.native)  # not self.add: one call
        if record.upstream_ms is not None and self.upstream:
            observe_upstream(slot, self.bounds_ms, record.upstream_ms, self.native)
        if record.exemplar is not None and record.latency_ms is not None and self.exemplars:
            observe_exemplar(slot, self.bounds_ms, record.latency_ms, record.exemplar, self.now)
        return slot

    def add(self, slot: Slot, record: AccessRecord) -> None:
        """Count one record into its slot."""
        observe(slot, self.bounds_ms, record.bytes, record.latency_ms, self.native)

    def add_record(self, record: AccessRecord) -> None:
        """Count a record parsed elsewhere (tests, other formats)."""
        self.lines += 1
        self.add(self.slot_for(record.route, record.method, record.status, record.labels), record)

    def slot_for(self, route: str, method: str, status: str, labels: ExtraLabels = ()) -> Slot:
        """The slot of a raw route after normalization and the cardinality cap."""
        return self.slot_for_admitted(self.limiter.admit(route), method, status, labels)

    def slot_for_admitted(self, route: str, method: str, status: str, labels: ExtraLabels = ()) -> Slot:
        """The slot of a route value that already went through the limiter."""
        key = (route, method, status, labels)
        slot = self._series.get(key)
        if slot is None:
            slot = self._new_series(self.limiter.series_key(route, method, status, labels), key)
        return slot

    def _new_series(self, safe: SlotKey, key: SlotKey | None) -> Slot:
        """The slot of a label set `_series` does not know: its values already made safe (`safe`).

        This is where series are created, so the escaping and the series cap cost once per new
        series, not per line. Past `limiter.max_series` a new label set is counted under
        `overflow_key`. The key as the caller gave it is remembered (bounded, like the raw caches),
        except for counts merged from elsewhere (`key` None): their values are already escaped, and
        a raw value that looks like an escape must not find their slot.
        """
        slot = self._slots.get(safe)
        if slot is None:
            if len(self._slots) >= self.limiter.max_series:
                safe = overflow_key(safe)
                slot = self._slots.get(safe)
            if slot is None:
                slot = self._slots[safe] = new_slot(self.bounds_ms, self.upstream, self.detailed)
        if key is not None and _key_length(key) <= _SERIES_KEY_LONGEST:
            if len(self._series) >= self._cache_max:
                self._series.clear()  # hot keys come back at once
            self._series[key] = slot
        return slot

    def merge_slots(self, slots: Mapping[SlotKey, Slot]) -> None:
        """Add slots counted elsewhere (a worker, the state file, a replaced aggregator), admitting
        their routes through this aggregator's cap, so the cap holds over the sum."""
        merge_slots(slots, self._counted_slot, self.native)

    def _counted_slot(self, key: SlotKey) -> Slot:
        """This aggregator's slot for a key another aggregator produced (its route already normalized)."""
        route, method, status, labels = key
        admitted = route if route == OVERFLOW_ROUTE else self.limiter.admit_label(route)
        if self._label_cap is not None:
            labels = self._label_cap.admit_labels(labels)
        return self._new_series(self.limiter.series_key(admitted, method, status, labels, escaped=True), None)

    def snapshot(self) -> list[tuple[SlotKey, Slot]]:
        """A copy of every slot, taken under the caller's lock (native histograms shared, frozen: slots.py)."""
        copy = copy_slot if self.detailed else list.copy
        return [(key, copy(slot)) for key, slot in self.slots.items()]

    def counts_by_route_status(self) -> dict[tuple[str, str], int]:
        """Request counts per (route, status), summed over methods and labels."""
        return counts_by_route_status(self.slots)

"""`Aggregator`: counts parsed lines of one file into plain dict slots, the hot path of logtaild.

A slot is a list `[count, bytes, latency_sum_ms, bucket_0, ..., bucket_n, bucket_inf]` (bucket counts
are per bucket, not cumulative) kept per (route, method, status, extra labels). For the TSV format the
raw (request, status) byte strings map straight to their slot through a bounded cache, so the common
line costs one split, one dict lookup and a few integer additions; anything unusual falls back to
`formats.parse_tsv`, which decides whether and why a line is malformed. Nothing here calls
prometheus-client: the exporter reads the slots under the service's lock.
"""
from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Sequence

from logtaild.formats import (
    MAX_BYTES, REASONS, ParseError, parse_bytes, parse_latency_ms, parse_request, parse_status,
    parse_tsv, split_request,
)
from logtaild.record import AccessRecord
from logtaild.routes import RouteLimiter, normalize_id_bytes

SlotKey = tuple[str, str, str, tuple[tuple[str, str], ...]]
Slot = list  # [count, bytes, latency_sum_ms, per-bucket counts...]; a list for in-place speed

COUNT, BYTES, LAT_SUM, BUCKETS = 0, 1, 2, 3
_INF = math.inf


def _remember(cache: dict, key: object, slot: Slot, limit: int) -> None:
    """Cache `slot` under `key`, emptying the cache first when it is full.

    Bounded, so hostile URLs cannot grow it; the hot keys refill at once after a clear.
    """
    if len(cache) >= limit:
        cache.clear()
    cache[key] = slot


class Aggregator:
    """Counts for one followed file."""

    def __init__(
        self,
        limiter: RouteLimiter,
        bounds_ms: Sequence[float],
        parser: Callable[[bytes], AccessRecord] = parse_tsv,
        cache_max: int = 32768,
    ) -> None:
        self.limiter = limiter
        self.bounds_ms = list(bounds_ms)
        self.slots: dict[SlotKey, Slot] = {}
        self.lines = 0
        self.malformed = dict.fromkeys(REASONS, 0)
        self.last_malformed: bytes = b""
        self.parser = parser
        self._fast = parser is parse_tsv
        self._cache: dict[bytes, Slot] = {}  # b"request<TAB>status" -> slot
        self._paths: dict[tuple[bytes, bytes, bytes], Slot] = {}  # see _resolve
        self._ids_as_bytes = limiter.bytes_normalizable
        self._cache_max = cache_max
        self._slot_width = BUCKETS + len(self.bounds_ms) + 1

    def feed(self, lines: list[bytes]) -> None:
        """Count a batch of complete lines (without their newlines)."""
        self.lines += len(lines)
        if self._fast:
            # one loop per field count; a batch's first line picks it (a file rarely mixes them)
            fast = self._feed_tsv4 if lines and lines[0].count(b"\t") == 3 else self._feed_tsv5
            for line in fast(lines):
                self._feed_tsv_miss(line)
        else:
            for line in lines:
                self._feed_one(line)

    # The two fast loops key the cache on the bytes between the first tab and the number fields:
    # `request<TAB>status`. Cached keys hold exactly one tab, so a hit also proves the field count.
    # Anything else (a miss, another field count, a value int() or float() rejects or that is out
    # of range) is returned and goes through _feed_tsv_miss, which gives the same verdict as
    # parse_tsv.

    def _feed_tsv5(self, lines: list[bytes]) -> list[bytes]:
        """`ip, request, status, bytes, latency` lines; returns the ones it could not count."""
        get = self._cache.get
        bounds = self.bounds_ms
        slow: list[bytes] = []
        for line in lines:
            try:
                key, size_field, latency_field = line.partition(b"\t")[2].rsplit(b"\t", 2)
                slot = get(key)
                size = int(size_field)
                lat = float(latency_field)
            except ValueError:
                slow.append(line)
                continue
            if slot is not None and 0 <= size < MAX_BYTES and 0.0 <= lat < _INF:
                slot[0] += 1
                slot[1] += size
                slot[2] += lat
                slot[3 + bisect_left(bounds, lat)] += 1
            else:
                slow.append(line)
        return slow

    def _feed_tsv4(self, lines: list[bytes]) -> list[bytes]:
        """`ip, request, status, bytes` lines (no latency); returns the ones it could not count."""
        get = self._cache.get
        slow: list[bytes] = []
        for line in lines:
            try:
                key, size_field = line.partition(b"\t")[2].rsplit(b"\t", 1)
                slot = get(key)
                size = int(size_field)
            except ValueError:
                slow.append(line)
                continue
            if slot is not None and 0 <= size < MAX_BYTES:
                slot[0] += 1
                slot[1] += size
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
            raw_key = fields[1] + b"\t" + fields[2]
            slot = self._cache.get(raw_key)
            if slot is None:
                path_key, slot = self._by_path(fields[1], fields[2])
                labels = self._labels(fields[1], fields[2]) if slot is None else None
            size = parse_bytes(fields[3])
            latency = parse_latency_ms(fields[4]) if len(fields) == 5 else None
        except ParseError as exc:
            self._malformed(exc.reason, line)
            return
        if slot is None:
            method, route, status = labels  # type: ignore[misc] # set whenever slot is None
            slot = self.slot_for_admitted(self.limiter.admit_normalized(route), method, status)
            _remember(self._paths, path_key, slot, self._cache_max)
        if raw_key not in self._cache:
            _remember(self._cache, raw_key, slot, self._cache_max)
        slot[COUNT] += 1
        slot[BYTES] += size
        if latency is not None:
            slot[LAT_SUM] += latency
            slot[BUCKETS + bisect_left(self.bounds_ms, latency)] += 1

    def _by_path(self, request: bytes, status: bytes) -> tuple[tuple[bytes, bytes, bytes], Slot | None]:
        """The key of what decides a request's labels, and the slot cached under it (if any).

        The key is (method, path, status) as bytes, the path without its query string and, when
        only the built-in id patterns apply, with its ids already replaced: `/users/17?x=1` and
        `/users/18` share an entry, so a long tail of ids costs a regex pass, not a full parse.
        Only valid requests and statuses are cached. ParseError when the request has no target.
        """
        method, path = split_request(request)
        if self._ids_as_bytes and path[:1] == b"/":
            path = normalize_id_bytes(path)
        key = (method, path, status)
        return key, self._paths.get(key)

    def _labels(self, request: bytes, status: bytes) -> tuple[str, str, str]:
        """(method, normalized route, status) of raw fields; ParseError when either is invalid."""
        method, route = parse_request(request)
        return method, self.limiter.normalize(route), parse_status(status)

    def _malformed(self, reason: str, line: bytes) -> None:
        self.malformed[reason] += 1
        self.last_malformed = line[:200]

    def _feed_one(self, line: bytes) -> None:
        """The general path (formats other than TSV): parse, count malformed lines by reason."""
        try:
            record = self.parser(line)
        except ParseError as exc:
            self._malformed(exc.reason, line)
            return
        self.add(self.slot_for(record.route, record.method, record.status, record.labels), record)

    def add(self, slot: Slot, record: AccessRecord) -> None:
        """Count one record into its slot."""
        slot[COUNT] += 1
        slot[BYTES] += record.bytes
        if record.latency_ms is not None:
            slot[LAT_SUM] += record.latency_ms
            slot[BUCKETS + bisect_left(self.bounds_ms, record.latency_ms)] += 1

    def add_record(self, record: AccessRecord) -> None:
        """Count a record parsed elsewhere (tests, other formats)."""
        self.lines += 1
        self.add(self.slot_for(record.route, record.method, record.status, record.labels), record)

    def slot_for(
        self, route: str, method: str, status: str, labels: tuple[tuple[str, str], ...] = ()
    ) -> Slot:
        """The slot of a raw route after normalization and the cardinality cap."""
        return self.slot_for_admitted(self.limiter.admit(route), method, status, labels)

    def slot_for_admitted(
        self, route: str, method: str, status: str, labels: tuple[tuple[str, str], ...] = ()
    ) -> Slot:
        """The slot of a route value that already went through the limiter."""
        key = (route, method, status, labels)
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = [0, 0, 0.0] + [0] * (len(self.bounds_ms) + 1)
        return slot

    def snapshot(self) -> list[tuple[SlotKey, Slot]]:
        """A copy of every slot, taken under the caller's lock."""
        return [(key, slot[:]) for key, slot in self.slots.items()]

    def counts_by_route_status(self) -> dict[tuple[str, str], int]:
        """Request counts per (route, status), summed over methods and labels."""
        out: dict[tuple[str, str], int] = {}
        for (route, _method, status, _labels), slot in self.slots.items():
            out[route, status] = out.get((route, status), 0) + slot[COUNT]
        return out

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
from logtaild.routes import RouteLimiter

SlotKey = tuple[str, str, str, tuple[tuple[str, str], ...]]
Slot = list  # [count, bytes, latency_sum_ms, per-bucket counts...]; a list for in-place speed

COUNT, BYTES, LAT_SUM, BUCKETS = 0, 1, 2, 3
_INF = math.inf


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
        self._cache: dict[tuple[bytes, bytes], Slot] = {}
        self._routes: dict[tuple[bytes, bytes], tuple[str, str]] = {}  # (method, path) -> labels
        self._cache_max = cache_max
        self._slot_width = BUCKETS + len(self.bounds_ms) + 1

    def feed(self, lines: list[bytes]) -> None:
        """Count a batch of complete lines (without their newlines)."""
        self.lines += len(lines)
        if self._fast:
            for line in self._feed_tsv(lines):
                self._feed_tsv_miss(line)
        else:
            for line in lines:
                self._feed_one(line)

    def _feed_tsv(self, lines: list[bytes]) -> list[bytes]:
        """The TSV fast path; returns the lines it could not count (cache misses, odd values)."""
        get = self._cache.get
        bounds = self.bounds_ms
        slow: list[bytes] = []
        for line in lines:
            f = line.split(b"\t")
            n = len(f)
            if n == 5:
                slot = get((f[1], f[2]))
                if slot is not None:
                    try:
                        size = int(f[3])
                        lat = float(f[4])
                    except ValueError:
                        slow.append(line)
                        continue
                    if 0 <= size < MAX_BYTES and 0.0 <= lat < _INF:
                        slot[0] += 1
                        slot[1] += size
                        slot[2] += lat
                        slot[3 + bisect_left(bounds, lat)] += 1
                        continue
            elif n == 4:
                slot = get((f[1], f[2]))
                if slot is not None:
                    try:
                        size = int(f[3])
                    except ValueError:
                        slow.append(line)
                        continue
                    if 0 <= size < MAX_BYTES:
                        slot[0] += 1
                        slot[1] += size
                        continue
            slow.append(line)
        return slow

    def _feed_tsv_miss(self, line: bytes) -> None:
        """A TSV line the cache could not place: resolve its (request, status), check its numbers.

        The checks run in parse_tsv's order, so a malformed line gets the same reason either way.
        Raw requests that differ only in their query string share the route cache entry.
        """
        fields = line.split(b"\t")
        try:
            if len(fields) not in (4, 5):
                raise ParseError("fields", f"{len(fields)} fields")
            method, route, status = self._resolve(fields[1], fields[2])
            size = parse_bytes(fields[3])
            latency = parse_latency_ms(fields[4]) if len(fields) == 5 else None
        except ParseError as exc:
            self._malformed(exc.reason, line)
            return
        slot = self.slot_for_admitted(self.limiter.admit_normalized(route), method, status)
        if len(self._cache) >= self._cache_max:
            self._cache.clear()  # bounded: hostile URLs cannot grow it; hot keys refill at once
        self._cache[fields[1], fields[2]] = slot
        slot[COUNT] += 1
        slot[BYTES] += size
        if latency is not None:
            slot[LAT_SUM] += latency
            slot[BUCKETS + bisect_left(self.bounds_ms, latency)] += 1

    def _resolve(self, request: bytes, status: bytes) -> tuple[str, str, str]:
        """(method, normalized route, status) of raw fields; ParseError when either is invalid."""
        key = split_request(request)
        known = self._routes.get(key)
        if known is None:
            method, route = parse_request(request)
            known = (method, self.limiter.normalize(route))
            if len(self._routes) >= self._cache_max:
                self._routes.clear()
            self._routes[key] = known
        return known[0], known[1], parse_status(status)

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

"""`History`: what the status page's charts draw, per report window, per file and per route, in memory.

The loop records one point per report window (`record`, called after the report is written, with a
snapshot copied under the service's lock like any scrape; the reduction and the writes here happen
outside that lock, under this module's own). A point per route holds the window's requests by status
class (2xx, 3xx, 4xx, 5xx, other), the requests with a latency and those slower than the route's
threshold (for the latency burn rate), the response bytes and the p95 (from the window's histogram
buckets); per file, the lines read in the window and the lag at its end.

Two rings of fixed size:

- fine: one point per report window, enough points for the last hour (`ceil(3600 / interval)`, at most
  `MAX_FINE_POINTS`);
- coarse: one point per 5 minutes (`COARSE_STEP`) for the last 24 hours, each the exact sum of the fine
  points that ended in those 5 minutes (the p95 from the summed buckets, not from the fine p95s).

Every series is allocated at full size when its route first appears, in typed arrays (`POINT_BYTES` per
route per point), so memory is bounded by the route cap: see `bytes_per_route`. A route that leaves the
snapshot (a reload's new cap folded it into `__other__`, its file is no longer followed) is dropped.
Nothing is saved: a restart starts with empty charts.
"""
from __future__ import annotations

import math
import threading
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from logtaild.count import slots as layout
from logtaild.count.latency import classic_quantile
from logtaild.export.snapshot import Objective, Snapshot

RouteKey = tuple[str, str]  # (file path, route)

FINE_SPAN = 3600.0
MAX_FINE_POINTS = 3600  # an interval under 1 s covers less than the hour rather than use more memory
COARSE_STEP = 300.0
COARSE_POINTS = 288  # 24 h of 5-minute points
CLASSES = ("2xx", "3xx", "4xx", "5xx")
#: the integer columns of a route point, in order
COUNTS = (*CLASSES, "other", "timed", "slow")
C5XX, OTHER, TIMED, SLOW = 3, 4, 5, 6
#: per route per point: 7 uint32 counts, the bytes as a float64, the p95 as a float32 (NaN: none)
POINT_BYTES = 4 * len(COUNTS) + 8 + 4
#: per file per point: lines (float64) and lag (int64)
FILE_POINT_BYTES = 16


def fine_points(interval: float) -> int:
    """Points the fine ring keeps to cover the last hour at this report interval."""
    return max(2, min(MAX_FINE_POINTS, math.ceil(FINE_SPAN / max(interval, 1e-3)) + 1))


def bytes_per_route(interval: float) -> int:
    """The history's memory per route (both rings, arrays only) at this report interval."""
    return POINT_BYTES * (fine_points(interval) + COARSE_POINTS)


#: PromQL's histogram_quantile over classic per-bucket counts (the p95 of the charts)
quantile = classic_quantile


# ---- cumulative counters, reduced from a snapshot ----------------------------------------------------

def _class_index(status: str) -> int:
    """2xx..5xx -> 0..3; anything else (1xx, odd codes) -> OTHER."""
    return int(status[0]) - 2 if len(status) == 3 and status[0] in "2345" and status.isdigit() else OTHER


@dataclass
class _Totals:
    """Cumulative counters at one moment: per route [5 classes, bytes, buckets...], per file lines."""

    routes: dict[RouteKey, list[float]] = field(default_factory=dict)
    bounds: dict[str, list[float]] = field(default_factory=dict)
    objectives: dict[RouteKey, Objective] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)


def _reduce(snap: Snapshot) -> _Totals:
    totals = _Totals()
    classes: dict[str, int] = {}
    for file in snap.files:
        totals.bounds[file.path] = list(file.bounds_s)
        totals.lines[file.path] = file.lines
        totals.lag[file.path] = file.stats.lag
        groups: dict[str, list[layout.Slot]] = {}
        for (route, _method, status, _extra), slot in file.slots:
            key = (file.path, route)
            acc = totals.routes.get(key)
            if acc is None:
                acc = totals.routes[key] = [0.0] * 6
                totals.objectives[key] = file.objectives.get(route, Objective())
                groups[route] = []
            index = classes.get(status)
            if index is None:
                index = classes[status] = _class_index(status)
            acc[index] += layout.count(slot)
            acc[5] += layout.byte_count(slot)
            groups[route].append(slot)
        for route, group in groups.items():  # the buckets column by column, one call per route
            totals.routes[file.path, route] += layout.latency_totals(group)[1]
    return totals


def _delta(now: list[float], before: list[float] | None) -> list[float]:
    """now - before; all of `now` for a new route or one whose counters started over."""
    if before is None or len(before) != len(now):
        return list(now)
    delta = [n - b for n, b in zip(now, before)]
    return list(now) if min(delta) < 0 else delta


@dataclass
class _Point:
    """One route's numbers over one span: `COUNTS` in order, bytes, p95 (seconds or None)."""

    counts: list[int]
    size: float
    p95: float | None


def _point(delta: list[float], bounds: list[float], objective: Objective) -> _Point:
    buckets = [int(n) for n in delta[6:]]
    timed = sum(buckets)
    # the buckets above the threshold (bounds include every SLO threshold, so this is exact)
    slow = sum(buckets[bisect_right(bounds, objective.latency_threshold_s + 1e-9):]) if timed else 0
    counts = [int(n) for n in delta[:5]] + [timed, slow]
    return _Point(counts, delta[5], quantile(0.95, bounds, buckets) if timed else None)


# ---- the rings ----------------------------------------------------------------------------------------

class _RouteColumns:
    """One route's series in one ring: fixed-size typed arrays indexed by point number % capacity."""

    def __init__(self, capacity: int) -> None:
        self.counts = array("I", bytes(4 * len(COUNTS) * capacity))
        self.size = array("d", bytes(8 * capacity))
        self.p95 = array("f", [math.nan]) * capacity

    def put(self, index: int, point: _Point | None) -> None:
        base = index * len(COUNTS)
        if point is None:
            self.counts[base:base + len(COUNTS)] = array("I", bytes(4 * len(COUNTS)))
            self.size[index], self.p95[index] = 0.0, math.nan
            return
        counts = point.counts if max(point.counts) <= 0xFFFFFFFF else [min(n, 0xFFFFFFFF) for n in point.counts]
        self.counts[base:base + len(COUNTS)] = array("I", counts)
        self.size[index] = point.size
        self.p95[index] = math.nan if point.p95 is None else point.p95


class _FileColumns:
    def __init__(self, capacity: int) -> None:
        self.lines = array("d", bytes(8 * capacity))
        self.lag = array("q", bytes(8 * capacity))


class _Ring:
    """Points of one resolution: end time and length of each, and every series' columns."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.written = 0  # points ever written; point i sits at i % capacity
        self.end = array("d", bytes(8 * capacity))
        self.length = array("d", bytes(8 * capacity))
        self.routes: dict[RouteKey, _RouteColumns] = {}
        self.files: dict[str, _FileColumns] = {}

    def append(self, end: float, length: float, points: dict[RouteKey, _Point],
               lines: dict[str, float], lag: dict[str, int]) -> None:
        index = self.written % self.capacity
        self.end[index], self.length[index] = end, length
        for key in points.keys() - self.routes.keys():
            self.routes[key] = _RouteColumns(self.capacity)  # zeros before: no requests then
        for key, columns in self.routes.items():
            columns.put(index, points.get(key))  # every series, so a wrapped slot never keeps old data
        for path in lines.keys() - self.files.keys():
            self.files[path] = _FileColumns(self.capacity)
        for path, file_columns in self.files.items():
            file_columns.lines[index] = lines.get(path, 0.0)
            file_columns.lag[index] = lag.get(path, 0)
        self.written += 1

    def keep(self, routes: Iterable[RouteKey], files: Iterable[str]) -> None:
        """Drop the series of routes and files no longer in the snapshot."""
        alive, paths = set(routes), set(files)
        for key in self.routes.keys() - alive:
            del self.routes[key]
        for path in self.files.keys() - paths:
            del self.files[path]

    def indices(self, after: float) -> list[int]:
        """Ring indices of the stored points that end after `after`, oldest first."""
        first = max(0, self.written - self.capacity)
        out = [i % self.capacity for i in range(first, self.written)]
        return [i for i in out if self.end[i] > after]


# ---- what the views read ------------------------------------------------------------------------------

@dataclass
class Times:
    """End (Unix seconds) and length (seconds) of each point of a view, oldest first."""

    end: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


@dataclass
class RouteSeries:
    """One route's points in a view: `counts[name]` for each of `COUNTS`, bytes, p95 (s or None)."""

    counts: dict[str, list[int]]
    size: list[float]
    p95: list[float | None]

    def requests(self) -> list[int]:
        """All requests per point (every class, other statuses too)."""
        return [sum(column) for column in zip(*(self.counts[name] for name in (*CLASSES, "other")))]


@dataclass
class FileSeries:
    """One file's points in a view: lines read, and the lag (bytes) at the end of each point."""

    lines: list[float]
    lag: list[int]


def _route_series(columns: _RouteColumns | None, indices: list[int]) -> RouteSeries:
    if columns is None:
        return RouteSeries({name: [0] * len(indices) for name in COUNTS}, [0.0] * len(indices),
                           [None] * len(indices))
    width = len(COUNTS)
    counts = {name: [columns.counts[i * width + k] for i in indices] for k, name in enumerate(COUNTS)}
    p95 = [None if math.isnan(columns.p95[i]) else float(columns.p95[i]) for i in indices]
    return RouteSeries(counts, [columns.size[i] for i in indices], p95)


def _file_series(columns: _FileColumns | None, indices: list[int]) -> FileSeries:
    if columns is None:
        return FileSeries([0.0] * len(indices), [0] * len(indices))
    return FileSeries([columns.lines[i] for i in indices], [columns.lag[i] for i in indices])


def _join_routes(a: RouteSeries, b: RouteSeries) -> RouteSeries:
    return RouteSeries({name: a.counts[name] + b.counts[name] for name in COUNTS}, a.size + b.size, a.p95 + b.p95)


@dataclass
class View:
    """A time range of the history: the points' times and each requested series."""

    times: Times
    routes: dict[RouteKey, RouteSeries]
    files: dict[str, FileSeries]


class History:
    """The two rings and the cumulative counters each point is the difference of; thread-safe."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self.fine = _Ring(fine_points(interval))
        self.coarse = _Ring(COARSE_POINTS)
        self._last: _Totals | None = None  # at the last fine point
        self._coarse_base: _Totals | None = None  # at the last coarse point (or before the first point)
        self._coarse_bucket: int | None = None  # the 5-minute bucket of the fine points since then
        self._coarse_length = 0.0
        self._coarse_end = 0.0  # end of the last coarse point

    def record(self, snap: Snapshot, end: float, length: float) -> None:
        """Add the report window that ended at `end` (Unix seconds) and lasted `length` seconds."""
        now = _reduce(snap)  # outside every lock: the snapshot is the loop's own copy
        # the 5 minutes the window ends in; one ending exactly at 10:05:00 belongs to 10:00-10:05
        bucket = math.ceil(end / COARSE_STEP) - 1
        with self._lock:
            last = self._last or _Totals()
            if self._coarse_bucket is not None and bucket != self._coarse_bucket and self._coarse_length > 0:
                self._close_coarse(last)
            self._append(self.fine, now, last, end, length)
            self._last = now
            if self._coarse_base is None:
                self._coarse_base = last
            self._coarse_bucket = bucket
            self._coarse_length += length
            self.fine.keep(now.routes, now.lines)
            self.coarse.keep(now.routes, now.lines)

    def _close_coarse(self, last: _Totals) -> None:
        """The fine points since the last coarse point, as one coarse point (it ends where they end)."""
        base = self._coarse_base or _Totals()
        self._append(self.coarse, last, base, self._coarse_ended(), self._coarse_length)
        self._coarse_end = self._coarse_ended()
        self._coarse_base, self._coarse_length = last, 0.0

    def _coarse_ended(self) -> float:
        return self.fine.end[(self.fine.written - 1) % self.fine.capacity]

    @staticmethod
    def _append(ring: _Ring, now: _Totals, before: _Totals, end: float, length: float) -> None:
        points = {}
        for key, values in now.routes.items():
            delta = _delta(values, before.routes.get(key))
            if any(delta):
                points[key] = _point(delta, now.bounds[key[0]], now.objectives[key])
        lines = {path: float(n - before.lines.get(path, 0) if n >= before.lines.get(path, 0) else n)
                 for path, n in now.lines.items()}
        ring.append(end, length, points, lines, now.lag)

    # ---- views ------------------------------------------------------------------------------------

    def view(self, span: float, now: float, routes: Iterable[RouteKey], files: Iterable[str]) -> View:
        """The last `span` seconds before `now`: fine points up to an hour, coarse ones beyond it.

        Beyond an hour, the coarse points are followed by the fine points that no coarse point holds
        yet (the current 5 minutes), so the newest minutes are never missing.
        """
        after = now - span
        keys, paths = list(routes), list(files)
        with self._lock:
            if span <= FINE_SPAN:
                return self._slice(self.fine, self.fine.indices(after), keys, paths)
            old = self._slice(self.coarse, self.coarse.indices(after), keys, paths)
            new = self._slice(self.fine, self.fine.indices(max(after, self._coarse_end)), keys, paths)
        return View(Times(old.times.end + new.times.end, old.times.seconds + new.times.seconds),
                    {key: _join_routes(old.routes[key], new.routes[key]) for key in keys},
                    {path: FileSeries(old.files[path].lines + new.files[path].lines,
                                      old.files[path].lag + new.files[path].lag) for path in paths})

    @staticmethod
    def _slice(ring: _Ring, indices: list[int], keys: list[RouteKey], paths: list[str]) -> View:
        times = Times([ring.end[i] for i in indices], [ring.length[i] for i in indices])
        return View(times, {key: _route_series(ring.routes.get(key), indices) for key in keys},
                    {path: _file_series(ring.files.get(path), indices) for path in paths})


# ---- as JSON ------------------------------------------------------------------------------------------

def _per_second(values: Sequence[float], seconds: Sequence[float]) -> list[float]:
    # 4 decimals: a count comes back as rate * seconds to well under one request
    return [round(n / s, 4) if s > 0 else 0.0 for n, s in zip(values, seconds)]


def _burn(series: RouteSeries, i: int, objective: Objective) -> float | None:
    """The higher of the error and the latency burn rate of point `i` (None: no requests)."""
    requests = sum(series.counts[name][i] for name in (*CLASSES, "other"))
    if requests <= 0:
        return None
    burn = series.counts["5xx"][i] / requests / max(1e-12, 1.0 - objective.availability_objective)
    timed = series.counts["timed"][i]
    if timed:
        burn = max(burn, series.counts["slow"][i] / timed / max(1e-12, 1.0 - objective.latency_objective))
    return round(burn, 4)


def route_json(times: Times, series: RouteSeries, objective: Objective) -> dict[str, list[float | None]]:
    """`{"t", "2xx", "3xx", "4xx", "5xx", "p95", "bytes_per_s", "burn_rate"}`: requests/s per class, p95
    seconds (None without latencies), burn rate (None without requests); oldest first."""
    out: dict[str, list[float | None]] = {"t": [round(t, 3) for t in times.end]}
    for name in CLASSES:
        out[name] = [*_per_second(series.counts[name], times.seconds)]
    out["p95"] = [None if p is None else round(p, 4) for p in series.p95]
    out["bytes_per_s"] = [*_per_second(series.size, times.seconds)]
    out["burn_rate"] = [_burn(series, i, objective) for i in range(len(times.end))]
    return out


def file_json(times: Times, series: FileSeries) -> dict[str, list[float] | list[int]]:
    """`{"t", "lines_per_s", "lag_bytes"}`, oldest first (the lag at each point's end)."""
    return {"t": [round(t, 3) for t in times.end], "lines_per_s": _per_second(series.lines, times.seconds),
            "lag_bytes": list(series.lag)}

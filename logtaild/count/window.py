"""`Window`: request counts for one report period, and the report text (`format_report`).

The window does not count lines itself: it remembers the cumulative counts at its start and
reports the difference, so the hot path increments one counter per line, not two.
Every value that came from the log is escaped before it reaches a terminal: routes arrive as label
values, escaped when their series was created (`labels.escape`); `printable` leaves those as they are
and escapes anything else (a file path), so the report shows the text /metrics shows.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from logtaild.count.labels import printable

if TYPE_CHECKING:  # the type only: the counts report needs no latency.py (start-up, see _totals)
    from logtaild.count.latency import Timing

RULE = "=" * 29
#: the header line of `--report latency`: its columns after the QPS (milliseconds; "-": no latency)
LATENCY_HEADER = "route\tstatus\tqps\tp50_ms\tp95_ms\tp99_ms\tmean_ms"
#: (file group, route, status); the group is "" when only one file is followed.
WindowKey = tuple[str, str, str]


def format_qps(qps: float) -> str:
    """At most 2 decimals, no trailing zeros; a non-zero rate never prints as 0."""
    if qps <= 0:
        return "0"
    text = f"{qps:.2f}".rstrip("0").rstrip(".")
    return "0.01" if text == "0" else text


class Window:
    """One report period: counts since `start` (monotonic seconds)."""

    def __init__(self, start: float, base: Mapping[WindowKey, int] | None = None) -> None:
        self.start = start
        self._base: dict[WindowKey, int] = dict(base or {})

    def close(self, totals: Mapping[WindowKey, int], now: float) -> tuple[dict[WindowKey, int], float]:
        """The counts of this window and its length; starts the next window at `now`."""
        counts = {key: n - self._base.get(key, 0) for key, n in totals.items()}
        length = now - self.start
        self._base = dict(totals)
        self.start = now
        return {key: n for key, n in counts.items() if n > 0}, length


def _latency(timing: Timing | None, bounds_s: Sequence[float]) -> str:
    """`\tp50\tp95\tp99\tmean` in milliseconds (one decimal), "-" for what the window has no latency for."""
    values, mean = timing.percentiles(bounds_s) if timing is not None else ([None] * 3, None)
    return "".join("\t-" if v is None else f"\t{v * 1000:.1f}" for v in (*values, mean))


def format_report(counts: Mapping[WindowKey, int], length: float, wall: float | None = None,
                  latency: Mapping[WindowKey, Timing] | None = None, bounds_s: Sequence[float] = ()) -> str:
    """The report block: ctime, a rule, route rows (grouped by file when there are several), TOTALs.

    With `latency` (the window's timing per row key, `bounds_s` the classic bounds), a header line
    names the columns and each row ends with the window's p50, p95, p99 and mean latency.
    """
    wall = time.time() if wall is None else wall
    length = length if length > 0 else 1e-9
    lines = [time.ctime(wall), RULE]
    if latency is not None:
        lines.append(LATENCY_HEADER)
    groups = sorted({group for group, _route, _status in counts})
    for group in groups:
        if len(groups) > 1 or group:
            lines.append(f"[{printable(group)}]")
        rows = sorted((route, status, n) for g, route, status in counts for n in [counts[g, route, status]]
                      if g == group)
        lines += [f"{printable(route)}\t{status}\t{format_qps(n / length)}"
                  + ("" if latency is None else _latency(latency.get((group, route, status)), bounds_s))
                  for route, status, n in rows]
    by_status: dict[str, int] = {}
    for (_group, _route, status), n in counts.items():
        by_status[status] = by_status.get(status, 0) + n
    totals = _totals(counts, latency) if latency is not None else None
    for status, n in sorted(by_status.items()):
        lines.append(f"TOTAL\t{status}\t{format_qps(n / length)}"
                     + ("" if totals is None else _latency(totals.get(status), bounds_s)))
    lines.append(f"TOTAL\tall\t{format_qps(sum(by_status.values()) / length)}"
                 + ("" if totals is None else _latency(totals.get(None), bounds_s)))
    return "\n".join(lines) + "\n"


def _totals(counts: Mapping[WindowKey, int], latency: Mapping[WindowKey, Timing]) -> dict[str | None, Timing]:
    """The rows' timings added up per status, and for all (key None)."""
    from logtaild.count.latency import Timing  # here, not at import: only `report: latency` adds timings

    out: dict[str | None, Timing] = {}
    for key in counts:
        timing = latency.get(key)
        if timing is None:
            continue
        for total in (key[2], None):
            have = out.get(total)
            if have is None:
                out[total] = have = Timing(0.0, [0] * len(timing.buckets))
            have.add(timing)
    return out

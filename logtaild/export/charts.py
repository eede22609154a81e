"""Small server-rendered SVG charts for the status page: no script, no font, no external anything.

Each chart is one inline `<svg>` of fixed size: a plot area (its own background colour, which the
browser tests look for), the series as filled areas or a line, an optional dashed guide (the objective
or the threshold), the largest value on the y axis written in the top corner, and a time axis with the
start and end times and a few round ticks between them. Colours come from classes that the page's
nonce'd stylesheet defines: presentation only, nothing the Content-Security-Policy has to allow.

A history of up to an hour of 1-second windows has more points than the plot has pixels, so points are
merged into at most `MAX_COLUMNS` columns by time (rates from the summed counts and seconds; the p95 of
a column is the highest p95 in it, the worst moment, since p95s cannot be added). Coordinates are whole
pixels, which keeps a chart at a few kilobytes.

Only numbers reach this module; route names and other text from the log stay in the page's HTML, where
`status.text()` escapes them.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 260, 100
X0, X1 = 6, 254  # the plot area
Y0, Y1 = 16, 80
MAX_COLUMNS = 124  # 2 px per column
TICK_STEPS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)

#: the page's stylesheet for the charts (added to status.py's `_STYLE`); the plot background #f2f4f8
#: and the series colours are not used anywhere else on the page, so a screenshot can find them
STYLE = """
.charts{display:flex;flex-wrap:wrap;gap:.2em .6em;align-items:flex-start;margin:.2em 0 .8em}
.hist{border-left:4px solid #9aa0a6;padding:.1em 0 .1em .6em;margin:.6em 0}
.hist.state-green{border-color:#1e8e3e}.hist.state-yellow{border-color:#f2b600}
.hist.state-red{border-color:#d93025}
.hist .name{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}
svg.chart{background:#fff;border:1px solid #ddd}
svg .plot{fill:#f2f4f8}svg .grid{stroke:#d5dae3;stroke-width:1}
svg .c2xx,.k2xx{fill:#4e79a7;background:#4e79a7}svg .c3xx,.k3xx{fill:#a0cbe8;background:#a0cbe8}
svg .c4xx,.k4xx{fill:#f28e2b;background:#f28e2b}svg .c5xx,.k5xx{fill:#b8147a;background:#b8147a}
svg .p95{fill:#cdb8e6}svg .p95l{fill:none;stroke:#6b3fa0;stroke-width:1.5}
svg .lines{fill:#4e79a7}svg .lag{fill:#f28e2b}
svg .guide{stroke:#222;stroke-width:1;stroke-dasharray:4 3}
svg text{font:10px system-ui,sans-serif;fill:#444}svg text.r{text-anchor:end}svg text.m{text-anchor:middle}
svg text.t{font-weight:bold;fill:#222}
.key{display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;margin:0 .2em 0 .6em}
.keyguide{display:inline-block;width:1.4em;border-top:2px dashed #222;vertical-align:.25em;margin:0 .2em 0 .6em}
"""


@dataclass(frozen=True)
class Axis:
    """The time span a chart shows (Unix seconds)."""

    start: float
    end: float

    def x(self, t: float) -> int:
        span = max(self.end - self.start, 1e-9)
        return round(X0 + (X1 - X0) * min(1.0, max(0.0, (t - self.start) / span)))


def axis_for(ends: Sequence[float], seconds: Sequence[float], after: float) -> Axis | None:
    """From the older of `after` and the first point's start to the last point's end; None: no points.

    A daemon up for ten minutes shows its ten minutes across the whole width, with the times written
    under them, rather than a sliver at the right end of an empty hour.
    """
    if not ends:
        return None
    return Axis(max(after, ends[0] - seconds[0]), ends[-1])


def columns(ends: Sequence[float], axis: Axis) -> list[list[int]]:
    """Point indices grouped into at most MAX_COLUMNS columns by end time, oldest first."""
    if len(ends) <= MAX_COLUMNS:
        return [[i] for i in range(len(ends))]
    out: list[list[int]] = []
    last = -1
    span = max(axis.end - axis.start, 1e-9)
    for i, t in enumerate(ends):
        col = min(MAX_COLUMNS - 1, int((t - axis.start) / span * MAX_COLUMNS))
        if col != last:
            out.append([])
            last = col
        out[-1].append(i)
    return out


def nice(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at least `value` (1 for nothing)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power


@dataclass
class Layer:
    """One series drawn on a chart: values per column (None: a gap), as an area or a line."""

    css: str
    values: list[float | None]
    line: bool = False


def _y(value: float, top: float) -> int:
    return round(Y1 - (Y1 - Y0) * min(1.0, max(0.0, value / top)))


def _segments(xs: list[int], values: list[float | None]) -> list[list[tuple[int, float]]]:
    """Runs of consecutive known values."""
    runs: list[list[tuple[int, float]]] = [[]]
    for x, v in zip(xs, values):
        if v is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, v))
    return [run for run in runs if run]


def _layer(layer: Layer, xs: list[int], top: float) -> str:
    out = []
    for run in _segments(xs, layer.values):
        if len(run) == 1:  # one point: a short flat piece, so it shows
            run = [(max(X0, run[0][0] - 2), run[0][1]), run[0]]
        pts = " ".join(f"{x},{_y(v, top)}" for x, v in run)
        if layer.line:
            out.append(f'<polyline class="{layer.css}" points="{pts}"/>')
        else:
            out.append(f'<polygon class="{layer.css}" points="{run[0][0]},{Y1} {pts} {run[-1][0]},{Y1}"/>')
    return "".join(out)


def _ticks(axis: Axis) -> str:
    """Start and end times at the corners, and round times between them as ticks."""
    span = axis.end - axis.start
    fmt = "%H:%M" if span >= 600 else "%H:%M:%S"
    out = [f'<text x="{X0}" y="{HEIGHT - 6}">{_clock(axis.start, fmt)}</text>',
           f'<text class="r" x="{X1}" y="{HEIGHT - 6}">{_clock(axis.end, fmt)}</text>']
    step = next((s for s in TICK_STEPS if span / s <= 4), TICK_STEPS[-1])
    t = math.ceil(axis.start / step) * step
    while t < axis.end:
        x = axis.x(t)
        out.append(f'<line class="grid" x1="{x}" y1="{Y0}" x2="{x}" y2="{Y1 + 3}"/>')
        if X0 + 55 < x < X1 - 55:  # clear of the start and end labels
            out.append(f'<text class="m" x="{x}" y="{Y1 + 12}">{_clock(t, fmt)}</text>')
        t += step
    return "".join(out)


def _clock(t: float, fmt: str) -> str:
    return time.strftime(fmt, time.localtime(t))


def chart(title: str, top: float, label: Callable[[float], str], axis: Axis, xs: list[int],
          layers: list[Layer], guide: float | None = None, labelled_by: str = "") -> str:
    """One SVG: `title` top left, the y axis' top value (`label(top)`) top right, the layers, the guide.

    `title` and the labels are the page's own words and numbers, never text from the log.
    """
    aria = f' aria-labelledby="{labelled_by}"' if labelled_by else ""
    parts = [f'<svg class="chart" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'role="img"{aria} xmlns="http://www.w3.org/2000/svg">',
             f'<rect class="plot" x="{X0}" y="{Y0}" width="{X1 - X0}" height="{Y1 - Y0}"/>',
             _ticks(axis), *(_layer(layer, xs, top) for layer in layers)]
    if guide is not None:
        y = _y(guide, top)
        parts.append(f'<line class="guide" x1="{X0}" y1="{y}" x2="{X1}" y2="{y}"/>')
    parts += [f'<text class="t" x="{X0}" y="11">{title}</text>',
              f'<text class="r" x="{X1}" y="11">max {label(top)}</text>', "</svg>"]
    return "".join(parts)


# ---- number labels --------------------------------------------------------------------------------

def per_second(value: float) -> str:
    return f"{value:.3g}/s"


def percent(value: float) -> str:
    return f"{value * 100:.3g}%"


def millis(value: float) -> str:
    return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"


def size(value: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} B"


# ---- the page's charts ----------------------------------------------------------------------------

def _sums(values: Sequence[float], cols: list[list[int]]) -> list[float]:
    return [float(sum(values[i] for i in col)) for col in cols]


def _ratio(num: Sequence[float], den: Sequence[float]) -> list[float | None]:
    return [n / d if d > 0 else None for n, d in zip(num, den)]


def _worst(values: Sequence[float | None], cols: list[list[int]]) -> list[float | None]:
    out: list[float | None] = []
    for col in cols:
        known = [v for i in col if (v := values[i]) is not None]
        out.append(max(known) if known else None)
    return out


def _lead(values: list[float | None]) -> list[float | None]:
    """The first column's value again at the axis start, so an area starts at the left edge."""
    return values[:1] + values


def _top(values: Sequence[float | None], floor: float = 0.0) -> float:
    return nice(max([floor, *(v for v in values if v is not None)]))


@dataclass
class Frame:
    """Where a view's points go on the charts: the axis, the columns, their x and their seconds."""

    axis: Axis
    cols: list[list[int]]
    xs: list[int]
    seconds: list[float]


def frame(ends: Sequence[float], seconds: Sequence[float], after: float) -> Frame | None:
    """The frame every chart of one page shares (None: no points in the range yet)."""
    axis = axis_for(ends, seconds, after)
    if axis is None:
        return None
    cols = columns(ends, axis)
    xs = [X0] + [axis.x(ends[col[-1]]) for col in cols]
    return Frame(axis, cols, xs, _sums(seconds, cols))


def route_charts(fr: Frame, counts: dict[str, list[int]], p95: list[float | None], budget: float,
                 threshold: float, labelled_by: str) -> str:
    """Three charts: req/s by status class (stacked), the 5xx ratio against the objective's budget
    (`budget` = 1 - availability, dashed), the p95 against the latency threshold (dashed)."""
    rates = {name: [n / s if s > 0 else 0.0 for n, s in zip(_sums(counts[name], fr.cols), fr.seconds)]
             for name in ("2xx", "3xx", "4xx", "5xx", "other")}
    stacked: list[Layer] = []
    below = list(rates["other"])  # odd statuses (1xx...) at the bottom, in no colour of their own
    for name in ("2xx", "3xx", "4xx", "5xx"):
        below = [b + r for b, r in zip(below, rates[name])]
        if any(rates[name]):
            tops: list[float | None] = list(below)
            stacked.append(Layer(f"c{name}", _lead(tops)))
    stacked.reverse()  # the tallest (everything up to 5xx) first, each lower class painted over it
    top = _top(below)
    requests = _sums([sum(v) for v in zip(*(counts[n] for n in ("2xx", "3xx", "4xx", "5xx", "other")))], fr.cols)
    errors = _ratio(_sums(counts["5xx"], fr.cols), requests)
    worst = _worst(p95, fr.cols)
    error_top = min(1.0, _top(errors, 2 * budget))
    p95_top = _top(worst, 1.25 * threshold)
    return "".join([
        chart("req/s by status", top, per_second, fr.axis, fr.xs, stacked, labelled_by=labelled_by),
        chart(f"5xx ratio, objective ≤ {percent(budget)}", error_top, percent, fr.axis, fr.xs,
              [Layer("c5xx", _lead(errors))], budget, labelled_by),
        chart(f"p95, threshold {millis(threshold)}", p95_top, millis, fr.axis, fr.xs,
              [Layer("p95", _lead(worst)), Layer("p95l", _lead(worst), line=True)], threshold, labelled_by),
    ])


def file_charts(fr: Frame, lines: list[float], lag: list[int], labelled_by: str) -> str:
    """Two charts: lines read per second, and the lag (bytes behind the end; a column's highest)."""
    rate: list[float | None] = [n / s if s > 0 else 0.0 for n, s in zip(_sums(lines, fr.cols), fr.seconds)]
    behind: list[float | None] = [float(max(lag[i] for i in col)) for col in fr.cols]
    return "".join([
        chart("lines/s", _top(rate), per_second, fr.axis, fr.xs, [Layer("lines", _lead(rate))],
              labelled_by=labelled_by),
        chart("lag (bytes behind)", _top(behind), size, fr.axis, fr.xs, [Layer("lag", _lead(behind))],
              labelled_by=labelled_by),
    ])

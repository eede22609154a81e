"""The status page (`/`, HTML) and `/status.json`: per file and per route, healthy or not at a glance.

Rates need a short moving window, and the loop thread must not do extra work for a page nobody looks at,
so the board keeps a small ring of counter samples taken from `Service.snapshot()` by the HTTP threads:
one at start, one at each page/JSON view and at each /metrics scrape, stored at most every `spacing`
seconds and kept for `window` seconds. A view compares a fresh sample with the oldest one inside the
window (or, after a quiet spell, the newest one before it) and says how long that span is.

States, per route, against its objective (`snapshot.Objective`: from the `slo` config, else defaults).
The burn rate is how fast the error budget is spent: the share of failing requests divided by the share
the objective allows (5xx: `1 - availability`; slower than the latency threshold: `1 - latency_objective`);
1 means spending exactly the budget.

- green: burn rate at most 1 on both, and p95 below 80% of the latency threshold: within objective.
- yellow: burn rate above 1 but at most 2 on either, or p95 within 20% of (or above) the threshold:
  burning budget faster than the objective allows, or about to.
- red: burn rate above 2 on either: far out of objective.
- grey: no requests in the window: nothing to judge.

Below the tables, charts of the recent past (`?range=15m|1h|24h`): the points come from `history.History`,
which the loop fills once per report window, and `charts.py` draws them as inline SVG; the page shows the
first `TOP_ROUTES` routes (worst state first, then busiest) and sums the rest into one row, so its size
stays bounded with any number of routes. `/status.json` carries the same series.

Every value that came from the log (routes, paths, label values) is HTML-escaped, after the terminal
escape (`labels.printable`, the text /metrics shows) makes control characters visible; the page has no
script at all, and its Content-Security-Policy allows only its own nonce'd stylesheet (no script, no
external anything).
"""
from __future__ import annotations

import html
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from logtaild.count import slots as layout
from logtaild.count.labels import printable
from logtaild.count.latency import Timing
from logtaild.count.native import NativeHistogram
from logtaild.count.window import format_qps
from logtaild.export import charts
from logtaild.export.history import FINE_SPAN, History, View, file_json, quantile, route_json
from logtaild.export.snapshot import Objective, Snapshot

WINDOW = 30.0
SPACING = 5.0
MIN_SPAN = 1.0
REFRESH = 5
YELLOW_BURN, RED_BURN = 1.0, 2.0
P95_WARN = 0.8
STATES = ("red", "yellow", "green", "grey")
LEGEND = {
    "green": "within objective: burn rate ≤ 1 for errors and latency, p95 below 80% of the latency threshold",
    "yellow": "burning budget: burn rate above 1 (at most 2), or p95 at 80% of the latency threshold or more",
    "red": "far out of objective: burn rate above 2 for errors (5xx) or latency",
    "grey": "no requests in the window",
}

RouteKey = tuple[str, str]  # (file path, route)
__all__ = ["StatusBoard", "judge", "quantile", "csp", "render_html", "text"]

#: the history's time ranges (`?range=`), in seconds; the page and the JSON default to an hour
RANGES = {"15m": 900.0, "1h": 3600.0, "24h": 86400.0}
DEFAULT_RANGE = "1h"
#: routes the page shows (table row and charts), worst state first then busiest; the rest in one row
TOP_ROUTES = 25
#: routes whose history /status.json carries unless `?routes=all` (an hour of 1,000 routes is 17 MB)
JSON_HISTORY_ROUTES = 100


@dataclass
class _Sample:
    t: float
    lines: dict[str, int] = field(default_factory=dict)
    # [requests, 5xx, per-bucket latency counts...] per (file, route)
    routes: dict[RouteKey, list[int]] = field(default_factory=dict)
    # latency sums (ms) and native histograms per (file, route): the mean and the percentiles. The
    # histograms are the snapshot's own (frozen, never changed again: slots.py), merged per route only
    # when a view asks, so a sample taken at a scrape costs no merging
    sums: dict[RouteKey, float] = field(default_factory=dict)
    natives: dict[RouteKey, list[NativeHistogram]] = field(default_factory=dict)


def _reduce(snap: Snapshot, t: float) -> _Sample:
    sample = _Sample(t)
    for file in snap.files:
        sample.lines[file.path] = file.lines
        buckets = len(file.bounds_s) + 1  # the request buckets (an upstream part may follow them)
        sums, natives = sample.sums, sample.natives
        for (route, _method, status, _extra), slot in file.slots:
            key = (file.path, route)
            acc = sample.routes.get(key)
            if acc is None:
                acc = sample.routes[key] = [0, 0] + [0] * layout.bucket_width(slot, buckets)
            requests = layout.count(slot)
            acc[0] += requests
            if status.startswith("5"):
                acc[1] += requests
            for index, n in enumerate(layout.bucket_counts(slot, buckets), 2):
                acc[index] += n
            sums[key] = sums.get(key, 0.0) + layout.latency_sum_ms(slot)
            hist = layout.native_histogram(slot)
            if hist is not None:
                natives.setdefault(key, []).append(hist if hist.frozen else hist.copy())
    return sample


def _merged(hists: list[NativeHistogram] | None) -> NativeHistogram | None:
    """A route's native histograms added up (a fresh one)."""
    if not hists:
        return None
    total = hists[0].copy()
    for hist in hists[1:]:
        total.merge(hist)
    return total


def judge(requests: int, error_ratio: float | None, slow_ratio: float | None, p95: float | None,
          objective: Objective) -> tuple[str, float | None]:
    """(state, burn rate) of a route over a window; see the module docstring for the colours."""
    if requests <= 0:
        return "grey", None
    burns = []
    if error_ratio is not None:
        burns.append(error_ratio / max(1e-12, 1.0 - objective.availability_objective))
    if slow_ratio is not None:
        burns.append(slow_ratio / max(1e-12, 1.0 - objective.latency_objective))
    burn = max(burns) if burns else None
    if burn is not None and burn > RED_BURN:
        return "red", burn
    if (burn is not None and burn > YELLOW_BURN) or (
            p95 is not None and p95 >= P95_WARN * objective.latency_threshold_s):
        return "yellow", burn
    return "green", burn


class StatusBoard:
    """The ring of samples and the two views; thread-safe (any HTTP thread may call it)."""

    def __init__(self, snapshot: Callable[[], Snapshot], *, window: float = WINDOW, spacing: float = SPACING,
                 stuck_after: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, history: History | None = None) -> None:
        self._snapshot = snapshot
        self.history = history  # the loop records into it (see history.py)
        self._history = history or History(FINE_SPAN)  # without one: two empty points' room, no charts
        self.window = window
        self.spacing = spacing
        self.stuck_after = stuck_after
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._ring: deque[_Sample] = deque()
        self.sample()

    # ---- the ring ---------------------------------------------------------------------------------

    def due(self) -> bool:
        with self._lock:
            return not self._ring or self._clock() - self._ring[-1].t >= self.spacing

    def sample(self) -> tuple[Snapshot, _Sample, _Sample]:
        """A fresh sample, the baseline it is compared with, and the snapshot; stores it when due."""
        snap = self._snapshot()
        now = self._clock()
        fresh = _reduce(snap, now)
        with self._lock:
            base = self._baseline(now) or fresh
            if not self._ring or now - self._ring[-1].t >= self.spacing:
                self._ring.append(fresh)
            while len(self._ring) > 1 and self._ring[1].t <= now - self.window:
                self._ring.popleft()
        return snap, fresh, base

    def _baseline(self, now: float) -> _Sample | None:
        old_enough = [s for s in self._ring if now - s.t >= MIN_SPAN]
        if not old_enough:
            return self._ring[0] if self._ring else None
        inside = [s for s in old_enough if now - s.t <= self.window]
        return inside[0] if inside else old_enough[-1]

    # ---- the model --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Everything both views show, as plain JSON-able data (routes as their label values, which
        were escaped when their series was created; no HTML escaping here)."""
        snap, fresh, base = self.sample()
        span = fresh.t - base.t
        wall = self._wall()
        files, routes = [], []
        for file in snap.files:
            stats = file.stats
            lines = fresh.lines.get(file.path, 0) - base.lines.get(file.path, 0)
            files.append({
                "path": file.path, "labels": dict(file.labels), "inode": stats.inode, "size": stats.size,
                "offset": stats.offset, "lag_bytes": stats.lag, "lines": file.lines,
                "malformed": sum(file.malformed.values()),
                "lines_per_second": _rate(lines, span),
                "last_rotation": stats.last_rotation or None,
                "last_read": stats.last_read or None,
                "rotations": dict(stats.rotations),
            })
            keys = sorted(key for key in fresh.routes if key[0] == file.path)
            for key in keys:
                routes.append(self._route(file.bounds_s, key, fresh, base, span,
                                          file.objectives.get(key[1], Objective())))
        routes.sort(key=lambda r: (STATES.index(r["state"]), -r["qps"], r["file"], r["route"]))
        stuck = max(0.0, wall - snap.last_tick) if snap.last_tick else None
        return {
            "version": snap.version, "time": wall, "window_seconds": round(span, 3),
            "loop": {"last_tick": snap.last_tick or None, "seconds_since_tick": stuck,
                     "ok": stuck is not None and stuck <= self.stuck_after},
            "files": files, "routes": routes, "legend": LEGEND,
        }

    @staticmethod
    def _route(bounds: list[float], key: RouteKey, fresh: _Sample, base: _Sample, span: float,
               objective: Objective) -> dict[str, Any]:
        now = fresh.routes[key]
        before = base.routes.get(key)
        restart = before is None or any(b > n for b, n in zip(before, now))
        if before is None or restart:
            before = [0] * len(now)  # new route (or counters started over): all of it is in the window
        delta = [n - b for n, b in zip(now, before)]
        requests, errors, buckets = delta[0], delta[1], delta[2:]
        timed = sum(buckets)
        native = _merged(fresh.natives.get(key))
        older = None if restart else _merged(base.natives.get(key))
        if native is not None and older is not None:
            native = native.minus(older)  # None if it went down: the classic buckets then
        latency = Timing(fresh.sums.get(key, 0.0) - (0.0 if restart else base.sums.get(key, 0.0)), buckets, native)
        (p50, p95, p99), mean = latency.percentiles(bounds)
        slow = sum(n for index, n in enumerate(buckets)
                   if index >= len(bounds) or bounds[index] > objective.latency_threshold_s + 1e-9)
        error_ratio = errors / requests if requests else None
        slow_ratio = slow / timed if timed else None
        state, burn = judge(requests, error_ratio, slow_ratio, p95, objective)
        return {
            "file": key[0], "route": key[1], "state": state, "requests": requests,
            "qps": _rate(requests, span), "error_ratio": error_ratio, "slow_ratio": slow_ratio,
            "p50_seconds": p50, "p95_seconds": p95, "p99_seconds": p99, "mean_seconds": mean,
            "burn_rate": burn, "requests_total": now[0],
            "objective": {"availability": objective.availability_objective,
                          "latency_threshold_seconds": objective.latency_threshold_s,
                          "latency_objective": objective.latency_objective, "team": objective.team},
        }

    # ---- views ------------------------------------------------------------------------------------

    def with_history(self, status: dict[str, Any], range_name: str, routes: list[dict[str, Any]]) -> View:
        """Add `range_name`'s history to `routes` (route dicts of `status`) and to every file, as JSON."""
        span = RANGES.get(range_name, RANGES[DEFAULT_RANGE])
        history = self._history
        view = history.view(span, status["time"], [(r["file"], r["route"]) for r in routes],
                            [f["path"] for f in status["files"]])
        for route in routes:
            route["history"] = route_json(view.times, view.routes[route["file"], route["route"]],
                                          _objective(route["objective"]))
        for file in status["files"]:
            file["history"] = file_json(view.times, view.files[file["path"]])
        status["history"] = {"range": range_name, "range_seconds": span, "points": len(view.times.end),
                             "step_seconds": history.interval if self.history else None}
        return view

    def json_body(self, range_name: str = DEFAULT_RANGE, every_route: bool = False) -> bytes:
        status = self.status()
        for route in status["routes"]:
            route["history"] = None  # past JSON_HISTORY_ROUTES, without ?routes=all
        self.with_history(status, range_name, status["routes"][:None if every_route else JSON_HISTORY_ROUTES])
        # compact: a day of history for many routes is mostly numbers
        text = json.dumps(status, separators=(",", ":"), allow_nan=False)
        # ASCII only, and nothing a browser sniffing it as HTML could take for markup
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()

    def html_body(self, nonce: str, range_name: str = DEFAULT_RANGE) -> bytes:
        status = self.status()
        view = self.with_history(status, range_name, status["routes"][:TOP_ROUTES])
        return render_html(status, nonce, view, range_name).encode("utf-8")

    def wrap(self, app: Callable[..., Any]) -> Callable[..., Any]:
        """WSGI middleware: `/` and `/status.json` here; everything else to `app` (sampling when due)."""

        def board(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            path = environ.get("PATH_INFO") or "/"
            query = parse_qs(environ.get("QUERY_STRING") or "")
            range_name = parse_range(query)
            if path == "/":
                nonce = secrets.token_urlsafe(18)
                body = self.html_body(nonce, range_name)
                start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                          ("Content-Length", str(len(body))),
                                          ("Content-Security-Policy", csp(nonce)), *SECURITY_HEADERS])
                return [body]
            if path == "/status.json":
                body = self.json_body(range_name, query.get("routes") == ["all"])
                start_response("200 OK", [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(body))), *SECURITY_HEADERS])
                return [body]
            if self.due():
                self.sample()
            return app(environ, start_response)

        return board


SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"), ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
]


def csp(nonce: str) -> str:
    """No script at all, no external anything; only the page's own stylesheet (by nonce)."""
    return (f"default-src 'none'; script-src 'none'; style-src 'nonce-{nonce}'; img-src 'none'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def parse_range(query: dict[str, list[str]]) -> str:
    """`range=15m|1h|24h` from a parsed query string; anything else is the default (never an error)."""
    values = query.get("range", [])
    return values[0] if values and values[0] in RANGES else DEFAULT_RANGE


def _objective(obj: dict[str, Any]) -> Objective:
    """A route dict's "objective" back as an `Objective`."""
    return Objective(obj["latency_threshold_seconds"], obj["latency_objective"], obj["availability"], obj["team"])


def _rate(n: int, span: float) -> float:
    return n / span if span > 0 else 0.0


# ---- HTML -----------------------------------------------------------------------------------------

def text(value: object) -> str:
    """A value from the log as HTML text: control characters made visible, then HTML-escaped.

    Routes and labels arrive escaped (when their series was created); `printable` leaves them as
    /metrics shows them and escapes anything else.
    """
    return html.escape(printable(str(value)), quote=True)


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1b1b;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
.meta{color:#555;margin:0}.stuck{color:#b00020;font-weight:bold}
table{border-collapse:collapse;background:#fff;min-width:60%}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right;white-space:nowrap}
th{background:#eee}th.l{text-align:left}td.route,td.path{text-align:left;font-family:ui-monospace,monospace;white-space:pre-wrap;
word-break:break-all;max-width:40em}
.badge{display:inline-block;min-width:4.5em;text-align:center;border-radius:.8em;padding:.05em .6em;
font-weight:bold;color:#fff}
.state-green .badge{background:#1e8e3e}.state-yellow .badge{background:#f2b600;color:#1b1b1b}
.state-red .badge{background:#d93025}.state-grey .badge{background:#9aa0a6}
tr.state-red td{background:#fce8e6}tr.state-yellow td{background:#fef7e0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dt .badge{min-width:4.5em}
"""


def _num(value: float | None, fmt: str, scale: float = 1.0, none: str = "–") -> str:
    return none if value is None else format(value * scale, fmt)


def _ms(seconds: float | None) -> str:
    """A latency in milliseconds: whole ones from 10 ms, one decimal below (a 0.4 ms p50 is not 0)."""
    if seconds is None:
        return "–"
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def _ago(stamp: float | None, now: float) -> str:
    if not stamp:
        return "never"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
    return f"{when} ({max(0.0, now - stamp):.0f}s ago)"


def _row(cells: Iterable[str], attrs: str = "") -> str:
    return f"<tr{attrs}>" + "".join(cells) + "</tr>"


def render_html(status: dict[str, Any], nonce: str, view: View | None = None,
                range_name: str = DEFAULT_RANGE) -> str:
    """The page; every string from the log goes through `text()`.

    The routes table and the route charts show the first `TOP_ROUTES` routes (worst state first, then
    busiest: a red route is never hidden behind busy green ones); the others are summed in one row.
    """
    several = len(status["files"]) > 1
    shown, rest = status["routes"][:TOP_ROUTES], status["routes"][TOP_ROUTES:]
    out = _head(status, nonce)
    out += _range_switch(range_name, status.get("history", {}).get("points", 0))
    out += _routes_table(shown, several)
    out += _rest_row(rest, several)
    out += _files_table(status["files"], status["time"])
    out += history_html(status, shown, view, range_name)
    out += _legend(status["legend"])
    return "\n".join(out)


# ---- the history charts ---------------------------------------------------------------------------

def _range_switch(current: str, points: int) -> list[str]:
    """Links to the other ranges (no script: the query string picks the range)."""
    links = [f'<b aria-current="page">{name}</b>' if name == current else f'<a href="?range={name}">{name}</a>'
             for name in RANGES]
    return [f'<p class="meta" id="range">history: {" · ".join(links)} ({points} points; charts below '
            "the tables)</p>"]


def _rest_row(rest: list[dict[str, Any]], several: bool) -> list[str]:
    """The routes past `TOP_ROUTES`, summed into one row: how many, in which states, their traffic."""
    if not rest:
        return []
    states = {state: sum(1 for r in rest if r["state"] == state) for state in STATES}
    requests = sum(r["requests"] for r in rest)
    errors = sum(round((r["error_ratio"] or 0.0) * r["requests"]) for r in rest)
    words = ", ".join(f"{n} {state}" for state, n in states.items() if n)
    cells = [f'<td colspan="{3 if several else 2}" class="l">{len(rest)} more routes ({words})</td>',
             f'<td class="qps">{format_qps(sum(r["qps"] for r in rest))}</td>',
             f'<td class="errors">{errors / requests * 100:.2f}%</td>' if requests else '<td class="errors">–</td>',
             '<td colspan="6"></td>', f'<td>{sum(r["requests_total"] for r in rest)}</td>']
    return ['<table id="rest"><tbody>', _row(cells, ' class="rest"'), "</tbody></table>"]


_KEY = ('<p class="meta">'
        + "".join(f'<span class="key k{c}"></span>{c}' for c in ("2xx", "3xx", "4xx", "5xx"))
        + '<span class="keyguide"></span>objective / threshold · a border in the state\'s colour</p>')


def history_html(status: dict[str, Any], routes: list[dict[str, Any]], view: View | None,
                 range_name: str) -> list[str]:
    """Small multiples per route (req/s by class, 5xx ratio, p95) and per file (lines/s, lag)."""
    out = [f"<h2>History ({range_name})</h2>"]
    fr = charts.frame(view.times.end, view.times.seconds, status["time"] - RANGES[range_name]) if view else None
    if view is None or fr is None:
        return out + ['<p class="meta">No history yet: a point is added at the end of each report window.</p>']
    out.append(_KEY)
    for n, route in enumerate(routes):
        series = view.routes[route["file"], route["route"]]
        obj = route["objective"]
        where = f'{text(route["file"])}: ' if len(status["files"]) > 1 else ""
        out += [f'<div class="hist state-{route["state"]}"><p id="h{n}"><span class="badge">{route["state"]}</span> '
                f'{where}<span class="name">{text(route["route"])}</span></p><div class="charts">',
                charts.route_charts(fr, series.counts, series.p95, 1.0 - obj["availability"],
                                    obj["latency_threshold_seconds"], f"h{n}"), "</div></div>"]
    for n, file in enumerate(status["files"]):
        fs = view.files[file["path"]]
        out += [f'<div class="hist"><p id="f{n}"><span class="name">{text(file["path"])}</span></p>'
                '<div class="charts">', charts.file_charts(fr, fs.lines, fs.lag, f"f{n}"), "</div></div>"]
    return out


def _head(status: dict[str, Any], nonce: str) -> list[str]:
    """From the doctype to the summary line under the title."""
    now = status["time"]
    loop = status["loop"]
    tick = ("loop ticking" if loop["ok"] else '<span class="stuck">loop STUCK</span>') + (
        f" (last tick {loop['seconds_since_tick']:.1f}s ago)" if loop["seconds_since_tick"] is not None else "")
    return [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{REFRESH}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>logtaild status</title>", f'<style nonce="{html.escape(nonce)}">{_STYLE}{charts.STYLE}</style>',
        "</head><body>", "<h1>logtaild status</h1>",
        f'<p class="meta">version {text(status["version"])} · rates over the last '
        f'{status["window_seconds"]:.1f}s · {tick} · refreshes every {REFRESH}s · '
        f'{time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))}</p>',
    ]


def _routes_table(routes: list[dict[str, Any]], several: bool) -> list[str]:
    """The routes, worst first; a file column only when there are several files."""
    out = [
        "<h2>Routes</h2>", '<table id="routes"><thead><tr><th>state</th>'
        + ('<th class="l">file</th>' if several else "")
        + '<th class="l">route</th>'
        "<th>req/s</th><th>errors (5xx)</th><th>p50</th><th>p95</th><th>p99</th><th>mean</th><th>burn rate</th>"
        "<th>objective</th><th>requests</th></tr></thead><tbody>",
    ]
    for route in routes:
        obj = route["objective"]
        cells = [f'<td><span class="badge">{route["state"]}</span></td>']
        if several:
            cells.append(f'<td class="path">{text(route["file"])}</td>')
        cells += [
            f'<td class="route">{text(route["route"])}</td>',
            f'<td class="qps">{format_qps(route["qps"])}</td>',
            f'<td class="errors">{_num(route["error_ratio"], ".2f", 100)}%</td>'
            if route["error_ratio"] is not None else '<td class="errors">–</td>',
            *(f'<td class="{name}">{_ms(route[name + "_seconds"])}</td>' for name in ("p50", "p95", "p99", "mean")),
            f'<td class="burn">{_num(route["burn_rate"], ".2f")}</td>',
            f'<td class="objective">{obj["availability"] * 100:g}% ok, {obj["latency_objective"] * 100:g}% '
            f'&lt; {obj["latency_threshold_seconds"] * 1000:g} ms</td>',
            f'<td>{route["requests_total"]}</td>',
        ]
        out.append(_row(cells, f' class="state-{route["state"]}" data-state="{route["state"]}"'))
    if not routes:
        out.append(f'<tr><td colspan="{12 if several else 11}">no requests yet</td></tr>')
    out.append("</tbody></table>")
    return out


def _files_table(files: list[dict[str, Any]], now: float) -> list[str]:
    """One row per followed file."""
    out = ["<h2>Files</h2>",
           '<table id="files"><thead><tr><th class="l">path</th><th>inode</th><th>offset</th><th>lag</th>'
           "<th>lines/s</th><th>lines</th><th>malformed</th><th>last rotation</th></tr></thead><tbody>"]
    for file in files:
        out.append(_row([
            f'<td class="path">{text(file["path"])}</td>', f'<td>{file["inode"]}</td>',
            f'<td>{file["offset"]}</td>', f'<td class="lag">{file["lag_bytes"]} B</td>',
            f'<td>{format_qps(file["lines_per_second"])}</td>', f'<td>{file["lines"]}</td>',
            f'<td>{file["malformed"]}</td>', f'<td>{_ago(file["last_rotation"], now)}</td>',
        ]))
    out.append("</tbody></table>")
    return out


def _legend(legend: dict[str, str]) -> list[str]:
    """What the colours mean, the burn rate, and the other views; then the end of the page."""
    out = ["<h2>States</h2>", "<dl>"]
    for state, meaning in legend.items():
        out.append(f'<dt class="state-{state}"><span class="badge">{state}</span></dt><dd>{html.escape(meaning)}</dd>')
    out += ["</dl>", '<p class="meta">Burn rate: the share of requests failing (5xx) or slower than the '
            "latency threshold, divided by the share the objective allows; 1 spends the budget exactly. "
            'Also as <a href="status.json">status.json</a>; metrics on <a href="metrics">/metrics</a>.</p>',
            "</body></html>", ""]
    return out

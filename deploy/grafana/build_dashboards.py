#!/usr/bin/env python3
"""Build the logtaild Grafana dashboards (deploy/grafana/dashboards/*.json).

The JSON files are committed; this script is their source. After editing it, run

    python3 deploy/grafana/build_dashboards.py

(tests/deploy/test_grafana.py fails when the JSON and this script disagree). Standard library only.

Panels read the recording rules of deploy/prometheus/rules/logtaild-recording.yml wherever one exists, so
they stay fast on a large fleet; raw metrics are used for logtaild's own low-cardinality self-metrics.
Every panel, query and variable names the datasource by the uid provisioned in
provisioning/datasources/logtaild.yml.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

DS = {"type": "prometheus", "uid": "logtaild-prometheus"}
SCHEMA_VERSION = 39
OUT = Path(__file__).resolve().parent / "dashboards"

# Label filters of the dashboard variables.
JR = 'job=~"$job", route=~"$route"'
JIR = 'job=~"$job", instance=~"$instance", route=~"$route"'
JI = 'job=~"$job", instance=~"$instance"'
JV = 'job=~"$job", version=~"$version"'
JIV = 'job=~"$job", instance=~"$instance", version=~"$version"'


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False, fmt: str = "time_series"):
    return {
        "refId": ref,
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "format": fmt,
    }


def targets(*specs) -> list[dict]:
    """specs: (expr, legend) pairs, refIds A, B, C..."""
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(specs)]


def thresholds(*steps) -> dict:
    """steps: (color, value) with the first value None (the base)."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def panel(kind, title, description, tgts, defaults, options, w, h, overrides=(), **extra) -> dict:
    """The fields every panel has; `extra` adds kind-specific ones (transformations...)."""
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": tgts,
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides)},
        "options": options,
        **extra,
        "_size": (w, h),
    }


def timeseries(title, description, tgts, unit="short", w=12, h=8, stack=False, bars=False,
               threshold_steps=None, min_=None, max_=None, dashed=None):
    """dashed: a regex of series names drawn as dashed lines (reference lines, thresholds)."""
    custom = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 60 if bars else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    defaults = {"unit": unit, "custom": custom}
    if threshold_steps:
        defaults["thresholds"] = thresholds(*threshold_steps)
        custom["thresholdsStyle"] = {"mode": "line"}
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    overrides = []
    if dashed:
        overrides.append({"matcher": {"id": "byRegexp", "options": dashed},
                          "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}]})
    return panel("timeseries", title, description, tgts, defaults, {
        "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                   "calcs": ["lastNotNull", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }, w, h, overrides=overrides)


def stat(title, description, tgts, unit="short", steps=(("green", None),), w=6, h=4, mappings=None,
         text_mode="value", decimals=None):
    defaults = {"unit": unit, "thresholds": thresholds(*steps), "color": {"mode": "thresholds"},
                "mappings": mappings or []}
    if decimals is not None:
        defaults["decimals"] = decimals
    return panel("stat", title, description, tgts, defaults, {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": text_mode,
        "wideLayout": True,
    }, w, h)


def heatmap(title, description, tgt, w=12, h=8, y_unit="s", rows="auto", cell_unit=None, **extra):
    """Latency buckets by default (format heatmap, le rows). For categories (status codes), y_unit "none",
    rows "unknown" (one ordinal row per series, labelled in its middle) and the cells' unit."""
    options = {
        "calculate": False,
        "cellGap": 1,
        "yAxis": {"axisPlacement": "left", "unit": y_unit},
        "color": {"mode": "scheme", "scheme": "Oranges", "exponent": 0.5, "steps": 64,
                  "fill": "dark-orange", "scale": "exponential", "reverse": False},
        "rowsFrame": {"layout": rows},
        "filterValues": {"le": 1e-9},
        "tooltip": {"mode": "single", "yHistogram": rows != "unknown", "showColorScale": False},
        "legend": {"show": True},
    }
    if cell_unit:
        options["cellValues"] = {"unit": cell_unit}
    return panel("heatmap", title, description, [tgt], {"custom": {"scaleDistribution": {"type": "linear"}}},
                 options, w, h, **extra)


def row(title: str) -> dict:
    """A row header (not collapsed: the panels after it stay in the dashboard's panel list). `targets` is
    empty for the readers that walk every panel's queries."""
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "targets": [], "_size": (24, 1)}


def bargauge(title, description, tgt, unit, w=12, h=8):
    return panel("bargauge", title, description, [tgt], {"unit": unit, "thresholds": thresholds(("blue", None)),
                                     "color": {"mode": "thresholds"}}, {
        "orientation": "horizontal",
        "displayMode": "basic",
        "showUnfilled": True,
        "valueMode": "color",
        "namePlacement": "auto",
        "sizing": "auto",
        "minVizHeight": 16,
        "minVizWidth": 8,
        "maxVizHeight": 300,
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
    }, w, h)


def table(title, description, tgts, renames: dict[str, str], units: dict[str, str], w=12, h=8,
          hide=("Time",)):
    overrides = [{"matcher": {"id": "byName", "options": name},
                  "properties": [{"id": "unit", "value": unit}]} for name, unit in units.items()]
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    return panel("table", title, description, tgts, {"custom": {"align": "auto"}}, options, w, h,
                 overrides=overrides, transformations=[
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": {name: True for name in hide},
                                       "renameByName": renames}},
    ])


def instant_targets(*specs) -> list[dict]:
    return [target(expr, legend, chr(ord("A") + i), instant=True, fmt="table")
            for i, (expr, legend) in enumerate(specs)]


def variables(names=("job", "instance", "route")) -> list[dict]:
    queries = {
        "job": "label_values(logtaild_build_info, job)",
        "instance": 'label_values(logtaild_build_info{job=~"$job"}, instance)',
        "route": 'label_values(job_route:logtaild_http_requests:rate5m{job=~"$job"}, route)',
        # Build versions (the `version` label of label_fields); empty without one: "All" then shows the job.
        "version": 'label_values(job_version:logtaild_http_requests:rate1m{job=~"$job"}, version)',
    }
    return [{
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DS,
        "definition": queries[name],
        "query": {"qryType": 1, "query": queries[name], "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "hide": 0,
        "regex": "",
        "skipUrlSync": False,
    } for name in names]


def layout(panels: list[dict]) -> list[dict]:
    """Flow panels left to right, 24 columns wide; number them from 1."""
    x = y = row_h = 0
    out = []
    for i, panel in enumerate(panels, start=1):
        w, h = panel.pop("_size")
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        panel = {"id": i, "gridPos": {"h": h, "w": w, "x": x, "y": y}, **panel}
        x += w
        row_h = max(row_h, h)
        out.append(panel)
    return out


def dashboard(uid, title, description, panels, variable_names=("job", "instance", "route")) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["logtaild"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "links": [{"title": "logtaild dashboards", "type": "dashboards", "tags": ["logtaild"],
                   "asDropdown": True, "includeVars": True, "keepTime": True, "icon": "external link",
                   "targetBlank": False, "tooltip": "", "url": ""}],
        "annotations": {"list": [{
            "name": "logtaild alerts",
            "datasource": DS,
            "enable": True,
            "hide": False,
            "iconColor": "red",
            "expr": 'ALERTS{alertstate="firing", alertname=~"Logtaild.*", job=~"$job"}',
            "titleFormat": "{{alertname}}",
            "textFormat": "{{route}}{{instance}}{{version}} {{severity}}",
            "step": "60s",
            "useValueForTime": False,
        }]},
        "templating": {"list": variables(variable_names)},
        "panels": layout(panels),
    }


def hq(q: str, by: str, sel: str, level: str = "instance_route") -> str:
    return (f"histogram_quantile({q}, sum by ({by}) "
            f"({level}:logtaild_http_request_duration_seconds_bucket:rate5m{{{sel}}}))")


def ratio(num: str, den: str, by: str, sel: str, level: str = "instance_route") -> str:
    return (f"sum by ({by}) ({level}:{num}:rate5m{{{sel}}})\n  /\n"
            f"sum by ({by}) ({level}:{den}:rate5m{{{sel}}})")


def overview() -> dict:
    req = f"instance_route:logtaild_http_requests:rate5m{{{JIR}}}"
    panels = [
        stat("Requests/s", "All selected routes on the selected instances (5m rate).",
             targets((f"sum({req})", "requests/s")), unit="reqps", decimals=1),
        stat("5xx ratio", "Share of requests answered with a 5xx status (5m).",
             targets((ratio("logtaild_http_errors", "logtaild_http_requests", "job", JIR), "{{job}}")),
             unit="percentunit", steps=(("green", None), ("yellow", 0.01), ("red", 0.05)), decimals=2),
        stat("Slow ratio", "Share of timed requests slower than their route's SLO latency threshold (5m).",
             targets((ratio("logtaild_http_requests_slow", "logtaild_http_request_duration_seconds_count",
                            "job", JIR), "{{job}}")),
             unit="percentunit", steps=(("green", None), ("yellow", 0.01), ("red", 0.05)), decimals=2),
        stat("p95 latency", "95th percentile latency of the selected routes (5m, from the histogram).",
             targets((hq("0.95", "job, le", JIR), "{{job}}")), unit="s",
             steps=(("green", None), ("yellow", 0.25), ("red", 0.5))),
        timeseries("QPS by route and status", "Requests per second (5m rate), per route and status code.",
                   targets((f"sum by (route, status) (instance_route_status:logtaild_http_requests:rate5m{{{JIR}}})",
                            "{{route}} {{status}}")), unit="reqps", stack=True),
        timeseries("5xx ratio by route", "5xx / all requests per route (5m). Warning alert above 5%, "
                   "critical above 20%.",
                   targets((ratio("logtaild_http_errors", "logtaild_http_requests", "route", JIR), "{{route}}")),
                   unit="percentunit", min_=0, threshold_steps=(("transparent", None), ("orange", 0.05),
                                                                  ("red", 0.2))),
        timeseries("Slow ratio by route", "Requests slower than the route's SLO latency threshold / timed "
                   "requests (5m).",
                   targets((ratio("logtaild_http_requests_slow", "logtaild_http_request_duration_seconds_count",
                                  "route", JIR), "{{route}}")), unit="percentunit", min_=0),
        timeseries("Latency p50 / p95 / p99", "Percentiles of the selected routes together, from the "
                   "summed histogram buckets (5m).",
                   targets((hq("0.5", "le", JIR), "p50"), (hq("0.95", "le", JIR), "p95"),
                           (hq("0.99", "le", JIR), "p99")), unit="s"),
        timeseries("p95 latency by route", "95th percentile per route (5m), against the route's threshold "
                   "(dashed: logtaild_slo_latency_threshold_seconds).",
                   targets((hq("0.95", "route, le", JIR), "{{route}}"),
                           (f"max by (route) (job_route:logtaild_slo_latency_threshold_seconds:min{{{JR}}})",
                            "{{route}} threshold")), unit="s"),
        timeseries("Mean latency by route", "Sum of latencies / count (5m).",
                   targets((ratio("logtaild_http_request_duration_seconds_sum",
                                  "logtaild_http_request_duration_seconds_count", "route", JIR), "{{route}}")),
                   unit="s"),
        heatmap("Latency heatmap", "Requests per second in each latency bucket (5m rates of the histogram "
                "buckets of the selected routes).",
                target(f"sum by (le) (instance_route:logtaild_http_request_duration_seconds_bucket:rate5m{{{JIR}}})",
                       "{{le}}", fmt="heatmap")),
        timeseries("Response bytes/s by route", "Bytes sent per second (5m rate).",
                   targets((f"sum by (route) (instance_route:logtaild_http_response_bytes:rate5m{{{JIR}}})",
                            "{{route}}")), unit="Bps", stack=True),
        bargauge("Top routes", "The 10 busiest routes (requests/s, 5m).",
                 target(f"topk(10, sum by (route) ({req}))", "{{route}}", instant=True), unit="reqps"),
        table("Per service", "Per job and service (the files' constant labels; empty when not configured): "
              "requests/s, 5xx ratio, mean and p95 latency (5m).",
              instant_targets(
                  (f"sum by (job, service) ({req})", ""),
                  (ratio("logtaild_http_errors", "logtaild_http_requests", "job, service", JIR), ""),
                  (ratio("logtaild_http_request_duration_seconds_sum",
                         "logtaild_http_request_duration_seconds_count", "job, service", JIR), ""),
                  (hq("0.95", "job, service, le", JIR), "")),
              renames={"Value #A": "requests/s", "Value #B": "5xx ratio", "Value #C": "mean latency",
                       "Value #D": "p95 latency"},
              units={"requests/s": "reqps", "5xx ratio": "percentunit", "mean latency": "s",
                     "p95 latency": "s"}, w=12),
    ]
    return dashboard("logtaild-overview", "logtaild / service overview",
                     "Traffic, errors and latency of the routes logtaild sees in the access logs.",
                     panels + per_version(), variable_names=("job", "instance", "route", "version"))


def per_version() -> list[dict]:
    """The row comparing build versions (the `version` label, every route together; $route does not
    apply): what LogtaildVersionErrorRatioHigh compares, with its 1.25x lines."""
    by_status = f"instance_version_status:logtaild_http_requests:rate1m{{{JIV}}}"
    own = "job_version_class:logtaild_http_requests:ratio_avg5m_rate1m"
    others = "job_version_class:logtaild_http_requests_other_versions:ratio_avg5m_rate1m"
    baseline = "job_version_class:logtaild_http_requests:ratio_avg1h_rate1m"
    return [
        row("Per version"),
        heatmap("Status codes of $version",
                "Share of the version's requests per status code (1-minute bins, every route, the selected "
                "instances): one row per code, one panel per selected version. Compare the error rows of a "
                "canary with the other versions'.",
                target(f"sum by (status) ({by_status})\n  / ignoring (status) group_left ()\nsum ({by_status})",
                       "{{status}}"),
                w=24, h=8, y_unit="none", rows="unknown", cell_unit="percentunit",
                repeat="version", repeatDirection="h", maxPerRow=4),
        timeseries("5xx ratio by version",
                   "5xx / all requests of each version over the last five 1-minute bins (every route), and "
                   "the two lines LogtaildVersionErrorRatioHigh compares it with (dashed): 1.25x the "
                   "version's own ratio over the hour that ended 10 minutes ago, and 1.25x the ratio of the "
                   "other versions over the same bins (none for a single version).",
                   targets((f'{own}{{{JV}, class="5xx"}}', "{{version}}"),
                           (f'1.25 * {baseline}{{{JV}, class="5xx"}} offset 10m', "{{version}} 1.25x own baseline"),
                           (f'1.25 * {others}{{{JV}, class="5xx"}}', "{{version}} 1.25x other versions")),
                   unit="percentunit", min_=0, w=8, dashed=".* 1\\.25x .*"),
        timeseries("4xx ratio by version",
                   "4xx / all requests of each version over the last five 1-minute bins, and 1.25x the other "
                   "versions' ratio (dashed): 4xx are compared between versions only (a build that breaks a "
                   "contract: 400, 401, 404).",
                   targets((f'{own}{{{JV}, class="4xx"}}', "{{version}}"),
                           (f'1.25 * {others}{{{JV}, class="4xx"}}', "{{version}} 1.25x other versions")),
                   unit="percentunit", min_=0, w=8, dashed=".* 1\\.25x .*"),
        timeseries("Requests/s by version",
                   "Requests per second of each version (mean of the last five 1-minute bins, every route). "
                   "The alert needs at least 0.2 req/s (60 requests in the five bins) of the version, and as "
                   "much of the other versions to compare with them.",
                   targets((f"job_version:logtaild_http_requests:avg5m_rate1m{{{JV}}}", "{{version}}")),
                   unit="reqps", min_=0, w=8, threshold_steps=(("transparent", None), ("orange", 0.2))),
    ]


def slo() -> dict:
    # Budget left = 1 - (bad / all over 30 days) / (1 - objective). The sums of 5m rates over 30 days are
    # proportional to the counts (one sample per evaluation), so their ratio is the 30-day bad ratio.
    def budget_left(bad: str, total: str, objective: str) -> str:
        return (
            "1 - (\n"
            "  (\n"
            f"    sum by (job, route) (sum_over_time(job_route:{bad}:rate5m{{{JR}}}[30d]))\n"
            "      /\n"
            f"    sum by (job, route) (sum_over_time(job_route:{total}:rate5m{{{JR}}}[30d]))\n"
            "  )\n"
            "  / on (job, route)\n"
            f"  (1 - job_route:{objective}:max{{{JR}}})\n"
            ")")
    budget_avail = budget_left("logtaild_http_errors", "logtaild_http_requests",
                               "logtaild_slo_availability_objective")
    budget_latency = budget_left("logtaild_http_requests_slow", "logtaild_http_request_duration_seconds_count",
                                 "logtaild_slo_latency_objective")
    burn_steps = (("green", None), ("yellow", 1), ("red", 6))
    budget_steps = (("red", None), ("yellow", 0.1), ("green", 0.5))
    panels = [
        stat("SLO status per route",
             "Worst error-budget burn rate of the route over the last hour, availability or latency. "
             "Green: below 1 (within budget); yellow: 1 to 6 (spending faster than the 30-day budget allows); "
             "red: 6 or more (the slow-burn alert threshold; 14.4 pages).",
             [target(f"max by (route) (job_route:logtaild_slo_burn_rate:ratio_rate1h{{{JR}}})", "{{route}}",
                     instant=True)],
             unit="suffix:x", steps=burn_steps, w=24, h=5, text_mode="value_and_name", decimals=2),
        stat("Availability budget left (30 days)",
             "1 - (5xx / requests over 30 days) / (1 - availability objective), per route. Below 0: the SLO "
             "is violated over the period.",
             [target(budget_avail, "{{route}}", instant=True)], unit="percentunit", steps=budget_steps,
             w=12, h=5, text_mode="value_and_name", decimals=1),
        stat("Latency budget left (30 days)",
             "1 - (slow / timed requests over 30 days) / (1 - latency objective), per route.",
             [target(budget_latency, "{{route}}", instant=True)], unit="percentunit", steps=budget_steps,
             w=12, h=5, text_mode="value_and_name", decimals=1),
        timeseries("Availability burn rate",
                   "5xx ratio / (1 - objective), over 1h and 6h. Lines: 6 (slow-burn warning with 30m) "
                   "and 14.4 (fast-burn page with 5m).",
                   targets((f'job_route:logtaild_slo_burn_rate:ratio_rate1h{{{JR}, sli="availability"}}',
                            "{{route}} 1h"),
                           (f'job_route:logtaild_slo_burn_rate:ratio_rate6h{{{JR}, sli="availability"}}',
                            "{{route}} 6h")),
                   unit="suffix:x", min_=0,
                   threshold_steps=(("transparent", None), ("orange", 6), ("red", 14.4))),
        timeseries("Latency burn rate",
                   "Slow ratio / (1 - latency objective), over 1h and 6h. Lines: 6 and 14.4.",
                   targets((f'job_route:logtaild_slo_burn_rate:ratio_rate1h{{{JR}, sli="latency"}}',
                            "{{route}} 1h"),
                           (f'job_route:logtaild_slo_burn_rate:ratio_rate6h{{{JR}, sli="latency"}}',
                            "{{route}} 6h")),
                   unit="suffix:x", min_=0,
                   threshold_steps=(("transparent", None), ("orange", 6), ("red", 14.4))),
        timeseries("Availability (1h) vs objective", "1 - 5xx ratio over the last hour, and the objective.",
                   targets((f"1 - job_route:logtaild_http_errors:ratio_rate1h{{{JR}}}", "{{route}}"),
                           (f"job_route:logtaild_slo_availability_objective:max{{{JR}}}", "{{route}} objective")),
                   unit="percentunit", max_=1),
        timeseries("Fast requests (1h) vs objective",
                   "1 - slow ratio over the last hour (requests faster than the route's threshold), and the "
                   "latency objective.",
                   targets((f"1 - job_route:logtaild_http_requests_slow:ratio_rate1h{{{JR}}}", "{{route}}"),
                           (f"job_route:logtaild_slo_latency_objective:max{{{JR}}}", "{{route}} objective")),
                   unit="percentunit", max_=1),
        timeseries("5xx ratio by instance",
                   "Is one host burning the budget? 5xx ratio per instance over the selected routes (5m).",
                   targets((ratio("logtaild_http_errors", "logtaild_http_requests", "instance", JIR),
                            "{{instance}}")), unit="percentunit", min_=0),
        table("SLO targets", "Per route, from logtaild's config (logtaild_slo_* gauges) or the defaults of the "
              "recording rules (0.5 s, 0.99, 0.999).",
              instant_targets(
                  (f"max by (job, route) (job_route:logtaild_slo_latency_threshold_seconds:min{{{JR}}})", ""),
                  (f"max by (job, route) (job_route:logtaild_slo_latency_objective:max{{{JR}}})", ""),
                  (f"max by (job, route) (job_route:logtaild_slo_availability_objective:max{{{JR}}})", "")),
              renames={"Value #A": "latency threshold", "Value #B": "latency objective",
                       "Value #C": "availability objective"},
              units={"latency threshold": "s", "latency objective": "percentunit",
                     "availability objective": "percentunit"}),
    ]
    return dashboard("logtaild-slo", "logtaild / SLO status",
                     "Per-route service level objectives: status, error budget left, burn rates.", panels)


def health() -> dict:
    panels = [
        stat("Targets", "Prometheus scrape status of each logtaild (up).",
             [target(f"up{{{JI}}}", "{{instance}}", instant=True)],
             steps=(("red", None), ("green", 1)), w=8, h=4, text_mode="value_and_name",
             mappings=[{"type": "value", "options": {"0": {"text": "DOWN"}, "1": {"text": "UP"}}}]),
        stat("Checkpoint age", "Seconds since the last successful checkpoint write (written every second). "
             "No data: no state file configured, or nothing written yet.",
             [target(f"time() - (logtaild_checkpoint_last_write_timestamp_seconds{{{JI}}} > 0)", "{{instance}}",
                     instant=True)], unit="s", steps=(("green", None), ("yellow", 10), ("red", 120)),
             w=8, h=4, text_mode="value_and_name"),
        stat("Main loop tick age", "Seconds since logtaild's main loop last ticked (about every 250 ms).",
             [target(f"time() - logtaild_loop_last_tick_timestamp_seconds{{{JI}}}", "{{instance}}",
                     instant=True)], unit="s", steps=(("green", None), ("yellow", 5), ("red", 60)),
             w=8, h=4, text_mode="value_and_name"),
        timeseries("Lines read/s", "Lines read per second per file (5m rate).",
                   targets((f"sum by (instance, file) (instance_file:logtaild_lines_read:rate5m{{{JI}}})",
                            "{{instance}} {{file}}")), unit="short"),
        timeseries("Lag", "Bytes between logtaild's read offset and the end of the file.",
                   targets((f"logtaild_file_lag_bytes{{{JI}}}", "{{instance}} {{file}}")), unit="bytes",
                   threshold_steps=(("transparent", None), ("orange", 1048576))),
        timeseries("Malformed ratio", "Malformed lines / lines read (5m). Alert above 1%.",
                   targets((f"instance_file:logtaild_lines_malformed:ratio_rate5m{{{JI}}}",
                            "{{instance}} {{file}}")), unit="percentunit", min_=0,
                   threshold_steps=(("transparent", None), ("red", 0.01))),
        timeseries("Malformed lines by reason", "Malformed lines per second by reason.",
                   targets((f"sum by (instance, file, reason) "
                            f"(rate(logtaild_lines_malformed_total{{{JI}}}[$__rate_interval]))",
                            "{{instance}} {{file}} {{reason}}"),
                           (f"sum by (instance, file) (rate(logtaild_lines_cut_total{{{JI}}}[$__rate_interval]))",
                            "{{instance}} {{file}} cut (over-long)")), unit="short", stack=True),
        timeseries("Rotations and reopens", "Rotations by kind (rename, truncate, delete) and file reopens.",
                   targets((f"sum by (instance, file, kind) "
                            f"(increase(logtaild_rotations_total{{{JI}}}[$__rate_interval]))",
                            "{{instance}} {{file}} {{kind}}"),
                           (f"sum by (instance, file) "
                            f"(increase(logtaild_file_reopens_total{{{JI}}}[$__rate_interval]))",
                            "{{instance}} {{file}} reopen")), unit="short", bars=True),
        timeseries("Read errors and drain timeouts", "Errors reading the files, and rotations where the old "
                   "file could not be drained in time.",
                   targets((f"sum by (instance, file) (increase(logtaild_read_errors_total{{{JI}}}[$__rate_interval]))",
                            "{{instance}} {{file}} read errors"),
                           (f"sum by (instance, file) "
                            f"(increase(logtaild_drain_timeouts_total{{{JI}}}[$__rate_interval]))",
                            "{{instance}} {{file}} drain timeouts")), unit="short", bars=True),
        timeseries("Checkpoints", "Checkpoint writes and failures per second.",
                   targets((f"rate(logtaild_checkpoint_writes_total{{{JI}}}[$__rate_interval])",
                            "{{instance}} writes"),
                           (f"rate(logtaild_checkpoint_failures_total{{{JI}}}[$__rate_interval])",
                            "{{instance}} failures")), unit="short"),
        timeseries("Last read age", "Seconds since logtaild last read data from each file.",
                   targets((f"time() - logtaild_last_read_timestamp_seconds{{{JI}}}", "{{instance}} {{file}}")),
                   unit="s"),
        timeseries("Bytes read/s", "Bytes read per second per file (5m rate).",
                   targets((f"instance_file:logtaild_bytes_read:rate5m{{{JI}}}", "{{instance}} {{file}}")),
                   unit="Bps"),
        timeseries("File size and read offset", "Size of each followed file and logtaild's offset in it "
                   "(they drop together at a rotation).",
                   targets((f"logtaild_file_size_bytes{{{JI}}}", "{{instance}} {{file}} size"),
                           (f"logtaild_file_offset_bytes{{{JI}}}", "{{instance}} {{file}} offset")),
                   unit="bytes"),
        timeseries("Scrape duration", "How long Prometheus takes to scrape each logtaild.",
                   targets((f"scrape_duration_seconds{{{JI}}}", "{{instance}}")), unit="s"),
        timeseries("CPU", "CPU used by logtaild (1 = one full core).",
                   targets((f"rate(process_cpu_seconds_total{{{JI}}}[$__rate_interval])", "{{instance}}")),
                   unit="percentunit", min_=0),
        timeseries("Memory", "Resident memory of logtaild.",
                   targets((f"process_resident_memory_bytes{{{JI}}}", "{{instance}}")), unit="bytes", min_=0),
        timeseries("Routes and overflow", "Distinct routes per file (the cap is routes.max in the config), and "
                   "requests counted under __other__ because the cap is full.",
                   targets((f"logtaild_routes{{{JI}}}", "{{instance}} {{file}} routes"),
                           (f"rate(logtaild_route_overflow_total{{{JI}}}[$__rate_interval])",
                            "{{instance}} {{file}} overflow/s")), unit="short"),
        timeseries("Config reloads", "Configuration reloads by result.",
                   targets((f"sum by (instance, result) "
                            f"(increase(logtaild_config_reloads_total{{{JI}}}[$__rate_interval]))",
                            "{{instance}} {{result}}")), unit="short", bars=True),
        timeseries("Requests counted per route", "What logtaild counts on the selected instances and routes "
                   "(requests/s, 5m); __other__ collects routes over the cap.",
                   targets((f"sum by (instance, route) (instance_route:logtaild_http_requests:rate5m{{{JIR}}})",
                            "{{instance}} {{route}}")), unit="reqps", stack=True),
        table("Versions", "logtaild_build_info per instance.",
              instant_targets((f"logtaild_build_info{{{JI}}}", "")),
              renames={}, units={}, w=24, h=5, hide=("Time", "Value", "__name__")),
    ]
    return dashboard("logtaild-health", "logtaild / health",
                     "logtaild itself: reading, lag, parse errors, rotations, checkpoints, resources.", panels)


DASHBOARDS = {"logtaild-overview.json": overview, "logtaild-slo.json": slo, "logtaild-health.json": health}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Exact totals: logtaild's aggregator, mtail's one-shot JSON and the awk output against `Expected`.

logtaild is checked in-process: a `Service` built from a `Config` (the file, from the start, once)
runs one pass, and its aggregator's slots are compared exactly with the generator's totals: request
counts and bytes per (route, method, status), histogram per-bucket counts per (route, method), lines
read and malformed lines. The same comparison is applied to what mtail and awk print, to show they
did the same work.
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.gen import Expected

Requests = dict[tuple[str, str, str], list[int]]
Hist = dict[tuple[str, str], list[int]]


@dataclass
class Comparison:
    """Differences between what a tool reported and what was expected."""

    ok: bool
    lines: int
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"ok": self.ok, "lines": self.lines, "problems": self.problems[:20],
                "problem_count": len(self.problems)}


def compare(expected: Expected, requests: Requests, hist: Hist | None, what: str,
            extra: list[str] | None = None) -> Comparison:
    """Every (route, method, status) count and byte total, and every histogram bucket, must match."""
    problems = list(extra or [])
    for key in sorted(set(expected.requests) | set(requests)):
        want, got = expected.requests.get(key, [0, 0]), requests.get(key, [0, 0])
        if list(want) != list(got):
            problems.append(f"{what} {key}: count/bytes {got[0]}/{got[1]}, expected {want[0]}/{want[1]}")
    if hist is not None:
        for key in sorted(set(expected.hist) | set(hist)):
            nb = len(expected.bounds_ms) + 1
            want, got = expected.hist.get(key, [0] * nb), hist.get(key, [0] * nb)
            if list(want) != list(got):
                problems.append(f"{what} histogram {key}: buckets {got}, expected {want}")
    total = sum(v[0] for v in requests.values())
    return Comparison(not problems, total, problems)


def check_logtaild(path: Path, expected: Expected) -> tuple[Comparison, float]:
    """One in-process pass of logtaild's Service over `path`; (comparison, seconds)."""
    from logtaild.config import Config, FileConfig
    from logtaild.run.service import Service

    config = Config(files=(FileConfig(str(path)),), from_start=True)
    service = Service(config, once=True, out=io.StringIO())
    start = time.perf_counter()
    code = service.run()
    seconds = time.perf_counter() - start
    return compare_aggregator(service.sources[str(path)].agg, expected, code, config), seconds


def compare_aggregator(agg: Any, expected: Expected, code: int, config: Any) -> Comparison:
    """An aggregator's slots (one pass of a Service, exit `code`) against the expected totals."""
    from logtaild.count import slots as layout

    extra = [] if code == 0 else [f"Service.run() returned {code}"]
    bounds_ms = tuple(round(b * 1000, 9) for b in config.bucket_bounds())
    if bounds_ms != tuple(expected.bounds_ms):
        extra.append(f"logtaild bucket bounds {bounds_ms} differ from the bench's {expected.bounds_ms}")
    requests: Requests = {}
    hist: Hist = {}
    for (route, method, status, _labels), slot in agg.slots.items():
        req = requests.setdefault((route, method, status), [0, 0])
        req[0] += layout.count(slot)
        req[1] += layout.byte_count(slot)
        buckets = layout.bucket_counts(slot, len(bounds_ms) + 1)  # without an upstream part, if any
        if any(buckets):
            acc = hist.setdefault((route, method), [0] * len(buckets))
            for i, n in enumerate(buckets):
                acc[i] += n
    if agg.lines != expected.lines:
        extra.append(f"logtaild read {agg.lines} lines, expected {expected.lines}")
    malformed = {k: v for k, v in agg.malformed.items() if v}
    if malformed:
        extra.append(f"logtaild counted malformed lines: {malformed}")
    return compare(expected, requests, hist, "logtaild", extra)


def parse_mtail_json(text: str) -> tuple[Requests, Hist]:
    """mtail --one_shot --one_shot_format json -> our (requests, hist) shape."""
    data = json.loads(text)
    requests: Requests = {}
    hist: Hist = {}
    for item in data.get("logtaild_http_requests_total", []):
        for lv in item.get("LabelValues", []):
            route, method, status = lv["Labels"]
            requests.setdefault((route, method, status), [0, 0])[0] += int(lv["Value"]["Value"])
    for item in data.get("logtaild_http_response_bytes_total", []):
        for lv in item.get("LabelValues", []):
            route, method, status = lv["Labels"]
            requests.setdefault((route, method, status), [0, 0])[1] += int(lv["Value"]["Value"])
    for item in data.get("logtaild_http_request_duration_seconds", []):
        for lv in item.get("LabelValues", []):
            route, method = lv["Labels"]
            by_bound = lv["Value"]["Buckets"]  # per-bucket (not cumulative) counts keyed by upper bound
            order = sorted(by_bound, key=lambda b: float("inf") if b == "+Inf" else float(b))
            hist[route, method] = [int(by_bound[b]) for b in order]
    return requests, hist


def parse_awk(text: str) -> tuple[Requests, Hist, int]:
    """The awk program's END output: `C route method status count bytes`, `H route method i n`,
    `B bad_lines`."""
    requests: Requests = {}
    hist: Hist = {}
    bad = 0
    nb = None
    for line in text.splitlines():
        f = line.split("\t")
        if f[0] == "C":
            requests[f[1], f[2], f[3]] = [int(f[4]), int(f[5])]
        elif f[0] == "H":
            hist.setdefault((f[1], f[2]), {})[int(f[3])] = int(f[4])
        elif f[0] == "N":
            nb = int(f[1])
        elif f[0] == "B":
            bad = int(f[1])
    width = (nb or 14) + 1
    return requests, {k: [v.get(i + 1, 0) for i in range(width)] for k, v in hist.items()}, bad

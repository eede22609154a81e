"""Native histograms: what they cost, on and off (`python -m bench --only native`).

- memory: a daemon that has read N series (default 10,000: 2,000 routes x 5 statuses, 60 lines each with
  lognormal latencies around 40 ms, so each histogram populates about as many native buckets as a real
  route does), with `native_histograms` on (schema 3, the default) and off: RSS, and RSS per series as
  the difference over N; the same measured in-process with tracemalloc on an Aggregator fed the same
  lines (the slots alone, without the interpreter's noise); one text and one protobuf scrape's time and size.
- catch-up: `logtaild --once` over the main bench log, pinned to one CPU, native on and off,
  interleaved `reps` times: median wall time and lines/s.
"""
from __future__ import annotations

import math
import os
import random
import shutil
import statistics
import subprocess
import time
import tracemalloc
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench import memory
from bench.context import Context
from bench.procs import run_timed, status_kb

PROTOBUF = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
STATUSES = ("200", "301", "404", "500", "503")


def spread_series_file(path: Path, series: int, per_series: int = 60, seed: int = 1) -> int:
    """`series` (route, status) pairs, `per_series` lines each, latencies lognormal around 40 ms."""
    rng = random.Random(seed)
    routes = max(1, series // len(STATUSES))
    with open(path, "w", encoding="ascii") as out:
        for _round in range(per_series):
            rows = []
            for r in range(routes):
                for status in STATUSES:
                    rows.append(f"10.1.2.3\tGET /svc/r{r}\t{status}\t{100 + r % 900}\t"
                                f"{rng.lognormvariate(math.log(40), 1.0):.3f}\n")
            out.write("".join(rows))
    return routes * len(STATUSES) * per_series


def _get(port: int, accept: str | None) -> tuple[float, int]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept} if accept else {})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        body = response.read()
    return time.perf_counter() - start, len(body)


def _in_process(path: Path, native: bool) -> tuple[int, int]:
    """(bytes the slots hold, series) for an Aggregator fed `path`, native buckets on or off."""
    from logtaild.config import DEFAULT_BUCKETS
    from logtaild.count.aggregate import Aggregator
    from logtaild.count.native import NativeSpec
    from logtaild.count.routes import RouteLimiter

    lines = path.read_bytes().split(b"\n")[:-1]
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    agg = Aggregator(RouteLimiter(max_routes=100_000), [b * 1000 for b in DEFAULT_BUCKETS],
                     native=NativeSpec() if native else None)
    for start in range(0, len(lines), 10_000):
        agg.feed(lines[start:start + 10_000])
    agg._cache.clear(), agg._old.clear(), agg._paths.clear(), agg._series.clear()  # the slots alone
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return held, len(agg.slots)


def memory_per_series(ctx: Context, series: int) -> dict[str, Any]:
    path = ctx.data / f"native-series-{series}.tsv"
    lines = spread_series_file(path, series)
    out: dict[str, Any] = {"series": series, "lines": lines}
    for native in (False, True):
        key = "on" if native else "off"
        daemon = memory.load(ctx, f"native-{key}", path, lines, routes_max=100_000,
                             extra={"native_histograms": native})
        try:
            rss = status_kb(daemon.pid) / 1024
            time.sleep(1.1)  # past the scrape cache's 1 s: load() has just scraped in this format
            text_s, text_bytes = _get(daemon.port, None)
            row: dict[str, Any] = {"rss_mb": round(rss, 1), "text_scrape_ms": round(text_s * 1000, 1),
                                   "text_bytes": text_bytes}
            if native:
                proto_s, proto_bytes = _get(daemon.port, PROTOBUF)
                row.update(protobuf_scrape_ms=round(proto_s * 1000, 1), protobuf_bytes=proto_bytes)
            row["rss_after_scrapes_mb"] = round(status_kb(daemon.pid) / 1024, 1)
        finally:
            daemon.stop()
        held, counted = _in_process(path, native)
        row.update(slots_bytes=held, slots_series=counted, slots_bytes_per_series=round(held / counted))
        out[key] = row
        ctx.log(f"native {key}: {series} series, rss {row['rss_mb']} MB, slots {held / 1e6:.1f} MB "
                f"({row['slots_bytes_per_series']} B/series), text scrape {row['text_scrape_ms']} ms"
                + (f", protobuf {row['protobuf_scrape_ms']} ms ({row['protobuf_bytes'] / 1e6:.1f} MB)"
                   if native else ""))
    out["rss_per_series_bytes"] = round((out["on"]["rss_mb"] - out["off"]["rss_mb"]) * 1024 * 1024 / series)
    out["slots_per_series_bytes"] = out["on"]["slots_bytes_per_series"] - out["off"]["slots_bytes_per_series"]
    return out


def catchup(ctx: Context, path: Path, lines: int, reps: int) -> dict[str, Any]:
    taskset = shutil.which("taskset")
    pin = [taskset, "-c", str(min(os.sched_getaffinity(0)))] if taskset else []
    walls: dict[str, list[float]] = {"off": [], "on": []}
    cpus: dict[str, list[float]] = {"off": [], "on": []}
    for key in walls:
        (ctx.out / f"native-catchup-{key}.yaml").write_text(yaml.safe_dump(
            {"native_histograms": key == "on", "files": [{"path": str(path), "format": "tsv"}]}))
    for rep in range(reps):
        for key in (("off", "on") if rep % 2 == 0 else ("on", "off")):
            argv = [*pin, *ctx.logtaild, "--config", str(ctx.out / f"native-catchup-{key}.yaml"), "--from-start",
                    "--once", "--log-level", "warning"]
            timed = run_timed(argv, stdout=subprocess.DEVNULL, env=ctx.env)
            if timed.code != 0:
                raise RuntimeError(f"{' '.join(argv)}: exit {timed.code}")
            walls[key].append(timed.wall)
            cpus[key].append(timed.cpu)
            ctx.log(f"native catch-up rep {rep + 1}/{reps} {key:3s} {timed.wall:7.2f}s cpu {timed.cpu:6.2f}s "
                    f"{lines / timed.wall:12,.0f} lines/s rss {timed.maxrss_kb / 1024:.0f} MB")
    out: dict[str, Any] = {"lines": lines, "reps": reps, "pinned": bool(pin)}
    for key, values in walls.items():
        wall = statistics.median(values)
        out[key] = {"median_wall": round(wall, 3), "lines_per_s": round(lines / wall),
                    "median_cpu": round(statistics.median(cpus[key]), 3)}
    # CPU time says more than wall time on a shared machine (a neighbour's load stretches both runs' walls)
    out["slowdown_wall"] = round(out["on"]["median_wall"] / out["off"]["median_wall"] - 1, 3)
    out["slowdown_cpu"] = round(out["on"]["median_cpu"] / out["off"]["median_cpu"] - 1, 3)
    return out


def run(ctx: Context, path: Path, lines: int, reps: int, series: int = 10_000) -> dict[str, Any]:
    return {"memory": memory_per_series(ctx, series), "catchup": catchup(ctx, path, lines, reps)}

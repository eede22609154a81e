"""/metrics scrape time and RSS with many series; RSS with many distinct raw routes; RSS on a big file.

`load()` starts the logtaild daemon on a file through a YAML config (`--config`, validated first
with `--check-config`), reading it from the start, and waits until `logtaild_lines_read_total` shows
every line. Scrapes are sequential GETs on a new connection each (as Prometheus does), timed from
connect to the last body byte.
"""
from __future__ import annotations

import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from bench import gen
from bench.context import Context
from bench.procs import Daemon, children, free_port, pss_kb, read_chars, run_timed, status_kb, wait_for


def load(ctx: Context, name: str, path: Path, lines: int, routes_max: int | None = None,
         extra: dict[str, Any] | None = None) -> Daemon:
    """A logtaild daemon that has read all of `path` (`extra`: more config keys)."""
    port = free_port()
    config: dict[str, Any] = {"listen": f"127.0.0.1:{port}", "interval": 3600, "from_start": True,
                              "files": [{"path": str(path), "format": "tsv"}], **(extra or {})}
    if routes_max is not None:
        config["routes"] = {"max": routes_max}
    config_path = ctx.out / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    checked = subprocess.run([*ctx.logtaild, "--check-config", str(config_path)], capture_output=True,
                             text=True, env=ctx.env)
    if checked.returncode != 0:
        raise RuntimeError(f"logtaild --check-config {config_path}: {checked.stderr.strip()}")
    daemon = Daemon(name, [*ctx.logtaild, "--config", str(config_path), "--log-level", "warning"], ctx.logs,
                    env=ctx.env, port=port)
    daemon.wait_ready(path="/healthz")
    pattern = re.compile(rb'logtaild_lines_read_total\{file="' + re.escape(str(path).encode()) + rb'"\} (\S+)')

    def done() -> bool:
        match = pattern.search(daemon.get(timeout=60))
        return bool(match) and int(float(match.group(1))) >= lines

    wait_for(done, 300, f"logtaild to read {lines} lines of {path.name}", every=0.25)
    return daemon


def _samples(body: bytes) -> tuple[int, int]:
    """(samples, logtaild_http_requests_total series) in an exposition."""
    samples = series = 0
    for line in body.split(b"\n"):
        if line and not line.startswith(b"#"):
            samples += 1
            if line.startswith(b"logtaild_http_requests_total{"):
                series += 1
    return samples, series


def scrape(ctx: Context, combos: list[int], scrapes: int) -> dict[str, Any]:
    """Scrape time and RSS with N distinct (route, status) series, for N in `combos`, lines with a
    latency (so each route also has a histogram); and the largest N again without latency, to show
    what the histograms cost. Keys: "N" and "N-nolatency"."""
    out: dict[str, Any] = {}
    variants = [(n, True) for n in combos] + ([(max(combos), False)] if combos else [])
    for n, latency in variants:
        key = str(n) if latency else f"{n}-nolatency"
        path = ctx.data / f"series-{key}.tsv"
        lines = gen.series_file(path, n, latency=latency)
        daemon = load(ctx, f"scrape-{key}", path, lines, routes_max=20000)
        try:
            times = []
            body = b""
            for _ in range(scrapes):
                start = time.perf_counter()
                body = daemon.get(timeout=120)
                times.append(time.perf_counter() - start)
            samples, series = _samples(body)
            row = {"lines": lines, "series": series, "samples": samples, "body_bytes": len(body),
                   "median_ms": round(1000 * statistics.median(times), 1),
                   "p90_ms": round(1000 * sorted(times)[int(0.9 * (len(times) - 1))], 1),
                   "rss_mb": round(status_kb(daemon.pid) / 1024, 1),
                   "hwm_mb": round(status_kb(daemon.pid, "VmHWM") / 1024, 1), "scrapes": scrapes,
                   "latency": latency}
        finally:
            daemon.stop()
        out[key] = row
        ctx.log(f"scrape {n:>6} series{'' if latency else ' (no latency)'}: {row['median_ms']} ms median "
                f"({samples} samples, {len(body) / 1e6:.1f} MB), rss {row['rss_mb']} MB")
    return out


def distinct_routes(ctx: Context, counts: list[int], min_lines: int) -> dict[str, Any]:
    """RSS with K distinct raw routes (half normalize to one route, half hit the default cap)."""
    out: dict[str, Any] = {}
    for k in counts:
        lines = max(min_lines, 3 * k)
        path = ctx.data / f"routes-{k}-{lines}.tsv"
        if not path.exists():
            gen.distinct_routes_file(path, k, lines)
        daemon = load(ctx, f"routes-{k}", path, lines)
        try:
            start = time.perf_counter()
            body = daemon.get(timeout=120)
            took = time.perf_counter() - start
            samples, series = _samples(body)
            routes = re.search(rb"^logtaild_routes\{[^}]*\} (\S+)", body, re.M)
            row = {"lines": lines, "distinct_raw_routes": k, "series": series, "samples": samples,
                   "routes_admitted": int(float(routes.group(1))) if routes else None,
                   "scrape_ms": round(took * 1000, 1),
                   "rss_mb": round(status_kb(daemon.pid) / 1024, 1),
                   "hwm_mb": round(status_kb(daemon.pid, "VmHWM") / 1024, 1)}
        finally:
            daemon.stop()
        out[str(k)] = row
        ctx.log(f"routes {k:>7} distinct raw: rss {row['rss_mb']} MB (peak {row['hwm_mb']}), "
                f"{row['routes_admitted']} routes admitted, {series} series")
    return out


def big(ctx: Context, base: Path, base_lines: int, gigabytes: float) -> dict[str, Any]:
    """`logtaild --once` over a file of `gigabytes` (the base log repeated): peak RSS of the largest
    process (GNU time), and the memory of logtaild plus any catch-up worker (PSS, so pages a forked
    worker shares with its parent count once) sampled every second, to show it stays flat as the
    run goes through the file."""
    ctx.log(f"big file: preparing {gigabytes} GB")
    start = time.perf_counter()
    path, copies = gen.big_file(ctx.data, base, gigabytes)
    prepared = time.perf_counter() - start
    size = path.stat().st_size
    samples: list[tuple[float, int, int]] = []  # (seconds, bytes read, PSS kB of logtaild + its workers)
    t0 = time.perf_counter()

    def sample(pid: int) -> None:
        pids = [pid, *children(pid)]
        pss = sum(pss_kb(p) for p in pids)
        if pss:  # 0 before the exec (or once gone)
            samples.append((round(time.perf_counter() - t0, 2), sum(read_chars(p) for p in pids), pss))

    ctx.log(f"big file: {size / 1e9:.2f} GB ({copies} copies of {base.name}), logtaild --once")
    with open(ctx.logs / "big-logtaild.stderr", "wb") as err:
        timed = run_timed([*ctx.logtaild, "--file", str(path), "--from-start", "--once", "--log-level",
                           "warning"], stderr=err, env=ctx.env, sampler=sample, sample_every=1.0)
    lines = base_lines * copies
    # memory at each tenth of the run's duration (bytes read are no progress measure once the forked
    # worker has exited and taken its rchar with it)
    marks = []
    for tenth in range(1, 11):
        at = next((x for x in samples if x[0] >= timed.wall * tenth / 10 - 1.0), None)
        if at is not None:
            marks.append({"fraction": tenth / 10, "pss_mb": round(at[2] / 1024, 1), "t": at[0]})
    row = {"file": str(path), "bytes": size, "lines": lines, "copies": copies,
           "prepare_s": round(prepared, 1), **timed.to_json(),
           "lines_per_s": round(lines / timed.wall), "maxrss_mb": round(timed.maxrss_kb / 1024, 1),
           "sampled_peak_pss_mb": round(max((s[2] for s in samples), default=0) / 1024, 1),
           "pss_by_fraction": marks, "samples": [[t, round(kb / 1024, 1)] for t, _r, kb in samples]}
    ctx.log(f"big file: {timed.wall:.1f}s, {row['lines_per_s']:,} lines/s, peak rss {row['maxrss_mb']} MB "
            f"(largest process), {row['sampled_peak_pss_mb']} MB (sampled PSS, all processes), exit {timed.code}; "
            "PSS at each tenth of the run: " + " ".join(f"{m['pss_mb']:.0f}" for m in marks))
    return row

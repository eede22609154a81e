"""Steady state: logtaild and mtail follow the same growing file side by side.

For each rate, tools/webserver_sim.py appends at R lines/s (with latency). After a short warm-up,
a window of `seconds` measures each follower's CPU (utime + stime deltas from /proc/PID/stat, as % of
one core) and RSS (VmRSS, sampled every second); nothing scrapes either daemon during the window.
Then, with the writer still running, `markers` marker lines with a unique route are appended one at
a time (a single O_APPEND write each, at a random 50-250 ms gap so they do not lock onto the 250 ms
poll tick), and both /metrics are polled every 10 ms until the marker's series appears: the
append-to-visible delay, including the scrape that shows it. A marker not seen within 5 s counts as
a timeout; after 3 timeouts in a row a follower is taken to have fallen behind the writer and its
remaining markers count as timeouts too (p99 is then reported as "-"). The writer is then stopped and the bench
waits until both daemons have counted exactly every line written (the simulator's own count plus
the markers). Last, with no writer and no scrapes, an idle window measures CPU again.

Both daemons run with their defaults (logtaild: 250 ms poll, woken sooner by inotify, at most every
80 ms while the file is busy; mtail: 250 ms poll).
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import statistics
import time
from pathlib import Path
from typing import Any

from bench import formats
from bench.context import BENCH, ROOT, Context
from bench.procs import Daemon, cpu_seconds, free_port, status_kb, wait_for

WARMUP = 2.0
POLL_EVERY = 0.010
MARKER_TIMEOUT = 5.0
GIVE_UP = 3
CATCH_UP_TIMEOUT = 180.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _lines_logtaild(body: bytes, path: Path) -> int:
    match = re.search(rb'logtaild_lines_read_total\{file="' + re.escape(str(path).encode()) + rb'"\} (\S+)',
                      body)
    return int(float(match.group(1))) if match else -1


def _lines_mtail(body: bytes) -> int:
    return int(sum(float(m.group(1)) for m in re.finditer(rb"^logtaild_http_requests_total\{[^}]*\} (\S+)",
                                                          body, re.M)))


def _window(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """CPU % of one core and RSS of each pid over `seconds` (RSS sampled every second)."""
    start = time.monotonic()
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    rss: dict[str, list[int]] = {name: [] for name in pids}
    while True:
        now = time.monotonic()
        for name, pid in pids.items():
            rss[name].append(status_kb(pid))
        if now - start >= seconds:
            break
        time.sleep(min(1.0, seconds - (now - start)))
    elapsed = time.monotonic() - start
    out = {}
    for name, pid in pids.items():
        cpu = cpu_seconds(pid) - cpu0[name]
        out[name] = {"cpu_pct": round(100 * cpu / elapsed, 2), "cpu_s": round(cpu, 3),
                     "rss_mb": round(max(rss[name]) / 1024, 1), "seconds": round(elapsed, 2)}
    return out


def _markers(followers: dict[str, tuple[Daemon, bytes]], path: Path, count: int, tag: str,
             rng: random.Random, fmt: str = "tsv") -> dict[str, list[float | None]]:
    """Append `count` marker lines; per follower, seconds until each one shows in /metrics."""
    delays: dict[str, list[float | None]] = {name: [] for name in followers}
    missed: dict[str, int] = {name: 0 for name in followers}  # consecutive timeouts
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(count):
            time.sleep(rng.uniform(0.05, 0.25))
            route = f"/bench/marker/{tag}m{i}"
            needle = f'route="{route}"'.encode()
            line = f"127.0.0.1\tGET {route}\t200\t1\t1.000".encode()
            line = (line if fmt == "tsv" else formats._line(fmt, line)) + b"\n"
            appended = time.perf_counter()
            os.write(fd, line)
            # a follower that missed GIVE_UP markers in a row has fallen behind the writer: its
            # remaining markers count as not seen, without waiting MARKER_TIMEOUT for each
            for name in followers:
                if missed[name] >= GIVE_UP:
                    delays[name].append(None)
            pending = {name: f for name, f in followers.items() if missed[name] < GIVE_UP}
            deadline = appended + MARKER_TIMEOUT
            while pending:
                tick = time.perf_counter()
                for name, (daemon, _x) in list(pending.items()):
                    try:
                        body = daemon.get(timeout=MARKER_TIMEOUT)
                    except OSError:
                        continue
                    if needle in body:
                        delays[name].append(time.perf_counter() - appended)
                        missed[name] = 0
                        del pending[name]
                if time.perf_counter() > deadline:
                    for name in pending:
                        delays[name].append(None)
                        missed[name] += 1
                    break
                time.sleep(max(0.0, POLL_EVERY - (time.perf_counter() - tick)))
    finally:
        os.close(fd)
    return delays


def _delay_stats(values: list[float | None]) -> dict[str, Any]:
    seen = [v for v in values if v is not None]
    timeouts = len(values) - len(seen)
    if not seen:
        return {"n": len(values), "timeouts": timeouts, "p50_ms": None, "p99_ms": None}
    full = seen + [math.inf] * timeouts
    p50, p99 = percentile(full, 0.50), percentile(full, 0.99)
    return {"n": len(values), "timeouts": timeouts,
            "p50_ms": round(1000 * p50, 1) if math.isfinite(p50) else None,
            "p99_ms": round(1000 * p99, 1) if math.isfinite(p99) else None,
            "max_ms": round(1000 * max(seen), 1), "mean_ms": round(1000 * statistics.mean(seen), 1)}


def run(ctx: Context, rates: list[int], seconds: float, idle_seconds: float, markers: int,
        with_mtail: bool = True, fmt: str = "tsv", source: Path | None = None) -> dict[str, Any]:
    """`fmt` other than tsv: the writer is bench.writer over `source` (the bench log), logtaild reads the
    format from a config file and mtail runs bench/mtail-formats/<fmt>/."""
    work = ctx.out / ("steady" if fmt == "tsv" else f"steady-{fmt}")
    work.mkdir(parents=True, exist_ok=True)
    path = work / "access.log"
    path.unlink(missing_ok=True)
    path.touch()
    rng = random.Random(ctx.seed)
    lt_port = free_port()
    if fmt == "tsv":
        source_args = ["--file", str(path)]
    else:
        config = work / "logtaild.yaml"
        config.write_text(json.dumps({"files": [{"path": str(path), **formats.file_config(fmt)}]}))
        source_args = ["--config", str(config)]
    lt = Daemon(f"steady-logtaild-{fmt}", [*ctx.logtaild, *source_args, "--listen", f"127.0.0.1:{lt_port}"],
                ctx.logs, env=ctx.env, port=lt_port)
    followers: dict[str, tuple[Daemon, bytes]] = {"logtaild": (lt, b"")}
    mt = None
    if with_mtail and ctx.mtail:
        mt_port = free_port()
        progs = BENCH / "mtail" if fmt == "tsv" else BENCH / "mtail-formats" / fmt
        mt = Daemon(f"steady-mtail-{fmt}", [ctx.mtail, "--progs", str(progs), "--logs", str(path),
                                     "--port", str(mt_port), "--address", "127.0.0.1", "--logtostderr"],
                    ctx.logs, env=ctx.env, port=mt_port)
        followers["mtail"] = (mt, b"")
    results: dict[str, Any] = {"rates": {}, "file": str(path)}
    try:
        for daemon, _x in followers.values():
            daemon.wait_ready()
        counted = {"logtaild": lambda: _lines_logtaild(lt.get(), path)}
        if mt is not None:
            counted["mtail"] = lambda: _lines_mtail(mt.get())
        expected_total = 0
        for rate in rates:
            if fmt == "tsv":
                argv = [ctx.python, str(ROOT / "tools" / "webserver_sim.py"), "--output-file", str(path),
                        "--rate", str(rate), "--latency", "--seed", str(ctx.seed), "--duration", "86400"]
            else:
                assert source is not None
                argv = [ctx.python, "-m", "bench.writer", "--output-file", str(path), "--source", str(source),
                        "--format", fmt, "--rate", str(rate)]
            env = ctx.env if fmt == "tsv" else {  # the writer imports bench.formats (only the writer)
                **ctx.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), ctx.env.get("PYTHONPATH")]))}
            writer = Daemon(f"steady-writer-{fmt}-{rate}", argv, ctx.logs, env=env)
            writer_start = time.monotonic()
            time.sleep(WARMUP)
            pids = {name: d.pid for name, (d, _x) in followers.items()}
            pids["writer"] = writer.pid
            ctx.log(f"steady {rate:>7,} lines/s: measuring CPU and RSS for {seconds:.0f}s")
            window = _window(pids, seconds)
            ctx.log(f"steady {rate:>7,} lines/s: {markers} markers")
            delays = _markers(followers, path, markers, f"r{rate}", rng, fmt)
            writer.stop()
            writer_seconds = time.monotonic() - writer_start
            match = re.search(r"(?:webserver_sim|bench.writer): wrote (\d+) lines", writer.stderr_tail(4000))
            written = int(match.group(1)) if match else -1
            expected_total += written + markers
            caught: dict[str, Any] = {}
            stopped = time.monotonic()
            for name, fn in counted.items():
                try:
                    wait_for(lambda fn=fn, expected=expected_total: fn() == expected, CATCH_UP_TIMEOUT,
                             f"{name} to count {expected_total} lines", every=0.2)
                    caught[name] = {"exact": True, "after_writer_stop_s": round(time.monotonic() - stopped, 2)}
                except (TimeoutError, OSError) as exc:
                    got = None
                    try:
                        got = fn()
                    except OSError:
                        pass
                    caught[name] = {"exact": False, "counted": got, "expected": expected_total,
                                    "error": str(exc)}
            row = {
                "written": written, "writer_rate": round(written / writer_seconds) if written > 0 else None,
                "window": window,
                "delay": {name: _delay_stats(values) for name, values in delays.items()},
                "delay_raw_ms": {name: [None if v is None else round(v * 1000, 1) for v in values]
                                 for name, values in delays.items()},
                "counted": caught,
            }
            results["rates"][str(rate)] = row
            summary = ", ".join(
                f"{n}: cpu {window[n]['cpu_pct']:.1f}% rss {window[n]['rss_mb']:.0f} MB "
                f"delay p50/p99 {row['delay'][n]['p50_ms']}/{row['delay'][n]['p99_ms']} ms "
                f"exact {caught[n].get('exact')}" for n in followers)
            ctx.log(f"steady {rate:>7,} lines/s (writer {row['writer_rate']}/s, cpu "
                    f"{window['writer']['cpu_pct']:.0f}%): {summary}")
        time.sleep(1.0)
        ctx.log(f"steady idle: measuring CPU for {idle_seconds:.0f}s")
        idle = _window({name: d.pid for name, (d, _x) in followers.items()}, idle_seconds)
        results["idle"] = idle
        ctx.log("steady idle: " + ", ".join(f"{n} {v['cpu_pct']:.2f}%" for n, v in idle.items()))
    finally:
        for daemon, _x in followers.values():
            daemon.stop()
    return results

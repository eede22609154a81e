"""Catch-up per log format: the bench's TSV log written as combined, JSON and nginx `log_format` lines
(with upstream times), and each counted by logtaild and its peers, pinned to one CPU, interleaved.

The derived files hold the same requests as the TSV log (same routes, methods, statuses, sizes and
latencies; the latency in ms for combined and JSON, in seconds for nginx's `$request_time`, with an
upstream time of 80% of it), so the generator's expected totals check every tool. Tools per format:
`logtaild` (`--once --from-start`, its format from a config file; with `taskset`), `mtail` (a program
per format in bench/mtail-formats/, one-shot, with `taskset`: the issue's one-core figure), `mawk`
(tsv and combined), `goaccess` (combined, batch mode, `--log-format=COMBINED` and a JSON report; it
parses and reports, it does not compute our histograms, so it is timed but not checked). logtaild's
exact totals per format are checked in-process first (check.check_logtaild's comparison).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench import check
from bench.context import BENCH, Context
from bench.gen import Expected
from bench.procs import free_port, interleaved

FORMATS = ("tsv", "combined", "json", "nginx")
NGINX_FORMAT = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
                '"$http_user_agent" $request_time $upstream_response_time')
TIME = "01/Dec/2026:12:00:00 +0000"


def _seconds(ms_text: bytes) -> bytes:
    """A latency in ms with at most 3 decimals, as exact text in seconds (`11.855` -> `0.011855`)."""
    whole, _dot, frac = ms_text.partition(b".")
    micro = int(whole) * 1000 + int((frac + b"000")[:3])
    return b"%d.%06d" % divmod(micro, 1_000_000)


def _line(fmt: str, tsv: bytes) -> bytes:
    fields = tsv.split(b"\t")
    ip, request, status, size = fields[:4]
    lat = fields[4] if len(fields) == 5 else None
    if fmt == "combined":
        return b'%s - - [%s] "%s HTTP/1.1" %s %s "-" "bench/1.0" %s' % (ip, TIME.encode(), request, status, size,
                                                                         lat or b"-")
    if fmt == "json":
        method, target = request.split(b" ", 1)
        tail = b', "latency_ms": %s}' % lat if lat is not None else b"}"
        return b'{"ip": "%s", "method": "%s", "path": "%s", "status": %s, "bytes": %s%s' % (
            ip, method, target, status, size, tail)
    if fmt == "nginx":
        if lat is None:
            times = b"- -"
        else:
            seconds = _seconds(lat)
            upstream = _seconds(b"%.3f" % (float(lat) * 0.8))
            times = seconds + b" " + upstream
        return b'%s - - [%s] "%s HTTP/1.1" %s %s "-" "bench/1.0" %s' % (ip, TIME.encode(), request, status, size,
                                                                         times)
    raise ValueError(fmt)


def derive(tsv: Path, fmt: str) -> Path:
    """The TSV log written in `fmt` (cached next to it)."""
    if fmt == "tsv":
        return tsv
    path = tsv.with_suffix(f".{fmt}.log")
    if path.exists() and path.stat().st_mtime >= tsv.stat().st_mtime:
        return path
    tmp = path.with_suffix(".tmp")
    with open(tsv, "rb") as src, open(tmp, "wb") as out:
        while True:
            chunk = src.readlines(1 << 24)
            if not chunk:
                break
            out.write(b"".join(_line(fmt, raw.rstrip(b"\n")) + b"\n" for raw in chunk))
    os.replace(tmp, path)
    return path


def file_config(fmt: str) -> dict[str, Any]:
    """logtaild's file entry for a derived log (without the path)."""
    if fmt == "tsv":
        return {"format": "tsv"}
    if fmt == "combined":
        return {"format": "combined", "latency_unit": "milliseconds"}
    if fmt == "json":
        return {"format": "json"}
    return {"format": "nginx", "log_format": NGINX_FORMAT}


def _config(ctx: Context, fmt: str, path: Path) -> Path:
    out = ctx.logs / f"formats-{fmt}.yaml"
    out.write_text(json.dumps({"files": [{"path": str(path), **file_config(fmt)}]}))  # JSON is YAML
    return out


def _taskset() -> list[str]:
    exe = shutil.which("taskset")
    return [exe, "-c", str(min(os.sched_getaffinity(0)))] if exe else []


def _argv(ctx: Context, tool: str, fmt: str, path: Path) -> list[str] | None:
    pin = _taskset()
    if tool == "logtaild":
        return [*pin, *ctx.logtaild, "--config", str(_config(ctx, fmt, path)), "--from-start", "--once",
                "--log-level", "warning"]
    if tool == "mtail":
        if not ctx.mtail:
            return None
        progs = BENCH / "mtail" if fmt == "tsv" else BENCH / "mtail-formats" / fmt
        return [*pin, ctx.mtail, "--one_shot", "--one_shot_format", "json", "--progs", str(progs), "--logs",
                str(path), "--port", str(free_port()), "--address", "127.0.0.1"]
    if tool == "mawk" and fmt in ("tsv", "combined"):
        exe = shutil.which("mawk")
        script = BENCH / "awk" / ("aggregate.awk" if fmt == "tsv" else "combined.awk")
        return [*pin, exe, "-f", str(script), str(path)] if exe else None
    if tool == "goaccess" and fmt == "combined":
        exe = shutil.which("goaccess")
        return [*pin, exe, str(path), "--log-format=COMBINED", "--no-global-config", "-o",
                str(ctx.logs / "goaccess.json")] if exe else None
    return None


def _verify(tool: str, output: str, expected: Expected) -> dict[str, Any]:
    if tool == "mtail":
        requests, hist = check.parse_mtail_json(output)
        return check.compare(expected, requests, hist, tool).to_json()
    if tool == "mawk":
        requests, hist, bad = check.parse_awk(output)
        return check.compare(expected, requests, hist, tool, [f"{bad} bad lines"] if bad else []).to_json()
    return {"ok": None, "note": "not compared (logtaild: see its in-process check; goaccess: no such totals)"}


def check_logtaild(path: Path, fmt: str, expected: Expected) -> dict[str, Any]:
    """logtaild's exact totals over a derived log, in-process (the check phase's comparison)."""
    from logtaild.config import Config, FileConfig
    from logtaild.run.service import Service

    entry = file_config(fmt)
    config = Config(files=(FileConfig(str(path), **entry),), from_start=True)
    service = Service(config, once=True, out=io.StringIO())
    start = time.perf_counter()
    code = service.run()
    seconds = time.perf_counter() - start
    comparison = check.compare_aggregator(service.sources[str(path)].agg, expected, code, config)
    result = comparison.to_json()
    result["seconds"] = round(seconds, 2)
    result["core"] = service.sources[str(path)].agg.core_name
    return result


def run(ctx: Context, tsv: Path, expected: Expected, reps: int, formats: tuple[str, ...] = FORMATS,
        tools: tuple[str, ...] = ("logtaild", "mtail", "mawk", "goaccess")) -> dict[str, Any]:
    """Per format: the derived file, logtaild's exact check, then every tool `reps` times, interleaved."""
    results: dict[str, Any] = {}
    for fmt in formats:
        start = time.perf_counter()
        path = derive(tsv, fmt)
        ctx.log(f"formats: {fmt}: {path.name} ({path.stat().st_size / 1e6:.0f} MB, "
                f"{time.perf_counter() - start:.1f}s)")
        exact = check_logtaild(path, fmt, expected)
        ctx.log(f"formats: {fmt}: logtaild totals {'exact' if exact['ok'] else 'DIFFERENT'} "
                f"({exact['core']} core){'' if exact['ok'] else ': ' + str(exact['problems'][:3])}")
        available = [t for t in tools if _argv(ctx, t, fmt, path) is not None]
        with open(path, "rb") as handle:  # the page cache, as for the TSV catch-up
            while handle.read(1 << 24):
                pass
        runs, verified = interleaved(available, reps, lambda tool, f=fmt, p=path: _argv(ctx, tool, f, p), ctx.logs,
                                     f"formats-{fmt}", ctx.env, ctx.log, expected.lines,
                                     lambda tool, output: _verify(tool, output, expected))
        summary = {tool: {"median_wall": round(statistics.median(r["wall"] for r in items), 3),
                          "lines_per_s": round(expected.lines / statistics.median(r["wall"] for r in items)),
                          "maxrss_kb": max(r["maxrss_kb"] for r in items),
                          "same_totals": verified.get(tool, {}).get("ok")}
                   for tool, items in runs.items()}
        ratios = {f"logtaild/{peer}": round(summary["logtaild"]["lines_per_s"] / summary[peer]["lines_per_s"], 2)
                  for peer in summary if peer != "logtaild" and "logtaild" in summary}
        results[fmt] = {"file": str(path), "bytes": path.stat().st_size, "exact": exact, "runs": runs,
                        "summary": summary, "ratios": ratios, "verified": verified}
    return results


def table(results: dict[str, Any]) -> str:
    """A markdown table: lines/s (median, one core) per format and tool, logtaild's ratios."""
    rows = ["| format | logtaild | mtail | mawk | goaccess | logtaild / mtail | logtaild / mawk | RSS | totals |",
            "|---|---|---|---|---|---|---|---|---|"]
    for fmt, res in results.items():
        s = res["summary"]

        def rate(tool: str, s: dict[str, Any] = s) -> str:
            return f"{s[tool]['lines_per_s'] / 1e6:.2f}M" if tool in s else "-"

        ratio = res["ratios"]
        rss = f"{s['logtaild']['maxrss_kb'] / 1024:.0f} MB" if "logtaild" in s else "-"
        rows.append(f"| {fmt} | {rate('logtaild')} | {rate('mtail')} | {rate('mawk')} | {rate('goaccess')} | "
                    f"{ratio.get('logtaild/mtail', '-')} | {ratio.get('logtaild/mawk', '-')} | {rss} | "
                    f"{'exact' if res['exact']['ok'] else 'DIFFERENT'} |")
    return "\n".join(rows)

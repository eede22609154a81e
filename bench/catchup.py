"""Catch-up: time each tool over the whole file, start to exit, interleaved, several repetitions.

Tools: `cat F > /dev/null` (the I/O floor), `logtaild --file F --from-start --once` as it runs by
default (it may fork a worker for a large backlog and use both cores), the same pinned to one CPU
with `taskset -c N` (`logtaild-1core`: the issue's "on one core" figure, the one the ratios use),
mtail one-shot with bench/mtail/logtaild.mtail (Go: uses every core it gets), and mawk and gawk
running bench/awk/aggregate.awk (one core). The order rotates
each repetition (A B C, B C A, ...), so no tool always runs first on a cold cache or last on a hot
machine. The file is read once with cat before the first timing, so every tool reads from the page
cache. mtail's and awk's outputs from the first repetition are checked against the expected totals,
to show they did the same work.
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from bench import check
from bench.context import BENCH, Context
from bench.gen import Expected
from bench.procs import free_port, interleaved

ALL_TOOLS = ("cat", "logtaild", "logtaild-1core", "mtail", "mawk", "gawk")


def _argv(ctx: Context, tool: str, path: Path) -> list[str] | None:
    if tool == "cat":
        return ["cat", str(path)]
    if tool in ("logtaild", "logtaild-1core"):
        argv = [*ctx.logtaild, "--file", str(path), "--from-start", "--once", "--log-level", "warning"]
        if tool == "logtaild":
            return argv
        import shutil
        taskset = shutil.which("taskset")
        return [taskset, "-c", str(min(os.sched_getaffinity(0))), *argv] if taskset else None
    if tool == "mtail":
        if not ctx.mtail:
            return None
        # one-shot still opens its HTTP port: a free one on loopback, so runs never collide
        return [ctx.mtail, "--one_shot", "--one_shot_format", "json", "--progs", str(BENCH / "mtail"),
                "--logs", str(path), "--port", str(free_port()), "--address", "127.0.0.1"]
    if tool in ("mawk", "gawk"):
        import shutil
        exe = shutil.which(tool)
        return [exe, "-f", str(BENCH / "awk" / "aggregate.awk"), str(path)] if exe else None
    raise ValueError(tool)


def _verify(tool: str, output: str, expected: Expected) -> dict[str, Any]:
    if tool == "mtail":
        requests, hist = check.parse_mtail_json(output)
        return check.compare(expected, requests, hist, tool).to_json()
    if tool in ("mawk", "gawk"):
        requests, hist, bad = check.parse_awk(output)
        extra = [f"{bad} lines the awk program rejected"] if bad else []
        return check.compare(expected, requests, hist, tool, extra).to_json()
    if tool.startswith("logtaild"):
        ok = "TOTAL" in output or "requests" in output or bool(output.strip())
        return {"ok": ok, "note": "report printed (exact totals: see the check phase)"}
    return {"ok": True}


def run(ctx: Context, path: Path, expected: Expected, reps: int, tools: tuple[str, ...]) -> dict[str, Any]:
    """Time every available tool `reps` times; medians, lines/s, ratios."""
    available = [t for t in tools if _argv(ctx, t, path) is not None]
    missing = [t for t in tools if t not in available]
    with open(path, "rb") as handle:  # warm the page cache
        while handle.read(1 << 24):
            pass
    runs, verified = interleaved(available, reps, lambda tool: _argv(ctx, tool, path), ctx.logs, "catchup",
                                 ctx.env, ctx.log, expected.lines,
                                 lambda tool, output: _verify(tool, output, expected), discard=("cat",))
    summary: dict[str, Any] = {}
    for tool, items in runs.items():
        wall = statistics.median(r["wall"] for r in items)
        summary[tool] = {
            "median_wall": round(wall, 4),
            "lines_per_s": round(expected.lines / wall),
            "mb_per_s": round(path.stat().st_size / wall / 1e6, 1),
            "median_cpu": round(statistics.median(r["user"] + r["sys"] for r in items), 3),
            "maxrss_kb": max(r["maxrss_kb"] for r in items),
            "same_totals": verified.get(tool, {}).get("ok"),
            "exit_codes": sorted({r["code"] for r in items}),
        }
    ratios: dict[str, float] = {}
    for mine in ("logtaild", "logtaild-1core"):
        if mine not in summary:
            continue
        for peer in ("mtail", "mawk", "gawk", "cat"):
            if peer in summary:
                ratios[f"{mine}/{peer}"] = round(summary[mine]["lines_per_s"] / summary[peer]["lines_per_s"], 3)
    return {"file": str(path), "bytes": path.stat().st_size, "lines": expected.lines, "reps": reps,
            "missing": missing, "runs": runs, "summary": summary, "ratios": ratios, "verified": verified}

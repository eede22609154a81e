"""Profile logtaild's catch-up: py-spy (sampling, line-level, little overhead) when installed, and
cProfile (call counts; inflates per-call costs) always. Writes bench/out/profile.txt.

py-spy's raw output is one collapsed stack per line with a sample count; we report the share of
samples by leaf function ("self"), by leaf line, and by function anywhere on the stack ("total").
"""
from __future__ import annotations

import io
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.procs import run_timed

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if os.access(local, os.X_OK) else shutil.which("py-spy")


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/logtaild/", "/lib/python3"):
        if marker in path:
            head, _sep, tail = path.rpartition(marker)
            return (marker.strip("/") + "/" + tail) if marker == "/logtaild/" else tail
    return path


def summarize_raw(text: str, top: int = 15) -> tuple[str, dict[str, Any]]:
    """Tables of self time by function and by line, and total time by function."""
    by_func: Counter[str] = Counter()
    by_line: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for row in text.splitlines():
        stack, _sep, count_text = row.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        n = int(count_text)
        samples += n
        frames = [_FRAME.match(f) for f in stack.split(";")]
        names = []
        for m, raw in zip(frames, stack.split(";")):
            names.append((f"{m['func']} ({_short(m['file'])})", f"{_short(m['file'])}:{m['line']} {m['func']}")
                         if m else (raw, raw))
        leaf_func, leaf_line = names[-1]
        by_func[leaf_func] += n
        by_line[leaf_line] += n
        for func in {f for f, _l in names if "(logtaild/" in f}:  # logtaild's own functions only
            total[func] += n
    out = io.StringIO()
    for title, counter in (("self, by function", by_func), ("self, by line", by_line),
                           ("total (on the stack), by logtaild function", total)):
        out.write(f"\n{title} ({samples} samples)\n")
        for name, n in counter.most_common(top):
            out.write(f"  {100 * n / max(samples, 1):5.1f}%  {name}\n")
    summary = {"samples": samples,
               "self_by_function": [[k, round(100 * v / max(samples, 1), 1)] for k, v in by_func.most_common(top)],
               "self_by_line": [[k, round(100 * v / max(samples, 1), 1)] for k, v in by_line.most_common(top)],
               "total_by_function": [[k, round(100 * v / max(samples, 1), 1)] for k, v in total.most_common(top)]}
    return out.getvalue(), summary


def run(ctx: Context, path: Path, lines: int) -> dict[str, Any]:
    text = io.StringIO()
    result: dict[str, Any] = {}
    spy = _py_spy()
    if spy:
        raw = ctx.out / "pyspy.raw"
        ctx.log("profile: py-spy record over logtaild --once")
        with open(ctx.logs / "pyspy.stderr", "wb") as err:
            timed = run_timed([spy, "record", "-s", "-r", "250", "-f", "raw", "-o", str(raw), "--", *ctx.logtaild,
                               "--file", str(path), "--from-start", "--once", "--log-level", "warning"],
                              stderr=err, env=ctx.env)
        if timed.code == 0 and raw.exists():
            tables, summary = summarize_raw(raw.read_text())
            text.write(f"== py-spy (250 Hz sampling, parent and forked worker together) of "
                       f"`logtaild --file {path.name} --from-start --once`, "
                       f"{lines:,} lines, {timed.wall:.1f}s wall under py-spy\n{tables}\n")
            result["py_spy"] = {**summary, "wall": round(timed.wall, 2)}
        else:
            text.write(f"== py-spy failed (exit {timed.code}); see {ctx.logs / 'pyspy.stderr'}\n")
    stats_path = ctx.out / "profile.pstats"
    ctx.log("profile: cProfile over one in-process pass")
    done = subprocess.run(ctx.bench_module("check_worker", str(path), str(path.with_suffix(".expected.json")),
                                           "--profile", str(stats_path)),
                          capture_output=True, text=True, env=ctx.child_env, cwd=ctx.out)
    if done.returncode != 0:
        raise RuntimeError(f"profile worker failed: {done.stderr.strip()[-800:]}")
    checked = json.loads(done.stdout)
    stats_text = io.StringIO()
    stats = pstats.Stats(str(stats_path), stream=stats_text)
    stats.strip_dirs().sort_stats("tottime").print_stats(15)
    text.write(f"== cProfile of one in-process Service pass ({checked['seconds']:.1f}s under cProfile; "
               f"totals {'exact' if checked['ok'] else 'DIFFERENT'})\n")
    text.write(stats_text.getvalue())
    out_path = ctx.out / "profile.txt"
    out_path.write_text(text.getvalue())
    result.update({"cprofile_seconds": round(checked["seconds"], 2), "text": str(out_path)})
    ctx.log(f"profile: {out_path}")
    return result

"""`python -m bench`: logtaild's benchmark (issue 4), one command, results in bench/out/results.json.

Phases, in this order (pick with --only / --skip):

  check     generate the deterministic log (cached) and check logtaild's exact totals against it
  catchup   logtaild --once vs mtail one-shot, mawk, gawk, cat: interleaved, --reps times, medians
  formats   the same log as combined, JSON and nginx log_format (upstream times): logtaild, mtail, mawk,
            goaccess, each on one CPU (taskset), interleaved, medians; logtaild's totals checked per format
  steady    logtaild and mtail following a writer at each --rates for --steady-seconds; idle CPU
  scrape    /metrics scrape time and RSS with 1,000 and 10,000 series
  routes    RSS with 1k, 10k and 100k distinct raw routes (normalization and the default cap on)
  big       logtaild --once over a --big-gb file (the log repeated): RSS flat in file size
  push      (only when asked) CPU and bytes of one remote-write push with 1,000 and 10,000 series
  native    (only when asked) native histograms on and off: RSS per series at 10,000 series, catch-up speed
  profile   (only when asked) logtaild's catch-up under py-spy and cProfile -> bench/out/profile.txt

A full run takes about 12 minutes on 2 cores; --quick (smaller file, shorter windows) about 2.
Run nothing else heavy at the same time: the figures are only as quiet as the machine.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import catchup, formats, gen, memory, native, profile, push, report, steady
from bench.context import BENCH, Context
from bench.procs import loadavg, wait_for

PHASES = ("check", "catchup", "formats", "steady", "scrape", "routes", "big", "profile", "push", "native")
#: profile, push and native run only when asked (--only)
DEFAULT_PHASES = PHASES[:-3]


def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x]


def _phases(text: str) -> list[str]:
    names = [x for x in text.split(",") if x]
    for name in names:
        if name not in PHASES:
            raise argparse.ArgumentTypeError(f"unknown phase {name!r} (phases: {', '.join(PHASES)})")
    return names


def _described(ctx: Context) -> dict[str, str]:
    """Which logtaild is measured, its bytecode cache warmed first (Context.warm_bytecode)."""
    described = ctx.describe_logtaild()
    ctx.warm_bytecode()
    return described


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small and short: for iterating (about 2 minutes)")
    p.add_argument("--only", type=_phases, metavar="P1,P2", help="run only these phases")
    p.add_argument("--skip", type=_phases, default=[], metavar="P1,P2", help="skip these phases")
    p.add_argument("--lines", type=int, help="lines in the main log (default 5,000,000; quick 300,000)")
    p.add_argument("--reps", type=int, help="catch-up repetitions (default 3; quick 2)")
    p.add_argument("--tools", default=",".join(catchup.ALL_TOOLS), help="catch-up tools (default: %(default)s)")
    p.add_argument("--no-mtail", action="store_true", help="leave mtail out everywhere")
    p.add_argument("--formats", type=lambda t: [x for x in t.split(",") if x], default=list(formats.FORMATS),
                   metavar="F1,F2", help="formats for the formats phase (default: %(default)s)")
    p.add_argument("--format-tools", type=lambda t: [x for x in t.split(",") if x],
                   default=["logtaild", "mtail", "mawk", "goaccess"], metavar="T1,T2",
                   help="tools of the formats phase (default: %(default)s)")
    p.add_argument("--steady-formats", type=lambda t: [x for x in t.split(",") if x], default=["tsv", "combined"],
                   metavar="F1,F2", help="steady state on tsv and also combined (default: %(default)s)")
    p.add_argument("--rates", type=_ints, default=[1000, 10000, 100000], help="steady-state writer rates")
    p.add_argument("--steady-seconds", type=float, help="CPU window per rate (default 30; quick 8)")
    p.add_argument("--idle-seconds", type=float, help="idle CPU window (default 30; quick 5)")
    p.add_argument("--markers", type=int, help="append-to-visible markers per rate (default 50; quick 10)")
    p.add_argument("--series", type=_ints, default=[1000, 10000], help="series counts for the scrape phase")
    p.add_argument("--scrapes", type=int, help="scrapes per series count, median (default 20; quick 5)")
    p.add_argument("--route-counts", type=_ints, default=[1000, 10000, 100000],
                   help="distinct raw routes for the routes phase")
    p.add_argument("--big-gb", type=float, help="size of the big file in GB (default 5; quick 0.1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rev", metavar="REV",
                   help="measure logtaild as committed at git REV (e.g. HEAD), not the working tree")
    p.add_argument("--out", type=Path, default=BENCH / "out", help="output directory (default bench/out)")
    p.add_argument("--table", type=Path, metavar="RESULTS_JSON",
                   help="only print the table of an earlier run's results.json (and its markdown)")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="first wait up to SECONDS for the 1-minute load average to drop below 1")
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    q = args.quick
    defaults = {"lines": (5_000_000, 300_000), "reps": (3, 2), "steady_seconds": (30.0, 8.0),
                "idle_seconds": (30.0, 5.0), "markers": (50, 10), "big_gb": (5.0, 0.1), "scrapes": (20, 5)}
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if q else full)
    phases = list(args.only) if args.only else list(DEFAULT_PHASES)
    args.phases = [p for p in phases if p not in args.skip]
    tools = tuple(t for t in args.tools.split(",") if t)
    for tool in tools:
        if tool not in catchup.ALL_TOOLS:
            raise SystemExit(f"python -m bench: unknown tool {tool!r} (tools: {', '.join(catchup.ALL_TOOLS)})")
    if args.no_mtail:
        tools = tuple(t for t in tools if t != "mtail")
    args.tool_list = tools
    return args


def command_line(argv: list[str]) -> str:
    return " ".join(["python -m bench", *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = resolve(build_parser().parse_args(argv))
    if args.table:
        earlier = json.loads(args.table.read_text())
        table_rows = report.rows(earlier)
        print(report.table(table_rows))
        print(f"\n{earlier['command']}  ({earlier['seconds']:.0f}s; load {earlier['machine']['loadavg_start'][0]:.2f}"
              f" -> {earlier['loadavg_end'][0]:.2f}; logtaild {earlier['logtaild']['rev']})\n")
        print(report.table(table_rows, markdown=True))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = Context(args.out.resolve(), quick=args.quick, seed=args.seed)
    if args.rev:
        ctx.use_rev(args.rev)
    if args.wait_idle:
        ctx.log(f"waiting up to {args.wait_idle:.0f}s for the load average to drop below 1 "
                f"(now {loadavg()[0]:.2f})")
        try:
            wait_for(lambda: loadavg()[0] < 1.0, args.wait_idle, "an idle machine", every=5)
        except TimeoutError as exc:
            ctx.log(f"{exc}; measuring anyway")
    results: dict[str, Any] = {
        "command": command_line(argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": _cpus(), "python": platform.python_version(), "kernel": platform.release(),
                    "loadavg_start": loadavg(), "mtail": _version([ctx.mtail, "--version"]) if ctx.mtail else None,
                    "mawk": _version(["mawk", "-W", "version"]), "gawk": _version(["gawk", "--version"])},
        "logtaild": _described(ctx), "options": {k: v for k, v in vars(args).items()
                                                         if k not in ("out", "only", "skip")},
    }
    results["options"]["out"] = str(ctx.out)
    ctx.log(f"logtaild from {results['logtaild']['module']} ({results['logtaild']['rev']}; counting core "
            f"{results['logtaild']['core']}); "
            f"phases {','.join(args.phases)}; load {loadavg()[0]:.2f}")
    failed = False
    main_log: Path | None = None
    expected = None

    def need_log() -> tuple[Path, gen.Expected]:
        nonlocal main_log, expected
        if main_log is None:
            start = time.perf_counter()
            main_log, expected, reused = gen.cached(ctx.data, args.lines, args.seed)
            took = time.perf_counter() - start
            results["log"] = {"path": str(main_log), "lines": args.lines, "bytes": main_log.stat().st_size,
                              "routes": len({k[0] for k in expected.requests}),
                              "series": len(expected.requests), "reused": reused,
                              "generate_s": None if reused else round(took, 1)}
            ctx.log(f"log: {main_log.name}, {args.lines:,} lines, {main_log.stat().st_size / 1e6:.0f} MB, "
                    f"{results['log']['routes']} routes, {results['log']['series']} series "
                    f"({'reused' if reused else f'generated in {took:.1f}s'})")
        assert expected is not None
        return main_log, expected

    results["phase_seconds"] = {}
    results["phase_loadavg"] = {}
    for phase in args.phases:
        phase_start = time.monotonic()
        results["phase_loadavg"][phase] = loadavg()[0]
        try:
            if phase == "check":
                path, exp = need_log()
                results["check"] = _check(ctx, path)
                failed |= not results["check"]["ok"]
            elif phase == "catchup":
                path, exp = need_log()
                results["catchup"] = catchup.run(ctx, path, exp, args.reps, args.tool_list)
            elif phase == "formats":
                path, exp = need_log()
                results["formats"] = formats.run(ctx, path, exp, args.reps, tuple(args.formats),
                                                 tuple(args.format_tools))
                ctx.log("formats:\n" + formats.table(results["formats"]))
            elif phase == "steady":
                results["steady"] = steady.run(ctx, args.rates, args.steady_seconds, args.idle_seconds,
                                               args.markers, with_mtail=not args.no_mtail)
                if "combined" in args.steady_formats:  # beside the tsv run above, same rates and windows
                    path, exp = need_log()
                    results["steady_combined"] = steady.run(
                        ctx, args.rates, args.steady_seconds, args.idle_seconds, args.markers,
                        with_mtail=not args.no_mtail, fmt="combined", source=path)
            elif phase == "scrape":
                results["scrape"] = memory.scrape(ctx, args.series, args.scrapes)
            elif phase == "routes":
                results["routes"] = memory.distinct_routes(ctx, args.route_counts,
                                                           50_000 if args.quick else 300_000)
            elif phase == "big":
                path, exp = need_log()
                results["big"] = memory.big(ctx, path, exp.lines, args.big_gb)
            elif phase == "profile":
                path, exp = need_log()
                results["profile"] = profile.run(ctx, path, exp.lines)
            elif phase == "push":
                results["push"] = push.run(ctx, args.series, args.scrapes)
            elif phase == "native":
                path, exp = need_log()
                results["native"] = native.run(ctx, path, exp.lines, args.reps, max(args.series))
        except Exception as exc:
            failed = True
            results.setdefault("errors", {})[phase] = f"{type(exc).__name__}: {exc}"
            ctx.log(f"phase {phase} failed: {type(exc).__name__}: {exc}")
            import traceback
            (ctx.logs / f"error-{phase}.txt").write_text(traceback.format_exc())
        results["phase_seconds"][phase] = round(time.monotonic() - phase_start, 1)
    results["loadavg_end"] = loadavg()
    results["seconds"] = round(time.monotonic() - ctx.started, 1)
    rows = report.rows(results)
    results["table"] = [list(r) for r in rows]
    out_json = ctx.out / "results.json"
    out_json.write_text(json.dumps(results, indent=1))
    # every run also keeps its own copy: a later partial run (--only ...) must not lose a full one
    runs = ctx.out / "runs"
    runs.mkdir(exist_ok=True)
    (runs / f"results-{time.strftime('%Y%m%d-%H%M%S')}-{'+'.join(args.phases)}.json").write_text(
        json.dumps(results, indent=1))
    (ctx.out / "results.md").write_text(report.table(rows, markdown=True) + "\n")
    print(report.table(rows))
    print(f"\n{results['command']}  ({results['seconds']:.0f}s; load {results['machine']['loadavg_start'][0]:.2f}"
          f" -> {results['loadavg_end'][0]:.2f}; logtaild {results['logtaild']['rev']})")
    print("phases: " + ", ".join(f"{k} {v:.0f}s" for k, v in results["phase_seconds"].items()))
    print(f"results: {out_json}")
    if results.get("errors"):
        print("errors: " + "; ".join(f"{k}: {v}" for k, v in results["errors"].items()))
    return 1 if failed else 0


def _check(ctx: Context, path: Path) -> dict[str, Any]:
    ctx.log("check: logtaild's exact totals (in-process Service, one pass)")
    expected_json = path.with_suffix(".expected.json")
    done = subprocess.run(ctx.bench_module("check_worker", str(path), str(expected_json)),
                          capture_output=True, text=True, env=ctx.child_env, cwd=ctx.out)
    if done.returncode != 0:
        raise RuntimeError(f"check worker failed: {done.stderr.strip()[-800:]}")
    result = json.loads(done.stdout)
    ctx.log(f"check: {'exact' if result['ok'] else 'DIFFERENT'} ({result['lines']:,} requests, "
            f"{result['seconds']:.1f}s in-process)" + ("" if result["ok"] else f": {result['problems'][:3]}"))
    return result


def _cpus() -> int:
    import os
    return len(os.sched_getaffinity(0))


def _version(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout or done.stderr).strip().split("\n")[0][:120]


if __name__ == "__main__":
    sys.exit(main())

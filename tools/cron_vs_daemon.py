#!/usr/bin/env python3
"""Measure logtaild in cron mode against logtaild as a daemon, on this machine (docs/operating.md, "Cron or daemon").

    python tools/cron_vs_daemon.py [--lines 200000] [--runs 10] [--idle 180]

Prints, for each way of running it: the CPU (user + system) of one cron run with nothing new and of
an idle daemon per hour, the CPU per line on a backlog, and freshness: how long after a line is
written the daemon's /metrics counts it. CPU comes from the kernel (getrusage of the cron children,
/proc/PID/stat of the daemon), so a busy machine inflates wall times but hardly CPU times.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "tools" / "webserver_sim.py"
TICKS = os.sysconf("SC_CLK_TCK")
LINE = b"10.0.0.1\tGET /fresh\t200\t100\t5\n"


def logtaild(*args: str) -> list[str]:
    return [sys.executable, "-m", "logtaild", *args]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def simulate(log: Path, lines: int) -> None:
    subprocess.run([sys.executable, str(SIM), "--output-file", str(log), "--rate", "1000000",
                    "--lines", str(lines), "--latency", "--seed", "1"], check=True, capture_output=True)


def cron_run(log: Path, state: Path, prom: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one `--once` run."""
    cpu, wall = children_cpu(), time.monotonic()
    subprocess.run(logtaild("--file", str(log), "--once", "--state-file", str(state), "--textfile", str(prom)),
                   check=True, capture_output=True, cwd=ROOT)
    return children_cpu() - cpu, time.monotonic() - wall


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        kib = next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
    return kib / 1024


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200_000, help="backlog for the CPU-per-line figures")
    parser.add_argument("--runs", type=int, default=10, help="idle cron runs to time")
    parser.add_argument("--idle", type=float, default=180.0, help="seconds to watch the idle daemon")
    parser.add_argument("--samples", type=int, default=20, help="single lines timed for freshness")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="logtaild-measure-"))

    # ---- cron -----------------------------------------------------------------------------------
    log, state, prom = tmp / "cron.log", tmp / "cron.json", tmp / "cron.prom"
    log.write_bytes(b"")
    cron_run(log, state, prom)  # first run: compiles .pyc files, creates the state
    idle = [cron_run(log, state, prom) for _ in range(args.runs)]
    idle_cpu = statistics.median(c for c, _w in idle)
    idle_wall = statistics.median(w for _c, w in idle)
    simulate(log, args.lines)
    busy_cpu, busy_wall = cron_run(log, state, prom)
    cron_per_line = (busy_cpu - idle_cpu) / args.lines

    # ---- daemon ---------------------------------------------------------------------------------
    dlog = tmp / "daemon.log"
    dlog.write_bytes(b"")
    port = 10181 + os.getpid() % 1000
    proc = subprocess.Popen(logtaild("--file", str(dlog), "--listen", f"127.0.0.1:{port}", "--state-file",
                                     str(tmp / "daemon.json"), "--interval", "10"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait(lambda: _up(port))
        start_cpu = proc_cpu(proc.pid)
        time.sleep(args.idle)
        daemon_idle_hour = (proc_cpu(proc.pid) - start_cpu) / args.idle * 3600
        delays = []
        for i in range(args.samples):
            with open(dlog, "ab") as handle:
                written = time.monotonic()
                handle.write(LINE)
            wait(lambda i=i: metric(port, "logtaild_lines_read_total") >= i + 1)
            delays.append(time.monotonic() - written)
            time.sleep(0.3)
        before = proc_cpu(proc.pid)
        simulate(dlog, args.lines)
        wait(lambda: metric(port, "logtaild_lines_read_total") >= args.samples + args.lines, 300)
        daemon_per_line = (proc_cpu(proc.pid) - before) / args.lines
        daemon_rss = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)

    delays.sort()
    cron_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child
    print(f"cron, one run with nothing new:      {idle_cpu * 1000:.0f} ms CPU, {idle_wall * 1000:.0f} ms wall "
          f"(median of {args.runs})")
    print(f"cron, 60 idle runs an hour:          {idle_cpu * 60:.1f} s CPU per hour")
    print(f"cron, one run over {args.lines} lines:  {busy_cpu:.2f} s CPU, {busy_wall:.2f} s wall; "
          f"{cron_per_line * 1e6:.2f} us CPU per line beyond start-up")
    print(f"daemon, idle:                        {daemon_idle_hour:.1f} s CPU per hour "
          f"(measured over {args.idle:.0f} s)")
    print(f"daemon, {args.lines} lines:             {daemon_per_line * 1e6:.2f} us CPU per line")
    print(f"memory: a cron run peaks at {cron_rss:.0f} MiB RSS for its run; the daemon holds "
          f"{daemon_rss:.0f} MiB RSS")
    print(f"daemon, line written -> on /metrics: median {statistics.median(delays) * 1000:.0f} ms, "
          f"max {delays[-1] * 1000:.0f} ms ({args.samples} lines)")


def _up(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()

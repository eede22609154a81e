"""Processes and /proc: timed runs with rusage, CPU ticks, RSS, HTTP gets, daemons on free ports."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Timed:
    """One process run from start to exit."""

    wall: float
    user: float
    sys: float
    maxrss_kb: int
    code: int

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    def to_json(self) -> dict[str, Any]:
        return {"wall": round(self.wall, 4), "user": round(self.user, 3), "sys": round(self.sys, 3),
                "maxrss_kb": self.maxrss_kb, "code": self.code}


TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def run_timed(argv: Sequence[str], stdout: IO[Any] | int | None = subprocess.DEVNULL,
              stderr: IO[Any] | int | None = subprocess.DEVNULL, env: dict[str, str] | None = None,
              sampler: Callable[[int], None] | None = None, sample_every: float = 0.5) -> Timed:
    """Run `argv` to completion: wall time from spawn to reap; CPU and peak RSS from GNU time.

    The peak RSS comes from `/usr/bin/time -f %M` because a child forked from this (large) Python
    process carries the parent's resident pages until it execs, so wait4()'s ru_maxrss would report
    at least the parent's size; time's own child is forked from the small `time` process. Without
    /usr/bin/time, wait4()'s figures are used (peak RSS then overstated for small tools).

    With `sampler`, it is called with the tool's pid every `sample_every` seconds while it runs
    (to read /proc); without, the parent just blocks in wait4, costing nothing.
    """
    report = None
    if TIME:
        fd, report = tempfile.mkstemp(prefix="bench-time-")
        os.close(fd)
        argv = [TIME, "-f", "%e %U %S %M", "-o", report, *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), stdout=stdout, stderr=stderr, env=env)
    if sampler is None:
        _pid, status, usage = os.wait4(proc.pid, 0)
    else:
        child = None
        while True:
            _pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if _pid:
                break
            if child is None:
                child = _only_child(proc.pid) if TIME else proc.pid
            if child is not None:
                sampler(child)
            time.sleep(sample_every)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    user, system, maxrss = usage.ru_utime, usage.ru_stime, usage.ru_maxrss
    if report:
        try:
            fields = Path(report).read_text().split()
            if fields and fields[0].startswith("Command"):  # "Command exited with non-zero status N"
                fields = fields[6:]
            user, system, maxrss = float(fields[1]), float(fields[2]), int(fields[3])
        except (OSError, ValueError, IndexError):
            pass
        os.unlink(report)
    return Timed(wall, user, system, maxrss, proc.returncode)


def interleaved(tools: Sequence[str], reps: int, argv_of: Callable[[str], list[str] | None], logs: Path,
                name: str, env: dict[str, str] | None, log: Callable[[str], None], lines: int,
                verify: Callable[[str, str], dict[str, Any]],
                discard: Sequence[str] = ()) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Run every tool `reps` times, each round in another order; (runs by tool, verdicts by tool).

    A tool's stdout goes to `logs/<name>-<tool>.out` (DEVNULL for `discard`, such as cat); the first
    round's output is checked with `verify(tool, output)` (tools in `discard` are not).
    """
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    verified: dict[str, Any] = {}
    for rep in range(reps):
        order = [*tools[rep % len(tools):], *tools[:rep % len(tools)]]
        for tool in order:
            argv = argv_of(tool)
            assert argv is not None
            out_path = logs / f"{name}-{tool}.out"
            with open(out_path, "wb") as out, open(logs / f"{name}-{tool}.stderr", "wb") as err:
                timed = run_timed(argv, stdout=subprocess.DEVNULL if tool in discard else out, stderr=err, env=env)
            lines_s = lines / timed.wall if timed.wall > 0 else 0.0
            log(f"{name} rep {rep + 1}/{reps} {tool:8s} {timed.wall:7.2f}s {lines_s:12,.0f} lines/s "
                f"cpu {timed.cpu:6.2f}s rss {timed.maxrss_kb / 1024:6.1f} MB exit {timed.code}")
            runs[tool].append({**timed.to_json(), "lines_per_s": round(lines_s)})
            if rep == 0 and tool not in discard:
                verified[tool] = ({"ok": False, "problems": [f"exit {timed.code}"]} if timed.code != 0 else
                                  verify(tool, out_path.read_text(errors="replace")))
                if verified[tool].get("ok") is False:  # None: not compared here (see the caller)
                    log(f"{name}: {tool}'s totals differ from the expected ones: "
                        f"{verified[tool].get('problems', [])[:3]}")
    return runs, verified


def children(pid: int) -> list[int]:
    """Direct children of a process (from /proc/PID/task/PID/children)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _only_child(pid: int) -> int | None:
    found = children(pid)
    return found[0] if found else None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def status_kb(pid: int, key: str = "VmRSS") -> int:
    """A `kB` line of /proc/PID/status (VmRSS, VmHWM); 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size (shared pages split between their users), from smaps_rollup; 0 if gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def read_chars(pid: int) -> int:
    """Bytes the process has read so far (rchar of /proc/PID/io)."""
    try:
        with open(f"/proc/{pid}/io", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(port: int, path: str = "/metrics", timeout: float = 10.0) -> bytes:
    """The body of GET http://127.0.0.1:PORT/PATH (a new connection each time, as Prometheus)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"GET {path}: HTTP {resp.status}")
        return body
    finally:
        conn.close()


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = open("/proc/loadavg", encoding="ascii").read().split()[:3]
    return float(one), float(five), float(fifteen)


class Daemon:
    """A long-running process (logtaild, mtail, the writer) with its output in files."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.name = name
        self.port = port
        self.log_path = log_dir / f"{name}.stderr"
        self._err = open(self.log_path, "wb")
        self.proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=self._err, env=env)
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def get(self, path: str = "/metrics", timeout: float = 10.0) -> bytes:
        assert self.port is not None
        return http_get(self.port, path, timeout)

    def wait_ready(self, timeout: float = 30.0, path: str = "/metrics") -> None:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.stderr_tail()}")
            try:
                self.get(path, timeout=2)
                return True
            except OSError:
                return False
        wait_for(ready, timeout, f"{self.name} to serve {path}", every=0.1)

    def stderr_tail(self, n: int = 600) -> str:
        if not self._err.closed:
            self._err.flush()
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()
        return self.proc.returncode

"""Running the real `logtaild` process and the simulator from tests, and reading what they say."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "tools" / "webserver_sim.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition",
             interval: float = 0.05) -> object:
    """Poll `condition` every `interval` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class _Reader(threading.Thread):
    """Collects a pipe's lines without blocking the process."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[str] = []

    def run(self) -> None:
        for line in self.stream:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Report:
    rows: list[tuple[str, str, float]] = field(default_factory=list)
    totals: dict[str, float] = field(default_factory=dict)
    #: with several files: the rows under each `[path]` line, by path (rows has them all too)
    groups: dict[str, list[tuple[str, str, float]]] = field(default_factory=dict)


def parse_reports(text: str) -> list[Report]:
    reports: list[Report] = []
    for block in text.split("=" * 29)[1:]:
        report = Report()
        group: list[tuple[str, str, float]] | None = None
        for line in block.strip("\n").split("\n"):
            if line.startswith("[") and line.endswith("]") and "\t" not in line:
                group = report.groups.setdefault(line[1:-1], [])
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                break  # the next report's ctime line
            route, status, qps = parts
            if route == "TOTAL":
                report.totals[status] = float(qps)
                group = None
            else:
                report.rows.append((route, status, float(qps)))
                if group is not None:
                    group.append((route, status, float(qps)))
        reports.append(report)
    return reports


class Daemon:
    """A real `logtaild` process on a free port."""

    def __init__(self, *args: str, port: int | None = None, listen: bool = True,
                 env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        argv = [sys.executable, "-m", "logtaild", *args]
        if listen:
            argv += ["--listen", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        self.out = _Reader(self.proc.stdout)
        self.err = _Reader(self.proc.stderr)
        self.out.start()
        self.err.start()

    def get(self, path: str = "/metrics", timeout: float = 5.0) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as resp:
            return resp.read().decode()

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        return [(s.name, s.labels, s.value)
                for family in text_string_to_metric_families(self.get())
                for s in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples named `name` whose labels include `labels`."""
        return sum(v for n, lab, v in self.samples()
                   if n == name and all(lab.get(k) == val for k, val in labels.items()))

    def ready(self) -> bool:
        try:
            self.get("/healthz", timeout=1)
            return True
        except OSError:
            if self.proc.poll() is not None:
                raise AssertionError(f"logtaild exited {self.proc.returncode}: {self.err.text}") from None
            return False

    def wait_ready(self) -> Daemon:
        wait_for(self.ready, 15, "logtaild to serve /healthz")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Send `sig`; return (exit code, seconds until exit)."""
        start = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.out.join(2)
        self.err.join(2)
        return code, time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def windows(self) -> list[tuple[float, int]]:
        """(length, requests) of every report, from the debug log."""
        return [(float(m.group(1)), int(m.group(2)))
                for m in re.finditer(r"report: window ([0-9.]+)s, (\d+) requests", self.err.text)]


class Simulator:
    """tools/webserver_sim.py as a process; `wait()` returns the lines it says it wrote."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(SIM), *args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)

    def wait(self, timeout: float = 120.0) -> int:
        _out, err = self.proc.communicate(timeout=timeout)
        match = re.search(r"webserver_sim: wrote (\d+) lines", err)
        assert match, f"simulator said: {err}"
        return int(match.group(1))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()


def count_lines(paths: list[Path]) -> int:
    """Lines on disk across files (gzip-compressed ones included)."""
    import gzip
    total = 0
    for path in paths:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return total

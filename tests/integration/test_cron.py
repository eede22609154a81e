"""Cron mode as cron runs it: real `logtaild --once` processes, the simulator, real logrotate.

Every line is counted exactly once across runs: the sum of the runs' report windows and the
textfile's counters both equal what was written, and the textfile's counters only ever grow.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import ROOT, Simulator, count_lines
from tests.support.tools import require_tool

pytestmark = pytest.mark.integration


class Cron:
    """`logtaild --once` runs over one log, one state file, one textfile."""

    def __init__(self, tmp_path: Path, log: Path) -> None:
        self.log, self.state, self.prom = log, tmp_path / "state.json", tmp_path / "logtaild.prom"
        self.counted = 0
        self.last: dict[str, float] = {}

    def args(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "logtaild", "--file", str(self.log), "--once", "--state-file",
                str(self.state), "--textfile", str(self.prom), "--log-level", "debug", *extra]

    def start(self, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.args(*extra), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def finish(self, proc: subprocess.Popen[str]) -> tuple[int, str, str]:
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        windows = [int(n) for n in re.findall(r"report: window [0-9.]+s, (\d+) requests", err)]
        assert len(windows) <= 1
        self.counted += sum(windows)
        return proc.returncode, out, err

    def run(self, *extra: str) -> int:
        code, _out, err = self.finish(self.start(*extra))
        assert code == 0, err
        self.check_textfile()
        return code

    def check_textfile(self) -> None:
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(self.prom.read_text()):
            for sample in family.samples:
                key = f"{sample.name}{sorted(sample.labels.items())}"
                values[key] = sample.value
                if family.type in ("counter", "histogram"):
                    assert sample.value >= self.last.get(key, 0.0), key  # monotonic
        self.last = values

    def total(self, name: str) -> float:
        return sum(v for key, v in self.last.items() if key.startswith(name + "["))


def logrotate(tmp_path: Path, log: Path, body: str) -> None:
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n    rotate 100\n    missingok\n{body}}}\n")
    run = subprocess.run([require_tool("logrotate"), "-f", "-s", str(tmp_path / "lr.state"), str(conf)],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr


def write(log: Path, n: int, seed: int) -> int:
    return Simulator("--output-file", str(log), "--rate", "100000", "--lines", str(n), "--latency",
                     "--seed", str(seed)).wait()


@pytest.mark.parametrize("mode", ["create", "copytruncate", "create\n    delaycompress\n    compress"])
def test_runs_between_writes_and_logrotate_count_every_line_once(tmp_path: Path, mode: str) -> None:
    log = tmp_path / "access.log"
    cron = Cron(tmp_path, log)
    written = write(log, 500, 1)
    cron.run("--from-start")
    for step in range(4):
        written += write(log, 300 + step, 10 + step)
        if step in (1, 2):
            logrotate(tmp_path, log, f"    {mode}\n")
            written += write(log, 50, 20 + step)
        cron.run()
    assert cron.counted == written
    assert cron.total("logtaild_http_requests_total") == written
    assert cron.total("logtaild_lines_read_total") == written
    assert cron.total("logtaild_http_request_duration_seconds_count") == written


def test_runs_while_the_writer_rotates_count_every_line_once(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    cron = Cron(tmp_path, log)
    cron.run()
    sim = Simulator("--output-file", str(log), "--rate", "4000", "--duration", "3", "--latency",
                    "--log-rotation-interval", "0.7", "--seed", "5")
    runs = 0
    while sim.proc.poll() is None:
        cron.run()
        runs += 1
    written = sim.wait()
    cron.run()
    assert runs >= 3
    assert cron.counted == written == count_lines([log, *tmp_path.glob("access.log.*")])
    assert cron.total("logtaild_http_requests_total") == written


def test_overlapping_runs_never_double_count(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    cron = Cron(tmp_path, log)
    log.write_bytes(b"")
    cron.run()
    written = write(log, 150_000, 3)
    first, second = cron.start(), cron.start()  # the second waits for the first's lock
    results = [cron.finish(first), cron.finish(second)]
    assert [code for code, _o, _e in results] == [0, 0]
    assert cron.counted == written
    # a run that cannot get the lock in time exits 0 with one line, counting nothing
    written += write(log, 100, 4)
    lock = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
                             "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)",
                             str(cron.state) + ".lock"], stdout=subprocess.PIPE, text=True)
    try:
        assert lock.stdout.readline().strip() == "locked"
        started = time.monotonic()
        code, out, err = cron.finish(cron.start("--lock-timeout", "0.5"))
        assert time.monotonic() - started >= 0.5
        assert (code, out) == (0, "")
        lines = [line for line in err.splitlines() if "DEBUG" not in line]
        assert len(lines) == 1 and "another logtaild run holds" in lines[0], err
    finally:
        lock.kill()
        lock.wait()
    cron.run()
    assert cron.counted == written
    assert cron.total("logtaild_http_requests_total") == written

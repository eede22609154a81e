"""Never lose or double-count a line: the real daemon, a real writer at >= 5,000 lines/s, real rotation.

Counts are summed over every daemon lifetime from the per-window debug log (each lifetime's last,
partial window is reported at exit), and compared with what the simulator says it wrote, or, for
copytruncate, with the lines that exist on disk (copytruncate itself destroys the lines written
between its copy and its truncate; we must count every line that survived, exactly once).
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, Simulator, count_lines, wait_for
from tests.support.tools import require_tool

pytestmark = pytest.mark.integration

RATE = "5000"


def start_daemon(log: Path, state: Path) -> Daemon:
    return Daemon("--file", str(log), "--interval", "1", "--state-file", str(state),
                  "--log-level", "debug").wait_ready()


def counted(*daemons: Daemon) -> int:
    return sum(n for daemon in daemons for _length, n in daemon.windows())


def finish(daemon: Daemon, expected: int, earlier: int = 0) -> int:
    """Wait until the daemon has read `expected - earlier` lines, stop it, return what it reported."""
    wait_for(lambda: daemon.value("logtaild_lines_read_total") >= expected - earlier, 30,
             f"{expected - earlier} lines read")
    code, seconds = daemon.stop()
    assert code == 0 and seconds < 2.0, daemon.err.text[-2000:]
    assert "Traceback" not in daemon.err.text
    return counted(daemon)


def logrotate_config(tmp_path: Path, log: Path, body: str) -> Path:
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{log} {{\n    rotate 1000\n    missingok\n{body}}}\n")
    return conf


def run_logrotate(conf: Path, state: Path) -> None:
    binary = require_tool("logrotate")
    run = subprocess.run([binary, "-f", "-s", str(state), str(conf)], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 0, run.stderr


def rotate_during(sim: Simulator, conf: Path, tmp_path: Path, every: float = 1.2) -> int:
    rotations = 0
    while sim.proc.poll() is None:
        time.sleep(every)
        if sim.proc.poll() is None:
            run_logrotate(conf, tmp_path / "logrotate.state")
            rotations += 1
    return rotations


def reopen_hook(sim_pid_file: Path) -> str:
    # what nginx's logrotate config does with USR1: tell the writer to reopen its log
    return f"    postrotate\n        kill -HUP $(cat {sim_pid_file})\n    endscript\n"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "access.log"


def sim(log: Path, *extra: str) -> Simulator:
    return Simulator("--output-file", str(log), "--rate", RATE, "--latency", *extra)


def test_simulator_rotating_every_second_at_a_high_rate_for_30s(log: Path, tmp_path: Path) -> None:
    daemon = start_daemon(log, tmp_path / "state.json")
    try:
        written = sim(log, "--duration", "30", "--log-rotation-interval", "1").wait(60)
        assert written > 100_000
        assert finish(daemon, written) == written
    finally:
        daemon.kill()
    assert daemon.err.text.count("rotated (rename)") >= 25


@pytest.mark.parametrize("mode", ["create", "delaycompress-dateext"])
def test_real_logrotate_with_create(log: Path, tmp_path: Path, mode: str) -> None:
    pid_file = tmp_path / "sim.pid"
    body = "    create 0644\n" + reopen_hook(pid_file)
    if mode == "delaycompress-dateext":
        body += "    compress\n    delaycompress\n    dateext\n    dateformat -%Y%m%d-%s\n"
    conf = logrotate_config(tmp_path, log, body)
    daemon = start_daemon(log, tmp_path / "state.json")
    try:
        writer = sim(log, "--duration", "8", "--pid-file", str(pid_file))
        rotations = rotate_during(writer, conf, tmp_path)
        written = writer.wait()
        assert rotations >= 4
        assert finish(daemon, written) == written
    finally:
        daemon.kill()
    if mode == "delaycompress-dateext":
        assert list(tmp_path.glob("access.log-*.gz")), "logrotate compressed nothing"


def test_real_logrotate_with_copytruncate_counts_every_surviving_line_once(log: Path, tmp_path: Path) -> None:
    conf = logrotate_config(tmp_path, log, "    copytruncate\n")
    daemon = start_daemon(log, tmp_path / "state.json")
    try:
        writer = sim(log, "--duration", "8")
        rotations = rotate_during(writer, conf, tmp_path)
        written = writer.wait()
        on_disk = count_lines([log, *tmp_path.glob("access.log.*")])
        assert rotations >= 4
        total = finish(daemon, on_disk)
    finally:
        daemon.kill()
    # every line that survived is counted; lines copytruncate destroyed (written after its copy,
    # before its truncate) are counted too when we read them in time, and never twice
    print(f"copytruncate: written {written}, on disk {on_disk}, counted {total}")
    assert on_disk <= total <= written
    assert written - on_disk < written * 0.01


def test_sigterm_restart_and_rotation_while_stopped(log: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "sim.pid"
    conf = logrotate_config(tmp_path, log, "    create 0644\n" + reopen_hook(pid_file))
    state = tmp_path / "state.json"
    log.write_bytes(b"")
    first = start_daemon(log, state)
    writer = sim(log, "--duration", "9", "--pid-file", str(pid_file))
    daemons = [first]
    try:
        time.sleep(2)
        code, seconds = first.stop()
        assert code == 0 and seconds < 2.0
        run_logrotate(conf, tmp_path / "logrotate.state")  # rotated while we were down
        time.sleep(1)
        second = start_daemon(log, state)
        daemons.append(second)
        time.sleep(2)
        code, _ = second.stop()
        assert code == 0
        third = start_daemon(log, state)  # and a plain restart, no rotation
        daemons.append(third)
        written = writer.wait()
        before = counted(first, second)
        assert finish(third, written, before) + before == written
    finally:
        for daemon in daemons:
            daemon.kill()
    assert "rotated while stopped" in second.err.text


def test_sigkill_loses_nothing_and_double_counts_at_most_one_checkpoint_period(
        log: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = start_daemon(log, state)
    written_first = sim(log, "--duration", "3").wait()
    wait_for(lambda: first.value("logtaild_lines_read_total") == written_first, 20, "all lines read")
    first.kill()  # SIGKILL: no last checkpoint
    second = start_daemon(log, state)
    try:
        written_second = sim(log, "--duration", "2").wait()
        wait_for(lambda: second.value("logtaild_lines_read_total") >= written_second, 20, "lines read")
        time.sleep(0.5)
        read_again = second.value("logtaild_lines_read_total") - written_second
    finally:
        second.stop()
    print(f"SIGKILL: {written_first + written_second} written, {read_again} counted twice")
    assert read_again >= 0  # nothing lost
    assert read_again <= int(RATE) * 1.5  # at most one checkpoint period (1 s) of lines, and a margin

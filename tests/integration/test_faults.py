"""Faults while the log rotates, with the real daemon, a real writer and real logrotate: exact counts.

A rotation creates the new log with mode 0000 (a wrong `create` line), so logtaild cannot open it
for a few polls; the next rotation moves it aside, an operator's postrotate fixes its mode, and
only then does the writer create the next file. The lines of the file that was never open at the
path must be counted, by the catch-up search, exactly once.

Root ignores file modes only through its capabilities, so as root the daemon runs as root with
every capability dropped (through `setpriv`): file modes then apply to it, and it can still read the
checkout and the virtualenv wherever they are (a 0700 temporary folder of root's included).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import ROOT, Daemon, Simulator, _Reader, free_port, wait_for
from tests.support.tools import require_tool

pytestmark = pytest.mark.integration


class DaemonAs(Daemon):
    """`Daemon`, run without capabilities when `drop_caps` (as root), else as it is."""

    def __init__(self, *args: str, drop_caps: bool) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "logtaild", *args, "--listen", f"127.0.0.1:{self.port}"]
        if drop_caps:
            argv = [require_tool("setpriv", "util-linux"), "--bounding-set=-all", "--inh-caps=-all",
                    *argv]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=ROOT)
        self.out = _Reader(self.proc.stdout)
        self.err = _Reader(self.proc.stderr)
        self.out.start()
        self.err.start()


def must_drop_caps() -> bool:
    """True as root, whose capabilities would let it read a file of mode 0000."""
    return os.geteuid() == 0


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder for the log and the state file (0755, so the writer and logrotate may use it)."""
    path = Path(tempfile.mkdtemp(prefix="logtaild-faults-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def logrotate(tmp_path: Path, log: Path, name: str, body: str) -> None:
    conf = tmp_path / f"{name}.conf"
    conf.write_text(f"{log} {{\n    rotate 1000\n    missingok\n{body}}}\n")
    run = subprocess.run([require_tool("logrotate"), "-f", "-s", str(tmp_path / "logrotate.state"),
                          str(conf)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr


def test_a_new_log_unreadable_for_a_few_polls_then_rotated_away_loses_no_line(
        folder: Path, tmp_path: Path) -> None:
    log, pid_file = folder / "access.log", tmp_path / "sim.pid"
    log.write_bytes(b"")
    log.chmod(0o644)
    reopen = f"        kill -HUP $(cat {pid_file})\n"
    daemon = DaemonAs("--file", str(log), "--interval", "1", "--state-file", str(folder / "state.json"),
                      "--log-level", "debug", drop_caps=must_drop_caps()).wait_ready()
    try:
        writer = Simulator("--output-file", str(log), "--rate", "2000", "--duration", "7",
                           "--pid-file", str(pid_file))
        wait_for(pid_file.exists, 10, "the writer's pid file")
        wait_for(lambda: daemon.value("logtaild_lines_read_total") > 0, 10, "the first lines read")
        # a wrong `create` line: the new log is 0000, the writer (root or its owner) writes on
        logrotate(tmp_path, log, "deny", f"    create 0000\n    postrotate\n{reopen}    endscript\n")
        wait_for(lambda: "Permission denied" in daemon.err.text, 10, "logtaild to be refused the file")
        denied_since = daemon.value("logtaild_lines_read_total")
        wait_for(lambda: os.stat(log).st_size > 20_000, 10, "lines in the unreadable file")
        # rotated away unread; the operator's fix comes before the writer creates the next file
        logrotate(tmp_path, log, "fix", f"    nocreate\n    postrotate\n        chmod 0644 {log}.1\n"
                                        f"{reopen}    endscript\n")
        wait_for(lambda: "rotated meanwhile" in daemon.err.text, 10, "the catch-up")
        logrotate(tmp_path, log, "plain", f"    create 0644\n    postrotate\n{reopen}    endscript\n")
        written = writer.wait(60)
        wait_for(lambda: daemon.value("logtaild_lines_read_total") >= written, 30, f"{written} lines read")
        assert daemon.value("logtaild_lines_read_total") == written
        code, _seconds = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0 and "Traceback" not in daemon.err.text
    assert sum(n for _length, n in daemon.windows()) == written  # the reports say so too
    catch_up = [line for line in daemon.err.lines if "rotated meanwhile" in line]
    assert len(catch_up) == 1 and "access.log.1 (" in catch_up[0], catch_up
    print(f"written {written}; {written - denied_since} after the file was denied; catch-up: "
          f"{catch_up[0].split('rotated in between: ')[1]}")

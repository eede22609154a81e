#!/usr/bin/env python3
"""A torture run: every rotation and restart case, mixed at random, against a writer at 5,000 lines/s.

Run from the repository root: `python tools/torture.py --seconds 60 --seed 1`. A chaos loop picks an
action every second or two: logrotate with `create` (the writer reopens on SIGHUP), logrotate with
`copytruncate`, logrotate `create` while logtaild is stopped, SIGTERM and restart, SIGKILL and restart.
Accounting is exact: a SIGKILL is done with the writer paused (SIGSTOP) once everything written has
been read, so the killed lifetime's count is its last scrape, and what the restarted daemon reads
before the writer resumes is what it counts twice (from the older checkpoint). Prints the figures:
written, on disk (copytruncate destroys the lines written between its copy and its truncate),
counted over all lifetimes, counted twice, lost (on disk but never counted).
"""
from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.daemon import Daemon, Simulator, count_lines, wait_for  # noqa: E402


class Torture:
    def __init__(self, folder: Path, rng: random.Random) -> None:
        self.folder, self.rng = folder, rng
        self.log = folder / "access.log"
        self.state = folder / "state.json"
        self.pid_file = folder / "sim.pid"
        self.counted = 0
        self.duplicated = 0
        self.actions: dict[str, int] = {}
        self.daemon: Daemon | None = None
        self.sim: Simulator | None = None

    def start_daemon(self) -> None:
        self.daemon = Daemon("--file", str(self.log), "--interval", "1", "--state-file",
                             str(self.state), "--log-level", "debug").wait_ready()

    def stop_daemon(self) -> None:
        assert self.daemon is not None
        code, _ = self.daemon.stop()
        assert code == 0, self.daemon.err.text[-2000:]
        self.counted += sum(n for _length, n in self.daemon.windows())
        self.daemon = None

    def logrotate(self, mode: str) -> None:
        conf = self.folder / f"{mode}.conf"
        body = ("    copytruncate\n" if mode == "copytruncate" else
                f"    create 0644\n    postrotate\n        kill -HUP $(cat {self.pid_file})\n    endscript\n")
        conf.write_text(f"{self.log} {{\n    rotate 10000\n    missingok\n{body}}}\n")
        subprocess.run(["logrotate", "-f", "-s", str(self.folder / "logrotate.state"), str(conf)],
                       check=True, timeout=30)

    def sigkill(self) -> None:
        """With the writer paused: read everything, SIGKILL, restart, count what is read again."""
        assert self.daemon is not None and self.sim is not None
        self.sim.proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(self._settled, 30, "everything written to be read")
            self.counted += int(self.daemon.value("logtaild_lines_read_total"))
            self.daemon.kill()
            self.start_daemon()
            wait_for(self._settled, 30, "the restarted daemon to settle")
            self.duplicated += int(self.daemon.value("logtaild_lines_read_total"))
        finally:
            self.sim.proc.send_signal(signal.SIGCONT)

    def _settled(self) -> bool:
        assert self.daemon is not None
        first = self.daemon.value("logtaild_lines_read_total")
        time.sleep(0.3)
        return self.daemon.value("logtaild_lines_read_total") == first and \
            self.daemon.value("logtaild_file_lag_bytes") == 0

    def act(self) -> None:
        action = self.rng.choice(["create", "create", "copytruncate", "stopped-rotation", "restart",
                                  "sigkill"])
        self.actions[action] = self.actions.get(action, 0) + 1
        if action in ("create", "copytruncate"):
            self.logrotate(action)
        elif action == "stopped-rotation":
            self.stop_daemon()
            self.logrotate("create")
            time.sleep(0.5)
            self.start_daemon()
        elif action == "restart":
            self.stop_daemon()
            self.start_daemon()
        else:
            self.sigkill()

    def run(self, seconds: float) -> dict[str, int]:
        self.log.write_bytes(b"")
        self.start_daemon()
        self.sim = Simulator("--output-file", str(self.log), "--rate", "5000", "--latency",
                             "--duration", str(seconds), "--pid-file", str(self.pid_file))
        while self.sim.proc.poll() is None:
            time.sleep(self.rng.uniform(0.8, 2.0))
            if self.sim.proc.poll() is None:
                self.act()
        written = self.sim.wait()
        on_disk = count_lines(sorted(self.folder.glob("access.log*")))
        assert self.daemon is not None
        wait_for(self._settled, 60, "the last lines")
        self.stop_daemon()
        unique = self.counted - self.duplicated
        return {"written": written, "on disk": on_disk, "counted": self.counted,
                "counted twice (SIGKILL)": self.duplicated, "counted once": unique,
                "lost (on disk, not counted)": max(0, on_disk - unique),
                "destroyed by copytruncate": written - on_disk,
                "of which counted before destroyed": max(0, unique - on_disk)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="logtaild-torture-"))
    torture = Torture(folder, random.Random(args.seed))
    try:
        figures = torture.run(args.seconds)
    finally:
        for proc in (torture.daemon, ):
            if proc is not None:
                proc.kill()
        shutil.rmtree(folder, ignore_errors=True)
    print("actions:", ", ".join(f"{k} x{v}" for k, v in sorted(torture.actions.items())))
    print(", ".join(f"{k} {v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

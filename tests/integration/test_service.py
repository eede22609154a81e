"""The real daemon as a service: sd_notify over a real socket, SIGHUP reloads, --detach, a full disk."""
from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.daemon import ROOT, Daemon, free_port, wait_for

pytestmark = pytest.mark.integration

LINE = b"1.1.1.1\tGET /a\t200\t10\t5\n"


class NotifySocket(threading.Thread):
    """What systemd listens on: a datagram socket; keeps (arrival time, message) pairs."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._halt = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def times(self, key: str) -> list[float]:
        return [t for t, message in list(self.messages) if key in message.split("\n")]

    def close(self) -> None:
        self._halt.set()
        self.join(2)
        self.sock.close()


def test_sd_notify_ready_watchdog_status_stopping(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    notify = NotifySocket(tmp_path / "notify")
    daemon = Daemon("--file", str(log), "--interval", "60",
                    env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "1000000"})
    try:
        wait_for(lambda: notify.times("READY=1"), 15, "READY=1")
        assert daemon.get("/healthz") == "ok\n"  # READY=1 came after /metrics listens
        ready_message = notify.messages[0][1]
        assert ready_message.startswith("READY=1\nSTATUS=") and "lines/s" in ready_message
        with open(log, "ab") as handle:
            handle.write(LINE * 100)
        wait_for(lambda: len(notify.times("WATCHDOG=1")) >= 6, 15, "six watchdog pings")
        pings = notify.times("WATCHDOG=1")
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        # half of WATCHDOG_USEC, sent at the first loop turn after it is due (the tick is 0.25 s)
        assert min(gaps) >= 0.45, gaps
        assert 0.45 <= statistics.median(gaps) <= 0.8, gaps
        statuses = [m for _t, m in notify.messages if m.startswith("WATCHDOG=1")]
        assert all("\nSTATUS=" in m and " lines/s, lag " in m for m in statuses), statuses
        code, seconds = daemon.stop()
        assert code == 0 and seconds < 2.0
        wait_for(lambda: notify.times("STOPPING=1"), 5, "STOPPING=1")
        assert notify.messages[-1][1].startswith("STOPPING=1")
    finally:
        daemon.kill()
        notify.close()


def write_config(path: Path, text: str) -> None:
    """Atomically, as an editor or a config manager would."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_sighup_reloads_keeps_counts_rejects_bad_configs_and_loses_no_signal(tmp_path: Path) -> None:
    a, b, config = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "config.yaml"
    a.write_bytes(b"")
    b.write_bytes(b"")
    write_config(config, f"interval: 30\nfiles:\n  - path: {a}\n")
    daemon = Daemon("--config", str(config), "--log-level", "debug").wait_ready()
    try:
        with open(a, "ab") as handle:
            handle.write(LINE * 7)
        wait_for(lambda: daemon.value("logtaild_http_requests_total") == 7, 10, "7 requests")
        # a valid change: a second file, a route rule, another interval
        write_config(config, f"interval: 20\nroutes:\n  rules:\n    - {{match: '^/b$', replace: /bee}}\n"
                             f"files:\n  - path: {a}\n  - path: {b}\n    labels: {{site: b}}\n")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: daemon.value("logtaild_config_reloads_total", result="success") == 1, 10, "reload")
        assert daemon.value("logtaild_http_requests_total", route="/a") == 7  # counts kept
        with open(a, "ab") as handle:
            handle.write(LINE * 2)
        with open(b, "ab") as handle:
            handle.write(b"1.1.1.1\tGET /b\t200\t10\t5\n" * 3)
        wait_for(lambda: daemon.value("logtaild_http_requests_total") == 12, 10, "12 requests")
        assert daemon.value("logtaild_http_requests_total", route="/a") == 9  # position kept
        assert daemon.value("logtaild_http_requests_total", route="/bee", site="b") == 3
        # an invalid config: one error line, the old config stays, the failure is counted
        write_config(config, "interval: -1\nfiles: []\n")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: daemon.value("logtaild_config_reloads_total", result="failure") == 1, 10, "failure")
        errors = [line for line in daemon.err.lines if " ERROR " in line]
        assert len(errors) == 1 and "reload failed, keeping the running configuration: interval: must be " \
            "a positive number" in errors[0], errors
        with open(b, "ab") as handle:
            handle.write(b"1.1.1.1\tGET /b\t200\t10\t5\n")
        wait_for(lambda: daemon.value("logtaild_http_requests_total", route="/bee") == 4, 10, "still b")
        # two reloads in a row: the second config must win, whenever its signal arrives
        rule = "routes:\n  rules:\n    - {match: '^/b$', replace: /bee}\n"
        write_config(config, f"interval: 11\n{rule}files:\n  - path: {a}\n  - path: {b}\n    "
                             "labels: {site: b}\n")
        daemon.proc.send_signal(signal.SIGHUP)
        write_config(config, f"interval: 12\n{rule}files:\n  - path: {b}\n    labels: {{site: b}}\n")
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "report every 12s" in daemon.err.text.rsplit("reload applied", 1)[-1]
                 and daemon.value("logtaild_config_reloads_total", result="success") >= 2, 10, "2nd config")
        assert "a.log" not in daemon.get()  # a.log was dropped, b.log stays with its counts
        assert daemon.value("logtaild_http_requests_total", route="/bee") == 4
        code, seconds = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0 and seconds < 2.0
    assert "Traceback" not in daemon.err.text
    # each successful reload closed the report window early: every request is in exactly one window
    assert sum(n for _length, n in daemon.windows()) == 13


def detach_args(tmp_path: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "logtaild", "--file", "access.log", "--interval", "0.5",
            "--listen", f"127.0.0.1:{port}", "--detach", "--pidfile", "run/logtaild.pid",
            "--log-file", "logtaild.log", *extra]


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_detach_pidfile_lock_and_sigterm(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "access.log").write_bytes(b"")
    pidfile = tmp_path / "run" / "logtaild.pid"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "NOTIFY_SOCKET")}
    env["PYTHONPATH"] = str(ROOT)
    started = subprocess.run(detach_args(tmp_path, port), cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=20)
    assert started.returncode == 0, started.stderr
    pid = 0
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the pidfile")
        pid = int(pidfile.read_text())
        assert pid != started.args and os.readlink(f"/proc/{pid}/cwd") == "/"
        assert os.getsid(pid) != os.getsid(0)  # a session of its own (double fork: not its leader)
        with open(f"/proc/{pid}/stat") as handle:
            assert handle.read().rsplit(")", 1)[1].split()[4] == "0"  # tty_nr: no controlling terminal
        probe = Daemon("--version", listen=False)  # reuse the helper's HTTP client on the port
        probe.port = port
        wait_for(lambda: probe.ready(), 10, "/healthz of the detached daemon")
        # relative paths were resolved before the chdir to /
        with open(tmp_path / "access.log", "ab") as handle:
            handle.write(LINE * 4)
        wait_for(lambda: probe.value("logtaild_http_requests_total") == 4, 10, "4 requests")
        wait_for(lambda: "TOTAL\tall\t" in (tmp_path / "logtaild.log").read_text(), 10, "a report in the log")
        # a second instance refuses: one line, exit 2
        second = subprocess.run(detach_args(tmp_path, free_port()), cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=20)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"logtaild: error: already running as pid {pid} (pidfile {pidfile})"]
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pidfile.exists() and process_gone(pid), 5, "the pidfile removed at exit")
        assert "received SIGTERM" in (tmp_path / "logtaild.log").read_text()
    finally:
        if pid and not process_gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_stale_pidfile_is_replaced_and_systemd_never_detaches(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    pidfile = tmp_path / "run" / "logtaild.pid"
    dead = subprocess.Popen(["true"])
    dead.wait()
    pidfile.write_text(f"{dead.pid}\n")
    daemon = Daemon("--file", str(tmp_path / "x.log"), "--detach", "--pidfile", str(pidfile),
                    "--log-file", str(tmp_path / "l.log"), env={"INVOCATION_ID": "0123abcd"}).wait_ready()
    try:  # under systemd: still our child, in the foreground, logging to stderr
        assert daemon.proc.poll() is None
        assert "--detach ignored: running under systemd" in daemon.err.text
    finally:
        code, _ = daemon.stop()
    assert code == 0
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("INVOCATION_ID", "NOTIFY_SOCKET")}
    started = subprocess.run(detach_args(tmp_path, port), cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=20)
    assert started.returncode == 0, started.stderr
    assert "removing stale pidfile" in started.stderr
    # the pidfile is created, then written: wait for a whole pid, not just the file
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() not in ("", str(dead.pid)), 10, "a new pid")
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists() and process_gone(pid), 5, "the pidfile removed")


def mount_tiny_tmpfs(where: Path) -> bool:
    where.mkdir()
    if os.geteuid() != 0:
        return False
    run = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                         capture_output=True, timeout=10)
    return run.returncode == 0


def test_a_full_disk_fails_checkpoints_counts_them_and_keeps_going(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if not mount_tiny_tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here (needs root); tests/unit/test_cron.py simulates ENOSPC")
    daemon = None
    try:
        log = tmp_path / "access.log"
        log.write_bytes(b"")
        daemon = Daemon("--file", str(log), "--interval", "30", "--state-file", str(disk / "state.json"))
        daemon.wait_ready()
        wait_for(lambda: (disk / "state.json").exists(), 10, "a first checkpoint")
        with open(disk / "filler", "wb", buffering=0) as filler:  # fill the disk
            try:
                while True:
                    filler.write(b"\0" * 4096)
                    filler.flush()
            except OSError:
                pass
        with open(log, "ab") as handle:
            handle.write(LINE * 5)
        wait_for(lambda: daemon.value("logtaild_checkpoint_failures_total") >= 2, 10, "failed checkpoints")
        with open(log, "ab") as handle:
            handle.write(LINE * 5)
        wait_for(lambda: daemon.value("logtaild_http_requests_total") == 10, 10, "still counting")
        errors = [line for line in daemon.err.lines if "cannot write state file" in line]
        assert len(errors) == 1 and "No space left on device" in errors[0]  # not one line per second
        (disk / "filler").unlink()
        wait_for(lambda: "written again after" in daemon.err.text, 10, "checkpoints again")
        offset = json.loads((disk / "state.json").read_text())["files"][str(log)][0]["offset"]
        assert offset == 10 * len(LINE)
        code, seconds = daemon.stop()
        assert code == 0 and seconds < 2.0
    finally:
        if daemon is not None:
            daemon.kill()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=10)


def test_a_second_daemon_on_the_same_state_file_exits_2(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = Daemon("--file", str(tmp_path / "a.log"), "--state-file", str(state)).wait_ready()
    try:
        second = Daemon("--file", str(tmp_path / "a.log"), "--state-file", str(state))
        assert second.proc.wait(15) == 2
        second.err.join(2)
        assert second.err.lines == [f"logtaild: error: state file {state} is in use by another logtaild "
                                    f"({state}.lock is locked)"]
    finally:
        code, _ = first.stop()
    assert code == 0

"""Cron mode in-process: runs over writes and rotations count every line once; lock; textfile; errors."""
from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import shutil
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from logtaild.config import Config, FileConfig, NativeHistogramsConfig
from logtaild.run import cron, modes
from logtaild.tail.filestream import FileStream

LINE = b"10.0.0.1\tGET /r/%d\t%d\t100\t%d\n"


class Log:
    """An access log we write to, rotate and truncate, remembering how many lines it was given."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0

    def write(self, n: int) -> None:
        with open(self.path, "ab") as handle:
            for i in range(n):
                handle.write(LINE % (i % 3, 200 if i % 4 else 500, i % 50))
        self.written += n


def run(log: Path, state: Path, textfile: Path | None = None, **config: object) -> tuple[int, int, float]:
    """One cron pass; (exit code, lines it counted, the report's TOTAL all rate)."""
    out = io.StringIO()
    runner = cron.CronRun(Config(files=(FileConfig(str(log)),), state_file=str(state), **config),
                          textfile=str(textfile) if textfile else None, out=out)
    code = runner.run()
    text = out.getvalue()
    if not text:
        return code, 0, 0.0
    total = re.search(r"^TOTAL\tall\t([0-9.]+)$", text, re.M)
    assert total, text
    return code, runner.counted(str(log)), float(total.group(1))


def counters(textfile: Path) -> dict[str, float]:
    """Sample name -> value summed over labels, parsed by prometheus-client's own parser."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(textfile.read_text()):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


@pytest.fixture
def log(tmp_path: Path) -> Log:
    return Log(tmp_path / "access.log")


def test_first_run_reads_from_the_end_then_every_line_once(tmp_path: Path, log: Log) -> None:
    state, prom = tmp_path / "state.json", tmp_path / "logtaild.prom"
    log.write(7)  # before the first run: not ours to count
    assert run(log.path, state, prom)[:2] == (0, 0)
    before = log.written
    counted = 0
    previous: dict[str, float] = {}
    for step in range(6):
        log.write(11 + step)
        if step == 2:  # rename + create, then more lines in both files
            log.path.rename(log.path.with_name("access.log.1"))
            with open(log.path.with_name("access.log.1"), "ab") as old:
                old.write(LINE % (9, 200, 1))
            log.written += 1
            log.write(5)
        if step == 4:  # copytruncate: copy, a line lands between copy and truncate... after our read
            shutil.copyfile(log.path, log.path.with_name("access.log.2"))
            with open(log.path, "r+b") as handle:
                handle.truncate(0)
            log.write(4)
        code, n, _ = run(log.path, state, prom)
        assert code == 0
        counted += n
        now = counters(prom)
        for name, value in previous.items():  # every counter is monotonic
            if name.endswith(("_total", "_count", "_bucket", "_sum")):
                assert now.get(name, 0.0) >= value, name
        previous = now
    assert counted == log.written - before
    assert previous["logtaild_http_requests_total"] == log.written - before
    assert previous["logtaild_lines_read_total"] == log.written - before
    assert previous["logtaild_http_request_duration_seconds_count"] == log.written - before
    assert previous["logtaild_checkpoint_writes_total"] == 7


def test_from_start_reads_the_whole_file_on_the_first_run(tmp_path: Path, log: Log) -> None:
    log.write(9)
    assert run(log.path, tmp_path / "s.json", from_start=True)[:2] == (0, 9)
    assert run(log.path, tmp_path / "s.json", from_start=True)[:2] == (0, 0)


def test_a_file_that_appears_between_runs_is_read_from_its_start(tmp_path: Path, log: Log) -> None:
    state = tmp_path / "s.json"
    assert run(log.path, state)[:2] == (0, 0)  # missing: waited for
    log.write(6)
    assert run(log.path, state)[:2] == (0, 6)


def test_rotated_away_and_not_recreated_is_finished_once(tmp_path: Path, log: Log) -> None:
    state = tmp_path / "s.json"
    log.write(1)
    run(log.path, state)
    log.write(4)
    log.path.rename(tmp_path / "access.log.1")  # no new file yet
    assert run(log.path, state)[:2] == (0, 4)
    assert run(log.path, state)[:2] == (0, 0)  # the finished file is not read again
    log.write(2)
    assert run(log.path, state)[:2] == (0, 2)


def test_the_report_covers_the_time_since_the_previous_run(tmp_path: Path, log: Log) -> None:
    state = tmp_path / "s.json"
    run(log.path, state)
    data = json.loads(state.read_text())
    data["extra"]["cron"]["last_run"] -= 100.0  # as if the previous run were 100 s ago
    state.write_text(json.dumps(data))
    log.write(50)
    code, n, qps = run(log.path, state)
    assert (code, n) == (0, 50)
    assert qps == pytest.approx(0.5, abs=0.01)


def test_an_overlapping_run_waits_then_exits_0_without_counting(tmp_path: Path, log: Log, capsys) -> None:
    state = tmp_path / "s.json"
    run(log.path, state)
    log.write(3)
    options = {"file": (str(log.path),), "state_file": str(state), "once": True, "lock_timeout": 0.2}
    load = lambda opts: Config(files=(FileConfig(str(log.path)),), state_file=str(state))  # noqa: E731
    with cron.state_lock(str(state), 0):
        assert modes.run(options, load) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another logtaild run holds" in err[0] and "skipping this run" in err[0]
    assert run(log.path, state)[:2] == (0, 3)


def test_the_lock_is_granted_when_the_holder_lets_go(tmp_path: Path) -> None:
    state = str(tmp_path / "s.json")
    with cron.state_lock(state, 0):
        with pytest.raises(cron.Busy):
            with cron.state_lock(state, 0.1):
                pass
    with cron.state_lock(state, 0):
        pass


def test_a_full_disk_keeps_the_old_state_and_the_next_run_counts_it_once(
        tmp_path: Path, log: Log, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    state, prom = tmp_path / "s.json", tmp_path / "l.prom"
    run(log.path, state, prom)
    log.write(5)

    def full(fd: int) -> None:  # where a full disk shows up for the state file's atomic write
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full)
        with caplog.at_level(logging.ERROR):
            code, n, _ = run(log.path, state, prom)
    assert code == 1 and n == 0  # no report: it would be counted again by the next run
    assert "No space left on device" in caplog.text
    assert counters(prom).get("logtaild_http_requests_total", 0) == 0
    assert run(log.path, state, prom)[:2] == (0, 5)
    assert counters(prom)["logtaild_http_requests_total"] == 5


def test_textfile_and_flags_need_their_companions(tmp_path: Path) -> None:
    config = Config(files=(FileConfig("x"),))
    with pytest.raises(Exception, match="--textfile needs --state-file"):
        modes.check_flags({"once": True, "textfile": "t.prom"}, config)
    with pytest.raises(Exception, match="--textfile goes with --once"):
        modes.check_flags({"textfile": "t.prom"}, config)
    with pytest.raises(Exception, match="--detach needs --pidfile"):
        modes.check_flags({"detach": True}, config)
    with pytest.raises(Exception, match="--pidfile goes with --detach"):
        modes.check_flags({"pidfile": "p"}, config)


def test_a_stream_remembers_where_its_last_drained_file_ended(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"one\ntwo\n")
    stream = FileStream(str(path), from_start=True, drain_grace=0.0)
    assert [line for batch in stream.poll() for line in batch] == [b"one", b"two"]
    path.rename(tmp_path / "a.log.1")
    with open(tmp_path / "a.log.1", "ab") as handle:
        handle.write(b"three\n")
    assert [line for batch in stream.poll() for line in batch] == [b"three"]
    os.unlink(tmp_path / "a.log.1")
    list(stream.poll())  # deleted, quiet: closed
    [position] = stream.positions()
    assert position.offset == len(b"one\ntwo\nthree\n")
    stream.close()


def test_the_native_buckets_are_kept_between_runs(tmp_path: Path, log: Log) -> None:
    """Cron mode's state file carries the native histograms: two runs count what one would."""
    from logtaild.count import slots as layout
    from logtaild.count.native import NativeSpec, bucket_index

    state = tmp_path / "state.json"
    log.write(30)
    run(log.path, state, from_start=True, native_histograms=NativeHistogramsConfig())
    log.write(30)
    runner = cron.CronRun(Config(files=(FileConfig(str(log.path)),), state_file=str(state),
                                    native_histograms=NativeHistogramsConfig()), out=io.StringIO())
    assert runner.run() == 0
    series = runner.service.state.extra[cron.EXTRA_KEY]["files"][str(log.path)]["series"]
    assert json.loads(json.dumps(series)) == series
    assert all(len(entry) == 6 and "native" in entry[5] for entry in series if entry[4][2] > 0)
    agg = runner.service.sources[str(log.path)].agg
    expected: dict[tuple[str, str], dict[int, int]] = {}
    zeros: dict[tuple[str, str], int] = {}
    for _run in range(2):
        for i in range(30):
            key = ("/r/:id", "200" if i % 4 else "500")  # /r/0, /r/1, /r/2: ids, one route
            if i % 50 == 0:
                zeros[key] = zeros.get(key, 0) + 1
                continue
            index = bucket_index((i % 50) / 1000.0, NativeSpec().schema)
            buckets = expected.setdefault(key, {})
            buckets[index] = buckets.get(index, 0) + 1
    for (route, _method, status, _labels), slot in agg.slots.items():
        hist = layout.native_histogram(slot)
        assert hist is not None
        assert dict(hist.buckets()) == expected.get((route, status), {}), (route, status)
        assert hist.zero == zeros.get((route, status), 0)

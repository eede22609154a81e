"""FileStream when the path cannot be opened for a while (permission denied, out of descriptors) and
the log rotates meanwhile, once or twice: every line is read exactly once, and one log line names
the files read by the catch-up search. Driven step by step; no sleeps, no threads.

The faults are simulated through `os.open`, so the tests mean the same as root (which ignores
`chmod 000`): EACCES is decided per inode (as a file's mode is), EMFILE for every open.
"""
from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from logtaild.tail.filestream import FileStream
from logtaild.tail.position import Position
from tests.support.clock import FakeClock


class Faults:
    """`os.open` failing on demand for files under one folder."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = str(folder)
        self.emfile = False
        self.denied: set[int] = set()  # inodes whose mode forbids us to read them
        self.failures = 0
        real_open = os.open

        def fake_open(path: str, flags: int, *args: int, **kwargs: int) -> int:
            if str(path).startswith(self.folder):
                if self.emfile:
                    self.failures += 1
                    raise OSError(errno.EMFILE, os.strerror(errno.EMFILE), path)
                try:
                    ino = os.stat(path).st_ino
                except OSError:
                    ino = -1
                if ino in self.denied:
                    self.failures += 1
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", fake_open)

    def deny(self, path: Path) -> None:
        self.denied.add(os.stat(path).st_ino)

    def allow_all(self) -> None:
        self.denied.clear()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "access.log"


@pytest.fixture
def faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Faults:
    return Faults(tmp_path, monkeypatch)


def make(log: Path, clock: FakeClock, **kw: object) -> FileStream:
    return FileStream(str(log), clock=clock, drain_grace=1.0, **kw)  # type: ignore[arg-type]


def read(stream: FileStream) -> list[bytes]:
    return [line for batch in stream.poll() for line in batch]


def write(path: Path | str, *lines: str, mtime_s: int | None = None) -> None:
    """Append lines; `mtime_s` sets the file's mtime, so "written after" never hangs on clock granularity."""
    with open(path, "ab") as handle:
        handle.write(b"".join(f"{line}\n".encode() for line in lines))
    if mtime_s is not None:
        os.utime(path, ns=(mtime_s * 10**9, mtime_s * 10**9))


def rotate(log: Path) -> None:
    """access.log.N -> .N+1, ..., access.log -> .1, a new empty access.log (logrotate's `create`)."""
    names = sorted((p for p in log.parent.glob(log.name + ".*") if p.suffix[1:].isdigit()),
                   key=lambda p: -int(p.suffix[1:]))
    for old in names:
        os.rename(old, f"{log}.{int(old.suffix[1:]) + 1}")
    os.rename(log, f"{log}.1")
    log.write_bytes(b"")


def drain_all(stream: FileStream, clock: FakeClock) -> list[bytes]:
    got = read(stream)
    clock.advance(2)  # past the drain grace: drained files are closed
    return got + read(stream)


def numbered(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_permission_denied_while_the_log_rotates_once(log: Path, clock: FakeClock, faults: Faults) -> None:
    write(log, "x")
    stream = make(log, clock)
    write(log, *numbered("a", 3))
    assert read(stream) == [b"a0", b"a1", b"a2"]
    rotate(log)
    faults.deny(log)  # the new file is created 0000
    write(f"{log}.1", "a3")  # the writer has not reopened yet
    write(log, *numbered("b", 4))
    for _ in range(3):  # a few polls: the old file is still read through its descriptor
        assert read(stream) in ([b"a3"], [])
    assert stream.stats.read_errors >= 3
    faults.allow_all()
    assert sorted(drain_all(stream, clock)) == [b"b0", b"b1", b"b2", b"b3"]
    assert stream.draining == 0


def test_permission_denied_while_the_log_rotates_twice(log: Path, clock: FakeClock, faults: Faults,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    write(log, "x")
    stream = make(log, clock)
    write(log, *numbered("a", 3))
    assert read(stream) == [b"a0", b"a1", b"a2"]
    rotate(log)
    faults.deny(log)
    write(f"{log}.1", "a3", mtime_s=1)
    write(log, *numbered("b", 5), mtime_s=2)
    assert read(stream) == [b"a3"]
    assert read(stream) == []
    rotate(log)  # the unreadable file moves to .1 before anyone could read it
    faults.allow_all()  # its mode fixed, and the new file readable
    write(log, *numbered("c", 2))
    with caplog.at_level(logging.INFO, logger="logtaild.filestream"):
        got = drain_all(stream, clock)
    assert sorted(got) == [b"b0", b"b1", b"b2", b"b3", b"b4", b"c0", b"c1"]
    catch_up = [r.getMessage() for r in caplog.records if "rotated meanwhile" in r.getMessage()]
    assert len(catch_up) == 1
    assert "access.log.1 (15 bytes)" in catch_up[0] and "access.log.2" not in catch_up[0].split(";")[1]
    assert stream.draining == 0
    assert read(stream) == []


def test_a_file_rotated_past_us_that_stays_unreadable_is_named_as_not_counted(
        log: Path, clock: FakeClock, faults: Faults, caplog: pytest.LogCaptureFixture) -> None:
    write(log, "x")
    stream = make(log, clock)
    write(log, "a0", mtime_s=1)
    assert read(stream) == [b"a0"]
    rotate(log)
    faults.deny(log)
    write(log, "b0", mtime_s=2)
    assert read(stream) == []
    rotate(log)  # .1 stays 0000; the new file is readable
    write(log, "c0")
    with caplog.at_level(logging.WARNING, logger="logtaild.filestream"):
        assert drain_all(stream, clock) == [b"c0"]
    assert "access.log.1 (cannot be opened: not counted)" in caplog.text


@pytest.mark.parametrize("rotations", [1, 2])
def test_out_of_descriptors_while_the_log_rotates(log: Path, clock: FakeClock, faults: Faults,
                                                  rotations: int) -> None:
    write(log, "x")
    stream = make(log, clock)
    write(log, *numbered("a", 2), mtime_s=1)
    assert read(stream) == [b"a0", b"a1"]
    faults.emfile = True
    expected = [b"a0", b"a1"]
    for n in range(rotations):
        rotate(log)
        lines = numbered(f"r{n}-", 3)
        write(log, *lines, mtime_s=2 + n)
        expected += [line.encode() for line in lines]
        for _ in range(2):
            assert read(stream) == []
    assert faults.failures >= 2 * rotations
    write(log, "last")
    expected.append(b"last")
    faults.emfile = False
    got = [b"a0", b"a1", *drain_all(stream, clock)]
    assert sorted(got) == sorted(expected)
    assert stream.draining == 0 and read(stream) == []


def test_out_of_descriptors_after_the_path_was_deleted(log: Path, clock: FakeClock, faults: Faults) -> None:
    """Nothing open for the path (deleted, drained); it comes back and rotates before we can open it."""
    write(log, "x")
    stream = make(log, clock)
    write(log, "a0", mtime_s=1)
    assert read(stream) == [b"a0"]
    os.unlink(log)
    assert drain_all(stream, clock) == []
    assert read(stream) == []  # the deleted file is closed now
    faults.emfile = True
    write(log, "b0", "b1", mtime_s=2)
    assert read(stream) == []
    rotate(log)
    write(log, "c0")
    faults.emfile = False
    assert sorted(drain_all(stream, clock)) == [b"b0", b"b1", b"c0"]


def checkpoint(log: Path, clock: FakeClock, *lines: str) -> list[Position]:
    log.write_bytes(b"")
    stream = make(log, clock)
    write(log, *lines)
    read(stream)
    saved = stream.positions()
    stream.close()
    return saved


def test_start_up_that_cannot_open_the_path_applies_the_checkpoint_once_it_opens(
        log: Path, clock: FakeClock, faults: Faults) -> None:
    saved = checkpoint(log, clock, "a0", "a1")
    write(log, "a2")  # written while we were stopped
    faults.deny(log)
    stream = make(log, clock, resume=saved)
    assert read(stream) == [] and read(stream) == []
    faults.allow_all()
    assert read(stream) == [b"a2"]  # not a0, a1 again: the path was the checkpointed file


def test_start_up_that_cannot_open_the_path_while_it_rotates_twice(
        log: Path, clock: FakeClock, faults: Faults) -> None:
    saved = checkpoint(log, clock, "a0")
    write(log, "a1", mtime_s=1)
    faults.emfile = True
    stream = make(log, clock, resume=saved)
    assert read(stream) == []
    rotate(log)
    write(log, "b0", mtime_s=2)
    rotate(log)
    write(log, "c0")
    faults.emfile = False
    assert sorted(drain_all(stream, clock)) == [b"a1", b"b0", b"c0"]


def test_files_finished_at_start_up_are_not_read_again_when_the_path_appears(
        log: Path, clock: FakeClock) -> None:
    """Rotated twice while stopped, the path missing: the catch-up when it appears reads nothing twice."""
    saved = checkpoint(log, clock, "a0")
    write(log, "a1", mtime_s=1)
    rotate(log)
    write(log, "b0", mtime_s=2)
    rotate(log)
    log.unlink()  # `nocreate`: the writer has not created the next file yet
    stream = make(log, clock, resume=saved)
    assert sorted(drain_all(stream, clock)) == [b"a1", b"b0"]
    assert stream.draining == 0
    write(log, "c0")
    assert drain_all(stream, clock) == [b"c0"]

"""A seeded random sequence of file actions checked against a model.

The writer numbers every line. Actions: whole and partial writes, rename+create (with the writer
keeping the old handle for a while, with the path missing for a few polls, and with the old file
left ending in a line without its newline), copytruncate, delete+recreate, polls, polls the consumer
abandons after a random number of batches (as the service does when a report is due), clock jumps,
and stop/restart through a checkpoint (with rotations while stopped). After each poll: nothing is
read twice and nothing is read that was not written. At the end, after the drain grace has passed:
every line written was read exactly once, except lines a truncation destroyed before anyone could
read them (the model never lets a truncation race unread data, so that set is empty and the check
is exact).
"""
from __future__ import annotations

import collections
import itertools
import os
import random
from collections.abc import Iterable
from pathlib import Path

import pytest

from logtaild.tail.filestream import FileStream
from tests.support.clock import FakeClock

GRACE = 1.0


class _Writer:
    """An append-mode file handle that remembers whether its file was deleted."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        self.handle = open(path, "ab", buffering=0)
        self.deleted = False
        self.clock = clock
        self.active = clock.now  # last write or rotation: late writes come within the grace of it

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.active = self.clock.now

    def truncate(self, size: int) -> None:
        self.handle.truncate(size)

    def close(self) -> None:
        self.handle.close()


def _open(path: Path, clock: FakeClock) -> _Writer:
    return _Writer(path, clock)


class World:
    """The writer side, the stream under test, and what was written and read."""

    def __init__(self, folder: Path, rng: random.Random) -> None:
        self.path = folder / "access.log"
        self.folder = folder
        self.rng = rng
        self.clock = FakeClock(0.0)
        self.written: set[bytes] = set()
        self.read: list[bytes] = []
        self.seq = 0
        self.rotations = 0
        self.writer = _open(self.path, self.clock)
        self.old_writers: list = []
        self.pending: bytes = b""  # second half of a partially written line
        self.polled_since_create = False
        self.all_read_at_last_poll = True
        self.stream: FileStream | None = self._new_stream(None)

    def _new_stream(self, resume) -> FileStream:
        return FileStream(str(self.path), from_start=True, drain_grace=GRACE, clock=self.clock,
                          chunk=self.rng.choice([7, 64, 4096]), resume=resume)

    # ---- writer actions ----------------------------------------------------------------------
    def write(self) -> None:
        self.all_read_at_last_poll = False
        if self.pending:
            self.writer.write(self.pending)
            self.pending = b""
            return
        for _ in range(self.rng.randint(1, 5)):
            self.seq += 1
            line = b"L%08d" % self.seq
            self.written.add(line)
            if self.rng.random() < 0.2:
                cut = self.rng.randint(1, len(line))
                self.writer.write(line[:cut])
                self.pending = line[cut:] + b"\n"
                return
            self.writer.write(line + b"\n")

    def late_write_to_old(self) -> None:
        """A writer that has not reopened yet appends to the rotated file (within the grace)."""
        renamed = [w for w in self.old_writers
                   if not w.deleted and self.clock.now - w.active < GRACE]
        if renamed and not self.pending:
            self.seq += 1
            line = b"L%08d" % self.seq
            self.written.add(line)
            renamed[-1].write(line + b"\n")

    def _finish_pending(self) -> None:
        if self.pending:
            self.writer.write(self.pending)
            self.pending = b""

    def rotate(self, gap: bool, unterminated: bool = False) -> None:
        """Rename the file away and create a new one.

        `unterminated`: the writer's last line has no newline and it never writes to the old file
        again; the stream hands that line out whole once the drain grace has passed.
        """
        if not self.polled_since_create:
            return  # a file created and rotated away between two polls is never seen by anyone
        self._finish_pending()
        if unterminated:
            self.seq += 1
            line = b"L%08d" % self.seq
            self.written.add(line)
            self.writer.write(line)
        self.rotations += 1
        os.rename(self.path, f"{self.path}.{self.rotations}")
        self.writer.deleted = False
        self.writer.active = self.clock.now
        if unterminated:
            self.writer.close()  # a late write would glue itself to the unterminated line
        else:
            self.old_writers.append(self.writer)
        if gap:
            self.poll()
        self.writer = _open(self.path, self.clock)
        self.polled_since_create = False

    def truncate(self) -> None:
        if self.pending or not self.all_read_at_last_poll or not self.polled_since_create:
            return  # the copytruncate race is copytruncate's own; the model keeps out of it
        self.writer.truncate(0)

    def delete_and_recreate(self) -> None:
        if not self.polled_since_create or self.pending:
            return
        os.unlink(self.path)
        self.writer.deleted = True
        self.old_writers.append(self.writer)
        self.writer = _open(self.path, self.clock)
        self.polled_since_create = False

    # ---- reader actions ----------------------------------------------------------------------
    def poll(self) -> None:
        if self.stream is None:
            return
        self._take(self.stream.poll())
        self.polled_since_create = True
        self.all_read_at_last_poll = True

    def abandoned_poll(self) -> None:
        """Take a random number of batches, drop the rest of the poll, then poll again.

        The service stops taking batches when a report is due; whatever the stream had not
        handed out yet must come out of the next poll, and what it had must not come out again.
        """
        if self.stream is None:
            return
        batches = self.stream.poll()
        self._take(itertools.islice(batches, self.rng.randint(0, 4)))
        del batches  # the generator (if poll() is one) is closed here, at the yield it stopped at
        self.poll()

    def _take(self, batches: Iterable[list[bytes]]) -> None:
        for batch in batches:
            for line in batch:
                assert line in self.written, f"read a line never written: {line!r}"
                self.read.append(line)
        twice = [line for line, n in collections.Counter(self.read).items() if n > 1]
        assert not twice, f"read twice: {twice}"

    def restart(self) -> None:
        """A graceful stop (a last poll, as on SIGTERM), a checkpoint, and a start from it.

        Writers into deleted files stop with it: what they would write afterwards is unreachable
        by anyone, so the model does not count it as written.
        """
        if self.stream is None:
            return
        self.poll()
        for writer in [w for w in self.old_writers if w.deleted]:
            writer.close()
            self.old_writers.remove(writer)
        positions = self.stream.positions()
        self.stream.close()
        self.stream = None
        if self.rng.random() < 0.5 and self.polled_since_create:
            # rotated while we were stopped
            self.rotate(gap=False, unterminated=self.rng.random() < 0.3)
            self.polled_since_create = True  # the new file exists before the restart: it is read from 0
        self.stream = self._new_stream(positions)

    def advance(self) -> None:
        self.clock.now += self.rng.choice([0.1, 0.5, 2.0])

    def step(self) -> None:
        actions = [
            (30, self.write), (12, self.poll), (8, self.abandoned_poll), (5, self.late_write_to_old),
            (4, lambda: self.rotate(gap=False)), (3, lambda: self.rotate(gap=True)),
            (3, lambda: self.rotate(gap=self.rng.random() < 0.5, unterminated=True)),
            (3, self.truncate), (2, self.delete_and_recreate), (3, self.restart), (6, self.advance),
        ]
        weights = [w for w, _ in actions]
        self.rng.choices([a for _, a in actions], weights)[0]()

    def finish(self) -> None:
        self._finish_pending()
        for _ in range(3):
            self.poll()
            self.clock.now += GRACE * 2
        self.poll()
        for writer in [*self.old_writers, self.writer]:
            writer.close()
        if self.stream:
            self.stream.close()


@pytest.mark.parametrize("seed", range(100))
def test_random_file_actions_read_every_line_exactly_once(tmp_path: Path, seed: int) -> None:
    world = World(tmp_path, random.Random(seed))
    for _ in range(250):
        world.step()
    world.finish()
    missing = sorted(world.written - set(world.read))
    assert not missing, f"seed {seed}: {len(missing)} lines never read, first {missing[:3]}"
    assert len(world.read) == len(world.written)

"""FileStream driven step by step: write, rotate, truncate, delete, poll. No sleeps, no threads."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from logtaild.tail.filestream import Chunk, FileStream
from logtaild.tail.position import Position, validates
from tests.support.clock import FakeClock


def lines(stream: FileStream) -> list[bytes]:
    return [line for batch in stream.poll() for line in batch]


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "access.log"


def make(log: Path, clock: FakeClock, **kw) -> FileStream:
    return FileStream(str(log), clock=clock, drain_grace=1.0, **kw)


def test_existing_file_is_read_from_its_end_by_default(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"old1\nold2\n")
    stream = make(log, clock)
    assert lines(stream) == []
    append(log, b"new\n")
    assert lines(stream) == [b"new"]


def test_from_start_reads_existing_lines(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"a\nb\n")
    assert lines(make(log, clock, from_start=True)) == [b"a", b"b"]


def test_start_at_end_mid_line_skips_the_rest_of_that_line(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"a\nhalf")
    stream = make(log, clock)
    append(log, b"-line\nnext\n")
    assert lines(stream) == [b"next"]


def test_partial_line_is_held_until_its_newline(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"")
    stream = make(log, clock)
    append(log, b"par")
    assert lines(stream) == []
    append(log, b"tial\nx")
    assert lines(stream) == [b"partial"]
    append(log, b"\n")
    assert lines(stream) == [b"x"]


def test_a_read_that_ends_a_partial_line_is_not_copied_to_join_it(log: Path, clock: FakeClock) -> None:
    """The line a read left open is joined on its own (the Chunk's head); the next read's buffer is the
    Chunk's data as it came from the file, so a busy file costs no copy of every read."""
    log.write_bytes(b"")
    stream = make(log, clock)
    append(log, b"first\nsec")
    assert lines(stream) == [b"first"]
    append(log, b"ond\nthird\nfourth\nfif")
    (batch,) = list(stream.poll())
    assert isinstance(batch, Chunk) and batch.head == b"second"
    assert batch.span == (b"ond\nthird\nfourth\nfif", 4, 17)
    assert batch == [b"second", b"third", b"fourth"] and len(batch) == 3
    append(log, b"th\n")
    assert lines(stream) == [b"fifth"]


def test_missing_file_is_waited_for_and_read_from_its_start(log: Path, clock: FakeClock) -> None:
    stream = make(log, clock)
    assert lines(stream) == []
    log.write_bytes(b"first\n")
    assert lines(stream) == [b"first"]
    assert stream.stats.reopens == 1


def test_rename_and_create_drains_the_old_file_then_reads_the_new(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"")
    stream = make(log, clock)
    append(log, b"1\n")
    assert lines(stream) == [b"1"]
    writer = open(log, "ab")
    writer.write(b"2\n")
    writer.flush()
    os.rename(log, str(log) + ".1")
    log.write_bytes(b"3\n")
    assert sorted(lines(stream)) == [b"2", b"3"]
    writer.write(b"late\n")  # the writer had not reopened yet
    writer.flush()
    assert lines(stream) == [b"late"]
    assert stream.draining == 1
    clock.advance(1.5)
    assert lines(stream) == []
    assert stream.draining == 0
    assert stream.stats.rotations["rename"] == 1
    writer.close()


def test_a_poll_abandoned_at_a_drained_files_last_line_does_not_hand_it_out_again(
        log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"")
    stream = make(log, clock)
    append(log, b"1\nno newline")
    assert lines(stream) == [b"1"]
    os.rename(log, str(log) + ".1")
    log.write_bytes(b"")
    assert lines(stream) == []
    clock.advance(1.5)
    batches = stream.poll()
    assert next(batches) == [b"no newline"]
    del batches  # the consumer stops here, as the service does when a report is due
    assert stream.draining == 0
    assert lines(stream) == []
    assert stream.positions()[0].offset == 0  # the current (new, empty) file only


def test_an_abandoned_poll_loses_nothing_and_keeps_the_gauges(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"")
    stream = make(log, clock, chunk=4)
    append(log, b"aa\nbb\ncc\n")
    batches = stream.poll()
    assert next(batches) == [b"aa"]
    del batches
    assert stream.stats.offset == 4 and stream.stats.size == 9
    assert lines(stream) == [b"bb", b"cc"]
    assert stream.stats.lag == 0


def test_path_missing_between_rename_and_create(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"")
    stream = make(log, clock)
    writer = open(log, "ab")
    os.rename(log, str(log) + ".1")
    writer.write(b"a\n")
    writer.flush()
    assert lines(stream) == [b"a"]  # still read while the path is missing
    clock.advance(30)
    writer.write(b"b\n")
    writer.flush()
    assert lines(stream) == [b"b"]
    log.write_bytes(b"c\n")
    assert lines(stream) == [b"c"]
    writer.close()


def test_copytruncate_is_detected_and_read_from_zero(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"")
    stream = make(log, clock)
    append(log, b"aaaa\nbbbb\n")
    assert lines(stream) == [b"aaaa", b"bbbb"]
    with open(log, "r+b") as handle:
        handle.truncate(0)
    append(log, b"c\n")
    assert lines(stream) == [b"c"]
    assert stream.stats.rotations["truncate"] == 1


def test_replacement_larger_than_offset_is_a_rotation_not_a_continuation(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"")
    stream = make(log, clock)
    append(log, b"x\n")
    assert lines(stream) == [b"x"]
    other = log.with_name("other")
    other.write_bytes(b"n1\nn2\nn3\n")
    os.replace(other, log)
    assert lines(stream) == [b"n1", b"n2", b"n3"]
    assert stream.stats.rotations["rename"] + stream.stats.rotations["delete"] == 1


def test_delete_then_recreate(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"")
    stream = make(log, clock)
    append(log, b"a\n")
    assert lines(stream) == [b"a"]
    os.unlink(log)
    assert lines(stream) == []
    clock.advance(2)
    assert lines(stream) == []  # deleted and quiet: closed, waiting for the path
    log.write_bytes(b"b\n")
    assert lines(stream) == [b"b"]
    assert stream.stats.rotations["delete"] == 1


def test_symlink_switched_to_a_new_target(tmp_path: Path, clock: FakeClock) -> None:
    first, second, link = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "current.log"
    first.write_bytes(b"")
    link.symlink_to(first)
    stream = make(link, clock)
    append(first, b"1\n")
    assert lines(stream) == [b"1"]
    second.write_bytes(b"2\n")
    tmp_link = tmp_path / "tmp.link"
    tmp_link.symlink_to(second)
    os.replace(tmp_link, link)
    append(first, b"1b\n")
    assert sorted(lines(stream)) == [b"1b", b"2"]


def test_long_line_is_cut_and_the_stream_resumes(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"")
    stream = make(log, clock, max_line=256, chunk=64)
    append(log, b"ok1\n" + b"x" * 1000)
    assert lines(stream) == [b"ok1"]
    append(log, b"y" * 1000 + b"\nok2\n")
    assert lines(stream) == [b"ok2"]
    append(log, b"z" * 300 + b"\nok3\n")  # a whole long line inside one read
    assert lines(stream) == [b"ok3"]
    assert stream.stats.lines_cut == 2


def test_long_line_within_one_big_read_is_cut(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"")
    stream = make(log, clock, max_line=256, chunk=1 << 16)
    append(log, b"a\n" + b"q" * 500 + b"\nb\n")
    assert lines(stream) == [b"a", b"b"]
    assert stream.stats.lines_cut == 1


def test_unreadable_file_is_reported_and_retried(log: Path, clock: FakeClock, caplog, monkeypatch) -> None:
    """Root reads every file, so the kernel's EACCES is injected at os.open."""
    log.write_bytes(b"a\n")
    real_open = os.open

    def denied(path, *args, **kwargs):
        if str(path) == str(log):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    stream = make(log, clock, from_start=True)
    assert lines(stream) == []
    assert lines(stream) == []
    assert stream.stats.read_errors == 3
    assert caplog.text.count("cannot open: Permission denied (running as user") == 1  # once per minute
    monkeypatch.setattr(os, "open", real_open)
    assert lines(stream) == [b"a"]


def test_directory_at_path_is_retried_not_fatal(log: Path, clock: FakeClock, caplog) -> None:
    log.mkdir()
    stream = make(log, clock)
    assert lines(stream) == []
    assert "not a regular file" in caplog.text


# ---- checkpoints -----------------------------------------------------------------------------------

def checkpointed(log: Path, clock: FakeClock, content: bytes, read: bytes = b"") -> list[Position]:
    log.write_bytes(content)
    stream = make(log, clock, from_start=True)
    lines(stream)
    positions = stream.positions()
    stream.close()
    return positions


def test_resume_at_a_validated_checkpoint(log: Path, clock: FakeClock) -> None:
    saved = checkpointed(log, clock, b"a\nb\npart")
    assert saved[-1].offset == 4
    append(log, b"ial\nc\n")
    assert lines(make(log, clock, resume=saved)) == [b"partial", b"c"]


def test_checkpoint_of_a_file_truncated_while_stopped_reads_from_zero(log: Path, clock: FakeClock) -> None:
    saved = checkpointed(log, clock, b"aaaa\nbbbb\n")
    with open(log, "r+b") as handle:
        handle.truncate(0)
    append(log, b"cccc\ndddd\neeee\n")  # larger than the old offset: content, not size, decides
    stream = make(log, clock, resume=saved)
    assert lines(stream) == [b"cccc", b"dddd", b"eeee"]
    assert stream.stats.rotations["truncate"] == 1


def test_rotated_while_stopped_finishes_the_old_file_then_reads_the_new(log: Path, clock: FakeClock) -> None:
    saved = checkpointed(log, clock, b"a\nb\n")
    append(log, b"c\n")
    os.rename(log, str(log) + "-20261122")
    (log.parent / "access.log.2.gz").write_bytes(b"\x1f\x8b not read")
    log.write_bytes(b"d\n")
    stream = make(log, clock, resume=saved)
    assert sorted(lines(stream)) == [b"c", b"d"]
    clock.advance(2)
    assert lines(stream) == []
    assert stream.draining == 0


def test_rotated_twice_while_stopped_finds_the_old_file_by_inode(log: Path, clock: FakeClock) -> None:
    saved = checkpointed(log, clock, b"a\n")
    append(log, b"b\n")
    os.rename(log, str(log) + ".1")
    log.write_bytes(b"c\n")
    os.rename(str(log) + ".1", str(log) + ".2")
    os.rename(log, str(log) + ".1")
    log.write_bytes(b"d\n")
    (log.parent / "access.log.3").write_bytes(b"older\n")  # rotated before the checkpointed file
    os.utime(str(log) + ".3", ns=(1, 1_000_000_000))
    os.utime(str(log) + ".2", ns=(1, 2_000_000_000))
    os.utime(str(log) + ".1", ns=(1, 3_000_000_000))  # created (and rotated) after we stopped
    # the checkpointed file (now .2) is finished from the checkpoint, the file rotated after it (.1)
    # is read whole, the new file at the path from its start; the older .3 is not read again
    assert sorted(lines(make(log, clock, resume=saved))) == [b"b", b"c", b"d"]


def test_checkpointed_file_gone_reads_the_path_from_its_start(log: Path, clock: FakeClock, caplog) -> None:
    saved = checkpointed(log, clock, b"a\n")
    os.unlink(log)
    log.write_bytes(b"n\n")
    assert lines(make(log, clock, resume=saved)) == [b"n"]
    # unlink + create often reuses the inode: then the fingerprint, not the identity, tells
    assert "is gone" in caplog.text or "while stopped" in caplog.text


def test_inode_reuse_with_other_content_does_not_validate(log: Path, clock: FakeClock) -> None:
    saved = checkpointed(log, clock, b"hello\nworld\n")
    position = saved[-1]
    forged = Position(position.dev, position.ino, position.offset, "0" * 64, position.fingerprint_len,
                      position.tail_hash)
    fd = os.open(log, os.O_RDONLY)
    try:
        assert validates(fd, position)
        assert not validates(fd, forged)
    finally:
        os.close(fd)


def test_positions_include_files_being_drained(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"")
    stream = make(log, clock)
    writer = open(log, "ab")
    writer.write(b"a\n")
    writer.flush()
    os.rename(log, str(log) + ".1")
    log.write_bytes(b"b\n")
    lines(stream)
    writer.write(b"tail-of-old\n")
    writer.flush()
    positions = stream.positions()
    assert len(positions) == 2 and positions[0].offset == 2 and positions[1].offset == 2
    stream.close()
    resumed = make(log, clock, resume=positions)
    assert lines(resumed) == [b"tail-of-old"]
    writer.close()


def test_copytruncate_reads_the_lines_it_missed_from_the_copy(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"")
    stream = make(log, clock)
    append(log, b"line-1\nline-2\n")
    assert lines(stream) == [b"line-1", b"line-2"]
    append(log, b"line-3\nline-4\npart")  # written after our last read
    copy = log.with_name("access.log.1")
    copy.write_bytes(log.read_bytes())  # logrotate's copy ...
    with open(log, "r+b") as handle:  # ... then its truncate
        handle.truncate(0)
    append(log, b"line-5\n")
    assert sorted(lines(stream)) == [b"line-3", b"line-4", b"line-5"]
    clock.advance(2)
    assert lines(stream) == [b"part"]  # the copy's unfinished last line, once the copy is quiet
    assert stream.stats.rotations["truncate"] == 1 and stream.draining == 0


def test_truncation_outgrown_before_we_looked_is_still_noticed(log: Path, clock: FakeClock) -> None:
    log.write_bytes(b"")
    stream = make(log, clock)
    append(log, b"aaaa-1\n")
    assert lines(stream) == [b"aaaa-1"]
    with open(log, "r+b") as handle:
        handle.truncate(0)
    append(log, b"bbbb-2\nbbbb-3\n")  # larger than our offset already
    assert lines(stream) == [b"bbbb-2", b"bbbb-3"]
    assert stream.stats.rotations["truncate"] == 1

"""The state file's two generations: a damaged state file (syntax, truncation, a bad offset, inode or
fingerprint) falls back to the previous generation and counts again only the lines read between the
two, says so, and both generations bad starts without checkpoints, saying what that means.

Each test checkpoints a real log through FileStream, damages the state file as a disk, an editor or
a bug would, and counts exactly which lines the next run reads.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from logtaild.tail.checkpoint import Checkpointer, State
from logtaild.tail.filestream import FileStream
from tests.support.clock import FakeClock


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "access.log"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state.json"


def write(path: Path, first: int, last: int) -> None:
    with open(path, "ab") as handle:
        handle.write(b"".join(b"line %04d\n" % i for i in range(first, last)))


def read(stream: FileStream) -> list[bytes]:
    return [line for batch in stream.poll() for line in batch]


def numbers(lines: list[bytes]) -> list[int]:
    return [int(line.split()[1]) for line in lines]


def two_generations(log: Path, state: Path) -> None:
    """state.json.1 checkpoints lines 0-99 of the log, state.json lines 0-149; 150-199 come after."""
    clock = FakeClock()
    log.write_bytes(b"")
    stream = FileStream(str(log), clock=clock)
    checkpointer = Checkpointer(str(state))
    write(log, 0, 100)
    assert len(read(stream)) == 100
    assert checkpointer.save(State({str(log): stream.positions()}), 1.0)
    write(log, 100, 150)
    assert len(read(stream)) == 50
    assert checkpointer.save(State({str(log): stream.positions()}), 2.0)
    stream.close()
    write(log, 150, 200)  # written while stopped


def restart(log: Path, state: Path) -> tuple[list[int], Checkpointer]:
    checkpointer = Checkpointer(str(state))
    saved = checkpointer.load().positions.get(str(log))
    stream = FileStream(str(log), clock=FakeClock(), resume=saved)
    try:
        return numbers(read(stream)), checkpointer
    finally:
        stream.close()


def edit(state: Path, **fields: int | str) -> None:
    """Change fields of the path's last checkpoint in the state file."""
    data = json.loads(state.read_text())
    for entries in data["files"].values():
        entries[-1].update(fields)
    state.write_text(json.dumps(data))


def test_an_undamaged_state_file_resumes_exactly(log: Path, state: Path) -> None:
    two_generations(log, state)
    assert (state.parent / "state.json.1").exists()
    got, checkpointer = restart(log, state)
    assert got == list(range(150, 200)) and checkpointer.fallbacks == 0


def test_syntax_damage_falls_back_to_the_previous_generation(log: Path, state: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    two_generations(log, state)
    state.write_text(state.read_text().replace('"files"', '"files', 1))
    with caplog.at_level(logging.WARNING):
        got, checkpointer = restart(log, state)
    assert got == list(range(100, 200))  # 100-149 counted again, nothing lost
    assert checkpointer.fallbacks == 1
    assert "is damaged" in caplog.text and "state.json.1, saved" in caplog.text
    assert "s ago" in caplog.text and "counted again" in caplog.text


def test_a_truncated_state_file_falls_back_to_the_previous_generation(log: Path, state: Path) -> None:
    two_generations(log, state)
    text = state.read_text()
    state.write_text(text[: len(text) // 2])
    got, _ = restart(log, state)
    assert got == list(range(100, 200))


def test_a_bad_offset_resumes_from_the_previous_generation(log: Path, state: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    two_generations(log, state)
    edit(state, offset=1234)  # inside the file, on no line boundary we read: the hash before it differs
    with caplog.at_level(logging.WARNING):
        got, checkpointer = restart(log, state)
    assert got == list(range(100, 200))  # not 0-199: the whole file counted twice
    assert checkpointer.fallbacks == 1
    assert "matches no file" in caplog.text and "instead of the whole file" in caplog.text


def test_a_bad_inode_with_the_checkpointed_bytes_resumes_at_the_offset(log: Path, state: Path) -> None:
    two_generations(log, state)
    edit(state, ino=123456789)
    got, checkpointer = restart(log, state)
    assert got == list(range(150, 200))  # the content decides: nothing counted twice
    assert checkpointer.fallbacks == 0


def test_a_bad_inode_and_offset_resumes_from_the_previous_generation(log: Path, state: Path) -> None:
    two_generations(log, state)
    edit(state, ino=123456789, offset=1234)
    got, checkpointer = restart(log, state)
    assert got == list(range(100, 200))
    assert checkpointer.fallbacks == 1


def test_a_bad_fingerprint_resumes_from_the_previous_generation(log: Path, state: Path) -> None:
    two_generations(log, state)
    edit(state, fingerprint="0" * 64)
    got, _ = restart(log, state)
    assert got == list(range(100, 200))


def test_a_bad_offset_without_a_previous_generation_says_it_counts_twice(
        log: Path, state: Path, caplog: pytest.LogCaptureFixture) -> None:
    two_generations(log, state)
    (state.parent / "state.json.1").unlink()
    edit(state, offset=1234)
    with caplog.at_level(logging.WARNING):
        got, _ = restart(log, state)
    assert got == list(range(200))  # what the message says: counted twice from the start
    assert "counted twice" in caplog.text and "cannot be counted" not in caplog.text


def test_both_generations_bad_starts_without_checkpoints_and_says_so(
        log: Path, state: Path, caplog: pytest.LogCaptureFixture) -> None:
    two_generations(log, state)
    state.write_text("{")
    (state.parent / "state.json.1").write_text("")
    with caplog.at_level(logging.WARNING):
        got, checkpointer = restart(log, state)
    assert got == []  # read from the end: 150-199, written while stopped, are not counted
    assert checkpointer.fallbacks == 0
    assert "starting without checkpoints" in caplog.text and "are not counted" in caplog.text


def test_the_damaged_file_never_becomes_the_previous_generation(log: Path, state: Path) -> None:
    two_generations(log, state)
    previous = (state.parent / "state.json.1").read_text()
    state.write_text("{")
    checkpointer = Checkpointer(str(state))
    loaded = checkpointer.load()
    assert checkpointer.save(State(loaded.positions, {"n": 1}), 3.0)
    assert (state.parent / "state.json.1").read_text() == previous  # not "{"
    first = state.read_text()
    assert checkpointer.save(State(loaded.positions, {"n": 2}), 4.0)
    assert (state.parent / "state.json.1").read_text() == first


def test_a_removed_state_file_is_a_fresh_start_even_with_a_previous_generation(
        log: Path, state: Path) -> None:
    two_generations(log, state)
    state.unlink()  # how an operator starts over
    got, checkpointer = restart(log, state)
    assert got == [] and checkpointer.fallbacks == 0


def test_an_invalid_entry_uses_the_previous_generations_entry(log: Path, state: Path) -> None:
    two_generations(log, state)
    edit(state, offset=-1)
    got, checkpointer = restart(log, state)
    assert got == list(range(100, 200)) and checkpointer.fallbacks == 1

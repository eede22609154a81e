"""The state file, its previous generation and its temp files are private (0600) whatever the umask,
and no temp file is left behind."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from logtaild.tail import checkpoint
from logtaild.tail.checkpoint import Checkpointer, State
from logtaild.tail.position import Position

POSITION = Position(1, 2, 30, "ab" * 32, 30, "cd" * 32)


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)  # the worst case: nothing masked
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_state_file_and_temp_files_are_0600(tmp_path: Path, open_umask: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    temp_modes: list[tuple[str, int]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        temp_modes.append((os.path.basename(src), mode(src)))
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", spy)
    path = tmp_path / "state.json"
    ck = Checkpointer(str(path))
    assert ck.save(State({"/var/log/a.log": [POSITION]}), 1.0)
    assert mode(path) == 0o600
    path.chmod(0o644)  # an older file (or an operator) made it readable: the next write makes it private again
    assert ck.save(State({"/var/log/a.log": [POSITION, POSITION]}), 2.0)
    assert mode(path) == 0o600
    # the first write, then the first generation kept as state.json.1 and the second write
    assert [m for _name, m in temp_modes] == [0o600, 0o600, 0o600]
    assert all(name.startswith(".logtaild-state.") for name, _m in temp_modes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.1"]
    assert mode(tmp_path / "state.json.1") == 0o600
    assert ck.load().positions == {"/var/log/a.log": [POSITION, POSITION]}


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", broken_fsync)
    ck = Checkpointer(str(tmp_path / "state.json"))
    assert not ck.save(State({"a": [POSITION]}), 1.0)
    assert ck.failures == 1 and list(tmp_path.iterdir()) == []

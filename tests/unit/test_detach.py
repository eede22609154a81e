"""detach.py without forking: which pidfile errors mean "another instance holds it"."""
from __future__ import annotations

from pathlib import Path

import pytest

from logtaild.run import detach


def test_a_held_pidfile_is_recognized_and_other_lock_errors_are_not(tmp_path: Path) -> None:
    path = str(tmp_path / "logtaild.pid")
    held = detach.claim_pidfile(path)
    held.acquire()
    try:
        lock_class = type(held)  # python-daemon's TimeoutPIDLockFile: this test imports neither library
        for timeout in (0, 0.05):  # lockfile's AlreadyLocked, then its LockTimeout
            with pytest.raises(Exception) as taken:
                lock_class(path, acquire_timeout=timeout).acquire()
            assert detach.pidfile_taken(taken.value), type(taken.value)
        with pytest.raises(Exception) as failed:  # LockFailed: the folder does not exist
            lock_class(str(tmp_path / "missing" / "x.pid"), acquire_timeout=0).acquire()
        assert not detach.pidfile_taken(failed.value), type(failed.value)
        assert not detach.pidfile_taken(OSError("other"))
    finally:
        held.release()

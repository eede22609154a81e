"""`Waker`: the coalescing rule (fake clock, fake hints: no sleeps) and the hint sources (watchdog's
inotify read from the loop thread, watchdog's observer).

The hint tests use real files; they assert only which way a wait ends (a hint, `wake()`, or its
timeout), never how long it took.
"""
from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import warnings
from pathlib import Path

import pytest

from logtaild.config import Config, FileConfig
from logtaild.run.service import Service
from logtaild.tail import waker as waker_mod
from logtaild.tail.waker import Waker, hold_for
from tests.support.clock import FakeClock

LONG = 10.0  # a hint must end a wait long before this; only reached if the test fails
SHORT = 0.05  # a wait that must time out (nothing relevant happens)
LINE = b"1.1.1.1\tGET /a\t200\t10\t5\n"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux only")


class FakeHints:
    """Records the waits; answers them from a script (default: each wait times out)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[tuple[float, bool]] = []
        self.answers: list[bool] = []

    def watch(self, folder: str, name: str) -> None:
        pass

    def wait(self, timeout: float, hints: bool) -> bool:
        self.waits.append((round(timeout, 6), hints))
        woke = self.answers.pop(0) if self.answers else False
        if not woke:
            self.clock.now += timeout
        return woke

    def wake(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def fake() -> tuple[Waker, FakeHints, FakeClock]:
    clock = FakeClock(100.0)
    hints = FakeHints(clock)
    return Waker(0.25, min_gap=0.04, clock=clock, hints=hints), hints, clock


# ---- the coalescing rule -----------------------------------------------------------------------


@pytest.mark.parametrize(("now", "busy", "expected"), [
    (10.0, False, 0.0),  # a quiet file: a hint wakes at once
    (10.0, True, 0.04),  # busy, just woke: the whole gap
    (10.03, True, 0.01),  # the poll took 30 ms: what is left
    (10.04, True, 0.0),
    (10.5, True, 0.0),  # the poll took longer than the gap
])
def test_hold_for(now: float, busy: bool, expected: float) -> None:
    assert hold_for(now, 10.0, busy, 0.04) == pytest.approx(expected)


def test_a_quiet_poll_waits_for_hints_at_once(fake) -> None:
    waker, hints, _clock = fake
    assert waker.wait() is False
    assert hints.waits == [(0.25, True)]


def test_a_busy_poll_holds_hints_back_for_the_gap_then_waits_for_them(fake) -> None:
    waker, hints, clock = fake
    hints.answers = [False, True]  # the hold passes, then a (pending) hint
    clock.now += 0.01  # the poll took 10 ms
    assert waker.wait(busy=True) is True
    assert hints.waits == [(0.03, False), (0.22, True)]


def test_the_gap_counts_from_the_last_wake_not_from_the_wait(fake) -> None:
    waker, hints, clock = fake
    hints.answers = [True]
    waker.wait()  # woken by a hint at t=100
    clock.now += 0.1  # a poll slower than the gap: no hold at all
    hints.answers = [True]
    waker.wait(busy=True)
    assert hints.waits[-1] == (0.25, True)


def test_wake_during_the_hold_is_not_held_back(fake) -> None:
    waker, hints, _clock = fake
    hints.answers = [True]  # only wake() ends a wait with hints=False
    assert waker.wait(busy=True) is True
    assert hints.waits == [(0.04, False)]


def test_a_timeout_shorter_than_the_gap_only_holds(fake) -> None:
    waker, hints, _clock = fake
    assert waker.wait(0.01, busy=True) is False  # a report is due in 10 ms
    assert hints.waits == [(0.01, False)]


def test_the_gap_is_never_longer_than_the_tick(fake) -> None:
    waker, hints, _clock = fake
    waker.tick = 0.01  # poll_interval 10 ms
    waker.wait(busy=True)
    assert hints.waits == [(0.01, False)]


def test_a_zero_timeout_does_not_wait_for_hints(fake) -> None:
    waker, hints, _clock = fake
    assert waker.wait(0.0) is False
    assert hints.waits == []


# ---- inotify hints -------------------------------------------------------------------------------


@pytest.fixture
def inotify(tmp_path: Path):
    hints = waker_mod.InotifyHints()
    hints.watch(str(tmp_path), "access.log")
    yield hints, tmp_path / "access.log"
    hints.close()


@linux_only
def test_inotify_a_write_to_the_followed_file_is_a_hint(inotify) -> None:
    hints, log = inotify
    log.write_bytes(LINE)
    assert hints.wait(LONG, hints=True) is True


@linux_only
def test_inotify_other_files_in_the_folder_are_not_hints(inotify) -> None:
    hints, log = inotify
    (log.parent / "other.log").write_bytes(LINE)
    assert hints.wait(SHORT, hints=True) is False


@linux_only
@pytest.mark.parametrize("action", ["rename", "create", "delete", "write_rotated"])
def test_inotify_rotations_are_hints(inotify, action: str) -> None:
    hints, log = inotify
    rotated = log.parent / "access.log.1"
    if action != "create":
        log.write_bytes(LINE)
        rotated.write_bytes(b"")
        assert hints.wait(LONG, hints=True) is True  # consume the setup's events
    if action == "rename":
        log.rename(rotated)
    elif action == "create":
        log.write_bytes(b"")
    elif action == "delete":
        log.unlink()
    else:
        with open(rotated, "ab") as handle:  # the writer still appends to the file we drain
            handle.write(LINE)
    assert hints.wait(LONG, hints=True) is True


@linux_only
def test_inotify_hints_are_held_back_but_not_lost(inotify) -> None:
    hints, log = inotify
    for _ in range(50):  # the kernel merges identical unread events: one wake-up for all
        with open(log, "ab") as handle:
            handle.write(LINE)
    assert hints.wait(SHORT, hints=False) is False
    assert hints.wait(LONG, hints=True) is True
    assert hints.wait(SHORT, hints=True) is False  # all were read by that one wake-up


@linux_only
def test_inotify_wake_ends_any_wait_even_from_another_thread(inotify) -> None:
    hints, _log = inotify
    hints.wake()
    assert hints.wait(LONG, hints=False) is True
    threading.Timer(0.01, hints.wake).start()
    assert hints.wait(LONG, hints=True) is True
    assert hints.wait(SHORT, hints=True) is False  # one wake(), one early return


@linux_only
def test_inotify_wake_after_close_is_harmless(inotify) -> None:
    hints, _log = inotify
    hints.close()
    hints.wake()
    assert hints.wait(LONG, hints=True) is True


@linux_only
def test_inotify_a_removed_folder_is_watched_again(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    hints = waker_mod.InotifyHints()
    hints.watch(str(folder), "access.log")
    folder.rmdir()
    assert hints.wait(LONG, hints=True) is True  # IN_DELETE_SELF, IN_IGNORED: the watch is gone
    folder.mkdir()
    hints.watch(str(folder), "access.log")
    (folder / "access.log").write_bytes(LINE)
    assert hints.wait(LONG, hints=True) is True
    hints.close()


@linux_only
def test_inotify_watching_again_is_a_no_op(inotify) -> None:
    hints, log = inotify
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # watchdog warns when a callback id is registered twice
        hints.watch(str(log.parent), "access.log")
        hints.watch(str(log.parent), "error.log")  # a second name in the same folder: the same watch
    assert len(set(hints.watches.values())) == 1
    (log.parent / "error.log").write_bytes(LINE)
    assert hints.wait(LONG, hints=True) is True


@linux_only
def test_inotify_relevance_of_each_kind_of_event(inotify) -> None:
    from watchdog.observers.inotify_c import InotifyConstants as IN
    from watchdog.observers.inotify_c import InotifyEvent

    hints, _log = inotify
    (wd,) = hints.watches.values()

    def relevant(*events: InotifyEvent) -> bool:
        return hints.dispatch(events)  # watchdog dispatches to our callbacks

    assert relevant(InotifyEvent(wd, IN.IN_MODIFY, 0, b"other.log")) is False
    assert relevant(InotifyEvent(wd, IN.IN_MODIFY, 0, b"other.log"), InotifyEvent(wd, IN.IN_MODIFY, 0, b"access.log"))
    assert relevant(InotifyEvent(wd, IN.IN_CREATE, 0, b"access.log-20240101")) is True
    assert relevant(InotifyEvent(wd, IN.IN_DELETE_SELF, 0, b"")) is True  # the folder itself
    assert relevant(InotifyEvent(-1, IN.IN_Q_OVERFLOW, 0, b"")) is True
    assert relevant(InotifyEvent(wd, IN.IN_IGNORED, 0, b"")) is True
    assert hints.watches == {}  # watched again on the next watch()


@linux_only
def test_inotify_close_releases_every_descriptor(tmp_path: Path) -> None:
    def open_fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    gc.collect()
    before = open_fds()
    for _ in range(3):
        hints = waker_mod.InotifyHints()
        hints.watch(str(tmp_path), "access.log")
        hints.close()
        hints.wake()  # the wake-up pipe outlives close(): until the hints are collected
        del hints
    gc.collect()
    assert open_fds() <= before  # watchdog's inotify descriptor and pipe, and ours


@linux_only
def test_without_the_private_descriptor_the_watchdog_observer_gives_hints(tmp_path: Path, monkeypatch,
                                                                             caplog) -> None:
    from watchdog.observers import inotify_c

    class NoFd(inotify_c.InotifyFD):  # a watchdog that renamed or dropped `_inotify_fd`
        def __init__(self) -> None:
            super().__init__()
            self.hidden = self.__dict__.pop("_inotify_fd")

    monkeypatch.setattr(inotify_c, "InotifyFD", NoFd)
    caplog.set_level(logging.DEBUG, logger="logtaild.waker")
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    waker = Waker(0.25)
    assert waker.hint_source == "observer"
    assert "_inotify_fd" in caplog.text
    waker.watch([str(log)])
    try:
        log.write_bytes(LINE)
        assert waker.wait(LONG) is True
    finally:
        waker.stop()


def test_without_inotify_the_watchdog_observer_gives_hints(tmp_path: Path, monkeypatch) -> None:
    def unavailable() -> None:
        raise OSError(24, "too many inotify instances")

    monkeypatch.setattr(waker_mod, "InotifyHints", unavailable)
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    waker = Waker(0.25)
    assert waker.hint_source == "observer"
    waker.watch([str(log)])
    try:
        log.write_bytes(LINE)
        assert waker.wait(LONG) is True
        log.rename(tmp_path / "access.log.1")
        assert waker.wait(LONG) is True
        log.write_bytes(b"")
        assert waker.wait(LONG) is True
    finally:
        waker.stop()


def test_event_hints_keep_a_held_back_hint_for_the_next_wait() -> None:
    hints = waker_mod.EventHints(None)
    hints.hint()
    assert hints.wait(SHORT, hints=False) is False
    assert hints.wait(LONG, hints=True) is True
    assert hints.wait(SHORT, hints=True) is False
    hints.wake()
    assert hints.wait(LONG, hints=False) is True


def test_waker_watches_a_symlinks_target_folder_too(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    clock = FakeClock(100.0)
    hints = FakeHints(clock)
    hints.watch = lambda folder, name: seen.append((folder, name))  # type: ignore[method-assign]
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "app.log").write_bytes(b"")
    os.symlink(tmp_path / "real" / "app.log", tmp_path / "access.log")
    Waker(0.25, clock=clock, hints=hints).watch([str(tmp_path / "access.log"), str(tmp_path / "gone" / "x")])
    assert sorted(seen) == sorted([(str(tmp_path), "access.log"), (str(tmp_path / "real"), "app.log")])


# ---- the loop tells the waker whether the poll found lines ------------------------------------------


def test_poll_all_says_whether_lines_were_read(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    service = Service(Config(files=(FileConfig(str(log)),), from_start=True), once=True)
    service.scan(initial=True)
    assert service.poll_all() is False
    log.write_bytes(LINE * 3)
    assert service.poll_all() is True
    assert service.poll_all() is False
    with open(log, "ab") as handle:
        handle.write(b"1.1.1.1\tGET /a")  # half a line: nothing counted yet
    assert service.poll_all() is False

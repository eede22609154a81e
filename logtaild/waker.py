"""`Waker`: decides when the main loop wakes up: a fixed poll tick, sooner on a file-change hint.

Polling is the source of truth (inotify queues overflow under load and miss events, and some
filesystems send none); a hint only shortens the wait, so a lost or late hint costs at most one
tick. The parent directories are watched, not the files, so renames and re-creations are seen too.

What a wake costs is most of what following a file costs at low rates (a writer that flushes every
10 ms wakes us 100 times a second whatever its line rate), so two rules keep wakes few and cheap:

* Coalescing: after a poll that found data, the next poll waits at least `min_gap` even if a hint
  comes sooner. While a file is busy the lines of several writes are read in one poll; an isolated
  write to a quiet file still wakes the loop at once. `wake()` (stop, SIGHUP) is never held back.
* On Linux the hint is inotify read from the loop thread itself (`_InotifyHints`): no thread is
  woken per write, and the writes that arrive while we hold back queue up in the kernel, which
  merges identical unread events into one. Elsewhere, or when inotify cannot be set up, the
  `watchdog` package's observer gives the hints (`_WatchdogHints`; three threads hop per write).
"""
from __future__ import annotations

import ctypes
import logging
import os
import select
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

log = logging.getLogger("logtaild.waker")

#: the shortest time between the starts of two polls while the last one found data: at most this
#: much is added to the time a line takes to be counted, and a busy file is polled at most
#: 1/MIN_GAP times a second. A wake costs about 0.2 ms of CPU on a small VM (the kernel, then a
#: cold cache); at 10k lines/s 40 ms gave 2.1% of a core, 80 ms 1.75%, for p99 visibility far
#: below the 300 ms target.
MIN_GAP = 0.08


def hold_for(now: float, woke_at: float, busy: bool, min_gap: float) -> float:
    """How long to ignore hints: what is left of `min_gap` since the last wake, if that poll was busy."""
    if not busy:
        return 0.0
    return max(0.0, woke_at + min_gap - now)


class _Hints(Protocol):
    """A source of wake-ups: file-change hints, and `wake()` from any thread or a signal handler."""

    def watch(self, folder: str, name: str) -> None: ...

    def wait(self, timeout: float, hints: bool) -> bool: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


class Waker:
    """`wait()` returns after `timeout` (default `tick`) seconds, or on a hint, or at `wake()`."""

    def __init__(self, tick: float, watch: bool = True, *, min_gap: float = MIN_GAP,
                 clock: Callable[[], float] = time.monotonic, hints: _Hints | None = None) -> None:
        self.tick = tick
        self.min_gap = min_gap
        self._clock = clock
        self._hints: _Hints = hints if hints is not None else _make_hints() if watch else _EventHints(None)
        self._woke_at = clock()

    def watch(self, paths: Iterable[str]) -> None:
        """Watch the folders holding `paths` (and their targets, for symlinks); missing ones are skipped."""
        for path in paths:
            for name in {os.path.abspath(path), os.path.realpath(path)}:
                folder, base = os.path.split(name)
                if os.path.isdir(folder):
                    self._hints.watch(folder, base)

    def wait(self, timeout: float | None = None, *, busy: bool = False) -> bool:
        """Sleep until the next tick, hint or `wake()`; True when woken early.

        `busy`: the last poll found data, so hints are ignored until `min_gap` after the last wake.
        """
        timeout = self.tick if timeout is None else timeout
        # never hold back longer than a tick: a short poll_interval asks for low latency
        gap = min(self.min_gap, self.tick)
        hold = min(timeout, hold_for(self._clock(), self._woke_at, busy, gap))
        woke = hold > 0 and self._hints.wait(hold, hints=False)
        if not woke and timeout > hold:
            woke = self._hints.wait(timeout - hold, hints=True)
        self._woke_at = self._clock()
        return woke

    def wake(self) -> None:
        """Interrupt a `wait()` now, or make the next one return at once (thread- and signal-safe)."""
        self._hints.wake()

    def stop(self) -> None:
        self._hints.close()


def _make_hints() -> _Hints:
    try:
        return _InotifyHints()
    except (OSError, AttributeError) as exc:  # not Linux, no libc symbol, or the instance limit
        log.debug("inotify unavailable (%s); using the watchdog observer for hints", exc)
        return _EventHints(_watchdog_observer())


# ---- inotify, read from the loop thread ------------------------------------------------------------

IN_MODIFY = 0x2
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x1000000
#: writes, and everything a rotation does (rename, create, delete), to a file or to the directory
DIR_MASK = (IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
            | IN_MOVE_SELF | IN_ONLYDIR)
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
_READ_SIZE = 1 << 16


class _Libc:
    """The three inotify calls (Python's os module has none)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.init1 = libc.inotify_init1
        self.init1.argtypes, self.init1.restype = [ctypes.c_int], ctypes.c_int
        self.add_watch = libc.inotify_add_watch
        self.add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.add_watch.restype = ctypes.c_int


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


class _InotifyHints:
    """Hints from an inotify descriptor polled by the loop thread; `wake()` writes to a pipe."""

    def __init__(self) -> None:
        self._libc = _Libc()
        self._fd = _check(self._libc.init1(os.O_NONBLOCK | os.O_CLOEXEC), "inotify_init1")
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # the pipe stays open until the Waker is collected: a `wake()` after `close()` (a late stop()
        # from another thread) must not write into a descriptor number reused meanwhile
        self._fds = [self._fd, self._wake_r, self._wake_w]
        weakref.finalize(self, _close_all, self._fds)
        self._urgent = select.poll()  # wake() only: while holding back after a busy poll
        self._urgent.register(self._wake_r, select.POLLIN)
        self._any = select.poll()  # wake() or a hint
        self._any.register(self._wake_r, select.POLLIN)
        self._any.register(self._fd, select.POLLIN)
        self._wds: dict[str, int] = {}  # watched folder -> its watch descriptor
        self._names: dict[int, set[bytes]] = {}  # watch descriptor -> the followed names in its folder

    def watch(self, folder: str, name: str) -> None:
        """Hint about `name` in `folder` (one watch per folder; a folder removed since is watched again)."""
        wd = self._wds.get(folder)
        if wd is not None and os.fsencode(name) in self._names[wd]:
            return
        try:
            wd = _check(self._libc.add_watch(self._fd, os.fsencode(folder), DIR_MASK), "inotify_add_watch")
        except OSError as exc:  # the watch limit, permissions: polling still works
            log.warning("cannot watch %s for changes (%s); polling only", folder, exc.strerror)
            return
        self._wds[folder] = wd
        self._names.setdefault(wd, set()).add(os.fsencode(name))

    def wait(self, timeout: float, hints: bool) -> bool:
        poller = self._any if hints else self._urgent
        deadline = time.monotonic() + timeout
        while True:
            ready = poller.poll(max(0, round((deadline - time.monotonic()) * 1000)))
            if not ready:
                return False
            if any(fd == self._wake_r for fd, _ in ready):
                _drain(self._wake_r)
                return True
            if self._relevant(_drain(self._fd)):
                return True
            if time.monotonic() >= deadline:
                return False  # events about other files in the directory only

    def _relevant(self, data: bytes) -> bool:
        """Is any event about a followed file, a file rotated from one, or the directory itself?"""
        relevant = False
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size:offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            watched = self._names.get(wd)
            if mask & IN_IGNORED:  # the directory is gone: the next `watch()` adds it again
                self._forget(wd)
            if not name or watched is None or mask & IN_Q_OVERFLOW:
                relevant = True
            # PATH.1, PATH-20240101: the old file may still be written to while we drain it
            elif any(name.startswith(base) for base in watched):
                relevant = True
        return relevant

    def _forget(self, wd: int) -> None:
        self._names.pop(wd, None)
        for folder, known in list(self._wds.items()):
            if known == wd:
                del self._wds[folder]

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is pending anyway

    def close(self) -> None:
        """Stop the hints (the descriptor goes now); `wake()` keeps working."""
        if self._fds[0] >= 0:
            self._any.unregister(self._fd)
            _close_all(self._fds[:1])
            self._fds[0] = -1


def _drain(fd: int) -> bytes:
    """Everything readable now on a non-blocking descriptor."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            break
        if not chunk:
            break
        chunks.append(chunk)
        if len(chunk) < _READ_SIZE // 2:  # inotify returns whole events only: less means done
            break
    return b"".join(chunks)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        if fd < 0:
            continue
        try:
            os.close(fd)
        except OSError:
            pass


# ---- watchdog (threads), or no hints at all ------------------------------------------------------


def _watchdog_observer() -> BaseObserver:
    from watchdog.observers import Observer  # imported only where inotify is not available

    return Observer()


class _EventHints:
    """Hints from watchdog's observer threads (or none: `observer` None), through one `threading.Event`."""

    def __init__(self, observer: BaseObserver | None) -> None:
        self._observer = observer
        self._event = threading.Event()
        self._hinted = False  # set by the observer thread, before the event
        self._urgent = False  # set by `wake()`, before the event
        self._watched: set[str] = set()

    def watch(self, folder: str, name: str) -> None:
        """Hint about anything in `folder` (watchdog filters nothing; each folder is scheduled once)."""
        if self._observer is None or folder in self._watched:
            return
        from watchdog.events import (DirDeletedEvent, DirMovedEvent, FileCreatedEvent, FileDeletedEvent,
                                     FileModifiedEvent, FileMovedEvent, FileSystemEventHandler)

        hint = self.hint

        class _Hint(FileSystemEventHandler):
            def on_any_event(self, event: object) -> None:
                hint()

        # writes and rotations only: not the opens and closes of every file in the folder (ours too)
        kinds = [FileModifiedEvent, FileCreatedEvent, FileMovedEvent, FileDeletedEvent, DirDeletedEvent,
                 DirMovedEvent]
        try:
            self._observer.schedule(_Hint(), folder, recursive=False, event_filter=kinds)
        except OSError as exc:  # inotify watch limit, permissions: polling still works
            log.warning("cannot watch %s for changes (%s); polling only", folder, exc)
            return
        self._watched.add(folder)
        if not self._observer.is_alive():
            self._observer.start()

    def hint(self) -> None:
        """A file changed (called from the observer's thread)."""
        self._hinted = True
        self._event.set()

    def wait(self, timeout: float, hints: bool) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self._event.clear()  # before reading the flags: a flag set after this sets the event again
            if self._urgent or (hints and self._hinted):
                self._urgent = self._hinted = False
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False  # a hint that came while holding back stays set for the next wait
            self._event.wait(remaining)

    def wake(self) -> None:
        self._urgent = True
        self._event.set()

    def close(self) -> None:
        observer = self._observer
        if observer is not None and observer.is_alive():
            observer.stop()
            observer.join(timeout=2)

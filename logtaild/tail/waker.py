"""`Waker`: decides when the main loop wakes up: a fixed poll tick, sooner on a file-change hint.

Polling is the source of truth (inotify queues overflow under load and miss events, and some
filesystems send none); a hint only shortens the wait, so a lost or late hint costs at most one
tick. The parent directories are watched, not the files, so renames and re-creations are seen too.

What a wake costs is most of what following a file costs at low rates (a writer that flushes every
10 ms wakes us 100 times a second whatever its line rate), so two rules keep wakes few and cheap:

* Coalescing: after a poll that found data, the next poll waits at least `min_gap` even if a hint
  comes sooner. While a file is busy the lines of several writes are read in one poll; an isolated
  write to a quiet file still wakes the loop at once. `wake()` (stop, SIGHUP) is never held back.
* One thread: on Linux the hints come from inotify read by the loop thread itself (`InotifyHints`).
  watchdog's observer wakes three threads per write (reader, emitter, dispatcher: 3.3-3.7% of a
  core at 100 writes/s); here no thread is woken per write, and the writes that arrive while we
  hold back queue up in the kernel, which merges identical unread events into one.

What is watchdog's and what is ours: watchdog binds inotify (`InotifyFD`: the libc calls, the
watches, reading and parsing the events, dispatching them to a callback per watch; `InotifyConstants`
for the masks). We construct an `InotifyFD` without starting its thread and drive it from the loop
thread: we poll its descriptor (watchdog exposes it only as the private `_inotify_fd`, so we read
that once and fall back to the observer if it is missing) together with our wake-up pipe, call its
`read_events()` only when the descriptor is readable, and pass each event to its `handle_event()`.
Ours are the wake-up pipe, the coalescing, and the callbacks that judge relevance (the followed
name, a name rotated from it, the folder itself, an overflow; a folder whose watch went is watched
again on the next `watch()`). Running an `InotifyFD` without its thread needs one more thing of
ours: it releases its descriptors on `close()` only once a read has finished, so we read once at
the start (`_read_once`). Elsewhere, or when this cannot be set up, watchdog's observer gives the
hints (`EventHints`; three threads hop per write).
"""
from __future__ import annotations

import itertools
import logging
import os
import select
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver
    from watchdog.observers.inotify_c import InotifyEvent, Mask, WatchDescriptor

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
        self._hints: _Hints = hints if hints is not None else _make_hints() if watch else EventHints(None)
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

    @property
    def hint_source(self) -> str:
        """Where hints come from: `inotify` (read in the loop thread), `observer` (watchdog's threads),
        or `none` (polling only)."""
        if isinstance(self._hints, EventHints):
            return "observer" if self._hints.observing else "none"
        return "inotify"

    def stop(self) -> None:
        self._hints.close()


def _make_hints() -> _Hints:
    if sys.platform.startswith("linux"):
        from watchdog.utils import UnsupportedLibcError

        try:
            return InotifyHints()
        except (ImportError, UnsupportedLibcError, AttributeError, OSError) as exc:
            # no inotify in this libc, a watchdog without the descriptor we poll, or the instance limit
            log.debug("inotify read from the loop thread unavailable (%s); using the watchdog observer", exc)
    return EventHints(_watchdog_observer())


# ---- watchdog's inotify, read from the loop thread ---------------------------------------------------


class _Seen:
    """What the callbacks learnt from the events dispatched so far (shared by them; no link to the hints)."""

    def __init__(self) -> None:
        self.relevant = False
        self.watched: dict[tuple[str, str], int] = {}  # (folder, followed name) -> watch descriptor


class _Followed:
    """A watchdog `WatchCallback` for one followed name in one watched folder: judges each event."""

    def __init__(self, seen: _Seen, base: bytes) -> None:
        self._seen = seen
        self._base = base

    def on_event(self, event: InotifyEvent) -> None:
        # no name: the folder itself (deleted, moved); the followed file; or a file rotated from it
        # (PATH.1, PATH-20240101): the old file may still be written to while we drain it
        if not event.name or event.name.startswith(self._base):
            self._seen.relevant = True

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        # IN_IGNORED: the folder is gone (or was unmounted); the next `watch()` adds it again
        for key, known in list(self._seen.watched.items()):
            if known == wd:
                del self._seen.watched[key]
        self._seen.relevant = True

    def on_queue_overflow(self) -> None:
        self._seen.relevant = True  # events were lost: poll


class InotifyHints:
    """Hints from watchdog's `InotifyFD`, not started: the loop thread polls its descriptor and reads it.

    `wake()` writes to our own pipe, polled together with it.
    """

    def __init__(self) -> None:
        from watchdog.observers.inotify_c import CallbackId, InotifyFD, Mask
        from watchdog.observers.inotify_c import InotifyConstants as IN

        self._inotify = InotifyFD()  # "direct construction creates independent instances": no thread
        fd = getattr(self._inotify, "_inotify_fd", None)  # private: watchdog only reads it in its thread
        if not isinstance(fd, int):
            self._inotify.close()  # never read, so it keeps its descriptors (see _read_once): rare, once
            raise AttributeError("watchdog's InotifyFD has no _inotify_fd to poll")
        self._fd = fd
        # writes, and everything a rotation does (rename, create, delete), to a file or to the folder
        self._mask = Mask(IN.IN_MODIFY | IN.IN_MOVED_FROM | IN.IN_MOVED_TO | IN.IN_CREATE | IN.IN_DELETE
                          | IN.IN_DELETE_SELF | IN.IN_MOVE_SELF | IN.IN_ONLYDIR)
        # watchdog's callback ids need only be unique per watch; ours are unique overall (0: the probe)
        self._ids = map(CallbackId, itertools.count())
        self._read_once(Mask(IN.IN_DELETE_SELF | IN.IN_ONLYDIR))
        # watchdog's close(), on the first of stop() and the collection of these hints
        self._closing = weakref.finalize(self, self._inotify.close)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # the pipe stays open until the Waker is collected: a `wake()` after `close()` (a late stop()
        # from another thread) must not write into a descriptor number reused meanwhile
        weakref.finalize(self, _close_all, [self._wake_r, self._wake_w])
        self._urgent = select.poll()  # wake() only: while holding back after a busy poll
        self._urgent.register(self._wake_r, select.POLLIN)
        self._any = select.poll()  # wake() or a hint
        self._any.register(self._wake_r, select.POLLIN)
        self._any.register(self._fd, select.POLLIN)
        self._seen = _Seen()

    def watch(self, folder: str, name: str) -> None:
        """Hint about `name` in `folder` (one watch per folder; a folder removed since is watched again)."""
        if (folder, name) in self._seen.watched or not self._closing.alive:
            return
        id_ = next(self._ids)
        try:
            wd = self._inotify.add_callback(os.fsencode(folder), self._mask, _Followed(self._seen, os.fsencode(name)),
                                            id_)
        except OSError as exc:  # the watch limit, a folder gone meanwhile: polling still works
            log.warning("cannot watch %s for changes (%s); polling only", folder, exc.strerror)
            return
        if wd < 0:  # watchdog answers EACCES with wd -1 instead of raising: take the callback back
            self._inotify.remove_callbacks([(wd, id_)])
            log.warning("cannot watch %s for changes (permission denied); polling only", folder)
            return
        self._seen.watched[folder, name] = wd

    @property
    def watches(self) -> dict[tuple[str, str], int]:
        """The (folder, name) pairs hinted about, and their inotify watch descriptors."""
        return dict(self._seen.watched)

    def dispatch(self, events: Iterable[InotifyEvent]) -> bool:
        """Hand events to watchdog, which calls our callbacks; True when one concerned a followed file."""
        self._seen.relevant = False
        for event in events:
            self._inotify.handle_event(event)
        return self._seen.relevant

    def _read_once(self, probe_mask: Mask) -> None:
        """Have our `InotifyFD` complete one `read_events()`, so that its `close()` releases its descriptors.

        `InotifyFD` leaves closing its descriptors to its reading thread while a read may be in
        progress, and it starts out as if one were (`close()` before any read only signals that
        thread). There is no such thread here: without one finished read, `close()` would leave the
        inotify instance (128 per user by default) and two pipe ends open. So: watch "/", take the
        watch back, which makes the kernel queue IN_IGNORED, and read that.
        """
        id_ = next(self._ids)
        try:
            wd = self._inotify.add_callback(b"/", probe_mask, _Followed(_Seen(), b""), id_)
            self._inotify.remove_callbacks([(wd, id_)])
        except OSError as exc:
            log.debug("cannot probe inotify (%s): its descriptors stay open after stop()", exc)
            return
        probe = select.poll()
        probe.register(self._fd, select.POLLIN)
        if wd >= 0 and probe.poll(0):  # never block in read_events(): read only what is there
            self._inotify.read_events()  # the IN_IGNORED of a watch watchdog has forgotten: nothing to dispatch
        else:
            log.debug("no event from the inotify probe: its descriptors stay open after stop()")

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
            if self._read():
                return True
            if time.monotonic() >= deadline:
                return False  # events about other files in the folder only

    def _read(self) -> bool:
        """Read every queued event, watchdog dispatching each to our callbacks; was any relevant?

        Called only when poll() found the descriptor readable: watchdog's `read_events()` blocks otherwise.
        """
        relevant = False
        while True:
            events = self._inotify.read_events()
            relevant = self.dispatch(events) or relevant
            # one read takes at most watchdog's buffer: read on while more is queued, so that one
            # wake-up takes them all
            if not events or not any(fd == self._fd and revents & select.POLLIN
                                     for fd, revents in self._any.poll(0)):
                return relevant

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is pending anyway

    def close(self) -> None:
        """Stop the hints (watchdog closes the inotify descriptor now); `wake()` keeps working."""
        if self._closing.alive:
            self._any.unregister(self._fd)
            self._closing()


def _drain(fd: int) -> None:
    """Read everything readable now on a non-blocking descriptor (our wake-up pipe)."""
    while True:
        try:
            if len(os.read(fd, 4096)) < 4096:
                return
        except (BlockingIOError, InterruptedError):
            return


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# ---- watchdog (threads), or no hints at all ------------------------------------------------------


def _watchdog_observer() -> BaseObserver:
    from watchdog.observers import Observer  # imported only where inotify is not available

    return Observer()


class EventHints:
    """Hints from watchdog's observer threads (or none: `observer` None), through one `threading.Event`."""

    def __init__(self, observer: BaseObserver | None) -> None:
        self._observer = observer
        self._event = threading.Event()
        self._hinted = False  # set by the observer thread, before the event
        self._urgent = False  # set by `wake()`, before the event
        self._watched: set[str] = set()

    @property
    def observing(self) -> bool:
        """Does a watchdog observer give hints (or is it polling only)?"""
        return self._observer is not None

    def watch(self, folder: str, name: str) -> None:
        """Hint about anything in `folder` (watchdog filters nothing; each folder is scheduled once)."""
        if self._observer is None or folder in self._watched:
            return
        from watchdog.events import (
            DirDeletedEvent,
            DirMovedEvent,
            FileCreatedEvent,
            FileDeletedEvent,
            FileModifiedEvent,
            FileMovedEvent,
            FileSystemEventHandler,
        )

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

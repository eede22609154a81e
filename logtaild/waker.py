"""`Waker`: decides when the main loop wakes up: a fixed poll tick, sooner on a watchdog file event.

Polling is the source of truth (inotify queues overflow under load and miss events, and some
filesystems send none); watchdog only shortens the wait, so a lost or late event costs at most one
tick. The observer watches the parent directories, not the files, so renames and re-creations
are seen too.
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger("logtaild.waker")


class _Hint(FileSystemEventHandler):
    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._event.set()


class Waker:
    """`wait()` returns after `tick` seconds, or as soon as a watched directory changes, or `wake()`."""

    def __init__(self, tick: float, watch: bool = True) -> None:
        self.tick = tick
        self._event = threading.Event()
        self._observer: Observer | None = Observer() if watch else None
        self._watched: set[str] = set()

    def watch(self, paths: Iterable[str]) -> None:
        """Watch the directories holding `paths` (each once; missing directories are skipped)."""
        if self._observer is None:
            return
        for path in paths:
            folder = os.path.dirname(os.path.abspath(path))
            if folder in self._watched or not os.path.isdir(folder):
                continue
            try:
                self._observer.schedule(_Hint(self._event), folder, recursive=False)
                self._watched.add(folder)
            except OSError as exc:  # inotify watch limit, permissions: polling still works
                log.warning("cannot watch %s for changes (%s); polling only", folder, exc)
        if not self._observer.is_alive():
            self._observer.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until the next tick or event; True when woken early."""
        woke = self._event.wait(self.tick if timeout is None else timeout)
        self._event.clear()
        return woke

    def wake(self) -> None:
        self._event.set()

    def stop(self) -> None:
        if self._observer is not None and self._observer.is_alive():
            self._observer.stop()
            self._observer.join(timeout=2)

"""`Checkpointer`: the state file (read positions per followed path, plus opaque extra data).

Written atomically: a temp file in the same directory (mode 0600), fsync, rename, then an fsync of
the directory so the rename itself survives a power cut. Read defensively: a state file that is
missing, unreadable, truncated, not JSON or of the wrong shape is a warning and an empty state,
never a crash; each file's entry is validated on its own so one bad entry loses only itself.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from logtaild.tail.filestream import Position

log = logging.getLogger("logtaild.checkpoint")

STATE_VERSION = 1
#: while writes keep failing (a full disk), log again at most this often
FAILURE_LOG_EVERY = 60.0


@dataclass
class State:
    """What the state file holds."""

    positions: dict[str, list[Position]] = field(default_factory=dict)
    #: JSON data other layers keep across runs (cron's counters); only they know its shape
    extra: dict[str, Any] = field(default_factory=dict)


class Checkpointer:
    """Loads and saves the state file at `path`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.writes = 0
        self.failures = 0
        self.last_write = 0.0
        self._last_text: str | None = None
        self._failing_since: int | None = None  # `failures` when the current run of failures began
        self._failure_logged = 0.0

    def load(self) -> State:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return State()
        except (OSError, ValueError) as exc:
            log.warning("state file %s is unreadable (%s); starting without it", self.path, exc)
            return State()
        return self._parse(data)

    def _parse(self, data: object) -> State:
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            log.warning("state file %s has an unknown layout; starting without it", self.path)
            return State()
        extra = data.get("extra")
        state = State(extra=extra if isinstance(extra, dict) else {})
        files = data.get("files")
        for path, entries in (files.items() if isinstance(files, dict) else ()):
            try:
                state.positions[path] = [Position.from_dict(entry) for entry in entries]
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("state file %s: entry for %s is invalid (%s); ignoring it",
                            self.path, path, exc)
        return state

    def save(self, state: State, now: float, force: bool = False) -> bool:
        """Write the state if it changed (or `force`); False when the write failed (it is counted)."""
        text = json.dumps(
            {
                "version": STATE_VERSION,
                "files": {p: [pos.to_dict() for pos in ps] for p, ps in state.positions.items()},
                "extra": state.extra,
            },
            sort_keys=True,
        )
        if text == self._last_text and not force:
            return True
        try:
            self._write(text)
        except OSError as exc:
            self._failed(exc, now)
            return False
        if self._failing_since is not None:
            log.warning("state file %s written again after %d failed writes", self.path,
                        self.failures - self._failing_since)
            self._failing_since = None
        self._last_text = text
        self.writes += 1
        self.last_write = now
        return True

    def _failed(self, exc: OSError, now: float) -> None:
        """Count a failed write; log the first of a run of failures, then at most every FAILURE_LOG_EVERY."""
        self.failures += 1
        if self._failing_since is None or now - self._failure_logged >= FAILURE_LOG_EVERY:
            again = "" if self._failing_since is None else \
                f" ({self.failures - self._failing_since} failed writes so far)"
            log.error("cannot write state file %s: %s%s", self.path, exc.strerror or exc, again)
            self._failure_logged = now
            if self._failing_since is None:
                self._failing_since = self.failures - 1

    def _write(self, text: str) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".logtaild-state.", dir=folder)  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

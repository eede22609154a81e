"""`Checkpointer`: the state file (read positions per followed path, plus opaque extra data), in two
generations: `PATH` and the one before it, `PATH.1`.

Written atomically: a temp file in the same directory (mode 0600), fsync, then the file now at PATH
becomes PATH.1 (a hard link renamed over PATH.1: PATH itself never goes missing) and the temp file is
renamed over PATH; an fsync of the directory makes both renames survive a power cut. Only a
generation known to be good (loaded, or written by us) is kept as PATH.1.

Two files, not both generations in one: the damage we fall back from (a torn or truncated write, a
bad sector, an editor) hits a whole file, and would take both generations with it.

Read defensively, never a crash: a PATH that is unreadable, truncated, not JSON or of the wrong shape
falls back to PATH.1, with a warning saying how old it is and that the lines read since are counted
again; both bad is a warning and an empty state. An entry that fails to validate loses only itself
(PATH.1's entry for that path is used if good). And a path whose checkpoint matches no file while
PATH.1's checkpoint of the same file does (a damaged inode, offset or fingerprint) resumes from
PATH.1: a second of lines counted again instead of the whole file. A missing PATH is no state at all,
even with a PATH.1 beside it: removing PATH is how an operator starts over.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from logtaild.tail.position import Position, checkpoint_found, head_found

log = logging.getLogger("logtaild.checkpoint")

STATE_VERSION = 1
#: the previous generation is PATH + this
PREVIOUS_SUFFIX = ".1"
#: while writes keep failing (a full disk), log again at most this often
FAILURE_LOG_EVERY = 60.0


@dataclass
class State:
    """What the state file holds."""

    positions: dict[str, list[Position]] = field(default_factory=dict)
    #: JSON data other layers keep across runs (cron's counters); only they know its shape
    extra: dict[str, Any] = field(default_factory=dict)


class Damaged(Exception):
    """A state file that exists but cannot be used; the message says why."""


class Checkpointer:
    """Loads and saves the state file at `path` (and its previous generation, `path.1`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.previous_path = path + PREVIOUS_SUFFIX
        self.writes = 0
        self.failures = 0
        self.last_write = 0.0
        #: loads that used the previous generation, for the whole file or for one path
        self.fallbacks = 0
        self._last_text: str | None = None
        self._failing_since: int | None = None  # `failures` when the current run of failures began
        self._failure_logged = 0.0
        self._keep_current = False  # is the file at `path` a good generation, to become path.1?
        self._link_failed = False

    def load(self) -> State:
        try:
            state, invalid = self._read(self.path)
        except FileNotFoundError:
            return State()
        except Damaged as exc:
            return self._fall_back(str(exc))
        self._keep_current = True
        try:
            previous, _ = self._read(self.previous_path)
        except (FileNotFoundError, Damaged):
            return state
        self._use_previous_entries(state, previous, invalid)
        self._prefer_matching(state, previous)
        return state

    def _read(self, path: str) -> tuple[State, list[str]]:
        """The state in `path` and the paths whose entry is invalid; FileNotFoundError, or Damaged."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise Damaged(f"unreadable: {exc}") from None
        return self._parse(data, path)

    def _parse(self, data: object, path: str) -> tuple[State, list[str]]:
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise Damaged("an unknown layout")
        files = data.get("files")
        if not isinstance(files, dict):
            raise Damaged("no `files` table")
        extra = data.get("extra")
        state = State(extra=extra if isinstance(extra, dict) else {})
        invalid: list[str] = []
        for followed, entries in files.items():
            try:
                state.positions[followed] = [Position.from_dict(entry) for entry in entries]
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("state file %s: entry for %s is invalid (%s); ignoring it",
                            path, followed, exc)
                invalid.append(followed)
        return state, invalid

    def _fall_back(self, problem: str) -> State:
        """`path` is damaged: use the previous generation, or nothing."""
        try:
            previous, _ = self._read(self.previous_path)
        except (FileNotFoundError, Damaged) as exc:
            why = "missing" if isinstance(exc, FileNotFoundError) else str(exc)
            log.warning("state file %s is damaged (%s) and its previous generation %s is %s: "
                        "starting without checkpoints, so files are read from their end (the lines "
                        "written while logtaild was stopped are not counted), or from their start "
                        "with from_start (the lines counted before are counted again)",
                        self.path, problem, self.previous_path, why)
            return State()
        self.fallbacks += 1
        log.warning("state file %s is damaged (%s); using its previous generation %s, %s: the lines "
                    "read after it was saved are counted again", self.path, problem,
                    self.previous_path, self._age())
        return previous

    def _use_previous_entries(self, state: State, previous: State, invalid: list[str]) -> None:
        for followed in invalid:
            if followed in previous.positions:
                state.positions[followed] = previous.positions[followed]
                self.fallbacks += 1
                log.warning("state file %s: using the entry for %s from the previous generation %s, "
                            "%s: the lines read after it was saved are counted again", self.path,
                            followed, self.previous_path, self._age())

    def _prefer_matching(self, state: State, previous: State) -> None:
        """A checkpoint matching no file, where the previous one of the same file matches: use that."""
        for followed, positions in state.positions.items():
            older = previous.positions.get(followed)
            if not positions or not older or older == positions:
                continue
            now, then = positions[-1], older[-1]
            if checkpoint_found(followed, now) or not checkpoint_found(followed, then):
                continue
            # the file it names is still there (its inode, or its first bytes): damage, not a file
            # rotated away or truncated while stopped, which the start-up rules handle
            if now.identity != then.identity and not head_found(followed, now):
                continue
            state.positions[followed] = older
            self.fallbacks += 1
            log.warning("state file %s: the checkpoint for %s (inode %d, offset %d) matches no file, "
                        "while the previous generation's checkpoint of the same file (inode %d, "
                        "offset %d) does: a damaged checkpoint; resuming from %s, %s: the lines read "
                        "after it was saved are counted again, instead of the whole file",
                        self.path, followed, now.ino, now.offset, then.ino, then.offset,
                        self.previous_path, self._age())

    def _age(self) -> str:
        """'saved 2026-12-01T10:00:00 (5s ago, 1.0s before the current one)' for the previous generation."""
        try:
            saved = os.stat(self.previous_path).st_mtime
        except OSError:
            return "of unknown age"
        text = f"saved {time.strftime('%Y-%m-%dT%H:%M:%S', time.localtime(saved))} " \
               f"({max(0.0, time.time() - saved):.0f}s ago"
        try:
            text += f", {max(0.0, os.stat(self.path).st_mtime - saved):.1f}s before the current one"
        except OSError:
            pass
        return text + ")"

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
        import tempfile  # not at import (start-up): it brings shutil and random; a run without a state file skips it

        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(prefix=".logtaild-state.", dir=folder)  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            if self._keep_current:
                self._keep_previous(tmp + PREVIOUS_SUFFIX)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._keep_current = True
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _keep_previous(self, link: str) -> None:
        """The (good) file now at `path` becomes `path.1`: linked, then renamed, so `path` stays.

        A failure here costs the previous generation, never the write of the current one.
        """
        try:
            os.link(self.path, link)
            os.chmod(link, 0o600)  # an older file (or an operator) may have made it readable
            os.replace(link, self.previous_path)
        except FileNotFoundError:
            pass  # removed under us: nothing to keep
        except OSError as exc:
            if not self._link_failed:  # e.g. a file system without hard links: one generation only
                self._link_failed = True
                log.warning("state file %s: cannot keep its previous generation as %s (%s)",
                            self.path, self.previous_path, exc.strerror or exc)
        try:
            os.unlink(link)
        except OSError:
            pass  # renamed, as it should be

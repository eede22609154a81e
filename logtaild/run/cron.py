"""Cron mode: `logtaild --once --state-file S [--textfile PATH]`, one pass per run, nothing counted twice.

Each run, under an exclusive lock on `S.lock`:

1. loads the checkpoint and the cumulative counters from the state file (its `extra["cron"]`);
2. reads every file from its checkpoint to the end: a file rotated since the last run is finished
   first (FileStream resumes it under its rotated name), and in this mode old files are closed as
   soon as they are read to their end, never held open for the drain grace period;
3. prints one report whose rates cover the time since the previous run's end (wall clock);
4. saves positions and counters together in one atomic write of the state file: a run either
   counts its lines and moves the checkpoint past them, or does neither;
5. only then prints the report and, with `--textfile`, writes the cumulative counters in the
   Prometheus text format (temp file + rename) for node_exporter's textfile collector.

Which files are read from where: with no earlier run (no `extra["cron"]`), files are read from their
end (`--from-start`: from their start), as the daemon does at its first start. After that, a path
(or a glob's match) the previous runs did not see is a file created since: it is read from its
start. A run that cannot get the lock within `--lock-timeout` seconds exits 0 with one line, having
read nothing; the lock file `S.lock` is never removed (removing it would break the lock).

Counters are monotonic across runs, with the same names as /metrics. They restart from 0 only if the
state file is lost or unreadable (Prometheus' rate() treats that as a counter reset); a change of
histogram buckets restarts the histogram alone.
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from logtaild.config import Config, FileConfig
from logtaild.count.slots import from_json, to_json
from logtaild.count.window import Window
from logtaild.export.collector import write_textfile
from logtaild.export.snapshot import Snapshot
from logtaild.run.parallel import RangeResult, merge
from logtaild.run.service import ReportOut, Service
from logtaild.tail.filestream import StreamStats

log = logging.getLogger("logtaild")

EXTRA_KEY = "cron"
CRON_VERSION = 1
LOCK_POLL = 0.05
#: StreamStats fields that are counters (carried across runs); the others are gauges of this run
STAT_COUNTERS = ("bytes_read", "lines_cut", "reopens", "drain_timeouts", "read_errors")


class Busy(Exception):
    """Another run holds the state file's lock."""


@contextmanager
def state_lock(state_file: str, timeout: float) -> Iterator[None]:
    """An exclusive flock on `state_file + ".lock"`, waiting up to `timeout` seconds (Busy after)."""
    path = state_file + ".lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot open the lock file: {exc.strerror}", path) from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if time.monotonic() >= deadline:
                raise Busy(f"another logtaild run holds {path} (waited {timeout:g}s); "
                           "skipping this run, its lines are counted by the next one")
            time.sleep(LOCK_POLL)
        yield
    finally:
        os.close(fd)  # releases the lock


# ---- the cumulative counters in the state file ----------------------------------------------------

class CronRun:
    """One cron pass (`--once` with a state file) with counters carried from run to run.

    It holds a `Service` (built with `once`) and drives that pass through the service's public API:
    the service follows, counts, reports and checkpoints; this class adds the counters of earlier runs,
    the "created since" rule for where a path is read from, and the textfile.
    """

    def __init__(self, config: Config, *, textfile: str | None = None, out: ReportOut | None = None) -> None:
        self.config = config
        self.textfile = textfile
        self._previous: dict[str, Any] = {}
        self._known_paths: set[str] = set()
        self._known_patterns: set[str] = set()
        self._seeded_lines: dict[str, int] = {}
        # drain grace 0: old files are finished now and closed, for no later poll will come
        self.service = Service(dataclasses.replace(config, drain_grace=0.0), once=True, out=out,
                               from_start_for=self._created_since)
        extra = self.service.state.extra.get(EXTRA_KEY)
        if isinstance(extra, dict) and extra.get("version") == CRON_VERSION:
            self._previous = extra
        elif extra is not None:
            log.warning("state file %s: cron counters in an unknown layout; counting from 0",
                        config.state_file)
        self._known_paths = set(self._previous.get("files", {}))
        self._known_patterns = set(self._previous.get("patterns", []))

    def _created_since(self, path: str, file_config: FileConfig) -> bool:
        """Read from its start: a path earlier runs followed (its checkpoint, when it still matches,
        decides first), or a new match of a pattern they followed: a file created since."""
        return bool(self._previous) and (path in self._known_paths or file_config.path in self._known_patterns)

    def counted(self, path: str) -> int:
        """Lines of `path` this run read (its total minus what earlier runs had counted)."""
        return self.service.sources[path].agg.lines - self._seeded_lines.get(path, 0)

    def run(self) -> int:
        """The pass; its exit code (1: the state file or the textfile could not be written)."""
        service = self.service
        service.scan(initial=True)
        start = service.clock()
        self._seed()
        window = Window(start, service.totals())
        service.read_to_end()
        counts, pass_length = window.close(service.totals(), service.clock())
        now = time.time()
        since_last = self._since_last(now)
        length = since_last if since_last > 0 else pass_length
        service.set_extra(EXTRA_KEY, self._dump(now))
        service.last_tick = now
        if not self._save():
            log.error("the state file was not saved: no report, no textfile; the next run counts "
                      "these lines")
            return 1
        service.write_report(counts, length)
        if self.textfile:
            try:
                write_textfile(self.textfile, self.snapshot)
            except OSError as exc:
                log.error("cannot write the textfile %s: %s", self.textfile, exc.strerror or exc)
                return 1
        return 0

    def _since_last(self, now: float) -> float:
        """Seconds since the previous run ended (0 when there is no valid previous run)."""
        last = self._previous.get("last_run")
        return now - last if isinstance(last, (int, float)) and math.isfinite(last) else 0.0

    def _save(self) -> bool:
        """The final checkpoint (positions and counters in one write), then close; False if it failed."""
        checkpointer = self.service.checkpointer
        failures = checkpointer.failures if checkpointer else 0
        self.service.checkpoint(force=True)
        self.service.close()
        return checkpointer is None or checkpointer.failures <= failures

    def _seed(self) -> None:
        """Load the cumulative counters into the fresh aggregators and stream stats."""
        files = self._previous.get("files", {})
        bounds = [round(b * 1000, 9) for b in self.service.bounds_s]
        same_bounds = self._previous.get("bounds_ms") == bounds
        if files and not same_bounds:
            log.warning("histogram buckets changed since the last run; the histogram counters restart")
        for path, source in self.service.sources.items():
            entry = files.get(path)
            if not isinstance(entry, dict):
                continue
            try:
                slots = from_json(entry.get("series", []), bounds, same_bounds, source.agg.upstream,
                                  source.agg.native, source.agg.detailed)
                malformed = {str(k): int(v) for k, v in entry.get("malformed", {}).items()}
                lines = int(entry.get("lines", 0))
                merge(source.agg, RangeResult(slots, malformed, lines, 0))
                self._seeded_lines[path] = lines
                _seed_stats(source.stream.stats, entry.get("stats", {}))
            except (TypeError, ValueError, KeyError, IndexError) as exc:
                log.warning("state file %s: counters of %s are invalid (%s); they restart from 0",
                            self.config.state_file, path, exc)

    def _dump(self, now: float) -> dict[str, Any]:
        files = {}
        for path, source in self.service.sources.items():
            stats: StreamStats = source.stream.stats
            files[path] = {
                "lines": source.agg.lines,
                "malformed": dict(source.agg.malformed),
                "series": to_json(source.agg.slots),
                "stats": {**{name: getattr(stats, name) for name in STAT_COUNTERS},
                          "rotations": dict(stats.rotations), "last_read": stats.last_read,
                          "last_rotation": stats.last_rotation},
            }
        return {
            "version": CRON_VERSION,
            "last_run": now,
            "runs": int(self._previous.get("runs", 0)) + 1,
            "bounds_ms": [round(b * 1000, 9) for b in self.service.bounds_s],
            "patterns": sorted({f.path for f in self.config.files}),
            "files": files,
            "checkpoint_writes": int(self._previous.get("checkpoint_writes", 0)) + 1,
        }

    def snapshot(self) -> Snapshot:
        """The service's snapshot, with the checkpoint writes of every run (the textfile's counter)."""
        snap = self.service.snapshot()
        extra = self.service.state.extra.get(EXTRA_KEY, {})
        return dataclasses.replace(snap, checkpoint_writes=int(extra.get("checkpoint_writes",
                                                                         snap.checkpoint_writes)))


def _seed_stats(stats: StreamStats, saved: dict[str, Any]) -> None:
    """Add the stream counters of earlier runs to this run's; the last-read times take the later."""
    for name in STAT_COUNTERS:
        setattr(stats, name, getattr(stats, name) + int(saved.get(name, 0)))
    for kind, n in saved.get("rotations", {}).items():
        stats.rotations[kind] = stats.rotations.get(kind, 0) + int(n)
    stats.last_read = max(stats.last_read, float(saved.get("last_read", 0.0)))
    stats.last_rotation = max(stats.last_rotation, float(saved.get("last_rotation", 0.0)))

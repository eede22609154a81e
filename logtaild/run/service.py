"""`Service`: wires the streams, parsers, aggregators, window, exporter and checkpoints; runs the loop.

One loop thread owns every FileStream and Aggregator; it holds `self.lock` while it counts a batch,
and the HTTP thread takes the same lock only to copy the slots (`snapshot()`), so a scrape never sees
half a batch (a histogram's count always equals its +Inf bucket).
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from logtaild import __version__
from logtaild.config import Config, FileConfig, parse_listen
from logtaild.count.aggregate import Aggregator
from logtaild.count.formats import make_parser
from logtaild.count.routes import RouteLimiter
from logtaild.count.window import Window, WindowKey, escape, format_report
from logtaild.export.exporter import FileSnapshot, Objective, Snapshot, build_registry, make_app, serve
from logtaild.export.status import StatusBoard
from logtaild.export.webconfig import load_web_config, protect
from logtaild.run.lifecycle import Lifecycle
from logtaild.run.parallel import RangeJob, merge, usable_cores
from logtaild.tail.checkpoint import Checkpointer, State
from logtaild.tail.filestream import FileStream, Position
from logtaild.tail.waker import Waker

log = logging.getLogger("logtaild")

CHECKPOINT_EVERY = 1.0
#: a backlog at least this large is split in two, one half counted by a forked worker (2 cores)
PARALLEL_MIN_BYTES = 32 << 20
JOB_WAIT_AT_EXIT = 8.0
MALFORMED_LOG_EVERY = 10.0
STUCK_AFTER = 10.0


@dataclass
class Source:
    """One followed file and its counts."""

    path: str
    config: FileConfig
    stream: FileStream
    agg: Aggregator
    objectives: dict[str, Objective] = field(default_factory=dict)
    malformed_logged: int = 0
    job: RangeJob | None = None


class Service:
    """The daemon (or, with `once`, a single pass over the files)."""

    def __init__(self, config: Config, *, once: bool = False, out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 reloader: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.once = once
        self.out = out or sys.stdout
        self.clock = clock
        self.lock = threading.Lock()
        self.sources: dict[str, Source] = {}
        self.checkpointer = Checkpointer(config.state_file) if config.state_file else None
        self._state = self.checkpointer.load() if self.checkpointer else State()
        self._stop = threading.Event()
        self._waker = Waker(config.poll_interval, watch=not once)
        self._bounds_s = config.bucket_bounds()
        self._reports = 0
        self.last_tick = time.time()
        self._last_tick_mono = clock()
        self._rescan_at = 0.0
        self._parallel = usable_cores() > 1  # a backlog is split only when a second CPU can take half
        self.reloads = {"success": 0, "failure": 0}
        self.lifecycle = Lifecycle(self, reloader)  # sd_notify, SIGHUP reloads (logtaild/lifecycle.py)

    # ---- sources ------------------------------------------------------------------------------

    def _scan(self, initial: bool) -> None:
        """Add a Source for every configured path and every new glob match."""
        for file_config in self.config.files:
            paths = sorted(glob.glob(file_config.path)) if glob.has_magic(file_config.path) else [
                file_config.path]
            for path in paths:
                if path not in self.sources:
                    self._add(path, file_config, from_start=self.config.from_start or not initial)
        self._waker.watch(self.sources)

    def _add(self, path: str, file_config: FileConfig, from_start: bool) -> None:
        saved = self._state.positions.get(path)
        stream = FileStream(
            path, from_start=from_start, max_line=self.config.max_line,
            drain_grace=self.config.drain_grace, clock=self.clock, resume=saved,
        )
        self.sources[path] = Source(path, file_config, stream, self._make_aggregator(file_config))

    def _make_aggregator(self, file_config: FileConfig, config: Config | None = None) -> Aggregator:
        """A fresh Aggregator for one file (`config`: the routes to use, default the running config)."""
        routes = (config or self.config).routes
        limiter = RouteLimiter(routes.max, [(r.match, r.replace) for r in routes.rules], routes.builtin)
        return Aggregator(limiter, [round(b * 1000, 9) for b in self._bounds_s], make_parser(file_config))

    # ---- the loop -------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped (or one pass with `once`); returns the exit code."""
        if self.once:
            self._scan(initial=True)
            return self._run_once()
        host, port = parse_listen(self.config.listen)
        registry = build_registry(self.snapshot)
        web = load_web_config(self.config.web_config) if self.config.web_config else None
        app = StatusBoard(self.snapshot, stuck_after=max(STUCK_AFTER, 4 * self.config.poll_interval)).wrap(
            make_app(registry, {"/healthz": self._healthz}))
        self._install_signals()  # before /healthz answers: a SIGTERM right after it must stop us cleanly
        self._server = serve(protect(app, web), host, port, tls=web.context if web else None)
        self._scan(initial=True)
        log.info("serving /metrics on %s:%d%s; following %s", host or "0.0.0.0", port,
                 (" (TLS)" if web and web.context else "") + (" (basic auth)" if web and web.users else ""),
                 ", ".join(self.sources) or "nothing yet")
        self.lifecycle.ready()
        try:
            self._loop()
        finally:
            self._server.shutdown()
            self._waker.stop()
        return 0

    def _run_once(self) -> int:
        start = self.clock()
        window = Window(start)
        self._poll_all(None)
        self._collect_jobs()
        counts, length = window.close(self._totals(), self.clock())
        self._write_report(counts, length)
        self._checkpoint(force=True)
        for source in self.sources.values():
            source.stream.close()
        return 0

    def _loop(self) -> None:
        now = self.clock()
        window = Window(now, self._totals())
        next_report = now + self.config.interval
        next_checkpoint = now + CHECKPOINT_EVERY
        next_malformed_log = now + MALFORMED_LOG_EVERY
        while not self._stop.is_set():
            busy = self._poll_all(lambda: self.clock() >= next_report)
            if self.lifecycle.reload_requested() and self.lifecycle.reload(
                    lambda: self._write_report(*window.close(self._totals(), self.clock()))):
                window = Window(self.clock(), self._totals())  # the new files and grouping
                next_report = self.clock() + self.config.interval
            now = self.clock()
            if now >= next_report:
                self._write_report(*window.close(self._totals(), now))
                next_report = max(next_report + self.config.interval, now + self.config.interval / 2)
            if now >= next_checkpoint:
                self._checkpoint()
                next_checkpoint = now + CHECKPOINT_EVERY
            if now >= next_malformed_log:
                self._log_malformed()
                next_malformed_log = now + MALFORMED_LOG_EVERY
            if now >= self._rescan_at:
                self._scan(initial=False)
                self._rescan_at = now + self.config.rescan_interval
            # busy: the poll found lines, so more are likely on their way; the waker lets them
            # gather for a moment instead of waking at each write
            self._waker.wait(max(0.0, min(self.config.poll_interval, next_report - self.clock())), busy=busy)
        self.lifecycle.stopping()
        self._poll_all(None)
        self._collect_jobs()
        self._write_report(*window.close(self._totals(), self.clock()))
        self._checkpoint(force=True)
        for source in self.sources.values():
            source.stream.close()

    def _poll_all(self, due: Callable[[], bool] | None) -> bool:
        """Read every source to its end; stop early (to report on time) when `due()` says so.

        True when any lines were read.
        """
        found = False
        for source in list(self.sources.values()):
            self._collect_job(source, wait=None)
            if source.job is None:
                self._start_job(source)
            for batch in source.stream.poll():
                found = True
                with self.lock:
                    source.agg.feed(batch)
                self._tick()
                if due is not None and due():
                    return True
        self._tick()
        return found

    def _start_job(self, source: Source) -> None:
        if not self._parallel:
            return
        split = source.stream.split_backlog(PARALLEL_MIN_BYTES)
        if split is not None:
            fd, start, end = split
            log.info("%s: %d MiB behind; counting bytes %d-%d in a second process",
                     source.path, (end - start) >> 19, start, end)
            source.job = RangeJob(source.agg, fd, start, end, self.config.max_line)

    def _collect_job(self, source: Source, wait: float | None) -> None:
        """Merge a finished range job (waiting up to `wait` seconds; None: only if it is done)."""
        job = source.job
        if job is None or (wait is None and not job.done()):
            return
        source.job = None
        result = job.result(wait if wait is not None else 0)
        if result is None:
            log.error("%s: the range worker failed; its range will be counted again after a restart",
                      source.path)
            return
        with self.lock:
            merge(source.agg, result)
        source.stream.release(result.lines_cut)

    def _collect_jobs(self) -> None:
        for source in self.sources.values():
            self._collect_job(source, wait=JOB_WAIT_AT_EXIT)

    def _tick(self) -> None:
        self.last_tick = time.time()
        self._last_tick_mono = self.clock()
        self.lifecycle.tick()  # the systemd watchdog ping comes from the loop itself

    # ---- outputs --------------------------------------------------------------------------------

    def _totals(self) -> dict[WindowKey, int]:
        # always keyed by path, so a window's base stays valid when a glob gains a second file
        # (keyed by "" until then, the first file's whole history would be reported again)
        totals: dict[WindowKey, int] = {}
        with self.lock:
            for source in self.sources.values():
                for (route, status), n in source.agg.counts_by_route_status().items():
                    totals[source.path, route, status] = n
        return totals

    def _write_report(self, counts: dict[WindowKey, int], length: float) -> None:
        log.debug("report: window %.6fs, %d requests", length, sum(counts.values()))
        if len(self.sources) <= 1:  # one file: rows without a [path] line
            counts = {("", route, status): n for (_path, route, status), n in counts.items()}
        text = format_report(counts, length)
        self.out.write(("\n" if self._reports else "") + text)
        self.out.flush()
        self._reports += 1

    def _checkpoint(self, force: bool = False) -> None:
        if self.checkpointer is None:
            return
        positions: dict[str, list[Position]] = {
            path: source.stream.positions() for path, source in self.sources.items()
        }
        # keep entries of paths not (yet) opened, so a restart while a file is missing loses nothing
        for path, saved in self._state.positions.items():
            positions.setdefault(path, saved)
            if not positions[path]:
                positions[path] = saved
        self._state = State(positions, self._state.extra)
        self.checkpointer.save(self._state, time.time(), force=force)

    def _log_malformed(self) -> None:
        for source in self.sources.values():
            total = sum(source.agg.malformed.values())
            if total > source.malformed_logged:
                reasons = ", ".join(f"{k}={v}" for k, v in source.agg.malformed.items() if v)
                log.warning("%s: %d malformed lines in the last %.0fs (totals: %s); last: %s",
                            source.path, total - source.malformed_logged, MALFORMED_LOG_EVERY, reasons,
                            escape(source.agg.last_malformed.decode("utf-8", "replace")))
                source.malformed_logged = total

    def _objective(self, source: Source, route: str) -> Objective:
        objective = source.objectives.get(route)
        if objective is None:
            objective = Objective()
            for slo in self.config.slo:
                if re.fullmatch(slo.route, route):
                    objective = Objective(slo.latency_threshold, slo.latency_objective,
                                          slo.availability, slo.team)
                    break
            source.objectives[route] = objective
        return objective

    def snapshot(self) -> Snapshot:
        """Everything /metrics shows, copied under the lock (called from the HTTP thread)."""
        files = []
        with self.lock:
            for source in self.sources.values():
                slots = source.agg.snapshot()
                stats = dataclasses.replace(source.stream.stats,
                                            rotations=dict(source.stream.stats.rotations))
                files.append(FileSnapshot(
                    source.path, dict(source.config.labels), slots, list(self._bounds_s),
                    source.agg.lines, dict(source.agg.malformed), stats, source.agg.limiter.distinct,
                    {key[0]: self._objective(source, key[0]) for key, _slot in slots},
                ))
        ck = self.checkpointer
        return Snapshot(files, __version__, ck.writes if ck else 0, ck.failures if ck else 0,
                        ck.last_write if ck else 0.0, dict(self.reloads), self.last_tick)

    def _healthz(self) -> tuple[str, str, bytes]:
        stuck = self.clock() - self._last_tick_mono
        if stuck > max(STUCK_AFTER, 4 * self.config.poll_interval):
            return "503 Service Unavailable", "text/plain", f"stuck for {stuck:.0f}s\n".encode()
        return "200 OK", "text/plain", b"ok\n"

    # ---- signals --------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        self.lifecycle.install()  # SIGHUP: reload the config

    def _on_stop(self, signum: int, _frame: object) -> None:
        log.info("received %s; writing the last report and checkpoint", signal.Signals(signum).name)
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._waker.wake()

"""`Service`: wires the streams, parsers, aggregators, window, exporter and checkpoints; runs the loop.

One loop thread owns every FileStream and Aggregator; it holds `self.lock` while it counts a batch,
and the HTTP thread takes the same lock only to copy the slots (`snapshot()`), so a scrape never sees
half a batch (a histogram's count always equals its +Inf bucket).

The public methods are the seams the rest of run/ and the tests use, so nothing outside reaches into
the loop's state: `lifecycle.py` reloads through `file_configs()`, `bounds_s`, `apply_reload()`,
`progress()` and `wake()`; `cron.py` holds a Service and drives its one pass with `scan()`,
`read_to_end()`, `totals()`, `write_report()`, `set_extra()`, `checkpoint()` and `close()`.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from logtaild.config import Config, FileConfig, NativeHistogramsConfig, parse_listen
from logtaild.count.aggregate import Aggregator
from logtaild.count.labels import escape
from logtaild.count.native import NativeSpec
from logtaild.count.parsers import FormatAdvisor, make_parser
from logtaild.count.routes import RouteLimiter
from logtaild.count.window import Window, WindowKey, format_report
from logtaild.regex import FullMatch
from logtaild.run.lifecycle import Lifecycle, Progress
from logtaild.run.parallel import RangeJob, RangeResult, merge, usable_cores
from logtaild.tail.checkpoint import Checkpointer, State
from logtaild.tail.filestream import FileStream
from logtaild.tail.position import Position
from logtaild.tail.waker import Waker

if TYPE_CHECKING:  # the HTTP side is imported by `run` when it serves: `--once` never loads it
    from logtaild.count.latency import Timing  # imported by timings(): `report: latency` only (start-up)
    from logtaild.export.history import History
    from logtaild.export.snapshot import Objective, Snapshot  # imported by the first snapshot() (start-up)
    from logtaild.run.push import Pusher
    from logtaild.run.reload import ReloadPlan  # imported by lifecycle.py at the first reload

log = logging.getLogger("logtaild")

CHECKPOINT_EVERY = 1.0
#: a backlog at least this large is split in two, one half counted by a forked worker (2 cores)
PARALLEL_MIN_BYTES = 32 << 20
JOB_WAIT_AT_EXIT = 8.0
MALFORMED_LOG_EVERY = 10.0
STUCK_AFTER = 10.0

class ReportOut(Protocol):
    """Where reports go: stdout, a StringIO in tests, or detach's writer that logs each line to syslog."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


#: `from_start_for(path, file_config)`: True when a path found by `scan()` must be read from its start
#: (besides the usual rule); cron passes its "created since the last run" test
FromStartFor = Callable[[str, FileConfig], bool]


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
    #: checks the first lines against the file's format (says once if another format fits them)
    advisor: FormatAdvisor | None = None


def carry_over(new: Aggregator, old: Aggregator) -> Aggregator:
    """Move `old`'s counts into `new` (through `new`'s route cap), so a rebuilt aggregator loses none."""
    merge(new, RangeResult(old.slots, old.malformed, old.lines, 0))
    new.last_malformed = old.last_malformed
    new.first_malformed = old.first_malformed
    return new


def _pushers(config: Config, snapshot: Callable[[], Snapshot]) -> list[Pusher]:
    """The remote_write pushers of `config` (not started).

    Imported only when some receiver is configured: the protobuf runtime and the snappy codec behind
    them add 8 MB to every process that loads them.
    """
    if not config.remote_write:
        return []
    from logtaild.run.push import make_pushers  # here, not at the top: see above
    return make_pushers(config.remote_write, snapshot)


def native_spec(native: NativeHistogramsConfig) -> NativeSpec | None:
    """The count layer's form of a file's `native_histograms` (None when they are off)."""
    if not native.enabled:
        return None
    return NativeSpec(native.schema, native.zero_threshold_s, native.max_buckets)


def _paths(pattern: str) -> list[str]:
    """The paths a configured entry names now: its glob matches, or the path itself (even missing)."""
    return sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]


def _log_detected(path: str, name: str, good: int, seen: int) -> None:
    """What format detection chose for a file without a configured format (said once per file)."""
    if good:
        log.info("%s: detected format %s from the first %d lines (%d parse)", path, name, seen, good)
    else:
        log.warning("%s: no known format parses the first %d lines; reading them as %s: set the file's "
                    "format (nginx or apache with the server's log_format)", path, seen, name)


def _summarize_malformed(source: Source) -> None:
    """`--once`: one line on stderr when lines were malformed (by reason, and the first of them)."""
    agg = source.agg
    total = sum(agg.malformed.values())
    if not total:
        return
    reasons = ", ".join(f"{reason}={n}" for reason, n in agg.malformed.items() if n)
    name = source.advisor.format_name() if source.advisor else source.config.format
    first = escape(agg.first_malformed.decode("utf-8", "replace"))
    sys.stderr.write(f"logtaild: {escape(source.path)}: {total} of {agg.lines} lines malformed for format "
                     f"{name} ({reasons}); first: {first}\n")
    sys.stderr.flush()


class Service:
    """The daemon (or, with `once`, a single pass over the files)."""

    def __init__(self, config: Config, *, once: bool = False, out: ReportOut | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 reloader: Callable[[], Config] | None = None,
                 from_start_for: FromStartFor | None = None) -> None:
        self.config = config
        self._slo_routes: dict[str, FullMatch] = {}
        self.once = once
        self.out: ReportOut = out or sys.stdout
        self.clock = clock
        self.lock = threading.Lock()
        self.sources: dict[str, Source] = {}
        self.checkpointer = Checkpointer(config.state_file) if config.state_file else None
        self._state = self.checkpointer.load() if self.checkpointer else State()
        self._from_start_for = from_start_for
        self._stop = threading.Event()
        self._waker = Waker(config.poll_interval, watch=not once)
        self._bounds_s = config.bucket_bounds()
        self._reports = 0
        self._pushers: list[Pusher] = []  # remote_write receivers, started by run()
        #: bumped (under the lock) whenever the counts change: a scrape rendering made since is current
        self._changes = 0
        self.last_tick = time.time()
        self._last_tick_mono = clock()
        # the loop's report window and when each periodic job is next due, set when the loop starts:
        # until then no report is due, so `step()` reads everything there is; the first loop turn
        # rescans the globs at once
        self._window = Window(self._last_tick_mono)
        #: `report: latency`: the timings at the window's start, per (path, route, status)
        self._window_timings: dict[WindowKey, Timing] | None = None
        self._report_at = math.inf
        self._checkpoint_at = self._malformed_log_at = self._rescan_at = 0.0
        #: the status page's charts: one point per report window, recorded by the loop (daemon mode only)
        self.history: History | None = None
        self._parallel = usable_cores() > 1  # a backlog is split only when a second CPU can take half
        self.lifecycle = Lifecycle(self, reloader)  # sd_notify, SIGHUP reloads (run/lifecycle.py)

    # ---- what others read -----------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The state file's contents as last loaded or saved (positions and `extra`)."""
        return self._state

    @property
    def bounds_s(self) -> tuple[float, ...]:
        """The histogram bounds (seconds) every aggregator counts with, fixed at start-up."""
        return self._bounds_s

    @property
    def reloads(self) -> dict[str, int]:
        """Reloads so far by result (`success`, `failure`)."""
        return dict(self.lifecycle.reloads)

    def file_configs(self) -> dict[str, FileConfig]:
        """Each followed path -> the file config it is read with."""
        return {path: source.config for path, source in self.sources.items()}

    def progress(self) -> Progress:
        """Lines read and bytes behind, summed over the followed files, and how many there are."""
        sources = list(self.sources.values())
        return Progress(sum(source.agg.lines for source in sources),
                        sum(source.stream.stats.lag for source in sources), len(sources))

    # ---- sources ------------------------------------------------------------------------------

    def scan(self, initial: bool = False) -> None:
        """Add a Source for every configured path and every new glob match, and watch them.

        `initial`: as at start-up, a path without a valid checkpoint is read from its end (from its
        start with `from_start`); a later scan finds files created while we run: read from their start.
        """
        for file_config in self.config.files:
            for path in _paths(file_config.path):
                if path not in self.sources:
                    self._add(path, file_config, self._reads_from_start(path, file_config, initial))
        self._waker.watch(self.sources)

    def _reads_from_start(self, path: str, file_config: FileConfig, initial: bool) -> bool:
        if self.config.from_start or not initial:
            return True
        return self._from_start_for is not None and self._from_start_for(path, file_config)

    def _add(self, path: str, file_config: FileConfig, from_start: bool) -> None:
        saved = self._state.positions.get(path)
        stream = FileStream(
            path, from_start=from_start, max_line=self.config.max_line,
            drain_grace=self.config.drain_grace, clock=self.clock, resume=saved,
        )
        agg = self._make_aggregator(file_config, path=path)
        self.sources[path] = Source(path, file_config, stream, agg, advisor=FormatAdvisor(file_config, agg.parser))

    def _remove(self, path: str) -> None:
        source = self.sources.pop(path)
        if source.job is not None:
            source.job.result(0)  # a catch-up worker for a file we no longer follow: stop it
        source.stream.close()
        self._state.positions.pop(path, None)

    def _make_aggregator(self, file_config: FileConfig, config: Config | None = None, path: str = "") -> Aggregator:
        """A fresh Aggregator for one file (`config`: the routes to use, default the running config)."""
        routes = (config or self.config).routes
        native = native_spec((config or self.config).native_for(file_config))
        limiter = RouteLimiter(routes.max, [(r.match, r.replace) for r in routes.rules], routes.builtin,
                               max_length=routes.max_length, max_series=routes.max_series)
        parser = make_parser(file_config, on_detect=lambda name, good, seen: _log_detected(
            path or file_config.path, name, good, seen))
        return Aggregator(limiter, [round(b * 1000, 9) for b in self._bounds_s], parser, native=native,
                          exemplars=file_config.exemplar_field is not None)

    def apply_reload(self, plan: ReloadPlan) -> None:
        """Apply a plan from `reload.plan_reload` (which says what changes) between two batches."""
        fresh = {path: self._make_aggregator(file_config, plan.config, path)
                 for path, file_config in plan.rebuilt.items()}
        with self.lock:
            self._changes += 1
            for path in plan.removed:
                self._remove(path)
            for path, file_config in {**plan.kept, **plan.rebuilt}.items():
                self.sources[path].config = file_config
            for path, agg in fresh.items():
                source = self.sources[path]
                source.agg = carry_over(agg, source.agg)  # a new parser or route rules, the same counts
                source.advisor = FormatAdvisor(source.config, agg.parser)
            for source in self.sources.values():
                source.objectives.clear()
                source.stream.max_line = plan.config.max_line
                source.stream.drain_grace = plan.config.drain_grace
            before = set(self.sources)
            self.config = plan.config
            self._waker.tick = plan.config.poll_interval
            self.scan(initial=True)  # new paths: as at start-up (resume, else end or from_start)
        added = [path for path in self.sources if path not in before]
        log.info("reload applied: %d file%s followed%s%s; report every %gs", len(self.sources),
                 "s" if len(self.sources) != 1 else "",
                 f", added {', '.join(added)}" if added else "",
                 f", removed {', '.join(plan.removed)}" if plan.removed else "", plan.config.interval)

    # ---- the loop -------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped (or one pass with `once`); returns the exit code."""
        if self.once:
            self.scan(initial=True)
            return self._run_once()
        # the export stack (prometheus-client, cheroot, ssl: about a third of a second of start-up) only
        # when serving, so a `--once` catch-up starts counting without it
        from logtaild.export.collector import build_registry
        from logtaild.export.history import History
        from logtaild.export.server import make_app, serve
        from logtaild.export.status import StatusBoard
        from logtaild.export.webconfig import load_web_config, protect

        host, port = parse_listen(self.config.listen)
        registry = build_registry(self.snapshot)
        web = load_web_config(self.config.web_config) if self.config.web_config else None
        self.history = History(self.config.interval)
        app = StatusBoard(self.snapshot, stuck_after=self._stuck_after(), history=self.history).wrap(
            make_app(registry, {"/healthz": self._healthz}, changes=self.changes))
        self._pushers = _pushers(self.config, self.snapshot)
        self._install_signals()  # before /healthz answers: a SIGTERM right after it must stop us cleanly
        server = serve(protect(app, web), host, port, tls=web.context if web else None)
        try:  # from here on: cheroot's workers are not daemon threads, the process exits only once they stop
            self.scan(initial=True)
            log.info("serving /metrics on %s:%d%s; following %s", host or "0.0.0.0", port,
                     (" (TLS)" if web and web.context else "") + (" (basic auth)" if web and web.users else ""),
                     ", ".join(self.sources) or "nothing yet")
            self.lifecycle.ready()
            for pusher in self._pushers:
                pusher.start()
            self._loop()
        finally:
            for pusher in self._pushers:  # after the loop's last read: the final push has every line
                pusher.stop()
            server.shutdown()
            self._waker.stop()
        return 0

    def _run_once(self) -> int:
        window = Window(self.clock())
        self._window_timings = self.timings() if self._latency_report else None
        self.read_to_end()
        self.write_report(*window.close(self.totals(), self.clock()), self._close_timings())
        for source in self.sources.values():
            self._advise(source, source.advisor.finish(final=True) if source.advisor else None)
            _summarize_malformed(source)
        self.checkpoint(force=True)
        self.close()
        return 0

    def _loop(self) -> None:
        now = self.clock()
        self._open_window(now)
        self._checkpoint_at = now + CHECKPOINT_EVERY
        self._malformed_log_at = now + MALFORMED_LOG_EVERY
        while not self._stop.is_set():
            busy = self.step()
            if self.lifecycle.reload_requested() and self.lifecycle.reload(self._close_window):
                self._open_window(self.clock())  # the new files and grouping
            self._run_due(self.clock())
            # busy: the poll found lines, so more are likely on their way; the waker lets them
            # gather for a moment instead of waking at each write
            self._waker.wait(max(0.0, min(self.config.poll_interval, self._report_at - self.clock())), busy=busy)
        self.lifecycle.stopping()
        self.read_to_end()
        self._close_window()
        self.checkpoint(force=True)
        self.close()

    def _open_window(self, now: float) -> None:
        self._window = Window(now, self.totals())
        self._window_timings = self.timings() if self._latency_report else None
        self._report_at = now + self.config.interval

    @property
    def _latency_report(self) -> bool:
        return self.config.report == "latency"

    def _close_timings(self) -> dict[WindowKey, Timing] | None:
        """The window's timings (`report: latency`), the next window's start taken at once."""
        if self._window_timings is None:
            return None
        before, now = self._window_timings, self.timings()
        self._window_timings = now
        return {key: timing.minus(before.get(key)) for key, timing in now.items()}

    def _close_window(self) -> None:
        """Report the open window now (at exit, and before a reload changes files or grouping)."""
        self._end_window(self.clock())

    def _end_window(self, now: float) -> None:
        """Report the window ending at `now`, and add it to the status page's history.

        The history point is taken after the report, from the live slots (`snapshot(live=True)`):
        only this thread counts into them, so nothing changes while it reads them and the point holds
        exactly the report's counts. A copy would cost what a scrape's does (at the series cap about
        5 MB, every report, on top of a scrape rendering at the same moment).
        """
        counts, length = self._window.close(self.totals(), now)
        self.write_report(counts, length, self._close_timings())
        if self.history is not None:
            self.history.record(self.snapshot(live=True), time.time(), length)

    def _report_due(self) -> bool:
        return self.clock() >= self._report_at

    def _run_due(self, now: float) -> None:
        """The loop's periodic work: report, checkpoint, malformed-lines log, rescan of globs."""
        if now >= self._report_at:
            self._end_window(now)
            # on time on average; after a stall, not a burst of reports of near-empty windows
            self._report_at = max(self._report_at + self.config.interval, now + self.config.interval / 2)
        if now >= self._checkpoint_at:
            self.checkpoint()
            self._checkpoint_at = now + CHECKPOINT_EVERY
        if now >= self._malformed_log_at:
            self._log_malformed()
            self._malformed_log_at = now + MALFORMED_LOG_EVERY
        if now >= self._rescan_at:
            self.scan()
            self._rescan_at = now + self.config.rescan_interval

    def changes(self) -> int:
        """How many times the counts have changed (batches, merged workers, reloads): a version number."""
        return self._changes

    def step(self) -> bool:
        """One loop turn's reading: every source to its end, or until a report is due; True if lines came."""
        return self.poll_all(self._report_due)

    def read_to_end(self) -> None:
        """Read every source to its end and merge every range worker's counts (waiting for them)."""
        self.poll_all()
        for source in self.sources.values():
            self._collect_job(source, wait=JOB_WAIT_AT_EXIT)

    def poll_all(self, due: Callable[[], bool] | None = None) -> bool:
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
                    self._changes += 1
                if source.advisor is not None:
                    self._advise(source, source.advisor.feed(batch))
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
            self._changes += 1
        source.stream.release(result.lines_cut)

    def _tick(self) -> None:
        self.last_tick = time.time()
        self._last_tick_mono = self.clock()
        self.lifecycle.tick()  # the systemd watchdog ping comes from the loop itself

    def close(self) -> None:
        """Close every followed file (the last step of a run)."""
        for source in self.sources.values():
            source.stream.close()

    # ---- outputs --------------------------------------------------------------------------------

    def totals(self) -> dict[WindowKey, int]:
        """Requests so far by (path, route, status), the base a report window subtracts."""
        # always keyed by path, so a window's base stays valid when a glob gains a second file
        # (keyed by "" until then, the first file's whole history would be reported again)
        totals: dict[WindowKey, int] = {}
        with self.lock:
            for source in self.sources.values():
                for (route, status), n in source.agg.counts_by_route_status().items():
                    totals[source.path, route, status] = n
        return totals

    def write_report(self, counts: dict[WindowKey, int], length: float,
                     latency: dict[WindowKey, Timing] | None = None) -> None:
        """Print one window's report (`counts` from `Window.close`, `length` in seconds) to `out`; with
        `latency` (the window's timings, `report: latency`) the percentile columns too."""
        log.debug("report: window %.6fs, %d requests", length, sum(counts.values()))
        if len(self.sources) <= 1:  # one file: rows without a [path] line
            counts = {("", route, status): n for (_path, route, status), n in counts.items()}
            if latency is not None:
                latency = {("", route, status): t for (_path, route, status), t in latency.items()}
        text = format_report(counts, length, latency=latency, bounds_s=self._bounds_s)
        self.out.write(("\n" if self._reports else "") + text)
        self.out.flush()
        self._reports += 1

    def timings(self) -> dict[WindowKey, Timing]:
        """Request latencies so far by (path, route, status), native buckets copied (`report: latency`)."""
        from logtaild.count.latency import timings as timings_of  # here: see the TYPE_CHECKING import

        out: dict[WindowKey, Timing] = {}
        buckets = len(self._bounds_s) + 1
        with self.lock:
            for source in self.sources.values():
                path = source.path
                out.update(timings_of((((path, key[0], key[2]), slot) for key, slot in source.agg.slots.items()),
                                      buckets))
        return out

    def set_extra(self, key: str, value: Any) -> None:
        """Store `value` under `key` in the state file's `extra`, written with the next checkpoint."""
        self._state.extra[key] = value

    def checkpoint(self, force: bool = False) -> None:
        """Save every position (and `extra`) to the state file, if there is one and it changed."""
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

    def _advise(self, source: Source, advice: str | None) -> None:
        """Log the format advisor's verdict (it gives one at most once per file)."""
        if advice:
            log.warning("%s: %s", source.path, advice)

    def _log_malformed(self) -> None:
        for source in self.sources.values():
            total = sum(source.agg.malformed.values())
            if total and source.advisor is not None:
                self._advise(source, source.advisor.finish())
            if total > source.malformed_logged:
                reasons = ", ".join(f"{k}={v}" for k, v in source.agg.malformed.items() if v)
                log.warning("%s: %d malformed lines in the last %.0fs for format %s (totals: %s); last: %s",
                            source.path, total - source.malformed_logged, MALFORMED_LOG_EVERY,
                            source.advisor.format_name() if source.advisor else source.config.format, reasons,
                            escape(source.agg.last_malformed.decode("utf-8", "replace")))
                source.malformed_logged = total

    def _objective(self, source: Source, route: str) -> Objective:
        objective = source.objectives.get(route)
        if objective is None:
            from logtaild.export.snapshot import Objective  # here, as in snapshot(): `--once` takes none

            objective = Objective()
            for slo in self.config.slo:
                if self._slo_route(slo.route)(route):
                    objective = Objective(slo.latency_threshold, slo.latency_objective,
                                          slo.availability, slo.team)
                    break
            source.objectives[route] = objective
        return objective

    def _slo_route(self, pattern: str) -> FullMatch:
        """An SLO's route pattern compiled by RE2 (linear time on routes from the log), once per pattern."""
        matcher = self._slo_routes.get(pattern)
        if matcher is None:
            matcher = self._slo_routes[pattern] = FullMatch(pattern)  # validated with the config
        return matcher

    def snapshot(self, live: bool = False) -> Snapshot:
        """Everything /metrics shows, copied under the lock (called from the HTTP thread).

        `live`: the slots themselves, not copies, for the thread that counts (the only one that may
        read them so, and only until it counts again).
        """
        # here, not at import: a `--once` run without a textfile takes no snapshot (four dataclasses of
        # start-up)
        from logtaild.export.snapshot import FileSnapshot, Snapshot

        files = []
        with self.lock:
            for source in self.sources.values():
                slots = list(source.agg.slots.items()) if live else source.agg.snapshot()
                stats = dataclasses.replace(source.stream.stats,
                                            rotations=dict(source.stream.stats.rotations))
                files.append(FileSnapshot(
                    source.path, dict(source.config.labels), slots, list(self._bounds_s),
                    source.agg.lines, dict(source.agg.malformed), stats, source.agg.limiter.distinct,
                    {key[0]: self._objective(source, key[0]) for key, _slot in slots},
                    tuple(sorted(source.config.label_fields)),
                ))
        from logtaild import __version__  # looked up once, on first use

        ck = self.checkpointer
        return Snapshot(files, __version__, ck.writes if ck else 0, ck.failures if ck else 0,
                        ck.last_write if ck else 0.0, ck.fallbacks if ck else 0, self.reloads, self.last_tick,
                        [pusher.stats() for pusher in self._pushers])

    def _stuck_after(self) -> float:
        return max(STUCK_AFTER, 4 * self.config.poll_interval)

    def _healthz(self) -> tuple[str, str, bytes]:
        stuck = self.clock() - self._last_tick_mono
        if stuck > self._stuck_after():
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

    def wake(self) -> None:
        """Make the loop's next turn start now (a signal arrived)."""
        self._waker.wake()

    def stop(self) -> None:
        self._stop.set()
        self.wake()

"""The daemon's life as a service: sd_notify (READY, WATCHDOG, STATUS, STOPPING) and SIGHUP reloads.

`Service` calls in here with a few lines; the work is done in the loop thread, never in a signal
handler. The SIGHUP handler only sets a flag and wakes the loop, so a signal that arrives during a
reload is not lost: the flag is cleared *before* the reload starts, and the next loop turn sees it
set again and reloads once more (several SIGHUPs during one reload coalesce into one more reload).

What a reload applies live, and what waits for a restart:

* live: `files` (paths that stay keep their FileStream, position and counts; new paths are opened as
  at start-up: resumed from the state file, else from their end unless `from_start`; removed paths
  are closed and forgotten, their series leave /metrics), a file's `format`/`fields`/`latency_unit`/
  `labels`, `routes` (new rules and cap apply to lines read from now on; routes already counted
  keep their series and count towards the cap), `slo` objectives and teams, `interval` (a reload
  closes the current report window, its report is printed at once, the next window uses the new
  interval), `poll_interval`, `drain_grace`, `max_line`, `rescan_interval`, `from_start` (for paths
  added from now on);
* at the next restart: `listen`, `state_file`, `web_config`, `histogram` buckets (the series keep
  their bucket layout; an SLO `latency_threshold` that is not already a bucket bound is exact only
  after a restart), and any other setting not listed above. Each is logged as a warning.

A config that does not load or validate changes nothing: one error line, the old config stays, and
`logtaild_config_reloads_total{result="failure"}` counts it.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import glob
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from logtaild.config import Config, ConfigError, FileConfig
from logtaild.run.parallel import RangeResult, merge
from logtaild.run.sdnotify import Notifier

if TYPE_CHECKING:
    from logtaild.count.aggregate import Aggregator
    from logtaild.run.service import Service

log = logging.getLogger("logtaild")

#: settings a reload applies to the running daemon; every other field waits for a restart
LIVE_FIELDS = frozenset({
    "interval", "files", "routes", "slo", "from_start", "poll_interval", "drain_grace", "max_line",
    "rescan_interval",
})
#: how often STATUS= is sent when no watchdog ping carries it
STATUS_EVERY = 5.0


def carry_over(new: Aggregator, old: Aggregator) -> Aggregator:
    """Move `old`'s counts into `new` (through `new`'s route cap), so a rebuilt aggregator loses none."""
    merge(new, RangeResult(old.slots, old.malformed, old.lines, 0))
    new.last_malformed = old.last_malformed
    return new


def _file_config_for(path: str, config: Config) -> FileConfig | None:
    """The first configured entry that names `path` (exactly, or as a glob match)."""
    for file_config in config.files:
        if file_config.path == path:
            return file_config
        if glob.has_magic(file_config.path) and fnmatch.fnmatchcase(path, file_config.path):
            return file_config
    return None


class Lifecycle:
    """sd_notify and reloads for one `Service` (daemon mode only)."""

    def __init__(self, service: Service, reloader: Callable[[], Config] | None = None,
                 notifier: Notifier | None = None) -> None:
        self.service = service
        self.notifier = notifier or Notifier()
        self._reloader = reloader
        self._reload = threading.Event()
        self._status_at = 0.0
        self._status_lines = 0
        self._status_mono = time.monotonic()
        self._notify = self.notifier.enabled

    # ---- signals -------------------------------------------------------------------------------

    def install(self) -> None:
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_hup(self, _signum: int, _frame: object) -> None:
        self._reload.set()
        self.service._waker.wake()

    def request_reload(self) -> None:
        self._reload.set()

    def reload_requested(self) -> bool:
        return self._reload.is_set()

    # ---- sd_notify ---------------------------------------------------------------------------------

    def ready(self) -> None:
        if self._notify:
            self.notifier.ready(self.status_text())
            self._status_at = time.monotonic()

    def tick(self) -> None:
        """Called from the loop at every batch and every turn: watchdog ping and STATUS when due."""
        if not self._notify:
            return
        if self.notifier.ping_due():
            self.notifier.heartbeat(self.status_text())
            self._status_at = time.monotonic()
        elif time.monotonic() - self._status_at >= STATUS_EVERY:
            self.notifier.status(self.status_text())
            self._status_at = time.monotonic()

    def stopping(self) -> None:
        if self._notify:
            self.notifier.stopping("stopping: writing the last report and checkpoint")

    def status_text(self) -> str:
        """`1234 lines/s, lag 0 B, 2 files` (the rate since the previous status)."""
        sources = list(self.service.sources.values())
        lines = sum(source.agg.lines for source in sources)
        lag = sum(source.stream.stats.lag for source in sources)
        now = time.monotonic()
        elapsed = now - self._status_mono
        rate = (lines - self._status_lines) / elapsed if elapsed > 0 else 0.0
        self._status_lines, self._status_mono = lines, now
        text = f"{rate:.0f} lines/s, lag {lag} B, {len(sources)} file{'s' if len(sources) != 1 else ''}"
        return text

    # ---- reload --------------------------------------------------------------------------------

    def reload(self, close_window: Callable[[], None]) -> bool:
        """Re-read the config and apply it; `close_window()` reports the current window first.

        True when the new config was applied (the caller then starts a new window).
        """
        self._reload.clear()  # first: a SIGHUP arriving from here on triggers another reload
        service = self.service
        self.notifier.reloading()
        log.info("SIGHUP: reloading the configuration")
        try:
            new = self._reloader() if self._reloader else service.config
            plan = self._plan(new)
        except (ConfigError, ValueError, OSError) as exc:
            service.reloads["failure"] += 1
            log.error("reload failed, keeping the running configuration: %s", exc)
            self.notifier.ready(f"reload failed: {exc}"[:200])
            return False
        close_window()
        self._apply(*plan)
        service.reloads["success"] += 1
        self.notifier.ready(self.status_text())
        return True

    def _plan(self, new: Config) -> tuple[Config, dict, list[str]]:
        """Validate everything that can fail before anything changes; returns what `_apply` needs."""
        service = self.service
        old = service.config
        restart = [f.name for f in dataclasses.fields(Config)
                   if f.name not in LIVE_FIELDS and getattr(new, f.name) != getattr(old, f.name)]
        effective = dataclasses.replace(new, **{
            f.name: getattr(old, f.name) for f in dataclasses.fields(Config) if f.name not in LIVE_FIELDS})
        rebuilt: dict[str, tuple[FileConfig, Aggregator]] = {}
        removed: list[str] = []
        for path, source in service.sources.items():
            file_config = _file_config_for(path, effective)
            if file_config is None:
                removed.append(path)
            elif file_config != source.config or effective.routes != old.routes:
                # a new parser or new route rules: a new aggregator that takes over the counts
                rebuilt[path] = (file_config, service._make_aggregator(file_config, effective))
            elif file_config is not source.config:
                rebuilt[path] = (file_config, None)
        new_bounds = set(effective.bucket_bounds()) - set(service._bounds_s)
        if new_bounds:
            log.warning("reload: SLO latency thresholds %s are not histogram bucket bounds; their slow "
                        "counts are exact after a restart", ", ".join(f"{b:g}s" for b in sorted(new_bounds)))
        for name in restart:
            log.warning("reload: %s changed; it applies at the next restart", name)
        return effective, rebuilt, removed

    def _apply(self, effective: Config, rebuilt: dict, removed: list[str]) -> None:
        service = self.service
        with service.lock:
            for path in removed:
                source = service.sources.pop(path)
                if getattr(source, "job", None) is not None:
                    source.job.result(0)  # a catch-up worker for a file we no longer follow: stop it
                source.stream.close()
                service._state.positions.pop(path, None)
            for path, (file_config, agg) in rebuilt.items():
                source = service.sources[path]
                source.config = file_config
                if agg is not None:
                    source.agg = carry_over(agg, source.agg)
            for source in service.sources.values():
                source.objectives.clear()
                source.stream.max_line = effective.max_line
                source.stream.drain_grace = effective.drain_grace
            before = set(service.sources)
            service.config = effective
            service._waker.tick = effective.poll_interval
            service._scan(initial=True)  # new paths: as at start-up (resume, else end or from_start)
        added = [path for path in service.sources if path not in before]
        log.info("reload applied: %d file%s followed%s%s; report every %gs", len(service.sources),
                 "s" if len(service.sources) != 1 else "",
                 f", added {', '.join(added)}" if added else "",
                 f", removed {', '.join(removed)}" if removed else "", effective.interval)

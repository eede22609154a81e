"""The daemon's life as a service: sd_notify (READY, WATCHDOG, STATUS, STOPPING, RELOADING) and the
SIGHUP reload sequence.

`Service` calls in here with a few lines; the work is done in the loop thread, never in a signal
handler. The SIGHUP handler only sets a flag and wakes the loop, so a signal that arrives during a
reload is not lost: the flag is cleared *before* the reload starts, and the next loop turn sees it
set again and reloads once more (several SIGHUPs during one reload coalesce into one more reload).

A reload, in the loop thread: load the config (`reloader()`), compute the plan (`reload.plan_reload`,
which documents what applies live and what waits for a restart), and only when both succeeded log
the plan's warnings, close the current report window and apply the plan (`Service.apply_reload`).
A config that does not load or validate changes nothing and is counted as a failure.

This module sees the service only through the `Followed` protocol, so it never imports service.py.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol

from logtaild.config import Config, ConfigError, FileConfig
from logtaild.run.sdnotify import Notifier

if TYPE_CHECKING:  # the type only: reload.py is imported by the first reload (start-up: see _plan)
    from logtaild.run.reload import ReloadPlan

log = logging.getLogger("logtaild")

#: how often STATUS= is sent when no watchdog ping carries it
STATUS_EVERY = 5.0


class Progress(NamedTuple):
    """What STATUS= tells systemd: totals over every followed file."""

    lines: int
    lag: int
    files: int


class Followed(Protocol):
    """What the lifecycle needs from the service it runs for."""

    @property
    def config(self) -> Config: ...

    @property
    def bounds_s(self) -> tuple[float, ...]: ...

    def file_configs(self) -> Mapping[str, FileConfig]: ...

    def progress(self) -> Progress: ...

    def wake(self) -> None: ...

    def apply_reload(self, plan: ReloadPlan) -> None: ...


class Lifecycle:
    """sd_notify and reloads for one service (daemon mode only)."""

    def __init__(self, service: Followed, reloader: Callable[[], Config] | None = None,
                 notifier: Notifier | None = None) -> None:
        self.service = service
        self.notifier = notifier or Notifier()
        #: `logtaild_config_reloads_total` by result
        self.reloads = {"success": 0, "failure": 0}
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
        self.service.wake()

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
        lines, lag, files = self.service.progress()
        now = time.monotonic()
        elapsed = now - self._status_mono
        rate = (lines - self._status_lines) / elapsed if elapsed > 0 else 0.0
        self._status_lines, self._status_mono = lines, now
        return f"{rate:.0f} lines/s, lag {lag} B, {files} file{'s' if files != 1 else ''}"

    # ---- reload --------------------------------------------------------------------------------

    def reload(self, close_window: Callable[[], None]) -> bool:
        """Re-read the config and apply it; `close_window()` reports the current window first.

        True when the new config was applied (the caller then starts a new window).
        """
        self._reload.clear()  # first: a SIGHUP arriving from here on triggers another reload
        self.notifier.reloading()
        log.info("SIGHUP: reloading the configuration")
        plan = self._plan()
        if plan is None:
            return False
        for warning in plan.warnings:
            log.warning("%s", warning)
        close_window()
        self.service.apply_reload(plan)
        self.reloads["success"] += 1
        self.notifier.ready(self.status_text())
        return True

    def _plan(self) -> ReloadPlan | None:
        """The plan for the config the reloader gives; None (logged, counted) when it fails."""
        # here, not at import: a `--once` run or a daemon never sent SIGHUP plans no reload (start-up)
        from logtaild.run.reload import plan_reload

        service = self.service
        try:
            new = self._reloader() if self._reloader else service.config
            return plan_reload(service.config, new, service.file_configs(), service.bounds_s)
        except (ConfigError, ValueError, OSError) as exc:
            self.reloads["failure"] += 1
            log.error("reload failed, keeping the running configuration: %s", exc)
            self.notifier.ready(f"reload failed: {exc}"[:200])
            return None

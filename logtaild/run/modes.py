"""How the command runs: in the foreground, detached (`--detach`), once (`--once`), or as a cron pass
(`--once --state-file`, with `--textfile`). `cli.py` parses the flags and calls `run()`.

Flag combinations that make no sense are ConfigErrors (one line, exit 2). Every mode first raises
the open-files limit (`raise_open_files_limit`); every mode but `--once`, which starts no thread, caps
glibc's malloc arenas (`heap.limit_arenas`).
"""
from __future__ import annotations

import gc
import logging
import os
import resource
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from logtaild.config import Config, ConfigError

if TYPE_CHECKING:  # the type only: the CLI's --help imports none of the service
    from logtaild.run.service import ReportOut

DEFAULT_LOCK_TIMEOUT = 10.0
#: the kernel's ceiling for RLIMIT_NOFILE when the hard limit is "unlimited"
NR_OPEN = "/proc/sys/fs/nr_open"

log = logging.getLogger("logtaild")


def check_flags(options: dict[str, Any], config: Config) -> None:
    once, detach = bool(options.get("once")), bool(options.get("detach"))
    if options.get("textfile") and not once:
        raise ConfigError("--textfile goes with --once (a running daemon serves /metrics instead)")
    if options.get("textfile") and not config.state_file:
        raise ConfigError("--textfile needs --state-file PATH (the cumulative counters are kept there)")
    if detach and once:
        raise ConfigError("--detach and --once do not go together")
    if detach and not options.get("pidfile"):
        raise ConfigError("--detach needs --pidfile PATH")
    for name in ("pidfile", "log_file"):
        if options.get(name) and not detach:
            raise ConfigError(f"--{name.replace('_', '-')} goes with --detach")


def raise_open_files_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit; a failure is a warning, never fatal.

    The soft limit is 1024 under systemd (and often elsewhere), kept low for programs that use
    select(), which cannot watch a descriptor above 1023. logtaild never does (the waker and the
    HTTP server poll), and a flood of scrapes holding connections open must not leave the tailer
    without a descriptor for the file it follows. setrlimit() can be refused (the unit's
    SystemCallFilter=~@resources does, so the unit sets LimitNOFILE= itself).
    """
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError) as exc:
        log.warning("cannot read the open files limit: %s", exc)
        return
    target = hard if hard != resource.RLIM_INFINITY else max_open_files()
    if soft == resource.RLIM_INFINITY or soft >= target:
        log.debug("open files limit: %d (hard limit %s)", soft, _limit(hard))
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as exc:
        log.warning("cannot raise the open files limit from %d to %d: %s; a flood of connections "
                    "may leave too few descriptors to follow the logs", soft, target, exc)
        return
    log.info("open files limit raised from %d to %d (hard limit %s)", soft, target, _limit(hard))


def max_open_files() -> int:
    """The most RLIMIT_NOFILE may be (an "unlimited" hard limit cannot be set as the soft one)."""
    try:
        with open(NR_OPEN, encoding="ascii") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 1 << 20  # the kernel's default


def _limit(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def run(options: dict[str, Any], load: Callable[[dict[str, Any]], Config]) -> int:
    """Run the command as the flags say; returns the exit code. `load(options)` gives the config."""
    # imported here: the CLI's --help needs none of it; and before --detach forks and moves to /
    from logtaild.run.service import Service

    raise_open_files_limit()
    if not options.get("once"):
        # before any thread starts. A `--once` run starts none (no pushers, no watcher; a catch-up
        # worker is a process), so its one arena needs no cap, nor its start-up ctypes (heap.py)
        from logtaild import heap

        heap.limit_arenas()

    if options.get("detach") and options.get("config"):
        options = {**options, "config": os.path.abspath(options["config"])}  # for SIGHUP, from cwd /
    config = load(options)
    check_flags(options, config)
    # the start-up's objects (modules, classes, the config) live as long as the process: collections
    # during a catch-up need not walk them again and again (1.7% -> 0.6% of a --once run on the bench log)
    gc.freeze()
    if options.get("once"):
        return _cron(options, config) if config.state_file else Service(config, once=True).run()
    if not options.get("detach"):
        return _daemon(config, lambda: load(options))  # SIGHUP: the config file again, the flags on top
    from logtaild.run import detach

    cwd = os.getcwd()
    config = detach.absolute_paths(config, cwd)

    def reloader() -> Config:
        return detach.absolute_paths(load(options), cwd)  # the daemon's cwd is /

    return detach.run_detached(lambda out: _daemon(config, reloader, out), pidfile=options["pidfile"],
                               log_file=options.get("log_file"), listen=config.listen)


def _cron(options: dict[str, Any], config: Config) -> int:
    """`--once --state-file`: one cron pass under the state file's lock (busy: one line, exit 0)."""
    from logtaild.run import cron

    assert config.state_file is not None
    try:
        timeout = options.get("lock_timeout")
        with cron.state_lock(config.state_file, DEFAULT_LOCK_TIMEOUT if timeout is None else timeout):
            return cron.CronRun(config, textfile=options.get("textfile")).run()
    except cron.Busy as exc:
        print(f"logtaild: {exc}", file=sys.stderr)
        return 0


def _daemon(config: Config, reloader: Callable[[], Config], out: ReportOut | None = None) -> int:
    """The daemon in this process (foreground, or the detached child); with a state file, under its lock."""
    from logtaild.run.service import Service  # already imported by run(), before any fork

    if not config.state_file:
        return Service(config, out=out, reloader=reloader).run()
    from logtaild.run import cron

    try:  # a second daemon or a cron run on the same state file would count lines twice
        with cron.state_lock(config.state_file, 0):
            return Service(config, out=out, reloader=reloader).run()
    except cron.Busy:
        raise ConfigError(f"state file {config.state_file} is in use by another logtaild "
                          f"({config.state_file}.lock is locked)") from None

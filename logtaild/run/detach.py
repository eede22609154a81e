"""`--detach`: a classic Unix daemon for hosts without systemd, through python-daemon.

This is the only module that imports python-daemon; it does not import `lockfile` (python-daemon's
own dependency, whose exceptions `DaemonContext.open()` raises for a taken pidfile): those are
recognized by their class names, so no second third-party library is imported here. What it does:

* in the foreground, before forking, everything that can fail with a message the user should see
  in the terminal: the pidfile (a live process named in it: one line, exit 2; a stale one left by a
  crash is removed with a warning), the log file (opened for appending), the listen port (bound
  once, released);
* then `DaemonContext`: double fork, new session, working directory `/`, umask 027, stdin from
  /dev/null, stdout and stderr to the log file (reports and log lines alike; open it with O_APPEND, so
  rotate it with logrotate's `copytruncate`), the pidfile created with the daemon's own pid by
  `TimeoutPIDLockFile` and removed when the daemon exits;
* without `--log-file`, log lines go to syslog (`/dev/log`, facility daemon) and each report line is
  logged at INFO; without `/dev/log` either, `--log-file` is required.

Under systemd (`INVOCATION_ID` or `NOTIFY_SOCKET` set) it never detaches: the service manager tracks
the main process, and a fork would lose it (`Type=notify`, `NotifyAccess=main`). A warning says so,
and the daemon runs in the foreground.
"""
from __future__ import annotations

import dataclasses
import logging
import logging.handlers
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

import daemon
import daemon.pidfile

from logtaild.config import Config, ConfigError, parse_listen

if TYPE_CHECKING:  # the type only: the daemon's modules are imported by the body, after the fork
    from logtaild.run.service import ReportOut

log = logging.getLogger("logtaild")

SYSLOG_SOCKET = "/dev/log"
#: an empty pidfile older than this is a leftover (a live daemon writes its pid at once)
EMPTY_PIDFILE_STALE_AFTER = 5.0


class AlreadyRunning(ConfigError):
    """Another instance holds the pidfile (exit 2)."""


def under_systemd(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get("INVOCATION_ID") or env.get("NOTIFY_SOCKET"))


def absolute_paths(config: Config, base: str) -> Config:
    """Every path in `config` made absolute against `base`: the daemon's working directory is `/`."""
    def absolute(path: str) -> str:
        return os.path.normpath(os.path.join(base, path))

    files = tuple(dataclasses.replace(f, path=absolute(f.path)) for f in config.files)
    changes: dict[str, Any] = {"files": files}
    for name in ("state_file", "web_config"):
        value = getattr(config, name, None)
        if value:
            changes[name] = absolute(value)
    return dataclasses.replace(config, **changes)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:  # a zombie (exited, not reaped yet) is not running
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def claim_pidfile(path: str) -> daemon.pidfile.TimeoutPIDLockFile:
    """The pidfile lock, checked: AlreadyRunning if a live process holds it; a stale file is removed."""
    lock = daemon.pidfile.TimeoutPIDLockFile(path, acquire_timeout=0)
    if lock.is_locked():
        pid = lock.read_pid()
        if pid is not None and pid != os.getpid() and _alive(pid):
            raise AlreadyRunning(f"already running as pid {pid} (pidfile {path})")
        if pid is None:
            try:
                age = time.time() - os.stat(path).st_mtime
            except FileNotFoundError:
                age = EMPTY_PIDFILE_STALE_AFTER
            if age < EMPTY_PIDFILE_STALE_AFTER:
                raise AlreadyRunning(f"another instance is starting (pidfile {path} is empty)")
        log.warning("removing stale pidfile %s (pid %s is not running)", path, pid)
        lock.break_lock()
    return lock


#: what lockfile (through python-daemon's TimeoutPIDLockFile) raises when another process holds the
#: pidfile: `AlreadyLocked` (our acquire timeout is 0) or `LockTimeout`
_TAKEN = frozenset({("lockfile", "AlreadyLocked"), ("lockfile", "LockTimeout")})


def pidfile_taken(exc: BaseException) -> bool:
    """Is `exc` the pidfile lock's "held by another process" (lockfile's AlreadyLocked, LockTimeout)?

    Matched on the class hierarchy by module and name, so this module needs no `import lockfile`;
    other lock failures (LockFailed: permissions, a missing folder) are not this and propagate.
    """
    return any((cls.__module__, cls.__name__) in _TAKEN for cls in type(exc).__mro__)


def check_port(listen: str) -> None:
    """Bind the listen address once, so a port in use fails here, in the terminal (exit 2)."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            where = f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"
            raise ConfigError(f"cannot listen on {where}: {exc.strerror or exc}") from None


class _ReportToSyslog:
    """A text stream for reports that logs each line (when there is no log file)."""

    def __init__(self) -> None:
        self._log = logging.getLogger("logtaild.report")

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line:
                self._log.info("%s", line)
        return len(text)

    def flush(self) -> None:
        pass


def _use_syslog() -> None:
    handler = logging.handlers.SysLogHandler(SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
    handler.setFormatter(logging.Formatter("logtaild[%(process)d]: %(levelname)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)


def run_detached(body: Callable[[ReportOut | None], int], *, pidfile: str, log_file: str | None,
                 listen: str | None = None) -> int:
    """Run `body(out)` as a detached daemon (or in the foreground under systemd); its exit code.

    `out` is where reports go: None for stdout (the log file once detached), or a syslog writer.
    """
    if under_systemd():
        log.warning("--detach ignored: running under systemd (INVOCATION_ID/NOTIFY_SOCKET set), which "
                    "tracks the main process; staying in the foreground")
        return body(None)
    if log_file is None and not os.path.exists(SYSLOG_SOCKET):
        raise ConfigError(f"--detach needs --log-file PATH (there is no syslog socket at {SYSLOG_SOCKET})")
    pidfile = os.path.abspath(pidfile)
    lock = claim_pidfile(pidfile)
    if listen is not None:
        check_port(listen)
    stream = _open_log_file(log_file) if log_file is not None else None
    context = daemon.DaemonContext(
        working_directory="/", umask=0o027, pidfile=lock, detach_process=True,
        stdout=stream, stderr=stream,
        # until the Service installs its own handlers, SIGTERM still removes the pidfile on the way out
        signal_map={signal.SIGTSTP: None, signal.SIGTTIN: None, signal.SIGTTOU: None,
                    signal.SIGTERM: "terminate"},
    )
    try:
        context.open()  # forks: from here on we are the daemon, the terminal's process has exited 0
    except Exception as exc:
        if not pidfile_taken(exc):
            raise
        raise AlreadyRunning(f"pidfile {pidfile} was taken by another instance ({exc})") from None
    try:
        out = _log_to(stream)
        log.info("detached: pid %d, pidfile %s, %s", os.getpid(), pidfile,
                 f"log file {log_file}" if log_file else f"logging to syslog ({SYSLOG_SOCKET})")
        return body(out)
    finally:
        context.close()  # releases and removes the pidfile


def _open_log_file(log_file: str) -> TextIO:
    """The log file, opened in the foreground (so an error reaches the terminal) for appending."""
    try:
        return open(os.path.abspath(log_file), "a", buffering=1, encoding="utf-8", errors="backslashreplace")
    except OSError as exc:
        raise ConfigError(f"--log-file {log_file}: {exc.strerror or exc}") from None


def _log_to(stream: TextIO | None) -> ReportOut | None:
    """Once detached: log lines to `stream` (the log file), else to syslog; where reports go."""
    if stream is None:
        _use_syslog()
        return _ReportToSyslog()
    sys.stdout = sys.stderr = stream  # line-buffered: every report and log line lands at once
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)
    return None

"""The sd_notify protocol, spoken directly: one datagram per message to `$NOTIFY_SOCKET`.

systemd passes the socket's address in `$NOTIFY_SOCKET`: a file system path (`/run/systemd/notify`)
or, with a leading `@`, a name in the Linux abstract namespace. A message is newline-separated
`KEY=VALUE` assignments (`READY=1`, `WATCHDOG=1`, `STATUS=...`, `STOPPING=1`, `RELOADING=1`).
Without `$NOTIFY_SOCKET` every call is a no-op, so the daemon behaves the same outside systemd.

The watchdog: with `WatchdogSec=` set, systemd passes `WATCHDOG_USEC` (and `WATCHDOG_PID`, the pid
it expects the pings from). `heartbeat()` is called from the main loop itself and sends `WATCHDOG=1`
once half of that period has passed since the last ping, so a loop that hangs stops pinging and
systemd kills and restarts the service. `WATCHDOG_PID` naming another process means the pings are
not ours to send (a child that inherited the environment): the watchdog is then off.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: socket is imported by the first send (start-up outside systemd)
    import socket

log = logging.getLogger("logtaild.sdnotify")


def socket_address(value: str) -> str | None:
    """`$NOTIFY_SOCKET` as an AF_UNIX address: `@name` is abstract (leading NUL), else a path."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock:CID:PORT and relative paths are not supported


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC), or None when the watchdog is not ours."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != pid:
                return None
        except ValueError:
            return None
    return usec / 2e6


class Notifier:
    """Sends sd_notify messages; every method is a cheap no-op when there is no socket."""

    def __init__(self, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = socket_address(raw)
        if raw and self.address is None:
            log.warning("NOTIFY_SOCKET=%s is not a path or @abstract name; not notifying systemd", raw)
        self.watchdog = watchdog_interval(env, os.getpid()) if self.address else None
        self._clock = clock
        self._next_ping = 0.0
        self._sock: socket.socket | None = None
        self._failed = False
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send one datagram of `KEY=VALUE` assignments; False when it could not be sent."""
        if self.address is None:
            return False
        message = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._sock is None:
                import socket  # here, not at import: outside systemd no message is ever sent

                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:  # once: a missing socket would otherwise log at every ping
                log.warning("cannot notify systemd at %s: %s", self.address.replace("\0", "@"),
                            exc.strerror or exc)
                self._failed = True
            return False
        self._failed = False
        self.sent += 1
        return True

    # ---- the messages ----------------------------------------------------------------------------

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match this message to its reload
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def ping_due(self) -> bool:
        """Is a watchdog ping due now? (cheap: one clock read and a compare)"""
        return self.watchdog is not None and self._clock() >= self._next_ping

    def heartbeat(self, status: str | None = None) -> bool:
        """Send WATCHDOG=1 (with a STATUS line) if half the watchdog period has passed; True if sent."""
        if not self.ping_due():
            return False
        assert self.watchdog is not None
        self._next_ping = self._clock() + self.watchdog
        return self.send("WATCHDOG=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

"""Hostile HTTP clients for tests, all bounded in count and time and aimed at 127.0.0.1 only, and the
probes that watch the daemon meanwhile (threads, RSS, /metrics latency)."""
from __future__ import annotations

import base64
import os
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from tests.support.daemon import ROOT, Daemon, _Reader, free_port

LOOPBACK = "127.0.0.1"


class LimitedDaemon(Daemon):
    """A `Daemon` whose process starts with at most `nofile` open descriptors (soft and hard)."""

    def __init__(self, *args: str, nofile: int = 1024, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "logtaild", *args, "--listen", f"{LOOPBACK}:{self.port}"]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, **(env or {})},
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)),
        )
        self.out = _Reader(self.proc.stdout)
        self.err = _Reader(self.proc.stderr)
        self.out.start()
        self.err.start()


class AuthDaemon(Daemon):
    """A `Daemon` whose own requests (`get`, `value`, `wait_ready`) carry `headers` (basic auth)."""

    headers: dict[str, str] = {}

    @classmethod
    def with_headers(cls, headers: dict[str, str]) -> type[AuthDaemon]:
        return type("AuthDaemonWith", (cls,), {"headers": headers})

    def get(self, path: str = "/metrics", timeout: float = 5.0) -> str:
        request = urllib.request.Request(f"http://{LOOPBACK}:{self.port}{path}", headers=self.headers)
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.read().decode()


def basic_auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def status(port: int, headers: dict[str, str], path: str = "/metrics") -> int:
    """The status code of one GET (0: no answer)."""
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@dataclass
class Watch:
    """Samples the daemon's threads and RSS, and times a fresh-connection GET of `path`, every `every` s."""

    pid: int
    port: int
    path: str = "/metrics"
    headers: dict[str, str] = field(default_factory=dict)
    every: float = 0.5
    max_threads: int = 0
    max_rss: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._halt.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._halt.is_set():
            self.max_threads = max(self.max_threads, threads(self.pid))
            self.max_rss = max(self.max_rss, rss_mib(self.pid))
            self.latencies.append(self.get())
            self._halt.wait(self.every)

    def get(self) -> float:
        start = time.monotonic()
        request = urllib.request.Request(f"http://{LOOPBACK}:{self.port}{self.path}", headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                resp.read()
        except (OSError, urllib.error.URLError) as exc:
            self.failures.append(repr(exc))
            return 5.0
        return time.monotonic() - start

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)

    def summary(self) -> str:
        ordered = sorted(self.latencies)
        median = ordered[len(ordered) // 2] if ordered else 0.0
        return (f"threads<={self.max_threads} rss<={self.max_rss:.1f}MiB {self.path} latency median "
                f"{median * 1000:.0f}ms worst {self.worst * 1000:.0f}ms over {len(ordered)} probes, "
                f"{len(self.failures)} failed")


class Pressure(threading.Thread):
    """Keeps `n` connections open to the port, reopening those the server closes, for `duration` s.

    Each new connection sends `opening`; then every `every` s each connection sends `trickle` (if
    any), without blocking (a full send buffer skips a turn). At most `max_connects` connects in all,
    and once the first `n` are open, at most `reconnect_rate` a second (None: as fast as it can).
    """

    def __init__(self, port: int, n: int, duration: float, opening: bytes = b"", trickle: bytes = b"",
                 every: float = 1.0, max_connects: int = 50_000, reconnect_rate: float | None = None) -> None:
        super().__init__(daemon=True)
        self.port, self.n, self.duration = port, n, duration
        self.opening, self.trickle, self.every = opening, trickle, every
        self.max_connects = max_connects
        self.reconnect_rate = reconnect_rate
        self.connects = 0
        self.closed_by_server = 0
        self.peak_open = 0
        self.seconds = 0.0  # how long the pressure lasted (it ends early when max_connects is reached)
        self._selector = selectors.DefaultSelector()
        self._socks: set[socket.socket] = set()
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def run(self) -> None:
        start = time.monotonic()
        end = start + self.duration
        next_trickle = start + self.every
        try:
            while time.monotonic() < end and not self._halt.is_set() and (self._socks or self.connects == 0):
                while len(self._socks) < self.n and self.connects < self._allowed(start):
                    self._open()
                self.peak_open = max(self.peak_open, len(self._socks))
                for key, _ in self._selector.select(timeout=0.05):
                    self._on_readable(key.fileobj)  # type: ignore[arg-type]
                if self.trickle and time.monotonic() >= next_trickle:
                    next_trickle = time.monotonic() + self.every
                    for sock in list(self._socks):
                        self._send(sock, self.trickle)
        finally:
            self.seconds = time.monotonic() - start
            for sock in list(self._socks):
                self._close(sock)
            self._selector.close()

    def _allowed(self, start: float) -> float:
        if self.reconnect_rate is None:
            return self.max_connects
        return min(self.max_connects, self.n + self.reconnect_rate * (time.monotonic() - start))

    def _open(self) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        self.connects += 1
        try:
            sock.connect((LOOPBACK, self.port))
        except BlockingIOError:
            pass
        except OSError:
            sock.close()
            return
        self._socks.add(sock)
        self._selector.register(sock, selectors.EVENT_READ)
        if self.opening:
            self._send(sock, self.opening)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.send(data)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(sock, by_server=True)

    def _on_readable(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(sock, by_server=True)

    def _close(self, sock: socket.socket, by_server: bool = False) -> None:
        if sock in self._socks:
            self._socks.discard(sock)
            self._selector.unregister(sock)
            self.closed_by_server += by_server
        sock.close()


def connect_burst(port: int, n: int, request: bytes, timeout: float = 10.0) -> dict[str, int]:
    """`n` connects as fast as one thread can make them, each sending `request` as soon as it is
    connected and reading the answer; how each one ended (none may be left unfinished)."""
    burst = _Burst(request)
    for _ in range(n):
        burst.connect(port)
        burst.poll(0)  # a client sends its request once connected, not after the whole burst
    end = time.monotonic() + timeout
    while burst.pending and time.monotonic() < end:
        burst.poll(0.1)
    burst.outcome["unfinished"] = len(burst.pending)
    for sock in list(burst.pending):
        sock.close()
    burst.selector.close()
    return burst.outcome


class _Burst:
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.selector = selectors.DefaultSelector()
        self.outcome = {"answered": 0, "closed": 0, "refused": 0, "unfinished": 0}
        self.pending: dict[socket.socket, bytes] = {}

    def connect(self, port: int) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect((LOOPBACK, port))
        except BlockingIOError:
            pass
        except OSError:
            self.outcome["refused"] += 1
            sock.close()
            return
        self.pending[sock] = b""
        self.selector.register(sock, selectors.EVENT_WRITE)

    def poll(self, timeout: float) -> None:
        for key, events in self.selector.select(timeout=timeout):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            if events & selectors.EVENT_WRITE:
                try:
                    sock.send(self.request)
                except OSError:
                    self.finish(sock, "refused")
                    continue
                self.selector.modify(sock, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if data:
                self.pending[sock] += data
            else:
                self.finish(sock, "answered" if self.pending[sock].startswith(b"HTTP/1.") else "closed")

    def finish(self, sock: socket.socket, how: str) -> None:
        self.selector.unregister(sock)
        del self.pending[sock]
        sock.close()
        self.outcome[how] += 1

"""The HTTP server under the WSGI app: cheroot's worker pool behind a selector stage that gathers each
request head without blocking; the one module that imports cheroot.

cheroot hands a connection to a worker as soon as it is accepted or readable, and the worker then
blocks in `readline` with a per-recv timeout: a client sending one byte every few seconds, or a silent
one, holds a worker for ever, and cheroot's TLS adapter even handshakes in the accepting thread. Here
the selector thread (cheroot's `ConnectionManager`, subclassed) does everything up to a complete
request head itself, without blocking: the plain-HTTP check on the TLS port, the TLS handshake, and
reading the request line and headers into a buffer capped at `Limits.max_head`. A worker only ever sees
a connection whose head is complete (or over the cap, which cheroot answers 413/414), so it never waits
for a client before it writes, and its writes have a total deadline too.

Every connection counts against `Limits.max_connections` (computed from RLIMIT_NOFILE so that at least
half the descriptors stay for the files we follow); at the cap, a new connection closes the oldest one
that is still waiting for its head, so idle or trickling clients cannot lock a scraper out. A request
head must be complete within `head_deadline` of the accept (TLS handshake included) or of its first
byte on a kept-alive connection, which may idle `idle_timeout` between requests.
"""
from __future__ import annotations

import logging
import resource
import selectors
import socket
import ssl
import sys
import threading
import time
import traceback
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cheroot import connections as cheroot_connections
from cheroot import server as cheroot_server
from cheroot import wsgi as cheroot_wsgi

log = logging.getLogger("logtaild.web")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]

_PLAIN_HTTP_REPLY = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
_TLS_RECORD_HANDSHAKE = b"\x16"
_READ_SIZE = 16384


@dataclass(frozen=True)
class Limits:
    """What the server allows a client; the defaults are what logtaild runs with."""

    max_connections: int = 128  # open connections, every state
    workers: int = 4  # threads that run the app; requests reach them with a complete head only
    backlog: int = 1024  # listen(2) backlog: connects the kernel holds (no descriptor of ours) until accepted
    head_deadline: float = 10.0  # accept (TLS handshake included) or first byte -> complete request head
    idle_timeout: float = 10.0  # kept-alive connection: previous response -> first byte of the next request
    response_deadline: float = 30.0  # complete head -> response written, however slowly the client reads
    io_timeout: float = 10.0  # one socket operation of a worker
    max_head: int = 32 * 1024  # request line and headers, bytes
    max_body: int = 1024  # GET and HEAD carry no body: a larger one is a 413, never read into memory
    shutdown_timeout: int = 1  # seconds a stopping server waits for its workers


def connection_cap(ceiling: int = 128, nofile: int | None = None) -> int:
    """At most `ceiling` connections, and at most half the descriptors (less a few for the server itself)."""
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile == resource.RLIM_INFINITY:
            nofile = 1 << 20
    return max(4, min(ceiling, nofile // 2 - 16))


def default_limits() -> Limits:
    return Limits(max_connections=connection_cap())


# ---- one-line, rate-limited error log -------------------------------------------------------------------

class ErrorLog:
    """cheroot's `error_log` and our own client errors as at most one log line per `every` seconds.

    A client that resets mid-request, sends garbage or fails its handshake is not news for the
    operator, and a traceback per client let 300 clients write 11,000 lines of stderr. The line says
    how many errors of each kind happened since the previous line, and the last one; server-side
    errors (a bug) name the file and line where they were raised instead of printing a traceback.
    """

    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._last = ""
        self._next_at = 0.0
        self.lines = 0

    def note(self, kind: str, detail: str, level: int = logging.WARNING) -> None:
        with self._lock:
            self._counts[kind] += 1
            self._last = detail
            now = self.clock()
            if now < self._next_at:
                return
            self._next_at = now + self.every
            counts, last = self._counts, self._last
            self._counts = Counter()
        total = sum(counts.values())
        kinds = ", ".join(f"{name}: {n}" for name, n in counts.most_common())
        self.lines += 1
        log.log(level, "http: %d error%s serving clients (%s); last: %s", total, "s" if total != 1 else "", kinds, last)

    def cheroot(self, msg: str = "", level: int = logging.INFO, with_traceback: bool = False) -> None:
        """cheroot's `error_log(msg, level, traceback)`: one line, the raising frame instead of a traceback."""
        exc = sys.exc_info()[1]
        if with_traceback and exc is not None and exc.__traceback__ is not None:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            msg = f"{msg}: {exc!r} at {frame.filename}:{frame.lineno}"
        self.note("server" if level >= logging.ERROR else "connection", msg or "?",
                  logging.ERROR if level >= logging.ERROR else logging.WARNING)


# ---- the connection: head gathered without blocking, writes under a deadline ---------------------------

class _HeadReader:
    """The connection's `rfile`: bytes gathered by the selector thread first, then the socket itself.

    Only the selector thread calls `gather` (non-blocking); a worker reads the buffered head, and
    blocks on the socket (per-operation timeout) only for a body, which is at most `Limits.max_body`.
    """

    def __init__(self, sock: socket.socket, max_head: int) -> None:
        self.sock = sock
        self.max_head = max_head
        self.buf = bytearray()
        self.bytes_read = 0
        self.closed = False
        self._scanned = 0  # the end of the head was not before this offset

    def gather(self) -> bool:
        """Read what the socket has now, up to the head cap; False when the client has closed."""
        while len(self.buf) <= self.max_head:
            try:
                data = self.sock.recv(_READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return True
            except ssl.SSLZeroReturnError:  # the client's TLS close_notify: a clean end
                return False
            if not data:
                return False
            self.buf += data
        return True

    def head_complete(self) -> bool:
        """A blank line ends the head; a head over the cap is 'complete' too: cheroot answers 413 or 414."""
        if len(self.buf) > self.max_head:
            return True
        start = max(0, self._scanned - 3)
        self._scanned = len(self.buf)
        # a bare-LF head is complete too: cheroot answers it 400 rather than waiting for the deadline
        return self.buf.find(b"\r\n\r\n", start) >= 0 or self.buf.find(b"\n\n", start) >= 0

    def has_data(self) -> bool:
        """What cheroot asks before parking a kept-alive connection: can a worker serve it right away?"""
        return bool(self.buf) and self.head_complete()

    def readline(self, size: int | None = None) -> bytes:
        limit = size if size is not None and size >= 0 else self.max_head
        while (end := self.buf.find(b"\n")) < 0 and len(self.buf) < limit and self._recv():
            pass
        return self._take(min(limit, len(self.buf) if end < 0 else end + 1))

    def read(self, size: int | None = None) -> bytes:
        if size is None or size < 0:
            raise ValueError("unbounded read")  # never happens: bodies are capped by max_request_body_size
        while len(self.buf) < size and self._recv():
            pass
        return self._take(min(size, len(self.buf)))

    def _recv(self) -> bool:
        data = self.sock.recv(min(_READ_SIZE, self.max_head))
        self.buf += data
        return bool(data)

    def _take(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        self._scanned = 0
        self.bytes_read += n
        return data

    def close(self) -> None:
        self.closed = True


class _DeadlineWriter:
    """The connection's `wfile`: unbuffered sends, each under what is left of the response's deadline."""

    def __init__(self, sock: socket.socket, io_timeout: float) -> None:
        self.sock = sock
        self.io_timeout = io_timeout
        self.deadline = float("inf")
        self.bytes_written = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")  # the string cheroot recognises as a timeout
            self.sock.settimeout(min(left, self.io_timeout))
            sent = self.sock.send(view[:65536])
            view = view[sent:]
            self.bytes_written += sent
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        """The socket is closed by the connection."""


class _Connection(cheroot_server.HTTPConnection):
    """One client connection; `state` says who holds it: 'peek', 'handshake', 'head' (the selector
    thread), 'drain' (plain HTTP on the TLS port, answered), 'busy' (queued or in a worker)."""

    def __init__(self, server: _Server, sock: socket.socket, addr: Any, tls: bool) -> None:
        # not cheroot's __init__: its buffered reader and writer (pure-Python _pyio objects) would only be
        # replaced; skipping them makes a connection 1.3 us instead of 17.6 us to set up
        self.server = server
        self.socket = sock
        self.requests_seen = 0
        self.limits: Limits = server.limits
        self.rfile = _HeadReader(sock, self.limits.max_head)
        self.wfile = _DeadlineWriter(sock, self.limits.io_timeout)
        self.remote_addr, self.remote_port = (addr[0], addr[1]) if isinstance(addr, tuple) else ("", 0)
        self.ssl_env = {"wsgi.url_scheme": "https", "HTTPS": "on"} if tls else {}
        self.state = "peek" if tls else "head"
        self.deadline = time.monotonic() + self.limits.head_deadline
        self.fresh = True  # the deadline runs from the accept, not from the first byte
        self.dropped = False
        self._on_close: Callable[[_Connection], None] = server.forget

    def use_socket(self, sock: socket.socket) -> None:
        """The TLS socket replaces the plain one (which `wrap_socket` detached)."""
        self.socket = self.rfile.sock = self.wfile.sock = sock

    def close(self) -> None:
        self.dropped = True
        self._on_close(self)
        try:
            super().close()
        except OSError:
            pass

    def peer(self) -> str:
        return str(self.remote_addr or "?")


# ---- the selector stage -------------------------------------------------------------------------------

class _Selector(cheroot_connections._ThreadsafeSelector):
    """cheroot's selector, skipping connections closed earlier in the same batch of events.

    An accept can evict a connection whose readiness is further down the batch `_run` is going
    through; cheroot would unregister it again (a KeyError that ends the batch) and hand a closed
    connection to `process_conn`.
    """

    def select(self, timeout: float | None = None) -> Iterator[tuple[int, Any]]:
        for fd, conn in super().select(timeout):
            if not (isinstance(conn, _Connection) and conn.dropped):
                yield fd, conn

    def unregister(self, fileobj: Any) -> Any:
        try:
            return super().unregister(fileobj)  # type: ignore[no-untyped-call]  # untyped in cheroot's stubs
        except KeyError:
            return None  # closed (and unregistered) while its event waited in the batch

class _Manager(cheroot_connections.ConnectionManager):
    """cheroot's selector loop (accept, wait for readable connections, expire), with the head stage.

    `_run` (cheroot's) calls `server.process_conn` for each new or readable connection; the server
    sends it to `step` until its head is complete. Everything here runs in the selector thread,
    except `park` (a worker returning a kept-alive connection) and `forget` (any close), which share
    `lock` with the eviction and the expiry so a connection is never closed while being parked.
    """

    _selector: Any  # cheroot's thread-safe selector (not in its stubs)

    def __init__(self, server: _Server) -> None:
        super().__init__(server)
        self._selector.close()
        self._selector = _Selector()
        self._selector.register(server.socket.fileno(), selectors.EVENT_READ, data=server)
        self.limits: Limits = server.limits
        self.errors: ErrorLog = server.errors
        self.tls: ssl.SSLContext | None = server.tls
        self.lock = threading.RLock()
        self.open: set[_Connection] = set()
        self.waiting: OrderedDict[_Connection, None] = OrderedDict()  # oldest first: the one to evict

    # accepting

    def _from_server_socket(self, server_socket: socket.socket) -> _Connection | None:
        try:
            sock, addr = server_socket.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None
        except OSError as exc:  # EMFILE and friends: say so (rate-limited) and leave it in the backlog
            self.errors.note("accept", f"accept failed: {exc.strerror or exc}")
            time.sleep(0.05)  # the descriptor shortage will not be gone in a microsecond: no busy loop
            return None
        cheroot_connections.prevent_socket_inheritance(sock)
        sock.setblocking(False)
        conn = _Connection(self.server, sock, addr, self.tls is not None)
        with self.lock:
            if len(self.open) >= self.limits.max_connections and not self._evict_oldest():
                conn.socket.close()  # every connection is in a worker's hands: nobody to make room
                self.errors.note("refused", f"{conn.peer()}: {len(self.open)} connections open, all busy")
                return None
            self.open.add(conn)
            self.waiting[conn] = None
        return conn

    def _evict_oldest(self) -> bool:
        if not self.waiting:
            return False
        oldest, _ = self.waiting.popitem(last=False)
        self.errors.note("evicted", f"{oldest.peer()}: closed to make room at the "
                                    f"{self.limits.max_connections}-connection cap")
        self._drop(oldest)
        return True

    # the head stage

    def step(self, conn: _Connection) -> None:
        """The connection is new or readable: move it on as far as it goes without blocking."""
        try:
            verdict = self._advance(conn)
        except OSError as exc:  # ssl.SSLError included
            self.errors.note("tls" if isinstance(exc, ssl.SSLError) else "read", f"{conn.peer()}: {exc}")
            verdict = "close"
        except Exception:  # a bug of ours: never leave the connection counted but held by nobody
            self.errors.cheroot(f"{conn.peer()}: reading the request head failed", logging.ERROR, True)
            verdict = "close"
        if verdict == "ready":
            self.dispatch(conn)
        elif verdict == "wait":
            self._selector.register(conn.socket.fileno(), selectors.EVENT_READ, conn)
        else:
            with self.lock:
                self.waiting.pop(conn, None)
            conn.close()

    def _advance(self, conn: _Connection) -> str:
        if conn.state == "peek":
            return self._peek(conn)
        if conn.state == "handshake":
            return self._handshake(conn)
        if conn.state == "drain":
            alive = conn.rfile.gather()
            conn.rfile.buf.clear()
            return "wait" if alive else "close"
        had = bool(conn.rfile.buf)
        alive = conn.rfile.gather()
        if conn.rfile.buf and not had and not conn.fresh:  # a kept-alive connection's next request began
            conn.deadline = time.monotonic() + self.limits.head_deadline
        if conn.rfile.head_complete():
            return "ready"
        if not alive:
            if conn.rfile.buf:
                self.errors.note("incomplete", f"{conn.peer()}: closed in the middle of its request head")
            return "close"
        return "wait"

    def _peek(self, conn: _Connection) -> str:
        try:
            first = conn.socket.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return "wait"
        if not first:
            return "close"
        if first != _TLS_RECORD_HANDSHAKE:  # most likely plain HTTP: answer as Go's server does
            self.errors.note("plain-http", f"{conn.peer()}: plain HTTP on the TLS port, answered 400")
            conn.socket.send(_PLAIN_HTTP_REPLY)
            conn.socket.shutdown(socket.SHUT_WR)
            # read what the client sent until it closes (or 1 s), so it gets our reply, not a reset
            conn.state, conn.deadline = "drain", min(conn.deadline, time.monotonic() + 1.0)
            return self._advance(conn)
        assert self.tls is not None
        conn.use_socket(self.tls.wrap_socket(conn.socket, server_side=True, do_handshake_on_connect=False))
        conn.state = "handshake"
        return self._handshake(conn)

    def _handshake(self, conn: _Connection) -> str:
        sock = conn.socket
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return "wait"
        conn.state = "head"
        return self._advance(conn)

    def dispatch(self, conn: _Connection) -> None:
        """Complete head: blocking socket with timeouts, a response deadline, and into cheroot's queue."""
        with self.lock:
            self.waiting.pop(conn, None)
        conn.state = "busy"
        conn.socket.settimeout(self.limits.io_timeout)
        conn.wfile.deadline = time.monotonic() + self.limits.response_deadline
        self.server.queue(conn)

    def park(self, conn: _Connection) -> None:
        """A worker is done with a kept-alive connection: wait for its next request (or serve it now).

        Runs in the worker's `finally`, where cheroot treats any exception as fatal to the whole server:
        whatever goes wrong closes this connection instead.
        """
        try:
            self._park(conn)
        except Exception:
            self.errors.cheroot(f"{conn.peer()}: keeping the connection alive failed", logging.WARNING, True)
            self._drop(conn)

    def _park(self, conn: _Connection) -> None:
        with self.lock:
            if conn not in self.open:  # closed meanwhile (shutting down)
                return
            conn.state, conn.fresh = "head", False
            conn.deadline = time.monotonic() + self.limits.idle_timeout
            conn.socket.setblocking(False)
            conn.last_used = time.time()
            if conn.rfile.has_data():  # the client sent its next request already (pipelining)
                self.dispatch(conn)
                return
            self.waiting[conn] = None
            self._selector.register(conn.socket.fileno(), selectors.EVENT_READ, conn)

    # expiry and bookkeeping

    def _expire(self, threshold: float) -> None:
        """cheroot calls this twice a second; our deadlines, not its `last_used`, decide."""
        now = time.monotonic()
        with self.lock:
            late = [conn for conn in self.waiting if conn.deadline < now]
            for conn in late:
                del self.waiting[conn]
        for conn in late:
            if conn.state != "head" or conn.rfile.buf or conn.fresh:
                what = {"peek": "no TLS handshake", "handshake": "TLS handshake not done",
                        "drain": "plain HTTP client still sending"}.get(conn.state, "request head not complete")
                self.errors.note("deadline", f"{conn.peer()}: {what} after "
                                             f"{self.limits.head_deadline:g}s: closed")
            self._drop(conn)

    def _drop(self, conn: _Connection) -> None:
        try:
            self._selector.unregister(conn.socket.fileno())
        except (KeyError, ValueError, OSError):
            pass  # not registered: it was between two steps of the selector thread
        conn.close()

    def forget(self, conn: _Connection) -> None:
        with self.lock:
            self.open.discard(conn)
            self.waiting.pop(conn, None)

    def close(self) -> None:
        with self.lock:
            conns = list(self.open)
        for conn in conns:
            if conn.state != "busy":
                self._drop(conn)
            else:  # wake a worker blocked on a slow client: shutting down must not wait for it
                try:
                    conn.socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._selector.close()


# ---- the server -----------------------------------------------------------------------------------------

class _Server(cheroot_wsgi.Server):
    """cheroot's WSGI server with our connection stage, our bind (real errors) and our error log."""

    def __init__(self, app: WsgiApp, host: str, port: int, tls: ssl.SSLContext | None, limits: Limits,
                 errors: ErrorLog) -> None:
        super().__init__((host, port), app, numthreads=limits.workers, max=limits.workers,
                         request_queue_size=limits.backlog, timeout=int(limits.idle_timeout),
                         shutdown_timeout=limits.shutdown_timeout,
                         accepted_queue_size=limits.max_connections, accepted_queue_timeout=0)
        self.limits = limits
        self.errors = errors
        self.tls = tls
        self.max_request_header_size = limits.max_head
        self.max_request_body_size = limits.max_body
        self.keep_alive_conn_limit = limits.max_connections  # the cap counts kept-alive connections too
        self.server_name = "logtaild"
        self.manager: _Manager | None = None

    def prepare(self) -> None:
        """cheroot's `prepare`, minus socket activation (fd 3 would be whatever we opened) and with the
        bind's own OSError, so the caller can say 'Address already in use'."""
        self._interrupt = None
        self.software = self.server_name
        host = self.bind_addr[0]
        sock = self.prepare_socket(self.bind_addr, socket.AF_INET6 if ":" in host else socket.AF_INET,
                                   socket.SOCK_STREAM, 0, self.nodelay, None)
        try:
            sock.bind(self.bind_addr)
        except OSError:
            sock.close()
            raise
        self.socket = sock
        self.bind_addr = sock.getsockname()[:2]
        self.socket.setblocking(False)  # the selector says when to accept; a vanished client never blocks it
        self.socket.listen(self.limits.backlog)
        self.manager = self._connections = _Manager(self)
        self.requests.start()
        self.ready = True
        self._start_time = time.time()

    def process_conn(self, conn: _Connection) -> None:
        """New or readable (selector thread): the head stage; with a complete head: the worker queue."""
        assert self.manager is not None
        if conn.state == "busy":
            self.queue(conn)
        else:
            self.manager.step(conn)

    def queue(self, conn: _Connection) -> None:
        super().process_conn(conn)  # cheroot: the worker queue, or a 503 when it is full

    def put_conn(self, conn: _Connection) -> None:
        if self.ready and self.manager is not None:
            self.manager.park(conn)
        else:
            conn.close()

    def forget(self, conn: _Connection) -> None:
        if self.manager is not None:
            self.manager.forget(conn)

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        self.errors.cheroot(msg, level, traceback)


class HttpServer:
    """A running server: `server_address`, `shutdown()`, `server_close()` (socketserver's names)."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.server_address: tuple[str, int] = (server.bind_addr[0], server.bind_addr[1])

    @property
    def errors(self) -> ErrorLog:
        return self._server.errors

    def open_connections(self) -> int:
        manager = self._server.manager
        return len(manager.open) if manager is not None else 0

    def shutdown(self) -> None:
        self._server.stop()
        self._thread.join(5)

    def server_close(self) -> None:
        """Everything is closed by `shutdown`."""


def start(app: WsgiApp, host: str, port: int, tls: ssl.SSLContext | None = None,
          limits: Limits | None = None) -> HttpServer:
    """Bind (OSError from the bind itself) and serve in a daemon thread named 'http'."""
    # cheroot refuses '' (our `--listen :PORT`, every interface as for the standard library)
    server = _Server(app, host or "0.0.0.0", port, tls, limits or default_limits(), ErrorLog())
    server.prepare()
    thread = threading.Thread(target=server.serve, name="http", daemon=True)
    thread.start()
    return HttpServer(server, thread)

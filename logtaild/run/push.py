"""Remote write: one thread per receiver pushes the service's series, as a scrape would see them.

A `Pusher` takes `Service.snapshot()` (the same short copy under the lock that a scrape takes) every
`interval`, encodes it (export/remote_write.py) and POSTs it; the loop thread never waits for it. What
could not be sent waits in a queue of whole pushes, bounded in samples, the oldest dropped first, and
is sent oldest first when the receiver is back. Because every push carries the cumulative counters, a
dropped push loses resolution, never counts: `increase()` over the gap is still exact.

Failures: connection errors, timeouts, TLS errors, 429 and 5xx are retried with capped exponential
backoff and jitter; any other status is a rejection: the push is not retried (sending the same body
again would fail the same way) and its samples count as failed. Each is logged on one line, at most
once a minute per receiver, with how many were suppressed. HTTP is the standard library (urllib with
an `ssl.SSLContext`); no proxy from the environment is used.
"""
from __future__ import annotations

import base64
import email.message
import logging
import random
import socket
import ssl
import threading
import time
import typing
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from itertools import chain

from logtaild import __version__
from logtaild.config import ConfigError, RemoteWriteConfig
from logtaild.export.remote_write import HEADERS, Encoded, RemoteWriteEncoder, SnapshotSamples, process_samples
from logtaild.export.snapshot import ReceiverStats, Snapshot

log = logging.getLogger("logtaild")

LOG_EVERY = 60.0
#: at exit, how long the last push may take (the service is stopping: do not hold it up for long)
STOP_TIMEOUT = 5.0


def safe_url(url: str) -> str:
    """The URL as a label and in logs: no user info, query or fragment (they may carry secrets)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def push_labels(config: RemoteWriteConfig) -> dict[str, str]:
    """The receiver's external labels, with `job` and `instance` as a scrape would set them unless given:
    without them every host's series would be one series at the receiver, their counters interleaved.
    An empty value leaves the label out."""
    return {"job": "logtaild", "instance": socket.gethostname(), **config.external_labels}


def ssl_context(config: RemoteWriteConfig, where: str = "remote_write") -> ssl.SSLContext | None:
    """The TLS context of an https receiver (None for http); a bad file is a ConfigError at start, naming
    the key path `where`."""
    if urllib.parse.urlsplit(config.url).scheme != "https":
        return None
    tls = config.tls
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file is not None:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{where}.tls: {exc}") from None
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Rejected(Exception):
    """The receiver refused the push for good (a 4xx other than 429): do not send it again."""


class Retry(Exception):
    """The push failed in a way that may pass (network, TLS, timeout, 429, 5xx): send it again later."""


def _auth_header(config: RemoteWriteConfig) -> dict[str, str]:
    """Authorization from the credential files, read at each push so a rotated secret applies."""
    try:
        if config.basic_auth is not None:
            with open(config.basic_auth.password_file, encoding="utf-8") as handle:
                password = handle.read().strip()
            token = base64.b64encode(f"{config.basic_auth.username}:{password}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        if config.bearer_token_file is not None:
            with open(config.bearer_token_file, encoding="utf-8") as handle:
                return {"Authorization": f"Bearer {handle.read().strip()}"}
    except (OSError, UnicodeDecodeError) as exc:
        raise Retry(f"cannot read the credentials: {exc}") from None
    return {}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would turn the POST into a GET and send the Authorization header
    to wherever the receiver points; the 3xx is a rejection instead, and the log says where it pointed."""

    def redirect_request(self, req: urllib.request.Request, fp: typing.IO[bytes], code: int, msg: str,
                         headers: email.message.Message, newurl: str) -> None:
        return None


class HttpSender:
    """POSTs a body to one receiver; raises `Rejected` or `Retry` unless it is accepted (2xx)."""

    def __init__(self, config: RemoteWriteConfig, where: str = "remote_write") -> None:
        self.config = config
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}), _NoRedirect()]
        context = ssl_context(config, where)
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def __call__(self, body: bytes, timeout: float) -> None:
        headers = {**self.config.headers, **HEADERS, "User-Agent": f"logtaild/{__version__}",
                   **_auth_header(self.config)}
        request = urllib.request.Request(self.config.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = f"HTTP {exc.code} {exc.reason}: {_body(exc)}"
            if 300 <= exc.code < 400:
                detail += f" (a redirect to {safe_url(exc.headers.get('Location', ''))}, not followed)"
            if exc.code == 429 or exc.code >= 500:
                raise Retry(detail) from None
            raise Rejected(detail) from None
        except (urllib.error.URLError, OSError, HTTPException) as exc:  # refused, DNS, TLS, timeout...
            raise Retry(_reason(exc)) from None


def _body(exc: urllib.error.HTTPError) -> str:
    """The first line of an error response (the receiver's reason), short and printable."""
    try:
        text = exc.read(300).decode("utf-8", "replace")
    except (OSError, HTTPException):
        return ""
    return " ".join(text.split())[:200]


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return f"{type(reason or exc).__name__}: {reason or exc}"


Sender = Callable[[bytes, float], None]


@dataclass
class _Counters:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    bytes_sent: int = 0
    last_success: float = 0.0


class Pusher:
    """One receiver: its thread, its queue and its counters (`stats()`, read by `Service.snapshot()`)."""

    def __init__(self, config: RemoteWriteConfig, snapshot: Callable[[], Snapshot], *,
                 sender: Sender | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, jitter: Callable[[], float] = random.random) -> None:
        self.config = config
        self.url = safe_url(config.url)
        self._snapshot = snapshot
        self._send: Sender = sender or HttpSender(config)
        self._clock, self._wall, self._jitter = clock, wall, jitter
        self._samples = SnapshotSamples()
        self._encoder = RemoteWriteEncoder(push_labels(config))
        self._queue: deque[Encoded] = deque()
        self._counters = _Counters()
        self._lock = threading.Lock()  # the counters and the queue's size, read by scrapes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"push {self.url}", daemon=True)
        self._failures = 0           # consecutive failed attempts (the backoff's exponent)
        self.retry_at = 0.0          # the clock time before which a failed push is not sent again
        self._log_at = -LOG_EVERY    # when a failure may be logged again
        self._suppressed = 0

    # ---- what the service and scrapes call ----------------------------------------------------------

    def start(self) -> None:
        log.info("remote_write: pushing to %s every %gs", self.url, self.config.interval)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after one last push of the final counts (at most STOP_TIMEOUT seconds)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT + self.config.timeout)

    def stats(self) -> ReceiverStats:
        with self._lock:
            c = self._counters
            return ReceiverStats(self.url, c.sent, c.failed, c.dropped, c.retries,
                                 sum(item.samples for item in self._queue), c.bytes_sent, c.last_success)

    # ---- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        next_push = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            if now >= next_push:
                self.push_now()
                next_push = now + self.config.interval
            if self._queue and self._clock() >= self.retry_at:
                self.send_queued(self.config.timeout)
                continue  # the next queued push at once, unless this one failed (then retry_at waits)
            due = min(next_push, self.retry_at) if self._queue else next_push
            self._stop.wait(max(0.0, due - self._clock()))
        self._final_push()

    def push_now(self) -> None:
        """Take a snapshot and queue its push (the thread's tick; tests call it directly)."""
        try:
            samples = chain(self._samples(self._snapshot()), process_samples())
            encoded = self._encoder.encode(samples, int(self._wall() * 1000))
        except Exception:  # a bug here must not end the thread: log it, the next tick tries again
            log.exception("remote_write %s: could not encode a push", self.url)
            return
        with self._lock:
            self._queue.append(encoded)
            self._trim()

    def _trim(self) -> None:
        """Drop the oldest pushes past the queue's bound (the newest is always kept)."""
        bound = self.config.queue.max_samples
        queued = sum(item.samples for item in self._queue)
        while len(self._queue) > 1 and queued > bound:
            oldest = self._queue.popleft()
            queued -= oldest.samples
            self._counters.dropped += oldest.samples

    def send_queued(self, timeout: float) -> bool:
        """Send the oldest queued push once; True when it is done with (accepted or rejected)."""
        item = self._queue[0]
        retried = self._failures > 0
        try:
            self._send(item.body, timeout)
        except Rejected as exc:
            self._done(item, accepted=False, retried=retried)
            self._warn(f"rejected {item.samples} samples, not retried: {exc}")
            return True
        except Retry as exc:
            self._failed(str(exc), retried)
            return False
        self._done(item, accepted=True, retried=retried)
        return True

    def _done(self, item: Encoded, accepted: bool, retried: bool) -> None:
        with self._lock:
            self._queue.popleft()
            c = self._counters
            c.retries += retried
            if accepted:
                c.sent += item.samples
                c.bytes_sent += len(item.body)
                c.last_success = self._wall()
            else:
                c.failed += item.samples
        if accepted and self._failures:
            log.info("remote_write %s: delivering again after %d failed attempt%s", self.url, self._failures,
                     "s" if self._failures != 1 else "")
        self._failures = 0
        self.retry_at = 0.0

    def _failed(self, reason: str, retried: bool) -> None:
        with self._lock:
            self._counters.retries += retried
        self._failures += 1
        delay = self.backoff(self._failures)
        self.retry_at = self._clock() + delay
        self._warn(f"push failed ({reason}); retrying in {delay:.1f}s, {len(self._queue)} push(es) queued")

    def backoff(self, failures: int) -> float:
        """The wait after `failures` consecutive failures: doubling from min_backoff, capped at max_backoff,
        with jitter (a random point in its upper half, so a fleet does not retry in step)."""
        queue = self.config.queue
        delay = min(queue.max_backoff, queue.min_backoff * 2.0 ** min(failures - 1, 60))
        return delay * (0.5 + 0.5 * self._jitter())

    def _warn(self, message: str) -> None:
        """One line per receiver at most every LOG_EVERY seconds; the rest counted in the next line."""
        now = self._clock()
        if now < self._log_at:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} similar messages suppressed)" if self._suppressed else ""
        log.warning("remote_write %s: %s%s", self.url, message, more)
        self._log_at = now + LOG_EVERY
        self._suppressed = 0

    def _final_push(self) -> None:
        """At exit: push the final counts, then whatever is queued, within STOP_TIMEOUT; count the rest."""
        self.push_now()
        deadline = self._clock() + STOP_TIMEOUT
        while self._queue:
            left = deadline - self._clock()
            if left <= 0 or not self.send_queued(min(self.config.timeout, left)):
                break
        with self._lock:
            self._counters.dropped += sum(item.samples for item in self._queue)
            self._queue.clear()


def make_pushers(receivers: Sequence[RemoteWriteConfig], snapshot: Callable[[], Snapshot]) -> list[Pusher]:
    """One pusher per receiver, not started (a bad TLS file raises ConfigError here)."""
    return [Pusher(receiver, snapshot, sender=HttpSender(receiver, f"remote_write[{i}]"))
            for i, receiver in enumerate(receivers)]

"""The HTTP side: the WSGI app (`make_app`: /metrics and the other pages) and `serve`, which runs it.

/metrics is answered in the protobuf format (`LogtaildRegistry.protobuf`, native histograms) when the
scraper's Accept prefers it (export/negotiation.py, export/protobuf.py) and no `name[]` filter is
given, else from `LogtaildRegistry.exposition` (the fast renderer, which also applies `name[]`)
whenever it can write what prometheus-client's content negotiation picked, and by
prometheus-client's own app otherwise. Scrapes share their
rendering: concurrent or close scrapes (within `SCRAPE_TTL`) that negotiated the same format get the
same body, rendered once, so a thousand clients released at once cost one rendering, not a thousand.
A rendering is kept gzip-compressed only (`Rendering`): a client that takes gzip gets it as it is, any
other gets it decompressed as it is sent, a chunk at a time, so the process never holds an
uncompressed body (14 MB at 20,000 series) nor the pieces it was made of. Only GET and HEAD are served
(405 otherwise). The server itself, its limits and TLS are export/http.py's.
"""
from __future__ import annotations

import ssl
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from logtaild import heap
from logtaild.export import http
from logtaild.export.collector import LogtaildRegistry
from logtaild.export.errors import ListenError
from logtaild.export.negotiation import CONTENT_TYPE as PROTOBUF
from logtaild.export.negotiation import wants_protobuf
from logtaild.export.promclient import CollectorRegistry, choose_encoder, gzip_accepted, make_wsgi_app

Page = Callable[[], tuple[str, str, bytes]]  # -> (status line, content type, body)
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


#: gzip level of the fast path: 1 compresses 5.3 MB of exposition (10,000 series) in 9 ms to 234 kB;
#: prometheus-client's default, 9, takes 117 ms for 191 kB (the fallback path still uses 9)
GZIP_LEVEL = 1
#: scrapes this close together share one rendering when nothing was counted in between (Prometheus
#: scrapes every 15 s or more)
SCRAPE_TTL = 1.0
#: a rendering older than the counts is still shared for this many times what it took to make (at least
#: REUSE_MIN seconds): a flood of scrapes while lines arrive costs at most a fifth of a core, and a line
#: counted shows in /metrics within about REUSE_MIN at the common sizes (a render of a few ms)
REUSE_FACTOR = 4.0
REUSE_MIN = 0.1
METHODS = ("GET", "HEAD")


def make_app(registry: CollectorRegistry, pages: dict[str, Page], scrape_ttl: float = SCRAPE_TTL,
             changes: Callable[[], int] | None = None) -> WsgiApp:
    """Route /metrics to the renderer (through the scrape cache) and other paths to pages; GET/HEAD only.

    A GET for the whole registry of a `LogtaildRegistry` is answered from its `exposition()` in the
    format prometheus-client's `choose_encoder` picks (about 10x faster with many series), a `name[]`
    filter included; anything that renderer does not cover (escaping schemes that rewrite names)
    goes to prometheus-client's app, one request at a time so such requests cannot take every core
    either.
    """
    metrics = make_wsgi_app(registry)
    fast = registry.exposition if isinstance(registry, LogtaildRegistry) else None
    cache = ScrapeCache(scrape_ttl, changes=changes)
    fallback_lock = threading.Lock()

    def render(encoder: Callable[..., bytes], names: frozenset[str] | None = None) -> Rendering | None:
        assert fast is not None
        chunks = fast(encoder, names)
        return None if chunks is None else Rendering.of(chunks)

    def scrape(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rendering, content_type = None, ""
        names = parse_qs(environ.get("QUERY_STRING", "")).get("name[]")
        if fast is not None and names is not None:  # prometheus-client's text or OpenMetrics, never protobuf
            encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
            wanted = frozenset(names)
            rendering = cache.get((content_type, tuple(sorted(wanted))), lambda: render(encoder, wanted))
        elif fast is not None:
            accept = environ.get("HTTP_ACCEPT", "")
            if wants_protobuf(accept):
                assert isinstance(registry, LogtaildRegistry)  # as `fast` is set
                content_type, protobuf = PROTOBUF, registry.protobuf
                rendering = cache.get(PROTOBUF, lambda: Rendering.of(protobuf()))
            else:
                encoder, content_type = choose_encoder(accept)
                rendering = cache.get(content_type, lambda: render(encoder))
        if rendering is None:
            with fallback_lock:
                return list(metrics(environ, start_response))
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            start_response("200 OK", [("Content-Type", content_type), ("Content-Encoding", "gzip"),
                                      ("Content-Length", str(len(rendering.gzipped)))])
            return [rendering.gzipped]
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(rendering.length))])
        return rendering.plain()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return scrape(environ, start_response)
        page = pages.get(path)
        if page is None:
            return _plain(start_response, "404 Not Found", b"not found\n")
        status, ctype, body = page()
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body))),
                                ("X-Content-Type-Options", "nosniff")])
        return [body]

    return only_get_and_head(app)


def only_get_and_head(app: WsgiApp) -> WsgiApp:
    """GET and HEAD (headers only) reach `app`; any other method is a 405 naming them."""
    if getattr(app, "only_get_and_head", False):
        return app

    def methods(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in METHODS:
            return _plain(start_response, "405 Method Not Allowed", b"method not allowed\n",
                          [("Allow", ", ".join(METHODS))])
        body = app(environ, start_response)
        return [] if method == "HEAD" else body

    methods.only_get_and_head = True  # type: ignore[attr-defined]
    return methods


def _plain(start_response: StartResponse, status: str, body: bytes,
           extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("X-Content-Type-Options", "nosniff"), *(extra or [])])
    return [body]


#: the largest piece of an uncompressed body in memory at once, per client (under glibc's mmap threshold)
PLAIN_CHUNK = 64 << 10
#: compressed bytes handed to the decompressor at a time (see `Rendering.plain`)
PLAIN_INPUT = 16 << 10


@dataclass(frozen=True)
class Rendering:
    """One scrape's body, gzip-compressed (level `GZIP_LEVEL`), and its uncompressed length."""

    gzipped: bytes
    length: int

    @classmethod
    def of(cls, chunks: Iterable[bytes]) -> Rendering:
        """Compress chunks as they are rendered: only the compressed body is ever held whole."""
        gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: with the gzip header and trailer
        out: list[bytes] = []
        length = 0
        for chunk in chunks:
            length += len(chunk)
            out.append(gz.compress(chunk))
        out.append(gz.flush())
        return cls(b"".join(out), length)

    def plain(self, size: int = PLAIN_CHUNK) -> Iterator[bytes]:
        """The body uncompressed, at most `size` bytes at a time (decompressed as the client reads)."""
        gz = zlib.decompressobj(31)
        view = memoryview(self.gzipped)
        # the input a slice at a time: `unconsumed_tail` is a fresh copy of what is left of the input
        # given, so handing it the whole body copied the body again for every chunk out
        for start in range(0, len(view), PLAIN_INPUT):
            data: bytes | memoryview = view[start:start + PLAIN_INPUT]
            while data:
                chunk = gz.decompress(data, size)
                data = gz.unconsumed_tail
                if chunk:
                    yield chunk
        if rest := gz.flush():
            yield rest


@dataclass(frozen=True)
class _Entry:
    started: float  # when the rendering began (the clock's seconds)
    took: float  # how long it took
    version: int | None  # `changes()` when it began
    rendering: Rendering


class ScrapeCache:
    """Renderings by content type, each reused while current; one rendering at a time.

    A rendering is current for `ttl` seconds while nothing is counted (`changes()`, the counts' version
    number, is what it was when the rendering began); once something is, for `REUSE_FACTOR` times what
    the rendering took, at least `REUSE_MIN` seconds. A line counted thus shows in /metrics about 0.1 s
    later at the common sizes, while a flood of scrapes during a busy log renders at most about a fifth
    of the time. Without `changes` every rendering is current for `ttl`.

    A scrape that finds a rendering in progress waits for it instead of starting its own, so N
    concurrent scrapes cost one rendering. The content type echoes the scraper's `version=`, so keys
    are the client's to choose: renderings are serialized (a scraper cycling versions gets one core's
    share, not every worker's), and at most `max_entries` fresh ones, `max_bytes` of bodies in all,
    are kept: a body larger than that (compressed; hundreds of MB uncompressed) is rendered per scrape
    rather than held, so the cache never adds more than `max_bytes` to the process's memory.

    Renderings run on one thread of the cache's own, whichever HTTP worker asked: glibc gives each
    thread that allocates its own malloc arena, and a rendering's temporaries (the snapshot, the
    families: about 15 MB at 20,000 series) left each of the workers' arenas as large as the biggest
    rendering it ran (RSS grew by 29 MB over 8 scrapes; on one thread it stays where the first left it).
    """

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_entries: int = 4,
                 max_bytes: int = 16 << 20, changes: Callable[[], int] | None = None) -> None:
        self.ttl = ttl
        self.clock = clock
        self.changes = changes
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Any, _Entry] = OrderedDict()
        self._render_lock = threading.Lock()
        self._renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logtaild-render")
        self.renders = 0

    def get(self, key: Any, render: Callable[[], Rendering | None]) -> Rendering | None:
        fresh = self._fresh(key)  # the common case takes no lock: a scrape while another renders
        if fresh is not None:
            return fresh
        with self._render_lock:
            fresh = self._fresh(key)  # rendered while we waited
            if fresh is not None:
                return fresh
            version = self.changes() if self.changes is not None else None
            started = self.clock()
            response = self._renderer.submit(_trimmed, render).result()
            self.renders += 1
            if response is not None:
                self._store(key, _Entry(started, self.clock() - started, version, response))
            return response

    @property
    def keys(self) -> list[Any]:
        """The keys of the renderings held now, oldest first."""
        return list(self._entries)

    @property
    def held_bytes(self) -> int:
        """The size of the bodies held now."""
        return sum(len(entry.rendering.gzipped) for entry in self._entries.values())

    def _fresh(self, key: Any) -> Rendering | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = self.clock() - entry.started
        if age >= self.ttl:
            return None
        if self.changes is None or self.changes() == entry.version:
            return entry.rendering
        return entry.rendering if age < max(REUSE_MIN, REUSE_FACTOR * entry.took) else None

    def _store(self, key: Any, entry: _Entry) -> None:
        entries = OrderedDict((k, v) for k, v in self._entries.items()
                              if k != key and entry.started - v.started < self.ttl)
        if len(entry.rendering.gzipped) <= self.max_bytes:
            entries[key] = entry
        while (len(entries) > self.max_entries
               or sum(len(v.rendering.gzipped) for v in entries.values()) > self.max_bytes):
            entries.popitem(last=False)
        self._entries = entries  # replaced whole: `_fresh` reads it without the lock


def _trimmed(render: Callable[[], Rendering | None]) -> Rendering | None:
    """`render()`, then the heap's free pages handed back (a rendering's temporaries: see heap.py)."""
    try:
        return render()
    finally:
        heap.trim()


def make_server(app: WsgiApp, host: str, port: int, tls: ssl.SSLContext | None,
                limits: http.Limits | None = None) -> http.HttpServer:
    """Bind and start the server (export/http.py); OSError from the bind."""
    return http.start(app, host, port, tls, limits)


def serve(app: WsgiApp, host: str, port: int, tls: ssl.SSLContext | None = None,
          limits: http.Limits | None = None) -> http.HttpServer:
    """Bind and serve in a daemon thread (TLS on each connection with `tls`); raise ListenError.

    `limits` defaults to `http.default_limits()` (the connection cap from RLIMIT_NOFILE).
    """
    try:
        return make_server(only_get_and_head(app), host, port, tls, limits)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"
        raise ListenError(f"cannot listen on {where}: {exc.strerror or exc}") from None

"""The HTTP side: the WSGI app (`make_app`: /metrics and the other pages) and `serve`, which runs it.

/metrics is answered in the protobuf format (`LogtaildRegistry.protobuf`, native histograms) when the
scraper's Accept prefers it (export/protobuf.py), else from `LogtaildRegistry.exposition` (the fast
renderer) whenever it can write what prometheus-client's content negotiation picked, and by
prometheus-client's own app otherwise. Scrapes
share their rendering: concurrent or close scrapes (within `SCRAPE_TTL`) that negotiated the same
format and encoding get the same body, rendered once, so a thousand clients released at once cost one
rendering, not a thousand. Only GET and HEAD are served (405 otherwise). The server itself, its limits
and TLS are export/http.py's.
"""
from __future__ import annotations

import ssl
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from logtaild.export import http
from logtaild.export.collector import LogtaildRegistry
from logtaild.export.exposition import chunks
from logtaild.export.promclient import CollectorRegistry, choose_encoder, gzip_accepted, make_wsgi_app
from logtaild.export.protobuf import CONTENT_TYPE as PROTOBUF
from logtaild.export.protobuf import wants_protobuf

Page = Callable[[], tuple[str, str, bytes]]  # -> (status line, content type, body)
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ListenError(Exception):
    """The listen address cannot be bound (port in use, bad host)."""


#: gzip level of the fast path: 1 compresses 5.3 MB of exposition (10,000 series) in 9 ms to 234 kB;
#: prometheus-client's default, 9, takes 117 ms for 191 kB (the fallback path still uses 9)
GZIP_LEVEL = 1
#: scrapes this close together share one rendering (Prometheus scrapes every 15 s or more)
SCRAPE_TTL = 1.0
METHODS = ("GET", "HEAD")


def make_app(registry: CollectorRegistry, pages: dict[str, Page], scrape_ttl: float = SCRAPE_TTL) -> WsgiApp:
    """Route /metrics to the renderer (through the scrape cache) and other paths to pages; GET/HEAD only.

    A GET for the whole registry of a `LogtaildRegistry` is answered from its `exposition()` in the
    format prometheus-client's `choose_encoder` picks (about 10x faster with many series); anything
    that renderer does not cover (`name[]`, escaping schemes that rewrite names) goes to
    prometheus-client's app, one request at a time so such requests cannot take every core either.
    """
    metrics = make_wsgi_app(registry)
    fast = registry.exposition if isinstance(registry, LogtaildRegistry) else None
    cache = ScrapeCache(scrape_ttl)
    fallback_lock = threading.Lock()

    def render(content_type: str, encoder: Callable[..., bytes], gzip: bool) -> _Response | None:
        assert fast is not None
        pieces = fast(encoder)
        return None if pieces is None else _scrape_response(pieces, content_type, gzip)

    def scrape(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        response = None
        if fast is not None and "name[]" not in parse_qs(environ.get("QUERY_STRING", "")):
            accept = environ.get("HTTP_ACCEPT", "")
            gzip = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))
            if wants_protobuf(accept):
                assert isinstance(registry, LogtaildRegistry)  # as `fast` is set
                protobuf = registry.protobuf
                response = cache.get((PROTOBUF, gzip), lambda: _scrape_response(protobuf(), PROTOBUF, gzip))
            else:
                encoder, content_type = choose_encoder(accept)
                response = cache.get((content_type, gzip), lambda: render(content_type, encoder, gzip))
        if response is None:
            with fallback_lock:
                return list(metrics(environ, start_response))
        headers, body = response
        start_response("200 OK", headers)
        return body

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


_Response = tuple[list[tuple[str, str]], list[bytes]]


class ScrapeCache:
    """Renderings by (content type, gzip), each reused for `ttl` seconds; one rendering at a time.

    A scrape that finds a rendering in progress waits for it instead of starting its own, so N
    concurrent scrapes cost one rendering. The content type echoes the scraper's `version=`, so keys
    are the client's to choose: renderings are serialized (a scraper cycling versions gets one core's
    share, not every worker's), and at most `max_entries` fresh ones, `max_bytes` of bodies in all,
    are kept: an uncompressed body of tens of MB (many series, long routes) is rendered per scrape
    rather than held, so the cache never adds more than `max_bytes` to the process's memory.
    """

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_entries: int = 4,
                 max_bytes: int = 16 << 20) -> None:
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Any, tuple[float, _Response]] = OrderedDict()
        self._render_lock = threading.Lock()
        self.renders = 0

    def get(self, key: Any, render: Callable[[], _Response | None]) -> _Response | None:
        fresh = self._fresh(key)  # the common case takes no lock: a scrape while another renders
        if fresh is not None:
            return fresh
        with self._render_lock:
            fresh = self._fresh(key)  # rendered while we waited
            if fresh is not None:
                return fresh
            started = self.clock()
            response = render()
            self.renders += 1
            if response is not None:
                self._store(key, started, response)
            return response

    @property
    def keys(self) -> list[Any]:
        """The keys of the renderings held now, oldest first."""
        return list(self._entries)

    @property
    def held_bytes(self) -> int:
        """The size of the bodies held now."""
        return sum(_size(entry[1]) for entry in self._entries.values())

    def _fresh(self, key: Any) -> _Response | None:
        entry = self._entries.get(key)
        return entry[1] if entry is not None and self.clock() - entry[0] < self.ttl else None

    def _store(self, key: Any, started: float, response: _Response) -> None:
        entries = OrderedDict((k, v) for k, v in self._entries.items()
                              if k != key and started - v[0] < self.ttl)
        if _size(response) <= self.max_bytes:
            entries[key] = (started, response)
        while len(entries) > self.max_entries or sum(_size(v[1]) for v in entries.values()) > self.max_bytes:
            entries.popitem(last=False)
        self._entries = entries  # replaced whole: `_fresh` reads it without the lock


def _size(response: _Response) -> int:
    return sum(map(len, response[1]))


def _scrape_response(pieces: list[bytes], content_type: str, gzip: bool) -> _Response:
    """Headers and body of a fast-path scrape: gzip (level GZIP_LEVEL) when the scraper accepts it.

    Sent in chunks of about 90 kB: one 5 MB buffer per scrape (10,000 series), freed in whichever
    malloc arena the request's thread had, kept RSS about 20 MB higher.
    """
    headers = [("Content-Type", content_type)]
    if gzip:
        gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: with the gzip header and trailer
        body = [b"".join([*map(gz.compress, chunks(pieces)), gz.flush()])]
        headers.append(("Content-Encoding", "gzip"))
    else:
        body = list(chunks(pieces))  # summing 60 chunks' lengths, not 200,000 pieces' (7 ms)
        headers.append(("Content-Length", str(sum(map(len, body)))))
    return headers, body


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

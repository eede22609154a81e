"""The HTTP server's limits as numbers: the connection cap from RLIMIT_NOFILE, the rate-limited error
line, and the scrape cache that renders once for many concurrent scrapes."""
from __future__ import annotations

import gzip
import logging
import threading
import time
import urllib.request
from collections.abc import Callable

import pytest

from logtaild.export.http import ErrorLog, connection_cap
from logtaild.export.server import Rendering, ScrapeCache, serve


@pytest.mark.parametrize(("nofile", "cap"), [(1024, 128), (256, 112), (128, 48), (64, 16), (20, 4),
                                             (1 << 20, 128)])
def test_the_connection_cap_leaves_at_least_half_the_descriptors(nofile: int, cap: int) -> None:
    assert connection_cap(nofile=nofile) == cap
    assert cap <= max(4, nofile // 2)


def test_client_errors_make_one_line_per_period_with_counts(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    errors = ErrorLog(every=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="logtaild.web"):
        for i in range(300):
            errors.note("deadline", f"client {i}: too slow")
            now[0] += 0.01
        errors.note("tls", "client x: bad handshake")  # 3 s after the first: counted, not logged
        now[0] += 10
        errors.note("tls", "client y: bad handshake")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == ["http: 1 error serving clients (deadline: 1); last: client 0: too slow",
                     "http: 301 errors serving clients (deadline: 299, tls: 2); last: client y: bad handshake"]


def test_cheroot_errors_never_carry_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    errors = ErrorLog()
    with caplog.at_level(logging.DEBUG, logger="logtaild.web"):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            errors.cheroot("Error in HTTPServer.serve", logging.ERROR, True)
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is None and "\n" not in record.getMessage()
    assert "RuntimeError('boom') at " in record.getMessage() and "test_http_limits.py:" in record.getMessage()


def test_concurrent_scrapes_share_one_rendering() -> None:
    cache = ScrapeCache(ttl=1.0)
    started = threading.Barrier(20)

    def render() -> Rendering:
        time.sleep(0.2)  # a slow rendering: everyone else arrives while it runs
        return Rendering.of([b"body %d" % cache.renders])

    results: list[object] = []

    def scrape() -> None:
        started.wait()
        results.append(cache.get("text/plain", render))

    threads = [threading.Thread(target=scrape) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert cache.renders == 1 and len(results) == 20 and all(r == results[0] for r in results)
    assert cache.get("text/plain; version=1.0.0", render) != results[0]  # another format: its own rendering
    assert cache.renders == 2


def test_the_scrape_cache_expires_after_its_ttl() -> None:
    now = [0.0]
    cache = ScrapeCache(ttl=1.0, clock=lambda: now[0])
    render = lambda: Rendering.of([b"%d" % cache.renders])  # noqa: E731
    assert list(cache.get("k", render).plain()) == [b"0"]  # type: ignore[union-attr]
    now[0] = 0.9
    assert list(cache.get("k", render).plain()) == [b"0"]  # type: ignore[union-attr]
    now[0] = 1.0
    assert list(cache.get("k", render).plain()) == [b"1"]  # type: ignore[union-attr]


def test_a_rendering_older_than_the_counts_is_shared_only_briefly() -> None:
    """Unchanged counts: one rendering per ttl. Changed: reused for REUSE_FACTOR x its time, >= REUSE_MIN."""
    now, version = [0.0], [0]

    def render() -> Rendering:
        now[0] += 0.05  # each rendering takes 50 ms on the fake clock
        return Rendering.of([b"%d" % cache.renders])

    cache = ScrapeCache(ttl=1.0, clock=lambda: now[0], changes=lambda: version[0])
    cache.get("k", render)
    now[0] = 0.9
    cache.get("k", render)
    assert cache.renders == 1                   # nothing counted: shared for the whole ttl
    now[0] = 1.0
    cache.get("k", render)
    assert cache.renders == 2                   # the ttl is up, counted or not
    version[0] += 1                             # lines counted after that rendering began (at 1.0)
    now[0] = 1.0 + 0.19
    cache.get("k", render)
    assert cache.renders == 2                   # 4 x 50 ms = 0.2 s: still shared
    now[0] = 1.0 + 0.21
    assert list(cache.get("k", render).plain()) == [b"2"]  # type: ignore[union-attr]
    assert cache.renders == 3                   # older than the counts and than 0.2 s: rendered again
    now[0] += 0.1
    cache.get("k", render)
    assert cache.renders == 3                   # nothing counted since the new one began: shared again


def test_scrapers_choosing_content_types_keep_a_few_bodies_at_most() -> None:
    now = [0.0]
    cache = ScrapeCache(ttl=1.0, clock=lambda: now[0])
    for version in range(100):  # `version=1.0.<n>` makes a new content type each time
        cache.get(f"application/openmetrics-text; version=1.0.{version}", lambda: Rendering(b"x" * 1000, 1000))
    assert cache.renders == 100 and len(cache.keys) == 4
    now[0] = 5.0
    cache.get("another", lambda: Rendering(b"", 0))
    assert cache.keys == ["another"]  # expired renderings are not kept either


def test_a_rendering_is_held_compressed_and_sent_uncompressed_in_bounded_pieces() -> None:
    body = b"".join(b"sample_%d{route=\"/r%d\"} %d\n" % (n, n % 97, n) for n in range(40_000))
    rendering = Rendering.of(body[i:i + 5000] for i in range(0, len(body), 5000))
    assert rendering.length == len(body) and gzip.decompress(rendering.gzipped) == body
    assert len(rendering.gzipped) < len(body) // 4
    pieces = list(rendering.plain(size=4096))
    assert b"".join(pieces) == body and max(map(len, pieces)) == 4096 and len(pieces) >= len(body) // 4096


def test_the_scrape_cache_holds_a_bounded_number_of_bytes() -> None:
    cache = ScrapeCache(ttl=1.0, clock=lambda: 0.0, max_bytes=10_000)
    for n in range(3):
        cache.get(("text", n), lambda: Rendering(b"x" * 4_000, 50_000))
    assert cache.keys == [("text", 1), ("text", 2)] and cache.held_bytes == 8_000  # the oldest made room
    big = cache.get(("text", "big"), lambda: Rendering(b"y" * 10_001, 90_000))
    assert big == Rendering(b"y" * 10_001, 90_000)  # served, but not held
    assert ("text", "big") not in cache.keys and cache.held_bytes <= 10_000


@pytest.mark.parametrize(("host", "url"), [("", "http://127.0.0.1:{}/"), ("::1", "http://[::1]:{}/"),
                                           ("::", "http://127.0.0.1:{}/")])
def test_every_listen_form_serves(host: str, url: str) -> None:
    """`--listen :PORT` (every interface), IPv6, and the IPv6 wildcard (dual stack)."""
    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "3")])
        return [b"ok\n"]

    server = serve(app, host, 0)
    try:
        with urllib.request.urlopen(url.format(server.server_address[1]), timeout=5) as resp:
            assert resp.read() == b"ok\n"
    finally:
        server.shutdown()

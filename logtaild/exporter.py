"""The prometheus-client side: a custom collector over the aggregated counts, and the HTTP server.

The loop thread never calls prometheus-client; at scrape time the collector asks the service for a
`Snapshot` (taken under the service's lock) and turns the plain slots into metric families. Every
family is built from `Metric.add_sample`, so series from files with different constant labels can
share a family.
"""
from __future__ import annotations

import math
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app, write_to_textfile
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from logtaild.aggregate import BUCKETS, BYTES, COUNT, LAT_SUM, Slot, SlotKey
from logtaild.filestream import StreamStats
from logtaild.routes import OVERFLOW_ROUTE
from logtaild.webconfig import tls_server_class

Labels = dict[str, str]


@dataclass(frozen=True)
class Objective:
    """A route's service-level objective (from the config, or the defaults)."""

    latency_threshold_s: float = 0.5
    latency_objective: float = 0.99
    availability_objective: float = 0.999
    team: str = ""


@dataclass
class FileSnapshot:
    """One followed file's numbers at scrape time."""

    path: str
    labels: Labels
    slots: list[tuple[SlotKey, Slot]]
    bounds_s: list[float]
    lines: int
    malformed: dict[str, int]
    stats: StreamStats
    routes: int
    objectives: dict[str, Objective] = field(default_factory=dict)


@dataclass
class Snapshot:
    """Everything the collector exports."""

    files: list[FileSnapshot]
    version: str
    checkpoint_writes: int = 0
    checkpoint_failures: int = 0
    checkpoint_last_write: float = 0.0
    reloads: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    last_tick: float = 0.0


class _Families:
    """Metric families by name, created on first use, with samples merged by label set."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._values: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}

    def add(self, family: str, kind: str, doc: str, sample: str, labels: Labels, value: float) -> None:
        if family not in self._metrics:
            self._metrics[family] = Metric(family, doc, kind)
        key = (family, sample, tuple(labels.items()))
        try:
            value = float(value)
        except OverflowError:  # a hostile line's 400-digit byte count must not break every scrape
            value = math.inf
        self._values[key] = self._values.get(key, 0.0) + value

    def metrics(self) -> Iterator[Metric]:
        for (family, sample, labels), value in self._values.items():
            self._metrics[family].add_sample(sample, dict(labels), value)
        yield from self._metrics.values()


class LogtaildCollector:
    """Turns a `Snapshot` into metric families."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        out = _Families()
        for file in snap.files:
            _requests(out, file)
            _file_metrics(out, file)
        _process_metrics(out, snap)
        yield from out.metrics()


def _requests(out: _Families, file: FileSnapshot) -> None:
    hist: dict[tuple[tuple[str, str], ...], list[float]] = {}
    for (route, method, status, extra), slot in file.slots:
        labels = {**file.labels, **dict(extra), "route": route, "method": method, "status": status}
        out.add("logtaild_http_requests", "counter", "HTTP requests seen in the access log.",
                "logtaild_http_requests_total", labels, slot[COUNT])
        out.add("logtaild_http_response_bytes", "counter", "Response bytes seen in the access log.",
                "logtaild_http_response_bytes_total", labels, slot[BYTES])
        if any(slot[BUCKETS:]):
            key = tuple({**file.labels, **dict(extra), "route": route, "method": method}.items())
            acc = hist.setdefault(key, [0.0] * (len(slot) - BUCKETS + 1))
            acc[0] += slot[LAT_SUM]
            for index, n in enumerate(slot[BUCKETS:], 1):
                acc[index] += n
    for key, acc in hist.items():
        _histogram(out, file, dict(key), acc)
    _objectives(out, file)


def _histogram(out: _Families, file: FileSnapshot, labels: Labels, acc: list[float]) -> None:
    name, doc = "logtaild_http_request_duration_seconds", "Request latency from the access log."
    cumulative = 0.0
    for bound, n in zip([*file.bounds_s, float("inf")], acc[1:]):
        cumulative += n
        out.add(name, "histogram", doc, name + "_bucket", {**labels, "le": floatToGoString(bound)},
                cumulative)
    out.add(name, "histogram", doc, name + "_count", labels, cumulative)
    out.add(name, "histogram", doc, name + "_sum", labels, acc[0] / 1000.0)
    threshold = file.objectives.get(labels["route"], Objective()).latency_threshold_s
    fast = sum(n for bound, n in zip(file.bounds_s, acc[1:]) if bound <= threshold)
    out.add("logtaild_http_requests_slow", "counter",
            "Requests slower than their route's SLO latency threshold.",
            "logtaild_http_requests_slow_total", labels, cumulative - fast)


def _objectives(out: _Families, file: FileSnapshot) -> None:
    routes = {route for (route, _m, _s, _e), _slot in file.slots}
    for route in routes:
        objective = file.objectives.get(route, Objective())
        # the SLO's owning team; an SLO without one keeps the file's constant `team` label, if any
        labels = {**file.labels, "route": route, "team": objective.team or file.labels.get("team", "")}
        for name, doc, value in (
            ("logtaild_slo_latency_threshold_seconds", "Latency above which a request is slow.",
             objective.latency_threshold_s),
            ("logtaild_slo_latency_objective", "Fraction of requests that must be faster than the threshold.",
             objective.latency_objective),
            ("logtaild_slo_availability_objective", "Fraction of requests that must not fail with 5xx.",
             objective.availability_objective),
        ):
            out.add(name, "gauge", doc, name, labels, value)


def _file_metrics(out: _Families, file: FileSnapshot) -> None:
    lab = {"file": file.path}
    stats = file.stats
    counters = [
        ("logtaild_lines_read", "Lines read from the file.", file.lines),
        ("logtaild_lines_cut", "Over-long lines dropped.", stats.lines_cut),
        ("logtaild_bytes_read", "Bytes read from the file.", stats.bytes_read),
        ("logtaild_file_reopens", "Times the path was opened again.", stats.reopens),
        ("logtaild_drain_timeouts", "Old files closed while still growing.", stats.drain_timeouts),
        ("logtaild_read_errors", "Failed opens, reads and stats (retried).", stats.read_errors),
        ("logtaild_route_overflow", "Requests counted under __other__ because the route cap was hit.",
         sum(slot[COUNT] for (route, *_rest), slot in file.slots if route == OVERFLOW_ROUTE)),
    ]
    for name, doc, value in counters:
        out.add(name, "counter", doc, name + "_total", lab, value)
    for reason, value in file.malformed.items():
        out.add("logtaild_lines_malformed", "counter", "Lines no parser accepted, by reason.",
                "logtaild_lines_malformed_total", {**lab, "reason": reason}, value)
    for kind, value in stats.rotations.items():
        out.add("logtaild_rotations", "counter", "Rotations and truncations, by kind.",
                "logtaild_rotations_total", {**lab, "kind": kind}, value)
    gauges = [
        ("logtaild_file_size_bytes", "Size of the file being followed.", stats.size),
        ("logtaild_file_offset_bytes", "Read offset in the file.", stats.offset),
        ("logtaild_file_lag_bytes", "Bytes written but not read yet.", stats.lag),
        ("logtaild_last_read_timestamp_seconds", "When data was last read.", stats.last_read),
        ("logtaild_routes", "Distinct route values.", file.routes),
    ]
    for name, doc, value in gauges:
        out.add(name, "gauge", doc, name, lab, value)


def _process_metrics(out: _Families, snap: Snapshot) -> None:
    out.add("logtaild_build_info", "gauge", "logtaild version.", "logtaild_build_info",
            {"version": snap.version}, 1)
    for name, kind, doc, value in (
        ("logtaild_checkpoint_writes", "counter", "State file writes.", snap.checkpoint_writes),
        ("logtaild_checkpoint_failures", "counter", "Failed state file writes.", snap.checkpoint_failures),
        ("logtaild_checkpoint_last_write_timestamp_seconds", "gauge", "Last successful state write.",
         snap.checkpoint_last_write),
        ("logtaild_loop_last_tick_timestamp_seconds", "gauge", "When the main loop last ran.",
         snap.last_tick),
    ):
        out.add(name, kind, doc, name + ("_total" if kind == "counter" else ""), {}, value)
    for result, value in snap.reloads.items():
        out.add("logtaild_config_reloads", "counter", "Configuration reloads, by result.",
                "logtaild_config_reloads_total", {"result": result}, value)


def build_registry(snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    """A fresh registry with our collector and the process collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LogtaildCollector(snapshot))
    ProcessCollector(registry=registry)
    return registry


def write_textfile(path: str, snapshot: Callable[[], Snapshot]) -> None:
    """The same families as /metrics (no process_*), for node_exporter's textfile collector.

    prometheus-client writes a temp file next to `path` and renames it, so a scrape never sees half.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LogtaildCollector(snapshot))
    write_to_textfile(path, registry)


# ---- HTTP ---------------------------------------------------------------------------------------

Page = Callable[[], tuple[str, str, bytes]]  # -> (status line, content type, body)
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]


class ListenError(Exception):
    """The listen address cannot be bound (port in use, bad host)."""


def make_app(registry: CollectorRegistry, pages: dict[str, Page]) -> WsgiApp:
    """Route /metrics to prometheus-client's app (content negotiation, gzip) and other paths to pages."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)
        page = pages.get(path)
        if page is None:
            status, ctype, body = "404 Not Found", "text/plain; charset=utf-8", b"not found\n"
        else:
            status, ctype, body = page()
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body))),
                                ("X-Content-Type-Options", "nosniff")])
        return [body]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the stdlib
        """Access logging off: scrapes every few seconds would flood the journal."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _server_class(host: str) -> type[_Server]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(_Server):
        address_family = family

    return Server


def serve(app: WsgiApp, host: str, port: int, tls: ssl.SSLContext | None = None) -> WSGIServer:
    """Bind and serve in a daemon thread (TLS on each connection with `tls`); raise ListenError."""
    server_class = _server_class(host)
    if tls is not None:
        server_class = tls_server_class(server_class, tls)
    try:
        server = make_server(host, port, app, server_class, handler_class=_QuietHandler)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"
        raise ListenError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return server

"""The prometheus-client side: a custom collector over the aggregated counts, and the HTTP server.

The loop thread never calls prometheus-client; at scrape time the collector asks the service for a
`Snapshot` (taken under the service's lock) and turns the plain slots into metric families (`build`:
one model, logtaild/exposition.py's `Family`, whose samples are keyed by their rendered label string,
so series from several files with the same labels add up, and files with different constant labels
share a family). A scrape in the text format or OpenMetrics is written straight from that model with
label strings cached per series (`LogtaildRegistry.exposition`, about 10x faster than going through
prometheus-client with 10,000 series); `collect()` turns the same model into prometheus-client
`Metric`s for everything else, and the tests hold both to the same bytes.
"""
from __future__ import annotations

import socket
import ssl
import threading
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import accumulate, islice
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest, make_wsgi_app, write_to_textfile
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import ALLOWUTF8, UNDERSCORES
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.utils import floatToGoString

from logtaild.count.aggregate import BUCKETS, BYTES, COUNT, LAT_SUM, Slot, SlotKey
from logtaild.count.routes import OVERFLOW_ROUTE
from logtaild.export.exposition import (
    HISTOGRAM,
    Family,
    Group,
    HistogramValue,
    LabelCache,
    LabelText,
    Number,
    Scrape,
    chunks,
    render,
    to_float,
)
from logtaild.export.webconfig import tls_server_class
from logtaild.tail.filestream import StreamStats

Labels = dict[str, str]


@dataclass(frozen=True)
class Objective:
    """A route's service-level objective (from the config, or the defaults)."""

    latency_threshold_s: float = 0.5
    latency_objective: float = 0.99
    availability_objective: float = 0.999
    team: str = ""


DEFAULT_OBJECTIVE = Objective()

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
    """Metric families by name, created on first use, with samples merged by label string (so series
    from several files with the same labels add up)."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def family(self, name: str, kind: str, doc: str) -> Family:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = Family(name, kind, doc)
        return family

    def add(self, name: str, kind: str, doc: str, labels: LabelText, value: Number) -> None:
        values = self.family(name, kind, doc).values
        values[labels] = values.get(labels, 0) + value


def build(snap: Snapshot, scrape: Scrape) -> list[Family]:
    """Every family of a snapshot, in the order prometheus-client would show them."""
    out = _Families()
    for file in snap.files:
        _requests(out, file, scrape)
        _file_metrics(out, file, scrape)
    _process_metrics(out, snap, scrape)
    scrape.finish()
    return list(out.families.values())


class LogtaildCollector:
    """Turns a `Snapshot` into metric families: prometheus-client `Metric`s (`collect`), or the text
    format / OpenMetrics directly (`exposition`, the fast path of a scrape; see logtaild/exposition.py)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot
        self._labels = LabelCache()

    def collect(self) -> Iterator[Metric]:
        cache = LabelCache(record=True)
        families = build(self._snapshot(), cache.scrape())
        assert cache.labels_of is not None
        yield from (_metric(family, cache.labels_of) for family in families)

    def exposition(self, openmetrics: bool = False, any_names: bool = True) -> list[bytes] | None:
        """What prometheus-client's text format (or OpenMetrics, without `# EOF`) makes of `collect()`,
        byte for byte once joined (tests/unit/test_exporter_text.py); None if `any_names` is False and
        a label name is outside the legacy set (the escaping scheme would rewrite it)."""
        families = build(self._snapshot(), self._labels.scrape())
        if not any_names and self._labels.odd_names:
            return None
        return render(families, openmetrics)


def _metric(family: Family, labels_of: dict[LabelText, Labels]) -> Metric:
    metric = Metric(family.name, family.doc, family.kind)
    if family.kind != "histogram":
        sample = family.name + "_total" if family.kind == "counter" else family.name
        for text, value in family.values.items():
            metric.add_sample(sample, labels_of[text], to_float(value))
        return metric
    for hist in family.histograms.values():
        labels = labels_of[hist.group.key]
        for le, n in zip(hist.les, hist.counts):
            metric.add_sample(family.name + "_bucket", {**labels, "le": le}, to_float(n))
        metric.add_sample(family.name + "_count", labels, to_float(hist.counts[-1]))
        metric.add_sample(family.name + "_sum", labels, to_float(hist.sum_s))
    return metric


def _merge(values: dict[LabelText, Number], keys: list[LabelText], numbers: list[Number]) -> None:
    """`values[key] += number` for each pair: one dict update when no key repeats (one file, the usual
    case), else key by key (files with the same labels, or two label sets that render the same)."""
    fresh = dict(zip(keys, numbers))
    if len(fresh) == len(keys) and values.keys().isdisjoint(fresh):
        values.update(fresh)
        return
    for key, n in zip(keys, numbers):
        values[key] = values.get(key, 0) + n


def _requests(out: _Families, file: FileSnapshot, scrape: Scrape) -> None:
    if not file.slots:
        return
    slots = [slot for _key, slot in file.slots]
    entries = list(scrape.slot_entries(file.labels, [key for key, _slot in file.slots]))
    labels = [labels for labels, _group in entries]
    _merge(out.family("logtaild_http_requests", "counter", "HTTP requests seen in the access log.").values,
           labels, [slot[COUNT] for slot in slots])
    _merge(out.family("logtaild_http_response_bytes", "counter", "Response bytes seen in the access log.").values,
           labels, [slot[BYTES] for slot in slots])
    # the histogram is per (route, method, extra): the slots of its statuses added up
    timed: dict[LabelText, tuple[Group, list[Slot]]] = {}
    for (_labels, group), slot in zip(entries, slots):
        if any(slot[BUCKETS:]):  # a slot with no latency at all has no histogram
            have = timed.get(group.key)
            if have is None:
                timed[group.key] = (group, [slot])
            else:
                have[1].append(slot)
    if timed:
        _histograms(out, file, timed.values())
    _objectives(out, file, scrape)


def _histograms(out: _Families, file: FileSnapshot, timed: Iterable[tuple[Group, list[Slot]]]) -> None:
    family = out.family(HISTOGRAM, "histogram", "Request latency from the access log.")
    slow = out.family("logtaild_http_requests_slow", "counter",
                      "Requests slower than their route's SLO latency threshold.").values
    bounds = file.bounds_s
    les = (*map(floatToGoString, bounds), "+Inf")
    fast_at: dict[float, int] = {}  # latency threshold -> buckets at or below it
    for group, slots in timed:
        # [latency ms, per-bucket counts...] of the series' slots added up, column by column in slot order
        acc = slots[0][LAT_SUM:] if len(slots) == 1 else list(map(sum, islice(zip(*slots), LAT_SUM, None)))
        width = min(len(les), len(acc) - 1)  # a slot as wide as the bounds (always, but never misreport)
        counts = list(accumulate(islice(acc, 1, 1 + width)))
        family.add_histogram(HistogramValue(group, les if width == len(les) else les[:width], counts,
                                            acc[0] / 1000.0))
        # slow: above the route's threshold, which is always one of the bounds (config.bucket_bounds)
        threshold = file.objectives.get(group.route, DEFAULT_OBJECTIVE).latency_threshold_s
        fast = fast_at.get(threshold)
        if fast is None:
            fast = fast_at[threshold] = bisect_right(bounds, threshold)
        fast = min(fast, width)
        slow[group.key] = slow.get(group.key, 0) + (counts[-1] - (counts[fast - 1] if fast else 0))


def _objectives(out: _Families, file: FileSnapshot, scrape: Scrape) -> None:
    routes = list(dict.fromkeys([key[0] for key, _slot in file.slots]))
    objectives = [file.objectives.get(route, DEFAULT_OBJECTIVE) for route in routes]
    # the SLO's owning team; an SLO without one keeps the file's constant `team` label, if any
    team = file.labels.get("team", "")
    labels = scrape.route_labels(file.labels, [(route, objective.team or team)
                                               for route, objective in zip(routes, objectives)])
    for name, doc, field_name in (
        ("logtaild_slo_latency_threshold_seconds", "Latency above which a request is slow.", "latency_threshold_s"),
        ("logtaild_slo_latency_objective", "Fraction of requests that must be faster than the threshold.",
         "latency_objective"),
        ("logtaild_slo_availability_objective", "Fraction of requests that must not fail with 5xx.",
         "availability_objective"),
    ):
        _merge(out.family(name, "gauge", doc).values, labels,
               [getattr(objective, field_name) for objective in objectives])


def _file_metrics(out: _Families, file: FileSnapshot, scrape: Scrape) -> None:
    lab = {"file": file.path}
    labels = scrape.labels(lab)
    stats = file.stats
    counters = [
        ("logtaild_lines_read", "Lines read from the file.", file.lines),
        ("logtaild_lines_cut", "Over-long lines dropped.", stats.lines_cut),
        ("logtaild_bytes_read", "Bytes read from the file.", stats.bytes_read),
        ("logtaild_file_reopens", "Times the path was opened again.", stats.reopens),
        ("logtaild_drain_timeouts", "Old files closed while still growing.", stats.drain_timeouts),
        ("logtaild_read_errors", "Failed opens, reads and stats (retried).", stats.read_errors),
        ("logtaild_route_overflow", "Requests counted under __other__ because the route cap was hit.",
         sum([slot[COUNT] for key, slot in file.slots if key[0] == OVERFLOW_ROUTE])),
    ]
    for name, doc, value in counters:
        out.add(name, "counter", doc, labels, value)
    for reason, value in file.malformed.items():
        out.add("logtaild_lines_malformed", "counter", "Lines no parser accepted, by reason.",
                scrape.labels({**lab, "reason": reason}), value)
    for kind, value in stats.rotations.items():
        out.add("logtaild_rotations", "counter", "Rotations and truncations, by kind.",
                scrape.labels({**lab, "kind": kind}), value)
    gauges = [
        ("logtaild_file_size_bytes", "Size of the file being followed.", stats.size),
        ("logtaild_file_offset_bytes", "Read offset in the file.", stats.offset),
        ("logtaild_file_lag_bytes", "Bytes written but not read yet.", stats.lag),
        ("logtaild_last_read_timestamp_seconds", "When data was last read.", stats.last_read),
        ("logtaild_routes", "Distinct route values.", file.routes),
    ]
    for name, doc, value in gauges:
        out.add(name, "gauge", doc, labels, value)


def _process_metrics(out: _Families, snap: Snapshot, scrape: Scrape) -> None:
    out.add("logtaild_build_info", "gauge", "logtaild version.", scrape.labels({"version": snap.version}), 1)
    for name, kind, doc, value in (
        ("logtaild_checkpoint_writes", "counter", "State file writes.", snap.checkpoint_writes),
        ("logtaild_checkpoint_failures", "counter", "Failed state file writes.", snap.checkpoint_failures),
        ("logtaild_checkpoint_last_write_timestamp_seconds", "gauge", "Last successful state write.",
         snap.checkpoint_last_write),
        ("logtaild_loop_last_tick_timestamp_seconds", "gauge", "When the main loop last ran.",
         snap.last_tick),
    ):
        out.add(name, kind, doc, scrape.labels({}), value)
    for result, value in snap.reloads.items():
        out.add("logtaild_config_reloads", "counter", "Configuration reloads, by result.",
                scrape.labels({"result": result}), value)


class LogtaildRegistry(CollectorRegistry):
    """Our collector and prometheus-client's process collector, plus the fast path (`exposition`)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        super().__init__(auto_describe=False)
        self.collector = LogtaildCollector(snapshot)
        self.register(self.collector)
        self._process = CollectorRegistry(auto_describe=False)  # process_* alone, for the fast path
        process = ProcessCollector(registry=self._process)
        self.register(process)

    def exposition(self, encoder: Callable[[CollectorRegistry], bytes]) -> list[bytes] | None:
        """`encoder(self)` (one of prometheus-client's, as `choose_encoder` picked it), as pieces to join,
        with our families rendered by logtaild/exposition.py; None when that renderer cannot write what
        `encoder` would."""
        if encoder is generate_latest:
            openmetrics, any_names = False, True
        elif (isinstance(encoder, partial) and not encoder.args
              and encoder.func in (generate_latest, openmetrics_latest)
              and encoder.keywords.get("escaping") in (UNDERSCORES, ALLOWUTF8)):
            # OpenMetrics' `version` only matters to native histograms, which we have none of
            openmetrics, any_names = encoder.func is openmetrics_latest, encoder.keywords["escaping"] == UNDERSCORES
        else:
            return None
        pieces = self.collector.exposition(openmetrics, any_names)
        if pieces is None:
            return None
        pieces.append(encoder(self._process))  # process_* last, and OpenMetrics' `# EOF`
        return pieces


def build_registry(snapshot: Callable[[], Snapshot]) -> LogtaildRegistry:
    """A fresh registry with our collector and the process collector."""
    return LogtaildRegistry(snapshot)


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


#: gzip level of the fast path: 1 compresses 5.3 MB of exposition (10,000 series) in 9 ms to 234 kB;
#: prometheus-client's default, 9, takes 117 ms for 191 kB (the fallback path still uses 9)
GZIP_LEVEL = 1


def make_app(registry: CollectorRegistry, pages: dict[str, Page]) -> WsgiApp:
    """Route /metrics to prometheus-client's app (content negotiation, gzip) and other paths to pages.

    A GET for the whole registry of a `LogtaildRegistry` is answered from its `exposition()` in the
    format prometheus-client's `choose_encoder` picks (about 10x faster with many series); anything
    that renderer does not cover (`name[]`, escaping schemes that rewrite names, OPTIONS, other
    methods) goes to prometheus-client's app.
    """
    metrics = make_wsgi_app(registry)
    fast = registry.exposition if isinstance(registry, LogtaildRegistry) else None

    def scrape(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # what prometheus-client's `_bake_output` does, with our renderer
        pieces, content_type = None, ""
        if (fast is not None and environ.get("REQUEST_METHOD") == "GET"
                and "name[]" not in parse_qs(environ.get("QUERY_STRING", ""))):
            encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
            pieces = fast(encoder)
        if pieces is None:
            return metrics(environ, start_response)
        # sent in chunks of about 90 kB: one 5 MB buffer per scrape (10,000 series), freed in whichever
        # malloc arena the request's thread had, kept RSS about 20 MB higher
        headers = [("Content-Type", content_type)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: with the gzip header and trailer
            body = [b"".join([*map(gz.compress, chunks(pieces)), gz.flush()])]
            headers.append(("Content-Encoding", "gzip"))
        else:
            body = list(chunks(pieces))  # summing 60 chunks' lengths, not 200,000 pieces' (7 ms)
            headers.append(("Content-Length", str(sum(map(len, body)))))
        start_response("200 OK", headers)
        return body

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return scrape(environ, start_response)
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
    def log_message(self, format: str, *args: Any) -> None:
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

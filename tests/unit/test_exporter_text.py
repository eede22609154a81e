"""The fast path (logtaild/export/exposition.py) against prometheus-client, byte for byte.

`LogtaildCollector.exposition()`, joined, must equal `generate_latest` (and OpenMetrics'
`generate_latest`) over the same collector's `Metric`s, and both must show the samples the collector
showed before the fast path existed (`_reference`: the collector as of 46e3ea7, building label dicts
and `Metric`s sample by sample).
"""
from __future__ import annotations

import gzip
import math
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.utils import floatToGoString

from logtaild.count import slots as layout
from logtaild.export.collector import LogtaildCollector, LogtaildRegistry, build_registry
from logtaild.export.exposition import CHUNK_PIECES, HISTOGRAM, escape_value, label_string
from logtaild.export.server import make_app, serve
from logtaild.export.snapshot import FileSnapshot, Objective, Snapshot
from logtaild.tail.filestream import StreamStats

BOUNDS_S = [0.005, 0.01, 0.1, 0.5, 1.0]
HOSTILE = ["/a\\b", "/100%25%s%%b%", '/q"uote', "/new\nline", "/\\n literal", '/all\\"\n\\\\', "/x}{,=le=\"1\"",
           "/ünï©ødé", "/tab\there", "", "/end\\"]


def slot(count: int, size: int = 0, lat_ms: float = 0.0, buckets: tuple[int, ...] = ()) -> layout.Slot:
    return layout.filled(count, size, lat_ms, [*buckets, *[0] * (len(BOUNDS_S) + 1 - len(buckets))])


def file_snapshot(path: str, labels: dict[str, str], slots: list, objectives: dict[str, Objective] | None = None,
                  rotations: dict[str, int] | None = None) -> FileSnapshot:
    stats = StreamStats(bytes_read=123, lines_cut=1, reopens=2, rotations=rotations or {"rename": 1},
                        drain_timeouts=0, read_errors=3, size=200, offset=123, last_read=1795342500.5)
    return FileSnapshot(path, labels, slots, list(BOUNDS_S), lines=40,
                        malformed={"fields": 7, "request": 0, "status": 2}, stats=stats, routes=3,
                        objectives=objectives or {})


def snapshot(*files: FileSnapshot) -> Snapshot:
    return Snapshot(list(files), 'v1.2.3"\n\\', checkpoint_writes=9, checkpoint_failures=1,
                    checkpoint_last_write=1795342499.0, reloads={"success": 2, "failure": 1},
                    last_tick=1795342500.25)


def hostile() -> Snapshot:
    slots = []
    for i, route in enumerate(HOSTILE):
        slots.append(((route, "GET", "200", ()), slot(i + 1, 100 * i, 12.5 * i, (i, 1, 0, 2))))
        slots.append(((route, "POST", "500", (("service", f'svc"{i}\n\\'),)), slot(2, 7, 3000.25, (0, 0, 0, 0, 0, 2))))
        slots.append(((route, "GET", "404", ()), slot(3, 9)))  # no latency: no histogram from this slot
    objectives = {"/a\\b": Objective(0.1, 0.95, 0.99, 'team"\n\\'), '/q"uote': Objective(team="")}
    return snapshot(file_snapshot('/var/log/"odd"\\path\n.log', {"env": 'pr"od\\\n', "team": "web"}, slots,
                                  objectives, rotations={"rename": 3, "truncate": 1, "delete": 0}))


def several_files() -> Snapshot:
    base = [(("/", "GET", "200", ()), slot(10, 1000, 1234.5, (2, 3, 4, 0, 1, 0))),
            (("/", "GET", "500", ()), slot(2, 20, 3000.0, (0, 0, 0, 0, 0, 2))),
            (("/", "POST", "200", ()), slot(3, 30)),
            (("/api", "GET", "200", (("service", "api"),)), slot(4, 400, 400.0, (0, 0, 2, 2))),
            (("__other__", "GET", "404", ()), slot(5, 50)),
            (("__other__", "__other__", "404", ()), slot(6, 60, 60.0, (0, 1)))]
    only_b = [(("/b-only", "PUT", "201", ()), slot(1, 1, 1.0, (1,)))]
    return snapshot(
        file_snapshot("/a.tsv", {"env": "prod"}, base),
        file_snapshot("/b.tsv", {"env": "prod"}, base + only_b, {"/api": Objective(0.1, team="payments")}),
        file_snapshot("/c.tsv", {"env": "dev", "team": "core"}, base),
        file_snapshot("/d.tsv", {}, []),                                      # nothing counted yet
        file_snapshot("/e.tsv", {}, [(("/", "GET", "200", ()), slot(1))]),    # no latency at all
    )


def overflow_bytes() -> Snapshot:
    """A hostile line's 400-digit byte count (what the reference already survived)."""
    slots = [(("/", "GET", "200", ()), slot(1, 10 ** 400, 5.0, (1,))),
             (("/", "GET", "500", ()), slot(1, 10 ** 30, 1e308, (0, 1))),
             (("/big", "GET", "200", ()), slot(2 ** 53 + 1, 1234567, 1e-300, (1,)))]
    return snapshot(file_snapshot("/a.tsv", {}, slots), file_snapshot("/b.tsv", {}, slots))


def overflow() -> Snapshot:
    """Huge counts everywhere, bucket counts too (the reference raised OverflowError on those)."""
    slots = [(("/", "GET", "200", ()), slot(10 ** 400, 10 ** 400, 1e308, (10 ** 400, 1))),
             (("/", "GET", "500", ()), slot(1, 10 ** 30, 1e308, (0, 10 ** 20))),
             (("/big", "GET", "200", ()), slot(2 ** 53 + 1, 1234567, 1e-300, (1,)))]
    return snapshot(file_snapshot("/a.tsv", {}, slots), file_snapshot("/b.tsv", {}, slots))


def upstream() -> Snapshot:
    """Slots with the upstream part (an nginx format with $upstream_response_time) and label fields,
    one of them past its cap."""
    def up(count: int, lat_ms: float, buckets: tuple[int, ...], up_ms: float, up_buckets: tuple[int, ...]
           ) -> layout.Slot:
        width = len(BOUNDS_S) + 1
        return [*slot(count, 10 * count, lat_ms, buckets), up_ms, *up_buckets, *[0] * (width - len(up_buckets))]

    vhost = (("version", "1.4.2"), ("vhost", "shop.example"))
    slots = [(("/", "GET", "200", vhost), up(3, 30.0, (1, 1, 1), 12.5, (2, 1))),
             (("/", "GET", "502", vhost), up(2, 900.0, (0, 0, 0, 1, 1), 0.0, ())),  # no upstream asked
             (("/api", "POST", "200", (("version", "__other__"), ("vhost", "__other__"))),
              up(4, 40.0, (4,), 4000.0, (0, 0, 0, 0, 2, 2)))]
    files = [file_snapshot("/var/log/nginx/access.log", {"service": "shop"}, slots)]
    files[0].label_fields = ("version", "vhost")
    return snapshot(*files, file_snapshot("/a.tsv", {}, [(("/", "GET", "200", ()), slot(1, 1, 1.0, (1,)))]))


CASES = {"hostile": hostile, "several_files": several_files, "overflow_bytes": overflow_bytes,
         "overflow": overflow, "empty": lambda: snapshot(), "upstream": upstream}
#: the reference (the exporter before the fast path) knows no upstream histogram
REFERENCE_CASES = [case for case in CASES if case not in ("overflow", "upstream")]


def _text(collector: LogtaildCollector, openmetrics: bool = False) -> bytes:
    pieces = collector.exposition(openmetrics)
    assert pieces is not None
    return b"".join(pieces)


def _registry(collector: object) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    return registry


@pytest.mark.parametrize("case", CASES)
def test_fast_text_is_generate_latest_byte_for_byte(case: str) -> None:
    collector = LogtaildCollector(CASES[case])
    expected = generate_latest(_registry(collector))
    assert _text(collector) == expected
    assert _text(collector) == expected  # again, from the label cache


@pytest.mark.parametrize("case", CASES)
def test_fast_openmetrics_is_prometheus_clients_byte_for_byte(case: str) -> None:
    collector = LogtaildCollector(CASES[case])
    expected = openmetrics_latest(_registry(collector))
    assert _text(collector, openmetrics=True) + b"# EOF\n" == expected
    assert _text(collector, openmetrics=True) + b"# EOF\n" == expected


@pytest.mark.parametrize("case", REFERENCE_CASES)
def test_same_samples_as_before_the_fast_path(case: str) -> None:
    new = generate_latest(_registry(LogtaildCollector(CASES[case]))).decode()
    old = generate_latest(_registry(_Reference(CASES[case]))).decode()
    # the SLO gauges came out in set order before, so compare lines, not their order
    assert sorted(new.splitlines()) == sorted(old.splitlines())


def test_label_escaping_matches_prometheus_client() -> None:
    for value in HOSTILE:
        metric = Metric("m", "d", "gauge")
        metric.add_sample("m", {"route": value, "a": "1", "z": value}, 1.0)
        line = generate_latest(_registry(_Fixed([metric]))).decode().splitlines()[-1]
        assert line == "m" + label_string({"z": value, "route": value, "a": "1"}) + " 1.0"
        assert f'route="{escape_value(value)}"' in line


def test_the_label_cache_follows_changing_series() -> None:
    state = {"snap": several_files()}
    collector = LogtaildCollector(lambda: state["snap"])
    _text(collector)
    changed = several_files()
    changed.files[0].slots = changed.files[0].slots[1:] + [(("/new", "GET", "200", ()), slot(7, 70, 7.0, (7,)))]
    layout.merge_slot(changed.files[0].slots[0][1], slot(100))
    changed.files.pop(2)
    state["snap"] = changed
    assert _text(collector) == generate_latest(_registry(collector))
    # only the series of the last scrape are kept
    cached = collector._labels.slots
    assert sum(len(entries) for entries in cached.values()) == len({
        (tuple(f.labels.items()), key) for f in changed.files for key, _slot in f.slots})
    assert not any(key[0] == "/" and key[2] == "200" and key[1] == "GET" and fkey == (("env", "dev"), ("team", "core"))
                   for fkey, entries in cached.items() for key in entries)


def test_files_with_the_same_labels_in_another_order_share_their_series() -> None:
    slots = [(("/", "GET", "200", ()), slot(1, 1, 1.0, (1,)))]
    collector = LogtaildCollector(lambda: snapshot(file_snapshot("/a", {"a": "1", "b": "2"}, slots),
                                                   file_snapshot("/b", {"b": "2", "a": "1"}, slots)))
    text = _text(collector).decode()
    assert text.encode() == generate_latest(_registry(collector))
    assert 'logtaild_http_requests_total{a="1",b="2",method="GET",route="/",status="200"} 2.0\n' in text
    assert text.count('logtaild_http_requests_total{') == 1


# ---- over HTTP: negotiation -----------------------------------------------------------------------

def _call(app: object, path: str = "/metrics", **environ: str) -> tuple[str, dict[str, str], bytes]:
    got: dict[str, object] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = status, dict(headers)

    env = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": "", **environ}
    body = b"".join(app(env, start_response))  # type: ignore[operator]
    return got["status"], got["headers"], body  # type: ignore[return-value]


def _ours(body: bytes) -> bytes:
    """The exposition without process_* (its CPU seconds move between two calls)."""
    return body.partition(b"# HELP process_")[0]


def test_plain_scrape_is_what_prometheus_client_serves() -> None:
    registry = build_registry(hostile)
    assert isinstance(registry, LogtaildRegistry)
    status, headers, body = _call(make_app(registry, {}))
    assert status == "200 OK"
    assert headers == {"Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Content-Length": str(len(body))}
    assert _ours(body) == _ours(generate_latest(registry))
    assert b"# HELP process_cpu_seconds_total" in body  # the process collector is still there
    status, headers, gz = _call(make_app(registry, {}), HTTP_ACCEPT_ENCODING="gzip, deflate")
    assert headers["Content-Encoding"] == "gzip"
    assert _ours(gzip.decompress(gz)) == _ours(body)


PROMETHEUS_2 = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
PROMETHEUS_3 = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;"
                "version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
                "text/plain;version=0.0.4;q=0.3,*/*;q=0.2")


@pytest.mark.parametrize("accept", [
    PROMETHEUS_2, PROMETHEUS_3, "application/openmetrics-text", "application/openmetrics-text; version=1.0.0",
    "text/plain; version=1.0.0; escaping=allow-utf-8", "text/plain;version=1.0.0;escaping=underscores",
    "text/plain;version=1.0.0;escaping=dots", "application/openmetrics-text;version=1.0.0;escaping=values",
    "application/json", ""])
@pytest.mark.parametrize("case", ["hostile", "several_files", "odd_names"])
def test_every_format_is_what_prometheus_client_serves(accept: str, case: str) -> None:
    registry = build_registry({**CASES, "odd_names": odd_names}[case])
    ours = _call(make_app(registry, {}), HTTP_ACCEPT=accept, HTTP_ACCEPT_ENCODING="gzip")
    theirs = _call(make_wsgi_app(registry), HTTP_ACCEPT=accept)
    assert ours[0] == theirs[0] == "200 OK"
    assert ours[1]["Content-Type"] == theirs[1]["Content-Type"]
    assert ours[1]["Content-Encoding"] == "gzip"
    assert _ours(gzip.decompress(ours[2])) == _ours(theirs[2])
    assert gzip.decompress(ours[2]).endswith(b"# EOF\n") == theirs[2].endswith(b"# EOF\n")


@pytest.mark.parametrize(("accept", "fast"), [
    (PROMETHEUS_2, True), (PROMETHEUS_3, True), ("", True), ("text/plain;version=1.0.0;escaping=allow-utf-8", True),
    ("text/plain;version=1.0.0;escaping=dots", False), ("application/openmetrics-text;version=1.0.0;escaping=values",
                                                        False)])
def test_which_formats_take_the_fast_path(accept: str, fast: bool) -> None:
    encoder = choose_encoder(accept)[0]
    assert (build_registry(hostile).exposition(encoder) is not None) is fast
    # a label name outside the legacy set: only the "underscores" scheme writes it as we do
    odd = build_registry(odd_names).exposition(encoder)
    assert (odd is not None) is (fast and accept in (PROMETHEUS_2, ""))


def odd_names() -> Snapshot:
    """A label name outside the legacy set (config.py refuses it; a hand-built snapshot can have it)."""
    return snapshot(file_snapshot("/a", {"odd-name.x": "1"}, [(("/", "GET", "200", ()), slot(1, 1, 1.0, (1,)))]))


def many() -> Snapshot:
    """Enough series for the body to go out in several chunks."""
    slots = [((f"/r{i}", "GET", status, ()), slot(i, i * 10, 2.5 * i, (i % 3, 1))) for i in range(1500)
             for status in ("200", "500")]
    return snapshot(file_snapshot("/a.tsv", {"env": "prod"}, slots))


def test_the_renderer_yields_bounded_chunks() -> None:
    """A scrape never holds all its pieces: the renderer hands out chunks of CHUNK_PIECES pieces."""
    collector = LogtaildCollector(many)
    chunks = list(collector.exposition() or [])
    assert len(chunks) > 3
    assert max(map(len, chunks)) < 64 * CHUNK_PIECES  # pieces are a label string or a value each
    assert b"".join(chunks) == _text(LogtaildCollector(many))


def test_over_http_in_chunks() -> None:
    registry = build_registry(many)
    assert len(list(registry.exposition(generate_latest) or [])) > 3  # several chunks
    server = serve(make_app(registry, {}), "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
            assert int(response.headers["Content-Length"]) == len(body)
        assert _ours(body) == _ours(generate_latest(registry))
        request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip", "Accept": PROMETHEUS_2})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert _ours(gzip.decompress(response.read())) == _ours(openmetrics_latest(registry))
    finally:
        server.shutdown()
        server.server_close()


def test_filters_and_other_methods_still_go_to_prometheus_client() -> None:
    registry = build_registry(hostile)
    app = make_app(registry, {})
    queries = ["name[]=logtaild_build_info", "name[]=logtaild_http_requests_total&x=1",
               f"name[]={HISTOGRAM}_count&name[]={HISTOGRAM}_bucket&name[]=logtaild_lines_read_total",
               f"name[]={HISTOGRAM}_sum&name[]=nothing", "name[]=nothing"]
    for query in queries:
        for accept in ("", "application/openmetrics-text; version=1.0.0"):
            ours = _call(app, QUERY_STRING=query, HTTP_ACCEPT=accept)
            theirs = _call(make_wsgi_app(registry), QUERY_STRING=query, HTTP_ACCEPT=accept)
            assert (ours[0], ours[1]["Content-Type"], _ours(ours[2])) == (
                theirs[0], theirs[1]["Content-Type"], _ours(theirs[2])), query
    body = _call(app, QUERY_STRING=queries[2])[2]
    kinds = {line.split(b"{")[0] for line in body.splitlines() if not line.startswith(b"#")}
    assert kinds == {f"{HISTOGRAM}_count".encode(), f"{HISTOGRAM}_bucket".encode(), b"logtaild_lines_read_total"}
    _status, _headers, body = _call(app, QUERY_STRING="name[]=logtaild_http_requests_total&name[]=process_open_fds")
    names = {line.split(b"{")[0].split(b" ")[0] for line in body.splitlines() if not line.startswith(b"#")}
    assert names == {b"logtaild_http_requests_total", b"process_open_fds"}, body[:500]
    status, headers, body = _call(app, REQUEST_METHOD="POST")
    assert status == "405 Method Not Allowed"


# ---- the reference: the collector as of 46e3ea7 ----------------------------------------------------

class _Fixed:
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


class _Families:
    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._values: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}

    def add(self, family: str, kind: str, doc: str, sample: str, labels: dict[str, str], value: float) -> None:
        if family not in self._metrics:
            self._metrics[family] = Metric(family, doc, kind)
        key = (family, sample, tuple(labels.items()))
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        self._values[key] = self._values.get(key, 0.0) + value

    def metrics(self) -> Iterator[Metric]:
        for (family, sample, labels), value in self._values.items():
            self._metrics[family].add_sample(sample, dict(labels), value)
        yield from self._metrics.values()


class _Reference:
    def __init__(self, snap: object) -> None:
        self._snapshot = snap

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()  # type: ignore[operator]
        out = _Families()
        for file in snap.files:
            _requests(out, file)
            _file_metrics(out, file)
        _process_metrics(out, snap)
        yield from out.metrics()


def _requests(out: _Families, file: FileSnapshot) -> None:
    hist: dict[tuple[tuple[str, str], ...], list[float]] = {}
    for (route, method, status, extra), s in file.slots:
        labels = {**file.labels, **dict(extra), "route": route, "method": method, "status": status}
        out.add("logtaild_http_requests", "counter", "HTTP requests seen in the access log.",
                "logtaild_http_requests_total", labels, layout.count(s))
        out.add("logtaild_http_response_bytes", "counter", "Response bytes seen in the access log.",
                "logtaild_http_response_bytes_total", labels, layout.byte_count(s))
        if any(layout.bucket_counts(s)):
            key = tuple({**file.labels, **dict(extra), "route": route, "method": method}.items())
            acc = hist.setdefault(key, [0.0] * (layout.bucket_width(s) + 1))
            acc[0] += layout.latency_sum_ms(s)
            for index, n in enumerate(layout.bucket_counts(s), 1):
                acc[index] += n
    for key, acc in hist.items():
        _histogram(out, file, dict(key), acc)
    routes = {route for (route, _m, _s, _e), _slot in file.slots}
    for route in routes:
        objective = file.objectives.get(route, Objective())
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


def _histogram(out: _Families, file: FileSnapshot, labels: dict[str, str], acc: list[float]) -> None:
    name, doc = "logtaild_http_request_duration_seconds", "Request latency from the access log."
    cumulative = 0.0
    for bound, n in zip([*file.bounds_s, float("inf")], acc[1:]):
        cumulative += n
        out.add(name, "histogram", doc, name + "_bucket", {**labels, "le": floatToGoString(bound)}, cumulative)
    out.add(name, "histogram", doc, name + "_count", labels, cumulative)
    out.add(name, "histogram", doc, name + "_sum", labels, acc[0] / 1000.0)
    threshold = file.objectives.get(labels["route"], Objective()).latency_threshold_s
    fast = sum(n for bound, n in zip(file.bounds_s, acc[1:]) if bound <= threshold)
    out.add("logtaild_http_requests_slow", "counter", "Requests slower than their route's SLO latency threshold.",
            "logtaild_http_requests_slow_total", labels, cumulative - fast)


def _file_metrics(out: _Families, file: FileSnapshot) -> None:
    lab = {"file": file.path}
    stats = file.stats
    for name, doc, value in [
        ("logtaild_lines_read", "Lines read from the file.", file.lines),
        ("logtaild_lines_cut", "Over-long lines dropped.", stats.lines_cut),
        ("logtaild_bytes_read", "Bytes read from the file.", stats.bytes_read),
        ("logtaild_file_reopens", "Times the path was opened again.", stats.reopens),
        ("logtaild_drain_timeouts", "Old files closed while still growing.", stats.drain_timeouts),
        ("logtaild_read_errors", "Failed opens, reads and stats (retried).", stats.read_errors),
        ("logtaild_route_overflow", "Requests counted under __other__ because the route cap was hit.",
         sum(layout.count(s) for (route, method, *_rest), s in file.slots
             if route == "__other__" and method != "__other__")),
        ("logtaild_series_overflow", "Requests counted under the overflow series because the series cap was hit.",
         sum(layout.count(s) for (_route, method, *_rest), s in file.slots if method == "__other__")),
    ]:
        out.add(name, "counter", doc, name + "_total", lab, value)
    for reason, value in file.malformed.items():
        out.add("logtaild_lines_malformed", "counter", "Lines no parser accepted, by reason.",
                "logtaild_lines_malformed_total", {**lab, "reason": reason}, value)
    for kind, value in stats.rotations.items():
        out.add("logtaild_rotations", "counter", "Rotations and truncations, by kind.",
                "logtaild_rotations_total", {**lab, "kind": kind}, value)
    for name, doc, value in [
        ("logtaild_file_size_bytes", "Size of the file being followed.", stats.size),
        ("logtaild_file_offset_bytes", "Read offset in the file.", stats.offset),
        ("logtaild_file_lag_bytes", "Bytes written but not read yet.", stats.lag),
        ("logtaild_last_read_timestamp_seconds", "When data was last read.", stats.last_read),
        ("logtaild_routes", "Distinct route values.", file.routes),
        ("logtaild_series", "Request series (route, method, status, labels) of the file.", len(file.slots)),
    ]:
        out.add(name, "gauge", doc, name, lab, value)


def _process_metrics(out: _Families, snap: Snapshot) -> None:
    out.add("logtaild_build_info", "gauge", "logtaild version.", "logtaild_build_info", {"version": snap.version}, 1)
    for name, kind, doc, value in (
        ("logtaild_checkpoint_writes", "counter", "State file writes.", snap.checkpoint_writes),
        ("logtaild_checkpoint_failures", "counter", "Failed state file writes.", snap.checkpoint_failures),
        ("logtaild_checkpoint_last_write_timestamp_seconds", "gauge", "Last successful state write.",
         snap.checkpoint_last_write),
        ("logtaild_checkpoint_fallbacks", "counter",
         "Checkpoints taken from the state file's previous generation (the current one was damaged).",
         snap.checkpoint_fallbacks),
        ("logtaild_loop_last_tick_timestamp_seconds", "gauge", "When the main loop last ran.", snap.last_tick),
    ):
        out.add(name, kind, doc, name + ("_total" if kind == "counter" else ""), {}, value)
    for result, value in snap.reloads.items():
        out.add("logtaild_config_reloads", "counter", "Configuration reloads, by result.",
                "logtaild_config_reloads_total", {"result": result}, value)

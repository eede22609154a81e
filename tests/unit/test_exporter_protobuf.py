"""The protobuf exposition: decoded with the generated classes, it shows the text format's samples, one for
one, and the native buckets counted; content negotiation picks it only when asked for."""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.parser import text_string_to_metric_families

from logtaild.config import FileConfig
from logtaild.count.aggregate import Aggregator
from logtaild.count.native import NativeSpec, bucket_index
from logtaild.count.parsers import make_parser
from logtaild.count.routes import RouteLimiter
from logtaild.export.collector import LogtaildCollector, LogtaildRegistry
from logtaild.export.prompb import metrics_pb2 as pb
from logtaild.export.protobuf import CONTENT_TYPE, wants_protobuf
from logtaild.export.server import make_app
from logtaild.export.snapshot import FileSnapshot, Snapshot
from logtaild.tail.filestream import StreamStats
from tests.unit.test_exporter_text import hostile, several_files

BOUNDS_S = [0.005, 0.01, 0.1, 0.5, 1.0]
PROMETHEUS_2_42_ACCEPT = ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,"
                          "application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;"
                          "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


SPEC = NativeSpec(schema=3)


def counted(spec: NativeSpec | None = SPEC) -> Snapshot:
    """Two files counted by real aggregators: nginx lines with upstream times and trace ids, and TSV."""
    nginx = FileConfig("/n.log", "nginx", log_format='"$request" $status $body_bytes_sent $request_time '
                       '$upstream_response_time $request_id', exemplar_field="$request_id")
    bounds_ms = [b * 1000 for b in BOUNDS_S]
    agg = Aggregator(RouteLimiter(), bounds_ms, make_parser(nginx), native=spec, exemplars=True,
                     wall=lambda: 1795342500.25)
    agg.feed([f'"GET /api/{i} HTTP/1.1" {200 if i % 7 else 500} {i} {0.0007 * i:.4f} {0.0005 * i:.4f} '
              f'{TRACE if i % 3 else "-"}'.encode() for i in range(1, 400)])
    agg.feed([b'"GET / HTTP/1.1" 200 5 0.000 - -'])  # a latency of 0: the zero bucket
    tsv = Aggregator(RouteLimiter(), bounds_ms, native=spec)
    tsv.feed([f"1.2.3.4\tPOST /x HTTP/1.1\t201\t10\t{1.5 * i}".encode() for i in range(1, 200)]
             + [b"1.2.3.4\tGET /nolatency HTTP/1.1\t200\t10"])
    stats = StreamStats()
    return Snapshot([FileSnapshot("/n.log", {"env": "prod"}, agg.snapshot(), BOUNDS_S, agg.lines, dict(agg.malformed),
                                  stats, 3),
                     FileSnapshot("/t.log", {}, tsv.snapshot(), BOUNDS_S, tsv.lines, dict(tsv.malformed), stats, 2)],
                    "v1")


def _messages(body: bytes) -> Iterator[pb.MetricFamily]:
    at = 0
    while at < len(body):
        size = shift = 0
        while True:
            byte = body[at]
            at += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        yield pb.MetricFamily.FromString(body[at:at + size])
        at += size


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _from_protobuf(body: bytes) -> Samples:
    out: Samples = {}
    for family in _messages(body):
        for metric in family.metric:
            labels = frozenset((pair.name, pair.value) for pair in metric.label)
            if family.type == pb.COUNTER:
                out[family.name, labels] = metric.counter.value
            elif family.type == pb.GAUGE:
                out[family.name, labels] = metric.gauge.value
            else:
                hist = metric.histogram
                for bucket in hist.bucket:
                    out[family.name + "_bucket", labels | {("le", repr(bucket.upper_bound))}] = bucket.cumulative_count
                out[family.name + "_bucket", labels | {("le", "inf")}] = hist.sample_count  # implicit +Inf
                out[family.name + "_count", labels] = hist.sample_count
                out[family.name + "_sum", labels] = hist.sample_sum
    return out


def _from_text(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            if "le" in labels:
                labels["le"] = repr(float(labels["le"]))
            out[sample.name, frozenset(labels.items())] = sample.value
    return out


def _ours(samples: Samples) -> Samples:
    return {key: value for key, value in samples.items() if not key[0].startswith("process_")}


@pytest.mark.parametrize("make", [counted, lambda: counted(None), hostile, several_files])
def test_protobuf_shows_the_text_formats_samples(make: Any) -> None:
    registry = LogtaildRegistry(make)
    pieces = registry.exposition(generate_latest)
    assert pieces is not None
    text = _from_text(b"".join(pieces).decode())
    proto = _from_protobuf(b"".join(registry.protobuf()))
    assert _ours(proto) == _ours(text)
    assert len(_ours(proto)) > 20
    assert any(name.startswith("process_") for name, _labels in proto)


def _histograms(body: bytes, name: str) -> dict[frozenset[tuple[str, str]], pb.Histogram]:
    return {frozenset((p.name, p.value) for p in metric.label): metric.histogram
            for family in _messages(body) if family.name == name for metric in family.metric}


def _native_buckets(hist: pb.Histogram) -> dict[int, int]:
    out, index, count = {}, 0, 0
    deltas = iter(hist.positive_delta)
    for i, span in enumerate(hist.positive_span):
        index = span.offset if i == 0 else index + span.offset
        for _ in range(span.length):
            count += next(deltas)
            if count:
                out[index] = count
            index += 1
    return out


def test_native_buckets_are_the_counted_ones() -> None:
    snap = counted()
    body = b"".join(LogtaildRegistry(lambda: snap).protobuf())
    hists = _histograms(body, "logtaild_http_request_duration_seconds")
    root = hists[frozenset({("env", "prod"), ("route", "/"), ("method", "GET")})]
    assert (root.schema, root.zero_count, root.zero_threshold, root.sample_count) == (3, 1, 2.0 ** -128, 1)
    assert [(s.offset, s.length) for s in root.positive_span] == [(0, 0)]  # the no-op span: native, no buckets
    post = hists[frozenset({("route", "/x"), ("method", "POST")})]
    expected: dict[int, int] = {}
    for i in range(1, 200):
        index = bucket_index(1.5 * i / 1000.0, 3)
        expected[index] = expected.get(index, 0) + 1
    assert _native_buckets(post) == expected and post.sample_count == 199
    assert post.sample_sum == pytest.approx(sum(1.5 * i for i in range(1, 200)) / 1000.0)
    api = hists[frozenset({("env", "prod"), ("route", "/api/:id"), ("method", "GET")})]
    assert sum(_native_buckets(api).values()) + api.zero_count == api.sample_count == 399
    upstream = _histograms(body, "logtaild_http_upstream_duration_seconds")
    up = upstream[frozenset({("env", "prod"), ("route", "/api/:id"), ("method", "GET")})]
    assert sum(_native_buckets(up).values()) + up.zero_count == up.sample_count == 399 and up.schema == 3


def test_exemplars_on_the_classic_buckets_and_the_native_histogram() -> None:
    body = b"".join(LogtaildRegistry(counted).protobuf())
    api = _histograms(body, "logtaild_http_request_duration_seconds")[
        frozenset({("env", "prod"), ("route", "/api/:id"), ("method", "GET")})]
    with_exemplar = [b for b in api.bucket if b.HasField("exemplar")]
    assert [b.upper_bound for b in with_exemplar] == [0.005, 0.01, 0.1, 0.5]  # latencies 0.7 ms to 279 ms
    last = with_exemplar[-1].exemplar
    # the latest line of the (0.1, 0.5] bucket with a trace id: i = 398 (399 is a multiple of 3)
    assert ([(p.name, p.value) for p in last.label], last.value) == ([("trace_id", TRACE)], 0.0007 * 398)
    assert (last.timestamp.seconds, last.timestamp.nanos) == (1795342500, 250000000)
    assert len(api.exemplars) == 4


def test_without_native_buckets_a_histogram_is_classic_only() -> None:
    body = b"".join(LogtaildRegistry(lambda: counted(None)).protobuf())
    post = _histograms(body, "logtaild_http_request_duration_seconds")[frozenset({("route", "/x"), ("method", "POST")})]
    assert not post.HasField("schema") and not post.positive_span and not post.HasField("zero_threshold")
    assert len(post.bucket) == len(BOUNDS_S)


@pytest.mark.parametrize(("accept", "wanted"), [
    (PROMETHEUS_2_42_ACCEPT, True),
    (CONTENT_TYPE, True),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.4,"
     "text/plain;version=0.0.4;q=0.5", False),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text", False),
    ("application/vnd.google.protobuf", False),
    ("application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", False),
    ("*/*", False),
    ("", False),
    ("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=x", False),
])
def test_wants_protobuf(accept: str, wanted: bool) -> None:
    assert wants_protobuf(accept) is wanted


def _get(app: Any, accept: str) -> tuple[str, dict[str, str], bytes]:
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = status, dict(headers)

    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "HTTP_ACCEPT": accept}, start_response))
    return got["status"], got["headers"], body


def test_the_server_negotiates_protobuf_and_text_stays_as_it_was() -> None:
    registry = LogtaildRegistry(counted)
    app = make_app(registry, {}, scrape_ttl=0.0)
    status, headers, body = _get(app, PROMETHEUS_2_42_ACCEPT)
    assert status == "200 OK" and headers["Content-Type"] == CONTENT_TYPE
    assert "logtaild_http_requests_total" in [family.name for family in _messages(body)]
    status, headers, body = _get(app, "text/plain")
    assert headers["Content-Type"].startswith("text/plain") and b"# TYPE logtaild_http_requests_total counter" in body
    assert b"trace_id" not in body and b"schema" not in body
    status, headers, body = _get(app, "application/openmetrics-text;version=1.0.0")
    assert headers["Content-Type"].startswith("application/openmetrics-text") and body.endswith(b"# EOF\n")
    assert math.isfinite(len(body))


@pytest.mark.parametrize("spec", [NativeSpec(schema=3), None])
def test_openmetrics_exemplars_are_prometheus_clients_byte_for_byte(spec: NativeSpec | None) -> None:
    collector = LogtaildCollector(lambda: counted(spec))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)  # type: ignore[arg-type]
    pieces = collector.exposition(openmetrics=True)
    assert pieces is not None
    ours = b"".join(pieces) + b"# EOF\n"
    assert ours == openmetrics_latest(registry)
    line = next(line for line in ours.split(b"\n") if b'route="/api/:id"' in line and b'le="0.5"' in line)
    assert line.endswith(b' # {trace_id="%s"} 0.2786 1795342500.25' % TRACE.encode())
    text = b"".join(collector.exposition() or [])
    assert b"trace_id" not in text and text == generate_latest(registry)  # the text format has no exemplars


def test_the_label_caches_follow_changing_series() -> None:
    """Protobuf scrapes keep serialized labels between scrapes: new series, gone series, same bytes as fresh."""
    bounds_ms = [b * 1000 for b in BOUNDS_S]
    state = {"routes": ["/a", "/b"]}

    def snap() -> Snapshot:
        agg = Aggregator(RouteLimiter(), bounds_ms, native=SPEC)
        agg.feed([f"1.1.1.1\tGET {route} HTTP/1.1\t200\t1\t{n}".encode()
                  for n, route in enumerate(state["routes"], 1)])
        return Snapshot([FileSnapshot("/t.log", {"env": "x"}, agg.snapshot(), BOUNDS_S, agg.lines, {},
                                      StreamStats(), 2)], "v1")

    registry = LogtaildRegistry(snap)
    for routes in (["/a", "/b"], ["/a", "/b", "/c"], ["/c"], ["/d", "/a"]):
        state["routes"] = routes
        body = b"".join(registry.protobuf())
        fresh = b"".join(LogtaildRegistry(snap).protobuf())
        assert _ours(_from_protobuf(body)) == _ours(_from_protobuf(fresh))
        pieces = registry.exposition(generate_latest)
        assert pieces is not None and _ours(_from_protobuf(body)) == _ours(_from_text(b"".join(pieces).decode()))
        requests = {dict(labels)["route"] for name, labels in _from_protobuf(body)
                    if name == "logtaild_http_requests_total"}
        assert requests == set(routes)


def test_wants_protobuf_reads_quoted_and_spaced_parameters() -> None:
    assert wants_protobuf('application/vnd.google.protobuf; proto="io.prometheus.client.MetricFamily"; '
                          'encoding=delimited; q=0.9, text/plain; q=0.5')

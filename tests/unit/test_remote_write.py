"""export/remote_write.py: a snapshot as a WriteRequest, decoded back and compared series by series."""
from __future__ import annotations

from logtaild.export.prompb.remote_pb2 import WriteRequest
from logtaild.export.remote_write import (
    HEADERS,
    RemoteWriteEncoder,
    SnapshotSamples,
    flatten,
    process_samples,
    sample,
)
from logtaild.export.snappy import compress, decompress
from tests.unit.test_exporter import file_snapshot, snapshot

TS = 1_795_342_500_123


def decode(body: bytes) -> dict[tuple[tuple[str, str], ...], list[tuple[float, int]]]:
    """A compressed request body as {labels in wire order: [(value, timestamp)]}."""
    request = WriteRequest.FromString(decompress(body))
    out: dict[tuple[tuple[str, str], ...], list[tuple[float, int]]] = {}
    for series in request.timeseries:
        key = tuple((label.name, label.value) for label in series.labels)
        assert key not in out, f"series sent twice: {key}"
        out[key] = [(sample.value, sample.timestamp) for sample in series.samples]
    return out


def by_name(series: dict, name: str, **labels: str) -> float:
    """The value of the one series named `name` whose labels include `labels`."""
    found = [samples[0][0] for key, samples in series.items()
             if dict(key)["__name__"] == name and all(dict(key).get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_headers_are_remote_write_1_0() -> None:
    assert HEADERS == {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                       "X-Prometheus-Remote-Write-Version": "0.1.0"}


def test_snappy_block_format_round_trips() -> None:
    data = b"logtaild " * 1000
    body = compress(data)
    assert len(body) < len(data) / 10
    assert decompress(body) == data
    # the block format starts with the uncompressed length as a varint (9000: a8 46), not the framing
    # format's stream identifier
    assert body[:2] == bytes([0xA8, 0x46]) and not body.startswith(b"\xff\x06\x00\x00sNaPpY")


def test_every_series_with_exact_values_sorted_labels_and_the_push_timestamp() -> None:
    encoder = RemoteWriteEncoder({"instance": "web1", "site": "a"})
    encoded = encoder.encode(SnapshotSamples()(snapshot()), TS)
    series = decode(encoded.body)
    assert encoded.samples == len(series)
    assert encoded.raw_bytes == len(decompress(encoded.body))
    for key, samples in series.items():
        names = [name for name, _ in key]
        assert names == sorted(names), key
        assert "__name__" in names and ("instance", "web1") in key and ("site", "a") in key
        assert [ts for _, ts in samples] == [TS]
    # counters as <name>_total, by route, method and status (constant labels kept)
    assert by_name(series, "logtaild_http_requests_total", route="/", method="GET", status="200", env="prod") == 10
    assert by_name(series, "logtaild_http_requests_total", route="/", method="GET", status="500") == 2
    assert by_name(series, "logtaild_http_response_bytes_total", route="/api", service="api") == 400
    # the histogram as its classic series: cumulative buckets (statuses added up), _count and _sum
    h = "logtaild_http_request_duration_seconds"
    buckets = {le: by_name(series, h + "_bucket", route="/", method="GET", le=le)
               for le in ("0.005", "0.01", "0.1", "0.5", "1.0", "+Inf")}
    assert buckets == {"0.005": 2, "0.01": 5, "0.1": 9, "0.5": 9, "1.0": 10, "+Inf": 12}
    assert by_name(series, h + "_count", route="/", method="GET") == 12
    assert by_name(series, h + "_sum", route="/", method="GET") == 4.2345
    # self-metrics and gauges
    assert by_name(series, "logtaild_lines_read_total", file="/var/log/app/access.tsv") == 40
    assert by_name(series, "logtaild_build_info", version="1.2.3") == 1
    assert by_name(series, "logtaild_file_lag_bytes") == 20000 - 12345


def test_the_same_samples_as_a_scrape() -> None:
    """Every sample /metrics shows (the text format, parsed) is pushed, with the same value; a label with an
    empty value (the SLO gauges' `team=""`) is left out, as a scraping Prometheus stores it."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from logtaild.export.collector import LogtaildCollector
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LogtaildCollector(snapshot))
    scraped = {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if v))): s.value
               for family in text_string_to_metric_families(generate_latest(registry).decode())
               for s in family.samples}
    pushed = {(dict(key)["__name__"], tuple((k, v) for k, v in key if k != "__name__")): samples[0][0]
              for key, samples in decode(RemoteWriteEncoder().encode(SnapshotSamples()(snapshot()), TS).body).items()}
    assert pushed == scraped


def test_a_series_own_label_wins_over_an_external_label() -> None:
    encoder = RemoteWriteEncoder({"env": "staging", "site": "b"})
    series = decode(encoder.encode(SnapshotSamples()(snapshot()), TS).body)
    assert by_name(series, "logtaild_http_requests_total", route="/", method="GET", status="200") == 10
    key = next(k for k in series if dict(k)["__name__"] == "logtaild_http_requests_total")
    assert dict(key)["env"] == "prod" and dict(key)["site"] == "b"


def test_new_and_gone_series_between_pushes() -> None:
    encoder = RemoteWriteEncoder()
    first = [sample("a_total", {"x": "1"}, 1.0), sample("b", {}, 2.0)]
    assert decode(encoder.encode(first, 1000).body) == {(("__name__", "a_total"), ("x", "1")): [(1.0, 1000)],
                                                         (("__name__", "b"),): [(2.0, 1000)]}
    grown = [sample("a_total", {"x": "1"}, 5.0), sample("a_total", {"x": "2"}, 1.0), sample("b", {}, 3.0)]
    assert decode(encoder.encode(grown, 2000).body) == {(("__name__", "a_total"), ("x", "1")): [(5.0, 2000)],
                                                         (("__name__", "a_total"), ("x", "2")): [(1.0, 2000)],
                                                         (("__name__", "b"),): [(3.0, 2000)]}
    shrunk = [sample("b", {}, 4.0)]
    assert decode(encoder.encode(shrunk, 3000).body) == {(("__name__", "b"),): [(4.0, 3000)]}


def test_process_metrics_are_pushed_too() -> None:
    names = {name for _key, name, _labels, _le, _value in process_samples()}
    assert "process_cpu_seconds_total" in names or names == set()  # no /proc: prometheus-client shows none


def test_flatten_of_an_empty_snapshot_still_has_build_info() -> None:
    from logtaild.export.snapshot import Snapshot
    samples = SnapshotSamples()(Snapshot([], "9.9"))
    assert [(name, labels, value) for _key, name, labels, _le, value in samples
            if name == "logtaild_build_info"] == [("logtaild_build_info", {"version": "9.9"}, 1.0)]
    assert list(flatten([], {})) == []


def test_two_files_with_the_same_labels_add_up() -> None:
    snap = snapshot(file_snapshot("/a.log", {"env": "prod"}), file_snapshot("/b.log", {"env": "prod"}))
    series = decode(RemoteWriteEncoder().encode(SnapshotSamples()(snap), TS).body)
    assert by_name(series, "logtaild_http_requests_total", route="/", method="GET", status="200") == 20


def test_the_push_bench_measures_a_small_snapshot() -> None:
    """bench/push.py's measure (what `python -m bench --only push` runs per series count), tiny."""
    from bench.push import measure
    row = measure(10, 2)
    assert row["series"] == 10 and row["samples"] > 10 * 2
    assert 0 < row["compressed_bytes"] < row["raw_bytes"] and row["cpu_ms"] >= 0


def test_a_push_of_several_pieces_is_one_write_request() -> None:
    """More series than one piece (remote_write.PIECE): the pieces joined parse as one WriteRequest."""
    from logtaild.export.remote_write import PIECE
    n = 2 * PIECE + 7
    samples = [sample("x_total", {"i": str(i)}, float(i)) for i in range(n)]
    encoder = RemoteWriteEncoder({"site": "a"})
    for ts in (1000, 2000):  # the second push from the kept labels
        series = decode(encoder.encode(samples, ts).body)
        assert series == {(("__name__", "x_total"), ("i", str(i)), ("site", "a")): [(float(i), ts)] for i in range(n)}

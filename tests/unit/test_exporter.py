"""LogtaildCollector over a hand-built Snapshot (exact sample values), and the HTTP side."""
from __future__ import annotations

import errno
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from logtaild.count import slots as layout
from logtaild.export import server
from logtaild.export.collector import LogtaildCollector
from logtaild.export.server import ListenError, make_app, serve
from logtaild.export.snapshot import FileSnapshot, Objective, Snapshot
from logtaild.tail.filestream import StreamStats

PATH = "/var/log/app/access.tsv"
BOUNDS_S = [0.005, 0.01, 0.1, 0.5, 1.0]
API = Objective(latency_threshold_s=0.1, latency_objective=0.95, availability_objective=0.99, team="payments")


def file_snapshot(path: str = PATH, labels: dict[str, str] | None = None) -> FileSnapshot:
    # buckets: le=0.005, le=0.01, le=0.1, le=0.5, le=1, +Inf (not cumulative)
    slots = [
        (("/", "GET", "200", ()), layout.filled(10, 1000, 1234.5, [2, 3, 4, 0, 1, 0])),
        (("/", "GET", "500", ()), layout.filled(2, 20, 3000.0, [0, 0, 0, 0, 0, 2])),
        (("/", "POST", "200", ()), layout.filled(3, 30, 0.0, [0, 0, 0, 0, 0, 0])),           # no latency field
        (("/api", "GET", "200", (("service", "api"),)), layout.filled(4, 400, 400.0, [0, 0, 2, 2, 0, 0])),
        (("__other__", "GET", "404", ()), layout.filled(5, 50, 0.0, [0, 0, 0, 0, 0, 0])),
    ]
    stats = StreamStats(bytes_read=12345, lines_cut=1, reopens=2,
                        rotations={"rename": 3, "truncate": 1, "delete": 0}, drain_timeouts=4, read_errors=5,
                        size=20000, offset=12345, last_read=1795342500.5)
    malformed = {"fields": 7, "request": 0, "status": 2, "bytes": 0, "latency": 1, "encoding": 3}
    return FileSnapshot(path, {"env": "prod"} if labels is None else labels, slots, list(BOUNDS_S),
                        lines=40, malformed=malformed, stats=stats, routes=3, objectives={"/api": API})


def snapshot(*files: FileSnapshot) -> Snapshot:
    return Snapshot(list(files) or [file_snapshot()], "1.2.3", checkpoint_writes=9, checkpoint_failures=1,
                    checkpoint_last_write=1795342499.0, checkpoint_fallbacks=2, reloads={"success": 2, "failure": 1},
                    last_tick=1795342500.25)


@pytest.fixture
def registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(LogtaildCollector(snapshot))
    return reg


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


def test_request_counters(registry: CollectorRegistry) -> None:
    req = "logtaild_http_requests_total"
    assert value(registry, req, env="prod", route="/", method="GET", status="200") == 10
    assert value(registry, req, env="prod", route="/", method="GET", status="500") == 2
    assert value(registry, req, env="prod", route="/", method="POST", status="200") == 3
    assert value(registry, req, env="prod", service="api", route="/api", method="GET", status="200") == 4
    assert value(registry, req, env="prod", route="__other__", method="GET", status="404") == 5
    byt = "logtaild_http_response_bytes_total"
    assert value(registry, byt, env="prod", route="/", method="GET", status="200") == 1000
    assert value(registry, byt, env="prod", route="/", method="POST", status="200") == 30
    assert value(registry, byt, env="prod", service="api", route="/api", method="GET", status="200") == 400


def test_histogram_is_cumulative_over_statuses(registry: CollectorRegistry) -> None:
    h = "logtaild_http_request_duration_seconds"
    labels = {"env": "prod", "route": "/", "method": "GET"}
    buckets = {le: value(registry, h + "_bucket", **labels, le=le)
               for le in ("0.005", "0.01", "0.1", "0.5", "1.0", "+Inf")}
    # GET / 200: 2, 3, 4, 0, 1, 0 and GET / 500: 2 in +Inf
    assert buckets == {"0.005": 2, "0.01": 5, "0.1": 9, "0.5": 9, "1.0": 10, "+Inf": 12}
    assert value(registry, h + "_count", **labels) == 12 == buckets["+Inf"]
    assert value(registry, h + "_sum", **labels) == pytest.approx(4.2345, abs=1e-12)  # ms -> s
    api = {"env": "prod", "service": "api", "route": "/api", "method": "GET"}
    assert value(registry, h + "_bucket", **api, le="0.1") == 2
    assert value(registry, h + "_count", **api) == 4
    assert value(registry, h + "_sum", **api) == pytest.approx(0.4)
    # a (route, method) with no latency at all has no histogram
    assert value(registry, h + "_count", env="prod", route="/", method="POST") is None
    assert value(registry, h + "_count", env="prod", route="__other__", method="GET") is None


def test_slow_requests_against_the_routes_threshold(registry: CollectorRegistry) -> None:
    slow = "logtaild_http_requests_slow_total"
    # "/" has the default 0.5 s threshold: 1 in le=1 and 2 in +Inf are slower
    assert value(registry, slow, env="prod", route="/", method="GET") == 3
    # "/api" has 0.1 s: the 2 in le=0.5 are slow
    assert value(registry, slow, env="prod", service="api", route="/api", method="GET") == 2


def test_slo_gauges(registry: CollectorRegistry) -> None:
    default = {"env": "prod", "route": "/", "team": ""}
    assert value(registry, "logtaild_slo_latency_threshold_seconds", **default) == 0.5
    assert value(registry, "logtaild_slo_latency_objective", **default) == 0.99
    assert value(registry, "logtaild_slo_availability_objective", **default) == 0.999
    api = {"env": "prod", "route": "/api", "team": "payments"}
    assert value(registry, "logtaild_slo_latency_threshold_seconds", **api) == 0.1
    assert value(registry, "logtaild_slo_latency_objective", **api) == 0.95
    assert value(registry, "logtaild_slo_availability_objective", **api) == 0.99


def test_self_metrics(registry: CollectorRegistry) -> None:
    f = {"file": PATH}
    assert value(registry, "logtaild_lines_read_total", **f) == 40
    assert value(registry, "logtaild_lines_cut_total", **f) == 1
    assert value(registry, "logtaild_bytes_read_total", **f) == 12345
    assert value(registry, "logtaild_file_reopens_total", **f) == 2
    assert value(registry, "logtaild_drain_timeouts_total", **f) == 4
    assert value(registry, "logtaild_read_errors_total", **f) == 5
    assert value(registry, "logtaild_route_overflow_total", **f) == 5
    assert {reason: value(registry, "logtaild_lines_malformed_total", **f, reason=reason)
            for reason in ("fields", "request", "status", "bytes", "latency", "encoding")} == {
        "fields": 7, "request": 0, "status": 2, "bytes": 0, "latency": 1, "encoding": 3}
    assert {kind: value(registry, "logtaild_rotations_total", **f, kind=kind)
            for kind in ("rename", "truncate", "delete")} == {"rename": 3, "truncate": 1, "delete": 0}
    assert value(registry, "logtaild_file_size_bytes", **f) == 20000
    assert value(registry, "logtaild_file_offset_bytes", **f) == 12345
    assert value(registry, "logtaild_file_lag_bytes", **f) == 20000 - 12345
    assert value(registry, "logtaild_last_read_timestamp_seconds", **f) == 1795342500.5
    assert value(registry, "logtaild_routes", **f) == 3
    assert value(registry, "logtaild_build_info", version="1.2.3") == 1
    assert value(registry, "logtaild_checkpoint_writes_total") == 9
    assert value(registry, "logtaild_checkpoint_failures_total") == 1
    assert value(registry, "logtaild_checkpoint_last_write_timestamp_seconds") == 1795342499.0
    assert value(registry, "logtaild_checkpoint_fallbacks_total") == 2
    assert value(registry, "logtaild_loop_last_tick_timestamp_seconds") == 1795342500.25
    assert value(registry, "logtaild_config_reloads_total", result="success") == 2
    assert value(registry, "logtaild_config_reloads_total", result="failure") == 1
    # self-metrics carry the configured path only, never the file's constant labels
    assert value(registry, "logtaild_lines_read_total", file=PATH, env="prod") is None


def test_exposition_text_parses_back(registry: CollectorRegistry) -> None:
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["logtaild_http_requests"].type == "counter"
    assert families["logtaild_http_request_duration_seconds"].type == "histogram"
    assert families["logtaild_file_lag_bytes"].type == "gauge"
    assert "# TYPE logtaild_http_requests_total counter" in text
    assert "# TYPE logtaild_http_request_duration_seconds histogram" in text
    # one family per name, even though several files and slots contribute
    assert text.count("# TYPE logtaild_http_requests_total ") == 1


def test_two_files_with_the_same_labels_merge_and_different_labels_do_not() -> None:
    reg = CollectorRegistry(auto_describe=False)
    files = [file_snapshot("/a.tsv"), file_snapshot("/b.tsv"), file_snapshot("/c.tsv", {"env": "dev"})]
    reg.register(LogtaildCollector(lambda: snapshot(*files)))
    req = "logtaild_http_requests_total"
    assert value(reg, req, env="prod", route="/", method="GET", status="200") == 20
    assert value(reg, req, env="dev", route="/", method="GET", status="200") == 10
    h = "logtaild_http_request_duration_seconds"
    assert value(reg, h + "_count", env="prod", route="/", method="GET") == 24
    assert value(reg, h + "_bucket", env="prod", route="/", method="GET", le="0.01") == 10
    assert value(reg, "logtaild_lines_read_total", file="/b.tsv") == 40
    assert value(reg, "logtaild_build_info", version="1.2.3") == 1


def test_collector_reads_a_fresh_snapshot_on_every_scrape() -> None:
    calls = []

    def snap() -> Snapshot:
        calls.append(1)
        return snapshot()

    reg = CollectorRegistry(auto_describe=False)
    reg.register(LogtaildCollector(snap))
    generate_latest(reg)
    generate_latest(reg)
    assert len(calls) == 2


def test_huge_byte_count_does_not_break_the_scrape() -> None:
    fs = file_snapshot()
    fs.slots = [(("/", "GET", "200", ()), [1, 10 ** 400, 0.0, 0, 0, 0, 0, 0, 0])]
    reg = CollectorRegistry(auto_describe=False)
    reg.register(LogtaildCollector(lambda: snapshot(fs)))
    assert value(reg, "logtaild_http_response_bytes_total", env="prod", route="/", method="GET",
                 status="200") == float("inf")


def test_empty_snapshot_still_has_build_info() -> None:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(LogtaildCollector(lambda: Snapshot([], "0.1.0")))
    assert value(reg, "logtaild_build_info", version="0.1.0") == 1
    assert value(reg, "logtaild_config_reloads_total", result="success") == 0


# ---- HTTP -------------------------------------------------------------------------------------------

def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read()


def test_serve_metrics_page_and_404(registry: CollectorRegistry) -> None:
    app = make_app(registry, {"/healthz": lambda: ("200 OK", "text/plain", b"ok\n")})
    server = serve(app, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        status, headers, body = _get(base + "/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(body.decode()) for s in f.samples}
        key = ("logtaild_http_requests_total",
               (("env", "prod"), ("method", "GET"), ("route", "/"), ("status", "200")))
        assert samples[key] == 10
        assert samples["logtaild_build_info", (("version", "1.2.3"),)] == 1
        status, headers, body = _get(base + "/healthz")
        assert (status, headers["Content-Type"], headers["Content-Length"], body) == (200, "text/plain", "3", b"ok\n")
        assert headers["X-Content-Type-Options"] == "nosniff"
        status, headers, body = _get(base + "/nope")
        assert (status, body) == (404, b"not found\n")
        assert headers["Content-Type"] == "text/plain; charset=utf-8"
    finally:
        server.shutdown()
        server.server_close()


def test_listen_error_when_port_in_use() -> None:
    app = make_app(CollectorRegistry(auto_describe=False), {})
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as info:
            serve(app, "127.0.0.1", port)
    assert str(info.value) == f"cannot listen on 127.0.0.1:{port}: Address already in use"


@pytest.mark.parametrize(("host", "where"), [("", "0.0.0.0:10181"), ("::1", "[::1]:10181"),
                                             ("10.1.2.3", "10.1.2.3:10181")])
def test_listen_error_names_the_address(monkeypatch: pytest.MonkeyPatch, host: str, where: str) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")

    monkeypatch.setattr(server, "make_server", refuse)
    with pytest.raises(ListenError) as info:
        serve(make_app(CollectorRegistry(), {}), host, 10181)
    assert str(info.value) == f"cannot listen on {where}: Cannot assign requested address"
    assert "\n" not in str(info.value)

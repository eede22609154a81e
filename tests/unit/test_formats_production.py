"""Logs generated in production formats (nginx `main` with upstream times, Apache with %D and %v), counted
through make_parser, the Aggregator and the exporter, against counts the generator keeps on its own:
requests, bytes, latency and upstream histograms, labels from the log (vhost, version), their cap.
"""
from __future__ import annotations

import collections
import json
import random
from bisect import bisect_left
from dataclasses import dataclass, field

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from logtaild.config import FileConfig
from logtaild.count import slots
from logtaild.count.aggregate import Aggregator
from logtaild.count.routes import RouteLimiter
from logtaild.export.collector import build_registry
from logtaild.export.snapshot import FileSnapshot, Snapshot
from logtaild.run.parallel import RangeResult, merge
from logtaild.tail.filestream import StreamStats

BOUNDS_MS = [5.0, 50.0, 500.0]
T = "17/May/2015:10:05:03 +0000"

NGINX_MAIN = (
    "'$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent '\n"
    "'\"$http_referer\" \"$http_user_agent\" \"$http_x_forwarded_for\" '\n"
    "'rt=$request_time uct=\"$upstream_connect_time\" uht=\"$upstream_header_time\" "
    "urt=\"$upstream_response_time\" $host \"$sent_http_x_version\"'"
)
APACHE = '%h %l %u %t \\"%r\\" %>s %b \\"%{Referer}i\\" \\"%{User-Agent}i\\" %D %v \\"%{X-Version}o\\"'

ROUTES = ["/", "/api/orders", "/api/users/17", "/static/app.js", "/caf\\xC3\\xA9"]
ROUTE_OF = {"/api/users/17": "/api/users/:id", "/caf\\xC3\\xA9": "/café"}
HOSTS = ["shop.example", "api.example", "www.example"]
VERSIONS = ["1.4.2", "1.5.0"]
TIMES_S = [0.001, 0.012, 0.120, 0.9, 2.5]  # none on a bound: every bucket is unambiguous


def bucket(ms: float) -> int:
    return bisect_left(BOUNDS_MS, ms)


@dataclass
class Expected:
    """What the generator wrote, per (route, method, status, (vhost, version))."""

    requests: collections.Counter[tuple[str, str, str, tuple[tuple[str, str], ...]]] = field(
        default_factory=collections.Counter)
    bytes: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_MS) + 1))
    latency_sum_ms: float = 0.0
    upstream: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_MS) + 1))
    upstream_sum_ms: float = 0.0
    upstream_none: int = 0


def nginx_lines(count: int, seed: int = 7) -> tuple[list[bytes], Expected]:
    rng = random.Random(seed)
    expected = Expected()
    lines = []
    for _ in range(count):
        route, method = rng.choice(ROUTES), rng.choice(["GET", "POST", "HEAD"])
        status, size = rng.choice(["200", "304", "404", "502"]), rng.randrange(0, 5000)
        rt = rng.choice(TIMES_S)
        host, version = rng.choice(HOSTS), rng.choice(VERSIONS)
        tries = rng.choice([[], [rng.choice(TIMES_S)], [0.001, 0.012], [0.001, 0.012, 0.120]])
        redirect = rng.random() < 0.2 and tries
        if not tries:
            urt = uct = uht = "-"  # served without an upstream (a cache hit, a return)
            expected.upstream_none += 1
        else:
            urt = ", ".join(f"{t:.3f}" for t in tries) + (" : 0.120" if redirect else "")
            uct, uht = ", ".join("0.000" for _ in tries), ", ".join(f"{t:.3f}" for t in tries)
            total_ms = sum(t * 1000 for t in tries) + (120.0 if redirect else 0.0)
            expected.upstream[bucket(total_ms)] += 1
            expected.upstream_sum_ms += total_ms
        lines.append(
            f'10.0.0.{rng.randrange(256)} - - [{T}] "{method} {route}?q={rng.randrange(9)} HTTP/1.1" {status} '
            f'{size} "-" "Mozilla/5.0 (X11)" "203.0.113.9, 10.0.0.1" rt={rt:.3f} uct="{uct}" uht="{uht}" '
            f'urt="{urt}" {host} "{version}"'.encode())
        key = (ROUTE_OF.get(route, route), method, status, (("version", version), ("vhost", host)))
        expected.requests[key] += 1
        expected.bytes += size
        expected.latency[bucket(rt * 1000)] += 1
        expected.latency_sum_ms += rt * 1000
    return lines, expected


def apache_lines(count: int, seed: int = 11) -> tuple[list[bytes], Expected]:
    rng = random.Random(seed)
    expected = Expected()
    lines = []
    for _ in range(count):
        route, method = rng.choice(ROUTES), rng.choice(["GET", "PUT"])
        status = rng.choice(["200", "301", "500"])
        size = rng.choice([0, 10, 2048])
        us = int(rng.choice(TIMES_S) * 1_000_000)
        host, version = rng.choice(HOSTS), rng.choice(VERSIONS)
        logged_size = "-" if size == 0 else str(size)
        lines.append(f'192.0.2.{rng.randrange(256)} - frank [{T}] "{method} {route} HTTP/1.1" {status} '
                     f'{logged_size} "http://ref.example/" "curl/8.0 \\"quoted\\"" {us} {host} "{version}"'.encode())
        key = (ROUTE_OF.get(route, route), method, status, (("version", version), ("vhost", host)))
        expected.requests[key] += 1
        expected.bytes += size
        expected.latency[bucket(us / 1000)] += 1
        expected.latency_sum_ms += us / 1000
    return lines, expected


NGINX_CONFIG = FileConfig("/var/log/nginx/access.log", "nginx", log_format=NGINX_MAIN,
                          label_fields={"vhost": "$host", "version": "$sent_http_x_version"})
APACHE_CONFIG = FileConfig("/var/log/apache2/access.log", "apache", log_format=APACHE,
                           label_fields={"vhost": "%v", "version": "%{X-Version}o"})


def counted(config: FileConfig, lines: list[bytes], batch: int = 333) -> Aggregator:
    from logtaild.count.parsers import make_parser

    agg = Aggregator(RouteLimiter(100), BOUNDS_MS, make_parser(config))
    for start in range(0, len(lines), batch):
        agg.feed(lines[start:start + batch])
    return agg


def check(agg: Aggregator, expected: Expected, lines: int, upstream: bool) -> None:
    assert agg.lines == lines and sum(agg.malformed.values()) == 0
    got = collections.Counter({key: slots.count(slot) for key, slot in agg.slots.items()})
    assert got == expected.requests
    all_slots = list(agg.slots.values())
    assert sum(slots.byte_count(s) for s in all_slots) == expected.bytes
    latency_ms, buckets = slots.latency_totals(all_slots, len(BOUNDS_MS) + 1)
    assert buckets == expected.latency and latency_ms == pytest.approx(expected.latency_sum_ms)
    assert all(slots.has_upstream(s, BOUNDS_MS) == upstream for s in all_slots)
    if upstream:
        upstream_ms, up_buckets = slots.upstream_totals(all_slots, BOUNDS_MS)
        assert up_buckets == expected.upstream and upstream_ms == pytest.approx(expected.upstream_sum_ms)
        assert sum(up_buckets) + expected.upstream_none == lines  # "-" is no observation and not malformed


def test_nginx_main_with_upstream_times_counts_exactly() -> None:
    lines, expected = nginx_lines(3000)
    assert expected.upstream_none > 0
    check(counted(NGINX_CONFIG, lines), expected, 3000, upstream=True)


def test_apache_with_microseconds_and_vhost_counts_exactly() -> None:
    lines, expected = apache_lines(3000)
    check(counted(APACHE_CONFIG, lines), expected, 3000, upstream=False)


def test_a_worker_result_merges_with_the_upstream_part() -> None:
    lines, expected = nginx_lines(1000)
    first, second = counted(NGINX_CONFIG, lines[:400]), counted(NGINX_CONFIG, lines[400:])
    merge(second, RangeResult(first.slots, first.malformed, first.lines, 0))
    check(second, expected, 1000, upstream=True)


def test_the_state_file_keeps_the_upstream_part_and_old_files_load() -> None:
    lines, expected = nginx_lines(500)
    agg = counted(NGINX_CONFIG, lines)
    stored = json.loads(json.dumps(slots.to_json(agg.slots)))
    back = slots.from_json(stored, BOUNDS_MS, same_bounds=True, upstream=True)
    assert back == agg.slots
    # a state file written before the upstream part existed: the request part loads, upstream starts empty
    old = [[*entry[:4], entry[4][:slots.width(BOUNDS_MS)]] for entry in stored]
    restored = slots.from_json(old, BOUNDS_MS, same_bounds=True, upstream=True)
    for key, slot in restored.items():
        assert slots.count(slot) == slots.count(agg.slots[key])
        assert slots.bucket_counts(slot, 4) == slots.bucket_counts(agg.slots[key], 4)
        assert slots.upstream_bucket_counts(slot, BOUNDS_MS) == [0, 0, 0, 0]


def exposition(agg: Aggregator, path: str, label_fields: tuple[str, ...]) -> dict[str, list[Sample]]:
    snap = Snapshot([FileSnapshot(path, {"service": "shop"}, agg.snapshot(), [b / 1000 for b in BOUNDS_MS],
                                  agg.lines, dict(agg.malformed), StreamStats(), agg.limiter.distinct,
                                  label_fields=label_fields)], "test")
    from prometheus_client import generate_latest

    text = generate_latest(build_registry(lambda: snap)).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_the_upstream_histogram_is_exported_beside_the_request_histogram() -> None:
    lines, expected = nginx_lines(2000)
    families = exposition(counted(NGINX_CONFIG, lines), NGINX_CONFIG.path, ("version", "vhost"))
    up = families["logtaild_http_upstream_duration_seconds"]
    req = families["logtaild_http_request_duration_seconds"]
    les = {s.labels["le"] for s in up if s.name.endswith("_bucket")}
    assert les == {s.labels["le"] for s in req if s.name.endswith("_bucket")} == {"0.005", "0.05", "0.5", "+Inf"}
    by_le: collections.Counter[str] = collections.Counter()
    for sample in up:
        if sample.name.endswith("_bucket"):
            assert set(sample.labels) == {"route", "method", "vhost", "version", "service", "le"}
            by_le[sample.labels["le"]] += int(sample.value)
    cumulative = [sum(expected.upstream[:i + 1]) for i in range(4)]
    assert [by_le[le] for le in ("0.005", "0.05", "0.5", "+Inf")] == cumulative
    total = sum(s.value for s in up if s.name.endswith("_sum"))
    assert total == pytest.approx(expected.upstream_sum_ms / 1000)
    assert sum(s.value for s in families["logtaild_http_requests"]) == 2000
    overflow = {s.labels["label"]: s.value for s in families["logtaild_label_overflow"]}
    assert overflow == {"version": 0, "vhost": 0}


def host_lines(hosts: list[str]) -> list[bytes]:
    return [(f'10.0.0.1 - - [{T}] "GET / HTTP/1.1" 200 5 "-" "curl" "-" rt=0.001 uct="-" uht="-" urt="-" '
             f'{host} "1"').encode() for host in hosts]


CAPPED = FileConfig("x", "nginx", log_format=NGINX_MAIN, label_fields={"vhost": "$host"}, label_values_max=5)


def test_a_hostile_host_header_cannot_grow_the_series() -> None:
    agg = counted(CAPPED, host_lines([f"evil{i}.example" for i in range(1000)]))
    values = {dict(key[3])["vhost"] for key in agg.slots}
    assert len(values) == 6 and "__other__" in values
    families = exposition(agg, "x", ("vhost",))
    overflow = {s.labels["label"]: s.value for s in families["logtaild_label_overflow"]}
    assert overflow == {"vhost": 995}


def test_merged_counts_go_through_the_label_cap() -> None:
    """A catch-up worker's (or the state file's) label values are admitted by the file's own cap."""
    worker = counted(CAPPED, host_lines([f"a{i}" for i in range(5)]))
    agg = counted(CAPPED, host_lines([f"b{i}" for i in range(5)]))
    merge(agg, RangeResult(worker.slots, worker.malformed, worker.lines, 0))
    values = collections.Counter({dict(key[3])["vhost"]: slots.count(slot) for key, slot in agg.slots.items()})
    assert values == {"b0": 1, "b1": 1, "b2": 1, "b3": 1, "b4": 1, "__other__": 5}
    # seeded first (as cron does at start-up), the stored values keep their place under the cap
    seeded = counted(CAPPED, [])
    seeded.merge_slots(worker.slots)
    seeded.feed(host_lines(["a1", "new"]))
    assert {dict(key[3])["vhost"] for key in seeded.slots} == {"a0", "a1", "a2", "a3", "a4", "__other__"}


def test_apache_exports_no_upstream_histogram() -> None:
    lines, _expected = apache_lines(100)
    families = exposition(counted(APACHE_CONFIG, lines), APACHE_CONFIG.path, ("version", "vhost"))
    assert "logtaild_http_upstream_duration_seconds" not in families
    assert sum(s.value for s in families["logtaild_http_requests"]) == 100


def test_json_upstream_and_label_fields() -> None:
    """nginx's escape=json template as the json format: upstream_field and label_fields name keys."""
    config = FileConfig("x", "json", latency_unit="seconds", fields={"latency": "request_time"},
                        upstream_field="urt", label_fields={"vhost": "host", "region": "geo.region"})
    lines = [json.dumps({"request": "GET /a HTTP/1.1", "status": 200, "body_bytes_sent": 5, "request_time": 0.02,
                         "urt": urt, "host": "h.example", "geo": {"region": "eu"}}).encode()
             for urt in ("0.004, 0.012 : 0.001", "-", 0.3)]
    agg = counted(config, lines)
    [(key, slot)] = agg.slots.items()
    assert key == ("/a", "GET", "200", (("region", "eu"), ("vhost", "h.example")))
    assert slots.count(slot) == 3 and slots.upstream_bucket_counts(slot, BOUNDS_MS) == [0, 1, 1, 0]
    assert slots.upstream_sum_ms(slot, BOUNDS_MS) == pytest.approx(317.0)


def test_combined_label_fields_name_the_presets_directives() -> None:
    config = FileConfig("x", "combined", label_fields={"user": "%u"})
    agg = counted(config, [f'10.0.0.1 - {user} [{T}] "GET / HTTP/1.1" 200 5 "-" "curl"'.encode()
                           for user in ("alice", "bob", "-")])
    assert {dict(key[3])["user"] for key in agg.slots} == {"alice", "bob", "-"}

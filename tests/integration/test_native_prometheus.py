"""Prometheus 2.42 (Debian's) scraping logtaild with native histograms and with exemplar storage.

- With `--enable-feature=native-histograms` Prometheus asks for the protobuf format; logtaild serves the
  native buckets, and `histogram_quantile` over the native series agrees with the exact p50, p90 and p99
  of the latencies written within 5 %. The file counts at schema 4 (bounds 4.4 % apart; no bucket limit),
  so the bound holds for every estimate, wherever the rank falls in its bucket.
- With `--enable-feature=exemplar-storage` Prometheus scrapes OpenMetrics; the trace ids of a json log's
  `trace_id` field come back from /api/v1/query_exemplars, the latest of each bucket.
"""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.support.daemon import Daemon
from tests.support.stack import Prometheus, stop_all, wait_until
from tests.support.tools import require_tool

pytestmark = pytest.mark.integration

METRIC = "logtaild_http_request_duration_seconds"
LINES = 4000
BOUNDS_S = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]


NATIVE_RULES = Path(__file__).resolve().parents[2] / "deploy/prometheus/native/logtaild-native-recording.yml"


def _prometheus_config(tmp: Path, target: str) -> Path:
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(NATIVE_RULES)],
        "scrape_configs": [{"job_name": "logtaild", "static_configs": [{"targets": [target]}]}],
    }))
    return path


@contextmanager
def _stack(tmp: Path, config: dict, feature: str) -> Iterator[tuple[Daemon, Prometheus]]:
    binary = require_tool("prometheus", "prometheus")
    config_path = tmp / "logtaild.yaml"
    config_path.write_text(yaml.safe_dump(config))
    stops: list = []
    try:
        daemon = Daemon("--config", str(config_path))
        stops.append(daemon.kill)
        daemon.wait_ready()
        prometheus = Prometheus(binary, tmp, _prometheus_config(tmp, f"127.0.0.1:{daemon.port}"),
                                args=(f"--enable-feature={feature}",))
        stops.append(prometheus.stop)
        prometheus.wait_ready()
        yield daemon, prometheus
    finally:
        stop_all(stops)


def _exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def test_histogram_quantile_on_the_native_series_matches_the_exact_quantiles(tmp_path: Path) -> None:
    rng = random.Random(17)
    latencies_ms = [round(rng.lognormvariate(math.log(40), 0.9), 3) + 0.001 for _ in range(LINES)]
    log = tmp_path / "access.log"
    log.write_text("".join(f"10.0.0.1\tGET /api HTTP/1.1\t200\t512\t{ms}\n" for ms in latencies_ms))
    config = {"from_start": True, "files": [{"path": str(log), "format": "tsv"}],
              "native_histograms": {"schema": 4, "max_buckets": 0}}
    with _stack(tmp_path, config, "native-histograms") as (_daemon, prometheus):
        def counted() -> bool:
            result = prometheus.query(f'histogram_count(sum by (route) ({METRIC}{{route="/api"}}))')
            return bool(result) and float(result[0]["value"][1]) == LINES
        wait_until(counted, 30, f"Prometheus to hold a native histogram of {LINES} requests")
        target = prometheus.targets()[0]
        assert target["health"] == "up", target
        for q in (0.5, 0.9, 0.99):
            (row,) = prometheus.query(f'histogram_quantile({q}, sum by (route) ({METRIC}{{route="/api"}}))')
            estimate, exact = float(row["value"][1]), _exact(latencies_ms, q) / 1000.0
            assert abs(estimate / exact - 1) < 0.05, (q, estimate, exact)
        (total,) = prometheus.query(f'histogram_sum(sum({METRIC}{{route="/api"}}))')
        assert float(total["value"][1]) == pytest.approx(sum(latencies_ms) / 1000.0, rel=1e-9)


def test_the_native_recording_rules_give_the_quantiles_of_the_window(tmp_path: Path) -> None:
    """deploy/prometheus/native's rules over rate(...[5m]): the lines written after the series appeared."""
    rng = random.Random(23)
    log = tmp_path / "access.log"
    log.write_text("")
    config = {"files": [{"path": str(log), "format": "tsv"}], "native_histograms": {"schema": 4, "max_buckets": 0}}
    early = [round(rng.lognormvariate(math.log(800), 0.3), 3) + 0.001 for _ in range(500)]
    window = [round(rng.lognormvariate(math.log(30), 0.7), 3) + 0.001 for _ in range(3000)]
    recorded = "instance_route:logtaild_http_request_duration_seconds:native_quantile_rate5m"
    with _stack(tmp_path, config, "native-histograms") as (_daemon, prometheus):
        def count_is(n: int) -> bool:
            result = prometheus.query(f'histogram_count({METRIC}{{route="/api"}})')
            return bool(result) and float(result[0]["value"][1]) == n
        for batch, total in ((early, len(early)), (window, len(early) + len(window))):
            with log.open("a") as out:
                out.write("".join(f"10.0.0.1\tGET /api HTTP/1.1\t200\t512\t{ms}\n" for ms in batch))
            wait_until(lambda n=total: count_is(n), 30, f"Prometheus to hold {total} requests")

        def quantiles() -> dict[str, float] | None:
            got = {row["metric"]["quantile"]: float(row["value"][1])
                   for row in prometheus.query(f'{recorded}{{route="/api"}}')}
            return got if len(got) == 3 and all(math.isfinite(v) for v in got.values()) else None
        def settled() -> dict[str, float] | None:
            # the rules run every second: once an evaluation has seen the last scrape, the window is all in
            got = quantiles()
            return got if got and abs(got["0.5"] / (_exact(window, 0.5) / 1000) - 1) < 0.05 else None
        got = wait_until(settled, 30, "the recorded quantiles to cover the second batch")
        for q in ("0.5", "0.95", "0.99"):
            exact = _exact(window, float(q)) / 1000.0
            assert abs(got[q] / exact - 1) < 0.05, (q, got[q], exact)
        (mean,) = prometheus.query(
            'instance_route:logtaild_http_request_duration_seconds:native_mean5m{route="/api"}')
        assert float(mean["value"][1]) == pytest.approx(sum(window) / len(window) / 1000.0, rel=0.01)


def test_exemplars_come_back_from_query_exemplars(tmp_path: Path) -> None:
    log = tmp_path / "access.jsonl"
    log.write_text("")
    config = {"files": [{"path": str(log), "format": "json", "exemplar_field": "trace_id"}]}
    rng = random.Random(3)
    written: dict[int, str] = {}  # classic bucket index -> the latest trace id written into it
    lines = []
    for i in range(200):
        ms = rng.choice([3.0, 40.0, 300.0, 4000.0])
        trace = f"{rng.getrandbits(128):032x}"
        lines.append(json.dumps({"path": "/pay", "status": 200, "latency_ms": ms, "trace_id": trace}) + "\n")
        written[next(i for i, bound in enumerate(BOUNDS_S) if ms / 1000.0 <= bound)] = trace
    expected = {f"{BOUNDS_S[index]}": trace for index, trace in written.items()}
    with _stack(tmp_path, config, "exemplar-storage") as (daemon, prometheus):
        with log.open("a") as out:
            out.write("".join(lines))
        wait_until(lambda: daemon.value("logtaild_http_requests_total", route="/pay") == 200, 20,
                   "logtaild to count the lines")
        start = time.time() - 60

        def exemplars() -> dict[str, set[str]]:
            data = prometheus.api("query_exemplars", {"query": f'{METRIC}_bucket{{route="/pay"}}',
                                                      "start": f"{start:.3f}", "end": f"{time.time() + 5:.3f}"})
            return {series["seriesLabels"]["le"]: {e["labels"]["trace_id"] for e in series["exemplars"]}
                    for series in data}
        def stored() -> dict[str, set[str]] | None:
            got = exemplars()
            return got if all(trace in got.get(le, set()) for le, trace in expected.items()) else None
        got = wait_until(stored, 30, "Prometheus to store logtaild's exemplars")
        assert set(got) == set(expected)
        assert all(len(traces) == 1 for traces in got.values()), got  # one per bucket, the latest

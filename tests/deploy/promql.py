"""Helpers shared by the deploy/ tests: the metric contract and metric names used by PromQL expressions."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
RECORDING_RULES = RULES_DIR / "logtaild-recording.yml"
ALERTING_RULES = RULES_DIR / "logtaild-alerts.yml"
RUNBOOK_BASE = "https://github.com/logtaild/logtaild/blob/main/docs/runbook.md#runbook-"

# The metric contract between logtaild and deploy/ (names only). Histograms list their three series.
CONTRACT = {
    "logtaild_http_requests_total",
    "logtaild_http_response_bytes_total",
    "logtaild_http_request_duration_seconds_bucket",
    "logtaild_http_request_duration_seconds_sum",
    "logtaild_http_request_duration_seconds_count",
    "logtaild_http_requests_slow_total",
    "logtaild_slo_latency_threshold_seconds",
    "logtaild_slo_latency_objective",
    "logtaild_slo_availability_objective",
    "logtaild_lines_read_total",
    "logtaild_lines_malformed_total",
    "logtaild_lines_cut_total",
    "logtaild_bytes_read_total",
    "logtaild_file_size_bytes",
    "logtaild_file_offset_bytes",
    "logtaild_file_lag_bytes",
    "logtaild_file_reopens_total",
    "logtaild_rotations_total",
    "logtaild_drain_timeouts_total",
    "logtaild_read_errors_total",
    "logtaild_last_read_timestamp_seconds",
    "logtaild_route_overflow_total",
    "logtaild_routes",
    "logtaild_checkpoint_writes_total",
    "logtaild_checkpoint_failures_total",
    "logtaild_checkpoint_last_write_timestamp_seconds",
    "logtaild_checkpoint_fallbacks_total",
    "logtaild_config_reloads_total",
    "logtaild_build_info",
    "logtaild_loop_last_tick_timestamp_seconds",
    # prometheus-client's process collector
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
}
# Series Prometheus itself adds to every scrape.
SCRAPE_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "atan2", "inf", "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_IDENT = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (functions, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    names = set()
    for name, call in _IDENT.findall(text):
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def load_rules(path: Path) -> list[dict]:
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in load_rules(RECORDING_RULES)}


def alert_rules() -> list[dict]:
    return load_rules(ALERTING_RULES)

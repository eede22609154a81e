"""deploy/grafana: provisioning files and dashboards.

Grafana itself is not installed here; what can be checked without it is: the JSON is valid and current
(schemaVersion >= 39), every panel, query, variable and annotation names the provisioned datasource by uid,
panel ids are unique and panels do not overlap, every PromQL expression parses (promtool check rules on a
file of recording rules made from them, variables substituted), every series they read is in the metric
contract or a recording rule, and the committed JSON is what build_dashboards.py produces.
"""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.promql import CONTRACT, ROOT, SCRAPE_SERIES, alert_rules, metric_names, recorded_names
from tests.support.tools import require_tool

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DS_UID = "logtaild-prometheus"
DS = {"type": "prometheus", "uid": DS_UID}
# Values Grafana puts in place of its variables before a query reaches Prometheus.
SUBSTITUTIONS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h",
                 "$job": ".*", "$instance": ".*", "$route": ".*", "$version": ".*"}
# Series Prometheus generates itself, beyond the scrape series.
PROMETHEUS_SERIES = {"ALERTS"}
# The variables of each dashboard: job, instance and route everywhere; the overview compares build versions.
VARIABLES = {"logtaild-health.json": ["job", "instance", "route"],
             "logtaild-overview.json": ["job", "instance", "route", "version"],
             "logtaild-slo.json": ["job", "instance", "route"]}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def dashboards() -> list[tuple[str, dict]]:
    return [(p.name, load(p)) for p in DASHBOARD_FILES]


def is_row(panel: dict) -> bool:
    return panel["type"] == "row"


def queries(dash: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target, variable selector and annotation of a dashboard."""
    found = []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            found.append((f'panel {panel["id"]} "{panel["title"]}" {t["refId"]}', t["expr"]))
    for var in dash["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
        assert m, f'variable {var["name"]}: {var["query"]["query"]}'
        found.append((f'variable {var["name"]}', m.group(1)))
    for ann in dash["annotations"]["list"]:
        found.append((f'annotation {ann["name"]}', ann["expr"]))
    return found


def substitute(expr: str) -> str:
    for var in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(var, SUBSTITUTIONS[var])
    return expr


def test_three_dashboards():
    names = [name for name, _ in dashboards()]
    assert names == ["logtaild-health.json", "logtaild-overview.json", "logtaild-slo.json"]
    uids = [d["uid"] for _, d in dashboards()]
    assert len(set(uids)) == 3


def test_committed_json_is_what_the_builder_produces():
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert sorted(rendered) == [p.name for p in DASHBOARD_FILES]
    for name, text in rendered.items():
        assert (GRAFANA / "dashboards" / name).read_text() == text, \
            f"{name} is stale: run python3 deploy/grafana/build_dashboards.py"


def test_datasource_provisioning():
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "logtaild.yml").read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["uid"] == DS_UID and ds["type"] == "prometheus"
    assert ds["url"] == "http://localhost:9090" and ds["access"] == "proxy"


def test_dashboard_provider():
    doc = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "logtaild.yml").read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert Path(provider["options"]["path"]).is_absolute()


@pytest.mark.parametrize("name, dash", dashboards(), ids=[n for n, _ in dashboards()])
def test_dashboard_structure(name, dash):
    assert dash["schemaVersion"] >= 39
    assert dash["uid"] and dash["title"].startswith("logtaild / ")
    assert "logtaild" in dash["tags"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells = set()
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        mine = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & mine, f'panel {panel["id"]} overlaps another'
        cells |= mine
        if is_row(panel):
            # A row header, not collapsed (its panels follow it in the list, where every check sees them).
            assert panel["title"] and pos["w"] == 24 and pos["h"] == 1 and pos["x"] == 0
            assert panel["collapsed"] is False and panel["panels"] == [] and panel["targets"] == []
            continue
        assert panel["title"] and panel.get("description"), f'panel {panel["id"]} needs a title and a description'
        assert panel["targets"], f'panel {panel["id"]} has no query'
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))


@pytest.mark.parametrize("name, dash", dashboards(), ids=[n for n, _ in dashboards()])
def test_everything_uses_the_provisioned_datasource_by_uid(name, dash):
    for panel in dash["panels"]:
        if is_row(panel):
            assert "datasource" not in panel, f'row {panel["id"]}'
            continue
        assert panel["datasource"] == DS, f'panel {panel["id"]}'
        for t in panel["targets"]:
            assert t["datasource"] == DS, f'panel {panel["id"]} target {t["refId"]}'
    for var in dash["templating"]["list"]:
        assert var["datasource"] == DS, f'variable {var["name"]}'
    for ann in dash["annotations"]["list"]:
        assert ann["datasource"] == DS, f'annotation {ann["name"]}'
    # No datasource anywhere else, by name or by another uid.
    text = json.dumps(dash)
    assert set(re.findall(r'"uid": "([^"]+)"', text)) == {DS_UID, dash["uid"]}


@pytest.mark.parametrize("name, dash", dashboards(), ids=[n for n, _ in dashboards()])
def test_variables_job_instance_route(name, dash):
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert list(variables) == VARIABLES[name]
    assert all(v["includeAll"] and v["multi"] and v["allValue"] == ".*" for v in variables.values())
    exprs = [expr for _, expr in queries(dash)]
    for var in variables:
        assert any(f"${var}" in e for e in exprs), f"${var} is never used"
    for where, expr in queries(dash):
        used = set(re.findall(r"\$(\w+)", expr))
        assert used <= set(variables) | {"__rate_interval", "__interval", "__range"}, (where, used)


@pytest.mark.parametrize("name, dash", dashboards(), ids=[n for n, _ in dashboards()])
def test_series_exist_in_the_contract_or_the_recording_rules(name, dash):
    known = CONTRACT | SCRAPE_SERIES | PROMETHEUS_SERIES | recorded_names()
    for where, expr in queries(dash):
        names = metric_names(substitute(expr))
        assert names, f"{where}: selects no series"
        assert names <= known, f"{where}: unknown series {names - known}"


@pytest.mark.parametrize("name, dash", dashboards(), ids=[n for n, _ in dashboards()])
def test_request_panels_read_recording_rules(name, dash):
    """Request metrics come from the recording rules (fast on a fleet), never from the raw counters."""
    for where, expr in queries(dash):
        raw = {n for n in metric_names(substitute(expr)) if n.startswith("logtaild_http_")}
        assert not raw, f"{where}: raw request metrics {raw}"


def test_every_expression_parses(tmp_path):
    promtool = require_tool("promtool", "prometheus")
    rules = []
    for name, dash in dashboards():
        for i, (where, expr) in enumerate(queries(dash)):
            rules.append({"record": f"grafana:{dash['uid'].replace('-', '_')}:q{i}", "expr": substitute(expr),
                          "labels": {"where": f"{name} {where}"}})
    assert all("$" not in r["expr"] for r in rules)
    path = tmp_path / "grafana-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}, sort_keys=False))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def panel_exprs(dash: dict, panel_type: str | None = None) -> list[str]:
    return [t["expr"] for p in dash["panels"] if panel_type in (None, p["type"]) for t in p["targets"]]


def test_service_overview_content():
    dash = load(GRAFANA / "dashboards" / "logtaild-overview.json")
    exprs = "\n".join(panel_exprs(dash))
    for needle in ("instance_route_status:logtaild_http_requests:rate5m",        # QPS by route and status
                   "logtaild_http_errors:rate5m",                                # error ratio
                   "logtaild_http_requests_slow:rate5m",                         # slow ratio
                   "histogram_quantile(0.5,", "histogram_quantile(0.95,", "histogram_quantile(0.99,",
                   "logtaild_http_response_bytes:rate5m",                        # bytes/s
                   "topk(10,"):                                                  # top routes
        assert needle in exprs, needle
    (heat,) = [p for p in dash["panels"] if p["title"] == "Latency heatmap"]
    assert heat["type"] == "heatmap" and heat["targets"][0]["format"] == "heatmap"
    assert "sum by (le)" in heat["targets"][0]["expr"] and "_bucket:" in heat["targets"][0]["expr"]


def test_service_overview_per_version_row():
    """The row "Per version": a status-code heatmap repeated per version, the ratios LogtaildVersionErrorRatioHigh
    compares with both of its 1.25x lines, and the traffic its guard needs."""
    dash = load(GRAFANA / "dashboards" / "logtaild-overview.json")
    panels = dash["panels"]
    (start,) = [i for i, p in enumerate(panels) if is_row(p) and p["title"] == "Per version"]
    mine = {p["title"]: p for p in panels[start + 1:]}
    assert not any(is_row(p) for p in mine.values()), "the version row is the last one"
    for p in mine.values():
        for t in p["targets"]:
            assert 'version=~"$version"' in t["expr"] and "$route" not in t["expr"], (p["title"], t["expr"])
    heat = mine["Status codes of $version"]
    assert heat["type"] == "heatmap" and heat["repeat"] == "version"
    (t,) = heat["targets"]
    assert t["format"] == "time_series" and t["legendFormat"] == "{{status}}"
    assert t["expr"].startswith("sum by (status) (instance_version_status:logtaild_http_requests:rate1m{")
    assert heat["options"]["rowsFrame"]["layout"] == "unknown" and heat["options"]["calculate"] is False
    (alert,) = [r for r in alert_rules() if r["alert"] == "LogtaildVersionErrorRatioHigh"]
    five = [t["expr"] for t in mine["5xx ratio by version"]["targets"]]
    assert five[0].startswith("job_version_class:logtaild_http_requests:ratio_avg5m_rate1m{")
    assert five[1].startswith("1.25 * job_version_class:logtaild_http_requests:ratio_avg1h_rate1m{")
    assert five[1].endswith("offset 10m")
    assert five[2].startswith("1.25 * job_version_class:logtaild_http_requests_other_versions:ratio_avg5m_rate1m{")
    four = [t["expr"] for t in mine["4xx ratio by version"]["targets"]]
    assert all('class="4xx"' in e for e in four) and len(four) == 2
    # The panels draw what the alert compares: the same series, the same factor, the same offset.
    for expr in five + four:
        for name in metric_names(substitute(expr)):
            assert name in alert["expr"], name
    assert "> 1.25" in alert["expr"] and "ratio_avg1h_rate1m{class=\"5xx\"} offset 10m" in alert["expr"]
    traffic = mine["Requests/s by version"]
    assert traffic["targets"][0]["expr"].startswith("job_version:logtaild_http_requests:avg5m_rate1m{")
    assert [s["value"] for s in traffic["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [None, 0.2]
    assert "* 300 >= 60" in alert["expr"]


def test_slo_status_content():
    dash = load(GRAFANA / "dashboards" / "logtaild-slo.json")
    (status,) = [p for p in dash["panels"] if p["title"] == "SLO status per route"]
    assert status["type"] == "stat"
    steps = status["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["color"] for s in steps] == ["green", "yellow", "red"]
    assert "{{route}}" == status["targets"][0]["legendFormat"]
    exprs = "\n".join(panel_exprs(dash))
    assert "[30d]" in exprs and "logtaild_slo_availability_objective" in exprs
    assert "logtaild_slo_latency_objective" in exprs
    assert "job_route:logtaild_slo_burn_rate:ratio_rate1h" in exprs
    assert "job_route:logtaild_slo_burn_rate:ratio_rate6h" in exprs


def test_health_content():
    dash = load(GRAFANA / "dashboards" / "logtaild-health.json")
    names = set().union(*(metric_names(substitute(e)) for e in panel_exprs(dash)))
    for metric in ("instance_file:logtaild_lines_read:rate5m", "logtaild_file_lag_bytes",
                   "instance_file:logtaild_lines_malformed:ratio_rate5m", "logtaild_rotations_total",
                   "logtaild_checkpoint_last_write_timestamp_seconds", "scrape_duration_seconds",
                   "process_cpu_seconds_total", "process_resident_memory_bytes"):
        assert metric in names, metric


# --- every query returns data ---------------------------------------------------------------------------
# A promtool unit test feeds one logtaild instance exporting every metric of the contract for 70 minutes,
# records every dashboard query with the real recording rules, and checks with absent() that each one has
# a result. The alert annotation (ALERTS) is left out: it is empty while nothing fires.

_L = 'job="logtaild",instance="localhost:10181"'
_F = f'{_L},file="/var/log/nginx/access.log"'
_R = f'{_L},route="/",method="GET"'
_V = f'{_R},version="1.0.0"'
SYNTHETIC_SERIES = {
    f'logtaild_http_requests_total{{{_V},status="200"}}': "0+590x70",
    f'logtaild_http_requests_total{{{_V},status="503"}}': "0+10x70",
    f'logtaild_http_requests_total{{{_V},status="404"}}': "0+30x70",
    f'logtaild_http_response_bytes_total{{{_V},status="200"}}': "0+61440x70",
    f'logtaild_http_request_duration_seconds_bucket{{{_R},le="0.1"}}': "0+300x70",
    f'logtaild_http_request_duration_seconds_bucket{{{_R},le="0.5"}}': "0+570x70",
    f'logtaild_http_request_duration_seconds_bucket{{{_R},le="+Inf"}}': "0+600x70",
    f'logtaild_http_request_duration_seconds_sum{{{_R}}}': "0+90x70",
    f'logtaild_http_request_duration_seconds_count{{{_R}}}': "0+600x70",
    f'logtaild_http_requests_slow_total{{{_R}}}': "0+30x70",
    f'logtaild_slo_latency_threshold_seconds{{{_L},route="/",team="web"}}': "0.5x70",
    f'logtaild_slo_latency_objective{{{_L},route="/",team="web"}}': "0.99x70",
    f'logtaild_slo_availability_objective{{{_L},route="/",team="web"}}': "0.999x70",
    f"logtaild_lines_read_total{{{_F}}}": "0+601x70",
    f'logtaild_lines_malformed_total{{{_F},reason="fields"}}': "0+1x70",
    f"logtaild_lines_cut_total{{{_F}}}": "0x70",
    f"logtaild_bytes_read_total{{{_F}}}": "0+60100x70",
    f"logtaild_file_size_bytes{{{_F}}}": "0+60100x70",
    f"logtaild_file_offset_bytes{{{_F}}}": "0+60100x70",
    f"logtaild_file_lag_bytes{{{_F}}}": "0x70",
    f"logtaild_file_reopens_total{{{_F}}}": "0x70",
    f'logtaild_rotations_total{{{_F},kind="rename"}}': "0x70",
    f"logtaild_drain_timeouts_total{{{_F}}}": "0x70",
    f"logtaild_read_errors_total{{{_F}}}": "0x70",
    f"logtaild_last_read_timestamp_seconds{{{_F}}}": "0+60x70",
    f"logtaild_route_overflow_total{{{_F}}}": "0x70",
    f"logtaild_routes{{{_F}}}": "1x70",
    f"logtaild_checkpoint_writes_total{{{_L}}}": "0+60x70",
    f"logtaild_checkpoint_failures_total{{{_L}}}": "0x70",
    f"logtaild_checkpoint_fallbacks_total{{{_L}}}": "0x70",
    f"logtaild_checkpoint_last_write_timestamp_seconds{{{_L}}}": "0+60x70",
    f'logtaild_config_reloads_total{{{_L},result="success"}}': "0x70",
    f'logtaild_build_info{{{_L},version="0.1.0"}}': "1x70",
    f"logtaild_loop_last_tick_timestamp_seconds{{{_L}}}": "0+60x70",
    f"process_cpu_seconds_total{{{_L}}}": "0+3x70",
    f"process_resident_memory_bytes{{{_L}}}": "50000000x70",
    f"up{{{_L}}}": "1x70",
    f"scrape_duration_seconds{{{_L}}}": "0.01x70",
}


def test_every_query_returns_data(tmp_path):
    promtool = require_tool("promtool", "prometheus")
    records, alerts, cases = [], [], []
    for name, dash in dashboards():
        for where, expr in queries(dash):
            if "ALERTS" in metric_names(expr):
                continue
            i = len(records)
            # $__rate_interval is at least 4 scrape intervals in Grafana: 4m with these 1m samples.
            expr = substitute(expr.replace("$__rate_interval", "4m"))
            records.append({"record": f"grafana_query_{i}", "expr": expr})
            alerts.append({"alert": f"NoData{i}", "expr": f"absent(grafana_query_{i})",
                           "annotations": {"where": f"{name} {where}"}})
            cases.append({"alertname": f"NoData{i}", "eval_time": "65m", "exp_alerts": []})
    # Control: the same construction does fire for a query without data.
    alerts.append({"alert": "NoDataControl", "expr": "absent(grafana_query_none)"})
    cases.append({"alertname": "NoDataControl", "eval_time": "65m", "exp_alerts": [{"exp_labels": {}}]})
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [
        {"name": "grafana-queries", "rules": records}, {"name": "grafana-nodata", "rules": alerts}]}))
    test = {
        "rule_files": [str(ROOT / "deploy/prometheus/rules/logtaild-recording.yml"), "queries.yml"],
        "evaluation_interval": "1m",
        "group_eval_order": ["logtaild-sli", "logtaild-self", "grafana-queries", "grafana-nodata"],
        "tests": [{"interval": "1m",
                   "input_series": [{"series": s, "values": v} for s, v in SYNTHETIC_SERIES.items()],
                   "alert_rule_test": cases}],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    assert set(m for s in SYNTHETIC_SERIES for m in [s.split("{")[0]]) >= CONTRACT - {
        "process_virtual_memory_bytes", "process_start_time_seconds", "process_open_fds", "process_max_fds"}
    result = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, "\n".join(
        line for line in (result.stdout + result.stderr).splitlines() if "alertname" in line or "where" in line
    ) or result.stdout + result.stderr

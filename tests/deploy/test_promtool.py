"""deploy/prometheus: promtool validates the config and the rules, and runs the rule unit tests.

The promtool unit tests (tests/deploy/*_test.yml) prove every alert fires when it should (after its `for:`,
with exact labels and annotations) and stays quiet when it should; the checks below prove the test files
cover every alert that way, and that alerts follow the conventions Alertmanager and the runbook rely on.
"""
from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.deploy.promql import (
    ALERTING_RULES,
    CONTRACT,
    RECORDING_RULES,
    ROOT,
    RUNBOOK_BASE,
    SCRAPE_SERIES,
    alert_rules,
    load_rules,
    metric_names,
    recorded_names,
)
from tests.support.tools import require_tool

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
TESTS_DIR = Path(__file__).resolve().parent
UNIT_TEST_FILES = sorted(TESTS_DIR.glob("*_test.yml"))
SEVERITIES = {"critical", "warning"}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", "prometheus")


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_check_config(promtool):
    result = run(promtool, "check", "config", "deploy/prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    # Both rule files are loaded by the config (promtool checks them as part of it).
    assert "SUCCESS: 2 rule files found" in result.stdout


def test_config_scrapes_logtaild_and_alerts_to_alertmanager():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "logtaild"]
    assert job["static_configs"][0]["targets"] == ["localhost:10181"]
    assert job["file_sd_configs"][0]["files"] == ["targets/*.yml"]
    assert sorted(config["rule_files"]) == ["rules/logtaild-alerts.yml", "rules/logtaild-recording.yml"]
    am = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["localhost:9093"]


def test_file_sd_example_is_valid(promtool, tmp_path):
    """The commented fleet example in targets/logtaild.yml is valid file_sd once uncommented."""
    copy = tmp_path / "prometheus"
    copy.mkdir()
    (copy / "prometheus.yml").write_text((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (copy / "rules").symlink_to(PROMETHEUS_DIR / "rules")
    (copy / "targets").mkdir()
    lines = (PROMETHEUS_DIR / "targets" / "logtaild.yml").read_text().splitlines()
    example = [line[2:] for line in lines if line.startswith("# - targets:") or line.startswith("#   ")]
    assert example, "no commented example in targets/logtaild.yml"
    (copy / "targets" / "fleet.yml").write_text("\n".join(example) + "\n")
    groups = yaml.safe_load((copy / "targets" / "fleet.yml").read_text())
    assert len(groups) >= 2 and all(g["targets"] and g["labels"] for g in groups)
    result = run(promtool, "check", "config", str(copy / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_rules(promtool):
    result = run(promtool, "check", "rules", str(RECORDING_RULES), str(ALERTING_RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def unit_test_results(promtool) -> dict[str, subprocess.CompletedProcess]:
    """Run every promtool unit-test file at once (each takes a few seconds; together they take the longest)."""
    with ThreadPoolExecutor(max_workers=len(UNIT_TEST_FILES)) as pool:
        futures = {f.name: pool.submit(run, promtool, "test", "rules", f.name, cwd=TESTS_DIR)
                   for f in UNIT_TEST_FILES}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("test_file", [f.name for f in UNIT_TEST_FILES])
def test_promtool_unit_tests(unit_test_results, test_file):
    result = unit_test_results[test_file]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _alert_tests() -> list[dict]:
    cases = []
    for path in UNIT_TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        for test in doc["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def test_every_alert_fires_and_stays_quiet_in_a_unit_test():
    cases = _alert_tests()
    for alertname, severities in _alert_severities().items():
        mine = [c for c in cases if c["alertname"] == alertname]
        fired = {a["exp_labels"]["severity"] for c in mine for a in c.get("exp_alerts") or []}
        assert fired == severities, f"{alertname}: severities proven to fire {fired}, rules have {severities}"
        assert any(not c.get("exp_alerts") for c in mine), f"{alertname}: no case where it stays quiet"
        for case in mine:
            for alert in case.get("exp_alerts") or []:
                assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}


def test_unit_tests_only_name_existing_alerts():
    names = set(_alert_severities())
    assert {c["alertname"] for c in _alert_tests()} <= names


def _alert_severities() -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for rule in alert_rules():
        result.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    return result


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: f'{r["alert"]}-{r["labels"]["severity"]}')
def test_alert_conventions(rule):
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert re.search(r"\{\{ \$value \| humanize\w* \}\}", annotations["description"]), \
        "description must carry the humanized value"
    assert annotations["runbook_url"] == RUNBOOK_BASE + rule["alert"].lower()
    assert rule["alert"].startswith("Logtaild")


def test_two_severities_of_one_alert_share_the_annotations_but_not_the_threshold():
    by_name: dict[str, list[dict]] = {}
    for rule in alert_rules():
        by_name.setdefault(rule["alert"], []).append(rule)
    for name, rules in by_name.items():
        severities = [r["labels"]["severity"] for r in rules]
        assert len(severities) == len(set(severities)), f"{name}: duplicate severity"
        if len(rules) == 2:
            assert rules[0]["expr"] != rules[1]["expr"]
            assert rules[0]["annotations"]["runbook_url"] == rules[1]["annotations"]["runbook_url"]


def test_rules_only_use_contract_metrics_and_recorded_series():
    known = CONTRACT | SCRAPE_SERIES | recorded_names()
    for rule in load_rules(RECORDING_RULES) + alert_rules():
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f'{rule.get("record") or rule.get("alert")}: unknown series {unknown}'


def test_recording_rule_names_follow_level_metric_operations():
    for rule in load_rules(RECORDING_RULES):
        level, metric, operations = rule["record"].split(":")
        assert level in {"instance_route", "instance_route_status", "job_route", "job_route_status",
                         "instance_file", "job", "instance_version_status", "job_version_status",
                         "job_version", "job_version_class"}, rule["record"]
        assert metric.startswith("logtaild_") and not metric.endswith("_total"), rule["record"]
        assert operations, rule["record"]


def test_recording_rules_cover_every_burn_rate_window():
    names = recorded_names()
    for level in ("instance_route", "job_route"):
        for window in ("5m", "30m", "1h", "6h"):
            for metric in ("logtaild_http_requests:rate", "logtaild_http_errors:ratio_rate",
                           "logtaild_http_requests_slow:ratio_rate",
                           "logtaild_http_request_duration_seconds:histogram_quantile_rate",
                           "logtaild_http_request_duration_seconds:mean"):
                assert f"{level}:{metric}{window}" in names
    for window in ("5m", "30m", "1h", "6h"):
        assert f"job_route:logtaild_slo_burn_rate:ratio_rate{window}" in names


def test_runbook_has_one_section_per_alert():
    """docs/runbook.md: `## <AlertName>` sections, each with the anchor runbook_url points to."""
    text = (ROOT / "docs" / "runbook.md").read_text()
    text = text[text.index("\n## ") + 1:]
    headings = re.findall(r'^## <a id="runbook-([a-z0-9]+)"></a>(\w+)$', text, re.M)
    assert len(headings) == len(re.findall(r"^## ", text, re.M)), "every ## heading carries its anchor"
    for anchor, name in headings:
        assert anchor == name.lower()
    assert [name for _, name in headings] == list(dict.fromkeys(r["alert"] for r in alert_rules())), \
        "one section per alert, in the order of the rules file"
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        assert "amtool silence add" in section, section.splitlines()[0]


NATIVE_RULES = PROMETHEUS_DIR / "native" / "logtaild-native-recording.yml"


def test_native_recording_rules_check(promtool):
    result = run(promtool, "check", "rules", str(NATIVE_RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


def test_native_recording_rules_read_the_native_series_and_never_clash_with_the_classic_ones():
    native = load_rules(NATIVE_RULES)
    classic = recorded_names()
    for rule in native:
        level, metric, _operation = rule["record"].split(":")
        assert level in ("instance_route", "job_route") and metric == "logtaild_http_request_duration_seconds"
        assert rule["record"] not in classic, rule["record"]
        # the native series has no `le` and no _bucket/_count/_sum samples
        assert not re.search(r"duration_seconds_(bucket|count|sum)\b|\ble\b", rule["expr"]), rule["expr"]

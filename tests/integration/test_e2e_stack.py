"""End to end: two logtaild instances (a fleet of two) fed by two simulators, scraped by the real Prometheus
with the rules of deploy/prometheus, alerting through the real Alertmanager with deploy/alertmanager, and
every query of the Grafana dashboards run against it.

What the test copies change (tests/support/stack.py): 1s scrape and evaluation interval; the two logtaild
as targets (one static, one through file_sd, as the shipped config allows both); every `for:` of the alert
rules divided by 60 (minutes become seconds: 5m -> 5s), done mechanically on the YAML; the Alertmanager
receivers' URL pointed at a sink in the test. Expressions and range windows ([5m], [1h], [30d]...) are the
shipped ones: over a minute of data a rate is low (increase / window) but ratios, quantiles and burn rates
are what they will be in production, and the traffic guards count real requests.

Proven here:
- without an incident nothing is pending or firing, though the traffic guards are met;
- every dashboard query (panels, variables, the alert annotation; variables as Grafana sends them with
  "All" selected) and every recording rule evaluates without error through /api/v1/query and returns data,
  except the few listed below that need an hour of history; the rule manager reports every rule healthy;
- the fleet-wide (job_route) recording rules equal the sum of the per-instance ones exactly, sample by
  sample at the same evaluation timestamp, and the fleet ratios are ratios of those sums;
- an errors incident on one route of one host makes LogtaildHighErrorRatio and
  LogtaildAvailabilityBudgetBurn fire (critical) in Prometheus on that route only, with the right labels
  and a description carrying the value; both reach Alertmanager routed to the page receiver, the critical
  inhibits the warning of the same alert, and the webhook receives the notification (JSON and the chat
  text rendered by the template);
- a logtaild that stops makes LogtaildDown fire for its instance and reach Alertmanager.

deploy/local-stack is tested at the end: --check, and a run stopped by Ctrl-C.
"""
from __future__ import annotations

import math
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.daemon import ROOT, Daemon, Simulator, free_port
from tests.support.stack import (
    Alertmanager,
    Prometheus,
    PrometheusAPI,
    PromQLError,
    WebhookSink,
    alertmanager_test_config,
    dashboard_queries,
    prometheus_test_config,
    recording_rules,
    samples,
    stop_all,
    substitute,
    wait_until,
)
from tests.support.tools import require_tool

pytestmark = pytest.mark.integration

FOR_SCALE = 60
ROUTES = {"/", "/blog", "/library", "/questions"}
INCIDENT_ROUTE = "/blog"
# Host "a" serves three times the traffic of host "b"; the incident hits a's /blog only (50% become 500),
# which is ~38% of the fleet's /blog requests: above the 20% critical threshold of LogtaildHighErrorRatio,
# and a burn rate of ~38 (above 14.4) for the 1% budget of the SLO below.
RATES = {"a": 60, "b": 20}
SEEDS = {"a": "7", "b": "8"}
# Every route: availability 99% (the simulator's steady 1% of 500s burns the budget at 1x), p95 threshold
# 0.5 s, 99% of requests faster than that (the simulator has ~1% slower).
CONFIG = """files: [{{path: {log}}}]
slo: [{{route: '.*', availability: 0.99, latency_threshold: 0.5, latency_objective: 0.99}}]
"""
# Grafana's values with "All" selected (allValue .*); $__rate_interval is 4 x the datasource's 15s.
GRAFANA_VARIABLES = {"job": ".*", "instance": ".*", "route": ".*", "version": ".*",
                     "__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
# Queries that cannot return data in a short test; they must still evaluate without error.
NO_DATA_RULES = {
    "job_route:logtaild_http_requests:min1h_rate5m": "a whole hour of history (`offset 1h`)",
}
# Dashboard queries with no data until an alert fires: checked after the incident.
AFTER_INCIDENT = {"annotation \"logtaild alerts\""}
# Dashboard queries that need more history than the test has; they must still evaluate without error.
NO_DATA_QUERIES = {
    '"5xx ratio by version" B': "the version's baseline, 10 minutes ago (`offset 10m`)",
}
DESCRIPTION = re.compile(rf"([0-9.]+)% of the requests to {INCIDENT_ROUTE} returned 5xx over the last 5 minutes "
                         r"\(warning above 5%, critical above 20%\)\.")


@dataclass
class Stack:
    tmp: Path
    prometheus: Prometheus
    alertmanager: Alertmanager
    sink: WebhookSink
    daemons: dict[str, Daemon]
    sims: dict[str, Simulator] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    incident: bool = False

    def instance(self, host: str) -> str:
        return f"127.0.0.1:{self.daemons[host].port}"

    def start_sim(self, host: str, *extra: str) -> None:
        self.sims[host] = Simulator("--output-file", str(self.logs[host]), "--rate", str(RATES[host]),
                                    "--latency", "--seed", SEEDS[host], "--log-rotation-interval", "20",
                                    "--duration", "300", *extra)

    def start_incident(self) -> None:
        """Host a's simulator is replaced by one that turns half of /blog's requests into 500s."""
        if not self.incident:
            self.sims["a"].stop()
            self.start_sim("a", "--incident", f"errors@{INCIDENT_ROUTE}:0:300")
            self.incident = True

    def stop_sims(self) -> None:
        errors = []
        for sim in self.sims.values():
            try:
                sim.stop()
            except Exception as exc:  # stop the others anyway
                errors.append(repr(exc))
        assert not errors, errors

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        return self.prometheus.query(expr, at)

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    prometheus_bin = require_tool("prometheus", "prometheus")
    alertmanager_bin = require_tool("prometheus-alertmanager", "prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("e2e")
    stops = []          # in start order; run in reverse
    try:
        sink = WebhookSink()
        stops.append(sink.stop)
        am_config = alertmanager_test_config(tmp / "alertmanager", sink.url)
        alertmanager = Alertmanager(alertmanager_bin, tmp, am_config)
        stops.append(alertmanager.stop)

        daemons, logs = {}, {}
        for host in RATES:
            logs[host] = tmp / f"{host}-access.log"
            config = tmp / f"{host}.yaml"
            config.write_text(CONFIG.format(log=logs[host]))
            daemons[host] = Daemon("--config", str(config), "--state-file", str(tmp / f"{host}-state.json"),
                                   "--interval", "60")
            stops.append(daemons[host].kill)
            stops.append(daemons[host].stop)
        for daemon in daemons.values():
            daemon.wait_ready()

        prom_config = prometheus_test_config(
            tmp / "prometheus", static_targets=[f"127.0.0.1:{daemons['a'].port}"],
            file_sd_targets=[f"127.0.0.1:{daemons['b'].port}"], alertmanager=f"127.0.0.1:{alertmanager.port}",
            interval="1s", for_scale=FOR_SCALE)
        prometheus = Prometheus(prometheus_bin, tmp, prom_config)
        stops.append(prometheus.stop)
        alertmanager.wait_ready()
        prometheus.wait_ready()

        s = Stack(tmp, prometheus, alertmanager, sink, daemons, logs=logs)
        stops.append(s.stop_sims)
        for host in RATES:
            s.start_sim(host)

        # Both instances scraped, every route recorded for both, and /blog past the 60-request guard.
        def fleet_has_data() -> bool:
            per_route = {r["metric"]["route"]: int(r["value"][1]) for r in s.query(
                'count by (route) (instance_route:logtaild_http_requests:rate5m{job="logtaild"})')}
            guard = s.query(f'job_route:logtaild_http_requests:rate5m{{route="{INCIDENT_ROUTE}"}} * 300 >= 60')
            return per_route == {route: 2 for route in ROUTES} and bool(guard)
        wait_until(fleet_has_data, 40, "data from both instances on every route")
        yield s
    finally:
        stop_all(stops)


def active_alerts(stack: Stack) -> list[tuple[str, str, str, str]]:
    return sorted((a["labels"]["alertname"], a["labels"]["severity"], a["labels"].get("route", ""), a["state"])
                  for a in stack.prometheus.alerts())


# --------------------------------------------------------------------------- quiet


def test_no_alert_without_an_incident(stack):
    if stack.incident:
        pytest.skip("the incident already started (test order changed)")
    # Five evaluations: every alert whose condition held would be pending at least (for: is 2s to 15s).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert active_alerts(stack) == [], "an alert is active before any incident"
        time.sleep(0.5)
    # Quiet because the ratios are low, not for lack of traffic: the guard of /blog is met and the ratio
    # exists (the simulator's steady 1% of 500s).
    assert stack.value(f'job_route:logtaild_http_requests:rate5m{{route="{INCIDENT_ROUTE}"}} * 300') >= 60
    ratio = stack.value(f'job_route:logtaild_http_errors:ratio_rate5m{{route="{INCIDENT_ROUTE}"}}')
    assert ratio is not None and ratio < 0.05


# --------------------------------------------------------------------------- every query


def test_every_dashboard_query_evaluates_and_returns_data(stack):
    now = time.time()
    failures, checked = [], 0
    for where, expr, is_range in dashboard_queries():
        expr = substitute(expr, GRAFANA_VARIABLES)
        try:
            result = stack.query(expr)
            if is_range:
                ranged = stack.prometheus.query_range(expr, now - 30, now, 5)
        except PromQLError as exc:
            failures.append(f"{where}: {exc}")
            continue
        checked += 1
        if any(where.endswith(name) for name in AFTER_INCIDENT | set(NO_DATA_QUERIES)):
            continue
        if not result:
            failures.append(f"{where}: no data\n    {expr}")
        elif is_range and not ranged:
            failures.append(f"{where}: no data over the last 30s (range query)\n    {expr}")
    assert not failures, "\n".join(failures)
    assert checked > 60

    # The variables list what Grafana's drop-downs would offer.
    def label_values(expr: str, label: str) -> set[str]:
        return {r["metric"][label] for r in stack.query(substitute(expr, GRAFANA_VARIABLES))}
    variables = {where.rsplit(" ", 1)[1]: expr for where, expr, _ in dashboard_queries() if " variable " in where}
    assert label_values(variables["job"], "job") == {"logtaild"}
    assert label_values(variables["instance"], "instance") == {stack.instance(h) for h in RATES}
    assert label_values(variables["route"], "route") == ROUTES


def test_every_recording_rule_evaluates_and_returns_data(stack):
    rules = recording_rules()
    failures = []
    for rule in rules:
        name = rule["record"]
        try:
            direct = stack.query(rule["expr"])
            recorded = stack.query(f'{{__name__="{name}"}}')
        except PromQLError as exc:
            failures.append(f"{name}: {exc}")
            continue
        if name in NO_DATA_RULES:
            assert not direct and not recorded, f"{name} has data: remove it from NO_DATA_RULES"
        elif not direct or not recorded:
            failures.append(f"{name}: no data (expression: {len(direct)} series, recorded: {len(recorded)})")
    assert not failures, "\n".join(failures)

    # The rule manager loaded all of them (and the alerts) and evaluates every one without error.
    loaded = stack.prometheus.rules()
    assert len([r for r in loaded if r["type"] == "recording"]) == len(rules)
    unhealthy = [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok" or r.get("lastError")]
    assert not unhealthy, unhealthy


# --------------------------------------------------------------------------- fleet = sum of instances


WINDOWS = ("5m", "30m", "1h", "6h")
# The SLI definitions: a fleet ratio is the fleet numerator over the fleet denominator, per window.
FLEET_RATIOS = {
    "logtaild_http_errors:ratio_rate": ("logtaild_http_errors:rate", "logtaild_http_requests:rate"),
    "logtaild_http_requests_slow:ratio_rate": ("logtaild_http_requests_slow:rate",
                                               "logtaild_http_request_duration_seconds_count:rate"),
    "logtaild_http_request_duration_seconds:mean": ("logtaild_http_request_duration_seconds_sum:rate",
                                                    "logtaild_http_request_duration_seconds_count:rate"),
}


def _divide(top: float, bottom: float) -> float:
    """Go's (and PromQL's) float division: x/0 is +-Inf, 0/0 NaN."""
    if bottom:
        return top / bottom
    return math.nan if top == 0 or math.isnan(top) else math.copysign(math.inf, top)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_fleet_aggregates_equal_the_sum_of_the_instances(stack):
    """Checked on the recorded samples, whatever the rules' expressions: for every evaluation of the last 15s
    (one timestamp for the whole group), fleet-wide = sum of the instances, exactly."""
    wait_until(lambda: (stack.value("min(count_over_time(job_route:logtaild_http_requests:rate5m[15s]))") or 0) >= 8,
               30, "eight evaluations with fleet data")
    at = time.time() - 2      # evaluations that ended: a group's rules are written one after another
    window = "[15s]"
    names = {rule["record"] for rule in recording_rules()}
    # Every fleet-wide rate (job_route, job_route_status) that has a per-instance counterpart.
    sums = sorted((name, "instance_" + name[len("job_"):]) for name in names
                  if name.startswith("job_route") and name.split(":")[2].startswith("rate")
                  and "instance_" + name[len("job_"):] in names)
    assert len(sums) >= 27, sums

    compared, evaluations = 0, set()
    for fleet_name, instance_name in sums:
        fleet = samples(stack.query(f"{fleet_name}{window}", at))
        per_instance = samples(stack.query(f"{instance_name}{window}", at))
        assert fleet, fleet_name
        grouped: dict[tuple, list[dict[float, float]]] = {}
        for labels, values in per_instance.items():
            key = tuple((k, v) for k, v in labels if k != "instance")
            grouped.setdefault(key, []).append(values)
        assert set(fleet) == set(grouped), f"{fleet_name}: series differ {set(fleet) ^ set(grouped)}"
        for key, values in fleet.items():
            for ts, value in values.items():
                parts = [series[ts] for series in grouped[key] if ts in series]
                assert parts, f"{fleet_name}{dict(key)} at {ts}: no instance sample at that evaluation"
                # At most two addends: IEEE addition is commutative, so Prometheus' sum is exactly a + b.
                assert value == sum(parts), \
                    f"{fleet_name}{dict(key)} at {ts}: {value} != {' + '.join(map(str, parts))}"
                compared += 1
                evaluations.add(ts)
        # Both hosts contribute to the requests of every route.
        if fleet_name == "job_route:logtaild_http_requests:rate5m":
            assert {len(grouped[key]) for key in fleet} == {2}, grouped
    assert len(evaluations) >= 3 and compared > 100, (len(evaluations), compared)

    # Fleet ratios and means are ratios of the fleet sums (never averages of the instances' ratios).
    for w in WINDOWS:
        for ratio_name, (num, den) in FLEET_RATIOS.items():
            ratio, top, bottom = (samples(stack.query(f"job_route:{n}{w}{window}", at))
                                  for n in (ratio_name, num, den))
            assert ratio, ratio_name + w
            for key, values in ratio.items():
                for ts, value in values.items():
                    assert ts in top.get(key, {}) and ts in bottom.get(key, {}), (ratio_name + w, key, ts)
                    expected = _divide(top[key][ts], bottom[key][ts])
                    assert _same(value, expected), f"{ratio_name}{w}{dict(key)} at {ts}: {value} != {expected}"
        # Fleet quantiles come from the fleet's summed buckets (same evaluation: a subquery step picks the
        # latest sample of both at once).
        for q in ("0.5", "0.95", "0.99"):
            recorded, computed = (samples(stack.query(f"{expr}[15s:1s]", at)) for expr in (
                f'job_route:logtaild_http_request_duration_seconds:histogram_quantile_rate{w}{{quantile="{q}"}}',
                f"histogram_quantile({q}, job_route:logtaild_http_request_duration_seconds_bucket:rate{w})"))
            recorded = {tuple(kv for kv in key if kv[0] != "quantile"): v for key, v in recorded.items()}
            assert recorded and recorded.keys() == computed.keys(), (w, q, recorded.keys(), computed.keys())
            for key, values in computed.items():
                assert len(values) >= 3 and values.keys() == recorded[key].keys(), (w, q, key)
                assert all(_same(recorded[key][ts], v) for ts, v in values.items()), (w, q, key, values, recorded[key])


# --------------------------------------------------------------------------- the incident


def test_errors_incident_fires_the_alerts_and_notifies(stack):
    stack.start_incident()
    wanted = {("LogtaildHighErrorRatio", "critical"), ("LogtaildAvailabilityBudgetBurn", "critical")}

    def firing() -> dict[tuple[str, str], dict] | None:
        alerts = {(a["labels"]["alertname"], a["labels"]["severity"]): a
                  for a in stack.prometheus.alerts() if a["state"] == "firing"}
        return alerts if wanted <= set(alerts) else None
    alerts = wait_until(firing, 60, f"{wanted} to fire in Prometheus")

    # Only the incident's route, only these two alerts (warning and critical of each).
    stray = [a for a in active_alerts(stack) if a[2] != INCIDENT_ROUTE
             or a[0] not in {"LogtaildHighErrorRatio", "LogtaildAvailabilityBudgetBurn"}]
    assert not stray, stray

    ratio = alerts["LogtaildHighErrorRatio", "critical"]
    assert ratio["labels"] == {"alertname": "LogtaildHighErrorRatio", "severity": "critical",
                               "job": "logtaild", "route": INCIDENT_ROUTE}
    assert 0.2 < float(ratio["value"]) < 0.6
    assert DESCRIPTION.fullmatch(ratio["annotations"]["description"])
    percent = float(DESCRIPTION.fullmatch(ratio["annotations"]["description"]).group(1))
    assert 20 < percent < 60
    assert ratio["annotations"]["runbook_url"].endswith("#runbook-logtaildhigherrorratio")
    burn = alerts["LogtaildAvailabilityBudgetBurn", "critical"]
    assert burn["labels"] == {"alertname": "LogtaildAvailabilityBudgetBurn", "severity": "critical",
                              "job": "logtaild", "route": INCIDENT_ROUTE, "sli": "availability"}
    assert float(burn["value"]) > 14.4
    assert f"{float(burn['value']):.4g}x faster" in burn["annotations"]["description"]

    # Alertmanager has them, routed to the page receiver; the critical mutes the warning of the same alert.
    def in_alertmanager() -> dict[str, dict] | None:
        got = {a["labels"]["severity"]: a for a in stack.alertmanager.alerts(
            alertname="LogtaildHighErrorRatio", route=INCIDENT_ROUTE)}
        ok = got.get("critical", {}).get("status", {}).get("state") == "active" and \
            got.get("warning", {}).get("status", {}).get("state") == "suppressed"
        return got if ok else None
    am = wait_until(in_alertmanager, 30, "the critical (active) and warning (suppressed) in Alertmanager")
    # (Prometheus re-sends an alert's annotations once a minute: the value in them may be an older one.)
    assert am["critical"]["labels"] == ratio["labels"]
    assert [r["name"] for r in am["critical"]["receivers"]] == ["logtaild-page"]
    assert am["critical"]["annotations"]["summary"] == ratio["annotations"]["summary"]
    assert am["critical"]["annotations"]["runbook_url"] == ratio["annotations"]["runbook_url"]
    assert DESCRIPTION.fullmatch(am["critical"]["annotations"]["description"])
    assert am["warning"]["status"]["inhibitedBy"] == [am["critical"]["fingerprint"]]
    assert [r["name"] for r in am["warning"]["receivers"]] == ["logtaild-ticket"]
    (burn_am,) = stack.alertmanager.alerts(alertname="LogtaildAvailabilityBudgetBurn", severity="critical")
    assert burn_am["labels"] == burn["labels"] and burn_am["status"]["state"] == "active"

    # The webhook gets the page (group_wait 10s), and the chat message rendered by the template.
    def notified() -> tuple[dict, dict] | None:
        received = stack.sink.received
        hooks = [b for p, b in received if p == "/" and b["receiver"] == "logtaild-page"
                 and b["groupLabels"].get("alertname") == "LogtaildHighErrorRatio"]
        chats = [b for p, b in received if p == "/chat" and "LogtaildHighErrorRatio" in b["attachments"][0]["title"]]
        return (hooks[0], chats[0]) if hooks and chats else None
    hook, chat = wait_until(notified, 30, "the webhook notification of LogtaildHighErrorRatio")
    assert hook["status"] == "firing"
    assert hook["groupLabels"] == {"alertname": "LogtaildHighErrorRatio", "job": "logtaild"}
    (sent,) = hook["alerts"]
    assert sent["status"] == "firing" and sent["labels"] == ratio["labels"]
    assert DESCRIPTION.fullmatch(sent["annotations"]["description"])
    assert sent["generatorURL"].startswith("http")
    attachment = chat["attachments"][0]
    assert attachment["title"] == "[FIRING:1] LogtaildHighErrorRatio (critical) - logtaild"
    assert attachment["color"] == "danger"
    assert sent["annotations"]["description"] in attachment["text"]
    assert f"Labels: job=logtaild, route={INCIDENT_ROUTE}" in attachment["text"]
    # Nothing was sent about another route.
    for path, body in stack.sink.received:
        alerts_sent = body["alerts"] if path == "/" else []
        assert all(a["labels"].get("route") == INCIDENT_ROUTE for a in alerts_sent), body

    # The dashboards' alert annotation now shows them.
    ((_, expr, _),) = [q for q in dashboard_queries() if q[0] == 'logtaild-overview annotation "logtaild alerts"']
    shown = stack.query(substitute(expr, GRAFANA_VARIABLES))
    assert {(r["metric"]["alertname"], r["metric"]["route"]) for r in shown} >= {
        ("LogtaildHighErrorRatio", INCIDENT_ROUTE), ("LogtaildAvailabilityBudgetBurn", INCIDENT_ROUTE)}


def test_a_stopped_logtaild_fires_logtailddown(stack):
    stack.daemons["b"].stop()
    instance = stack.instance("b")

    def down() -> dict | None:
        return next((a for a in stack.prometheus.alerts() if a["labels"]["alertname"] == "LogtaildDown"
                     and a["state"] == "firing"), None)
    alert = wait_until(down, 30, "LogtaildDown to fire")
    assert alert["labels"] == {"alertname": "LogtaildDown", "severity": "critical", "job": "logtaild",
                               "instance": instance}
    am = wait_until(lambda: stack.alertmanager.alerts(alertname="LogtaildDown"), 15, "LogtaildDown in Alertmanager")
    assert [a["labels"]["instance"] for a in am] == [instance]
    assert am[0]["status"]["state"] == "active"
    assert [r["name"] for r in am[0]["receivers"]] == ["logtaild-page"]


# --------------------------------------------------------------------------- deploy/local-stack

LOCAL_STACK = ROOT / "deploy" / "local-stack"


def _closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _local_stack_args(tmp_path: Path, daemon: Daemon) -> tuple[list[str], dict[str, int]]:
    ports = {"prometheus": free_port(), "alertmanager": free_port(), "webhook": free_port()}
    return [str(LOCAL_STACK), "--target", f"127.0.0.1:{daemon.port}",
            "--prometheus-port", str(ports["prometheus"]), "--alertmanager-port", str(ports["alertmanager"]),
            "--webhook-port", str(ports["webhook"]), "--data-dir", str(tmp_path / "stack"),
            "--scrape-interval", "1s"], ports


def test_local_stack_check(tmp_path):
    require_tool("prometheus", "prometheus")
    require_tool("prometheus-alertmanager", "prometheus-alertmanager")
    daemon = Daemon("--file", str(tmp_path / "access.log"))
    try:
        daemon.wait_ready()
        args, ports = _local_stack_args(tmp_path, daemon)
        run = subprocess.run([*args, "--check"], capture_output=True, text=True, timeout=90)
    finally:
        daemon.kill()
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"Prometheus:   http://127.0.0.1:{ports['prometheus']}" in run.stdout
    assert f"Alertmanager: http://127.0.0.1:{ports['alertmanager']}" in run.stdout
    assert f"target 127.0.0.1:{daemon.port} is up" in run.stdout
    assert "Prometheus sends alerts to Alertmanager" in run.stdout
    # --check stops both before it exits.
    assert all(_closed(port) for port in ports.values()), ports


@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["from-a-terminal", "sigint-ignored"])
def test_local_stack_runs_until_ctrl_c(tmp_path, sigint):
    """Ctrl-C stops the stack whether it was started from a terminal or, with SIGINT ignored, as a
    background job of a non-interactive shell (and whatever this test run itself inherited)."""
    require_tool("prometheus", "prometheus")
    require_tool("prometheus-alertmanager", "prometheus-alertmanager")
    out = tmp_path / "out.txt"
    daemon = Daemon("--file", str(tmp_path / "access.log"))
    proc = None
    try:
        daemon.wait_ready()
        args, ports = _local_stack_args(tmp_path, daemon)
        with out.open("w") as sink:
            # the disposition set explicitly: exec keeps SIG_IGN, so the test run's own would leak in
            proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
        wait_until(lambda: "Ctrl-C to stop" in out.read_text() or proc.poll() is not None, 60,
                   "local-stack to start")
        assert proc.poll() is None, out.read_text()
        prometheus = PrometheusAPI(f"http://127.0.0.1:{ports['prometheus']}")
        wait_until(lambda: prometheus.query('up{job="logtaild"} == 1'), 30, "the target to be up")
        # Ctrl-C: SIGINT to the script's process group, as a terminal does.
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0, out.read_text()
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        daemon.kill()
    text = out.read_text()
    assert "local-stack: stopped" in text, text
    assert all(_closed(port) for port in ports.values()), (ports, text)

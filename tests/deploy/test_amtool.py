"""deploy/alertmanager: config, routing, quiet hours, templates, and inhibitions in a real Alertmanager.

- amtool check-config validates the config and its templates;
- amtool config routes test proves each severity of each alert reaches the right receiver, and with the
  YAML it proves the quiet hours are attached to the ticket route only; a small evaluator of the
  time_intervals proves they cover 19:00-09:00 on weekdays and the whole weekend;
- amtool template render proves firing and resolved notifications read differently and carry the value;
- a real Alertmanager on loopback (when installed) proves the inhibitions, that pages go out during the
  quiet hours while tickets are held, and that the templates render in real notifications.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.deploy.promql import ROOT, alert_rules
from tests.support.tools import require_tool

AM_DIR = ROOT / "deploy" / "alertmanager"
AM_CONFIG = AM_DIR / "alertmanager.yml"
RECEIVER_FOR = {"critical": "logtaild-page", "warning": "logtaild-ticket"}
MUTE = "outside-working-hours"


@pytest.fixture(scope="module")
def amtool() -> str:
    return require_tool("amtool", "prometheus-alertmanager")


def config() -> dict:
    return yaml.safe_load(AM_CONFIG.read_text())


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60, **kwargs)


def test_check_config(amtool):
    result = run(amtool, "check-config", str(AM_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert " - 1 templates" in result.stdout
    assert " - 3 inhibit rules" in result.stdout


def routes_test(amtool: str, *labels: str, expect: str) -> None:
    result = run(amtool, "config", "routes", "test", f"--config.file={AM_CONFIG}",
                 f"--verify.receivers={expect}", *labels)
    assert result.returncode == 0, f"{labels} -> {result.stdout.strip()} (expected {expect}) {result.stderr}"
    assert result.stdout.strip() == expect


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: f'{r["alert"]}-{r["labels"]["severity"]}')
def test_every_alert_routes_by_severity(amtool, rule):
    severity = rule["labels"]["severity"]
    routes_test(amtool, f'alertname={rule["alert"]}', f"severity={severity}", "job=logtaild",
                "route=/checkout", "instance=web-01:10181", expect=RECEIVER_FOR[severity])


def test_unknown_severity_goes_to_the_default_receiver(amtool):
    routes_test(amtool, "alertname=SomethingElse", expect="logtaild-default")
    routes_test(amtool, "alertname=SomethingElse", "severity=info", expect="logtaild-default")


def test_quiet_hours_are_attached_to_the_ticket_route_only(amtool):
    cfg = config()
    root = cfg["route"]
    assert "mute_time_intervals" not in root and "active_time_intervals" not in root
    by_receiver = {}
    for route in root["routes"]:
        assert route["receiver"] not in by_receiver, "one route per receiver, so amtool's answer names it"
        assert "routes" not in route
        by_receiver[route["receiver"]] = route
    # amtool resolves each severity to a receiver; that receiver's route carries (or not) the quiet hours.
    routes_test(amtool, "severity=warning", expect="logtaild-ticket")
    routes_test(amtool, "severity=critical", expect="logtaild-page")
    assert by_receiver["logtaild-ticket"]["mute_time_intervals"] == [MUTE]
    assert "mute_time_intervals" not in by_receiver["logtaild-page"]
    assert "active_time_intervals" not in by_receiver["logtaild-page"]
    assert [i["name"] for i in cfg["time_intervals"]] == [MUTE]


WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def _weekday_set(specs: list[str]) -> set[int]:
    days = set()
    for spec in specs:
        first, _, last = spec.partition(":")
        a, b = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        days.update(range(a, b + 1))
    return days


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def muted(moment: dt.datetime) -> bool:
    """Alertmanager's semantics for the fields used here: weekdays ranges inclusive, times [start, end)."""
    (interval,) = [i for i in config()["time_intervals"] if i["name"] == MUTE]
    for ti in interval["time_intervals"]:
        assert set(ti) <= {"weekdays", "times", "location"}, "evaluator knows only these fields"
        local = moment.astimezone(ZoneInfo(ti.get("location", "UTC")))
        if "weekdays" in ti and local.weekday() not in _weekday_set(ti["weekdays"]):
            continue
        minute = local.hour * 60 + local.minute
        if "times" in ti and not any(_minutes(t["start_time"]) <= minute < _minutes(t["end_time"])
                                     for t in ti["times"]):
            continue
        return True
    return False


@pytest.mark.parametrize("when, expected", [
    ("2026-11-23 08:59", True),    # Monday, before 09:00
    ("2026-11-23 09:00", False),   # Monday, working hours start
    ("2026-11-23 13:00", False),
    ("2026-11-23 18:59", False),
    ("2026-11-23 19:00", True),    # Monday evening
    ("2026-11-23 23:59", True),
    ("2026-11-24 00:00", True),    # Tuesday night
    ("2026-11-27 18:30", False),   # Friday afternoon
    ("2026-11-27 19:30", True),    # Friday evening
    ("2026-11-28 12:00", True),    # Saturday
    ("2026-11-29 10:00", True),    # Sunday
    ("2026-11-30 09:30", False),   # Monday again
])
def test_quiet_hours_cover_nights_and_weekends(when, expected):
    moment = dt.datetime.strptime(when, "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)
    assert muted(moment) is expected


def test_inhibition_rules():
    rules = config()["inhibit_rules"]
    by_source = {tuple(r["source_matchers"]): r for r in rules}
    assert by_source[('alertname="LogtaildDown"',)]["equal"] == ["job", "instance"]
    assert by_source[('alertname="LogtaildAbsent"',)]["equal"] == ["job"]
    severity = by_source[('severity="critical"',)]
    assert severity["target_matchers"] == ['severity="warning"']
    assert {"alertname", "job", "instance", "route"} <= set(severity["equal"])
    # The labels that tell alerts of one name apart (per version, status class, baseline, SLI, status, file).
    assert {"version", "class", "baseline", "sli", "status", "file"} <= set(severity["equal"])


def _template_data(status: str) -> dict:
    alert = {
        "status": status,
        "labels": {"alertname": "LogtaildHighErrorRatio", "severity": "critical", "job": "logtaild",
                   "route": "/pay", "service": "shop"},
        "annotations": {
            "summary": "Very high 5xx ratio on /pay (logtaild)",
            "description": "30% of the requests to /pay (service shop) returned 5xx over the last 5 minutes.",
            "runbook_url": RUNBOOK_PREFIX + "logtaildhigherrorratio",
        },
        "startsAt": "2026-11-23T10:15:00Z",
        "endsAt": "2026-11-23T10:47:30Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://localhost:9090/graph",
        "fingerprint": "0123456789abcdef",
    }
    return {"receiver": "logtaild-page", "status": status, "alerts": [alert],
            "groupLabels": {"alertname": "LogtaildHighErrorRatio", "job": "logtaild"},
            "commonLabels": alert["labels"], "commonAnnotations": alert["annotations"],
            "externalURL": "http://localhost:9093"}


def render(amtool: str, tmp_path: Path, status: str) -> str:
    data = tmp_path / f"{status}.json"
    data.write_text(json.dumps(_template_data(status)))
    result = run(amtool, "template", "render", f"--template.glob={AM_DIR}/templates/*.tmpl",
                 f"--template.data={data}",
                 '--template.text={{ template "logtaild.title" . }}\n{{ template "logtaild.color" . }}\n'
                 '{{ template "logtaild.text" . }}')
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_templates_differ_for_firing_and_resolved_and_carry_the_value(amtool, tmp_path):
    firing = render(amtool, tmp_path, "firing")
    resolved = render(amtool, tmp_path, "resolved")
    assert firing.splitlines()[:2] == ["[FIRING:1] LogtaildHighErrorRatio (critical) - logtaild", "danger"]
    assert resolved.splitlines()[:2] == ["[RESOLVED] LogtaildHighErrorRatio - logtaild", "good"]
    assert "FIRING since 2026-11-23 10:15:00 UTC: Very high 5xx ratio on /pay (logtaild)" in firing
    assert ("RESOLVED at 2026-11-23 10:47:30 UTC (firing since 2026-11-23 10:15:00 UTC): "
            "Very high 5xx ratio on /pay (logtaild)") in resolved
    # The value travels in the description the rule rendered.
    assert "\n30% of the requests to /pay (service shop) returned 5xx" in firing
    assert "Last reading while firing: 30% of the requests to /pay" in resolved
    assert "Labels: job=logtaild, route=/pay, service=shop" in firing
    assert f"Runbook: {RUNBOOK_PREFIX}logtaildhigherrorratio" in firing
    assert firing != resolved


# --- a real Alertmanager ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Sink(BaseHTTPRequestHandler):
    """Records every notification Alertmanager posts (webhook JSON on /, Slack-style JSON on /chat)."""
    received: list[tuple[str, dict]] = []
    lock = threading.Lock()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory):
    """Alertmanager with a test copy of the config: receivers point at a local sink, waits are 1s, and the
    quiet hours last all week, so the test does not depend on the time of day."""
    binary = require_tool("prometheus-alertmanager", "prometheus-alertmanager")
    tmp = tmp_path_factory.mktemp("alertmanager")
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    sink_url = f"http://127.0.0.1:{sink.server_address[1]}"
    text = AM_CONFIG.read_text().replace("http://127.0.0.1:5001", sink_url)
    text = re.sub(r"group_wait: \d+s", "group_wait: 1s", text)
    text = re.sub(r"group_interval: \d+m", "group_interval: 1s", text)
    cfg = yaml.safe_load(text)
    cfg["route"]["group_wait"] = "1s"
    cfg["templates"] = [str(AM_DIR / "templates" / "*.tmpl")]
    (interval,) = cfg["time_intervals"]
    interval["time_intervals"] = [{"times": [{"start_time": "00:00", "end_time": "24:00"}]}]
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    port = _free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp / 'alertmanager.yml'}", f"--storage.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=(tmp / "alertmanager.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("alertmanager did not start: " + (tmp / "alertmanager.log").read_text())
                time.sleep(0.1)
        yield url, _Sink
    finally:
        proc.terminate()
        proc.wait(10)
        sink.shutdown()


def post_alerts(url: str, alerts: list[dict]) -> None:
    request = urllib.request.Request(f"{url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=5).read()


def alert(**labels: str) -> dict:
    return {"labels": labels, "annotations": {
        "summary": f'{labels["alertname"]} test', "description": "value 42%",
        "runbook_url": RUNBOOK_PREFIX + labels["alertname"].lower()}}


RUNBOOK_PREFIX = "https://github.com/logtaild/logtaild/blob/main/docs/runbook.md#runbook-"


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def test_inhibitions_in_alertmanager(alertmanager):
    url, _ = alertmanager
    post_alerts(url, [
        alert(alertname="LogtaildDown", severity="critical", job="inh", instance="a:10181"),
        alert(alertname="LogtaildLagGrowing", severity="warning", job="inh", instance="a:10181", file="/x"),
        alert(alertname="LogtaildLagGrowing", severity="warning", job="inh", instance="b:10181", file="/x"),
        alert(alertname="LogtaildHighErrorRatio", severity="critical", job="inh", route="/pay"),
        alert(alertname="LogtaildHighErrorRatio", severity="warning", job="inh", route="/pay"),
        alert(alertname="LogtaildHighErrorRatio", severity="warning", job="inh", route="/checkout"),
        alert(alertname="LogtaildAbsent", severity="critical", job="inh-eu"),
        alert(alertname="LogtaildTrafficStopped", severity="warning", job="inh-eu", route="/"),
    ])

    def states():
        with urllib.request.urlopen(f"{url}/api/v2/alerts?filter=job%3D~%22inh.*%22", timeout=5) as r:
            alerts = json.load(r)
        return {(a["labels"]["alertname"], a["labels"]["severity"], a["labels"]["job"],
                 a["labels"].get("instance", ""), a["labels"].get("route", "")): a["status"]["state"]
                for a in alerts}

    expected = {
        # LogtaildDown mutes what is derived from that instance's metrics, not another instance's.
        ("LogtaildDown", "critical", "inh", "a:10181", ""): "active",
        ("LogtaildLagGrowing", "warning", "inh", "a:10181", ""): "suppressed",
        ("LogtaildLagGrowing", "warning", "inh", "b:10181", ""): "active",
        # Critical mutes warning for the same alert and route only; fleet-wide route alerts (no instance
        # label) are not muted by one instance being down.
        ("LogtaildHighErrorRatio", "critical", "inh", "", "/pay"): "active",
        ("LogtaildHighErrorRatio", "warning", "inh", "", "/pay"): "suppressed",
        ("LogtaildHighErrorRatio", "warning", "inh", "", "/checkout"): "active",
        # No target at all for the job: everything else of that job is muted.
        ("LogtaildAbsent", "critical", "inh-eu", "", ""): "active",
        ("LogtaildTrafficStopped", "warning", "inh-eu", "", "/"): "suppressed",
    }
    assert wait_for(lambda: states() == expected) or states() == expected, states()


def test_quiet_hours_hold_tickets_not_pages_and_notifications_render(alertmanager):
    url, sink = alertmanager
    post_alerts(url, [
        alert(alertname="LogtaildNotReading", severity="critical", job="quiet", instance="a:10181"),
        alert(alertname="LogtaildMalformedLines", severity="warning", job="quiet", instance="a:10181"),
        alert(alertname="SomethingElse", job="quiet"),
    ])

    def notified(receiver: str, alertname: str, path: str = "/", status: str = "firing") -> list[dict]:
        with sink.lock:
            bodies = [b for p, b in sink.received if p == path]
        if path == "/":
            return [b for b in bodies if b["receiver"] == receiver and b["status"] == status
                    and b["commonLabels"].get("alertname") == alertname]
        return [b for b in bodies if alertname in json.dumps(b)]

    # The page and the default receiver are notified (1s group_wait)...
    assert wait_for(lambda: notified("logtaild-page", "LogtaildNotReading")), sink.received
    assert wait_for(lambda: notified("logtaild-default", "SomethingElse")), sink.received
    # ...and the ticket, with the same group_wait, is held by the quiet hours.
    time.sleep(2)
    assert not notified("logtaild-ticket", "LogtaildMalformedLines")

    # The chat notification is rendered by templates/logtaild.tmpl.
    (chat,) = wait_for(lambda: notified("logtaild-page", "LogtaildNotReading", path="/chat"))[:1]
    attachment = chat["attachments"][0]
    assert attachment["title"] == "[FIRING:1] LogtaildNotReading (critical) - quiet"
    assert attachment["color"] == "danger"
    assert "FIRING since " in attachment["text"] and "value 42%" in attachment["text"]

    # Resolve it: the resolved notification reads differently.
    resolved = alert(alertname="LogtaildNotReading", severity="critical", job="quiet", instance="a:10181")
    resolved["endsAt"] = dt.datetime.now(dt.UTC).isoformat()
    post_alerts(url, [resolved])
    assert wait_for(lambda: notified("logtaild-page", "LogtaildNotReading", status="resolved")), sink.received

    def resolved_chat():
        return [b for b in notified("logtaild-page", "LogtaildNotReading", path="/chat")
                if b["attachments"][0]["title"].startswith("[RESOLVED]")]
    (chat,) = wait_for(resolved_chat)[:1]
    assert chat["attachments"][0]["title"] == "[RESOLVED] LogtaildNotReading - quiet"
    assert "Last reading while firing: value 42%" in chat["attachments"][0]["text"]

"""The real Prometheus and Alertmanager on loopback, with test copies of the deploy/ configs.

Used by tests/integration/test_e2e_stack.py. Everything listens on 127.0.0.1 on free ports and lives in a
temporary directory; `stop()` ends only the processes started here.

Test copies differ from deploy/ only where a test must:
- prometheus.yml: scrape and evaluation interval 1s (timeout 1s), the given targets (static and file_sd)
  instead of localhost:10181, the given Alertmanager instead of localhost:9093;
- logtaild-alerts.yml: every `for:` divided by `for_scale` (60: minutes become seconds); expressions and
  their range windows are untouched;
- alertmanager.yml: the webhook/chat URLs (http://127.0.0.1:5001) point at a local sink.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.support.daemon import ROOT, free_port, wait_for

DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
ALERTMANAGER_DIR = DEPLOY / "alertmanager"
DASHBOARDS_DIR = DEPLOY / "grafana" / "dashboards"
EXAMPLE_WEBHOOK = "http://127.0.0.1:5001"

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def parse_duration(text: str) -> float:
    """A Prometheus duration ("1h30m", "10m", "500ms") in seconds."""
    parts = _DURATION.findall(text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a Prometheus duration: {text!r}"
    return sum(int(n) * _UNITS[u] for n, u in parts)


def scale_duration(text: str, factor: float) -> str:
    """`text` divided by `factor`, written in whole milliseconds or seconds ("10m" / 60 -> "10s")."""
    ms = round(parse_duration(text) * 1000 / factor)
    assert ms >= 1, f"{text} / {factor} is below a millisecond"
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


# --------------------------------------------------------------------------- HTTP


def http_json(url: str, data: dict[str, str] | None = None, timeout: float = 10.0) -> Any:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(url, data=body, timeout=timeout) as resp:
        return json.load(resp)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


class PromQLError(AssertionError):
    pass


# --------------------------------------------------------------------------- processes


class _Server:
    """A Prometheus or Alertmanager process whose output goes to a log file."""

    name = "server"

    def __init__(self, argv: list[str], workdir: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / f"{self.name}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log_tail()}")
        return http_ok(f"{self.url}/-/ready")

    def wait_ready(self, timeout: float = 30.0):
        try:
            wait_for(self.ready, timeout, f"{self.name} to be ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class PrometheusAPI:
    """Prometheus' HTTP API at `url`: every call raises PromQLError on an error or a warning."""

    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, data: dict[str, str] | None = None) -> Any:
        try:
            doc = http_json(f"{self.url}/api/v1/{path}", data)
        except urllib.error.HTTPError as exc:
            doc = json.load(exc)
        if doc.get("status") != "success":
            raise PromQLError(f"{path} {data}: {doc.get('errorType')}: {doc.get('error')}")
        if doc.get("warnings"):
            raise PromQLError(f"{path} {data}: warnings {doc['warnings']}")
        return doc["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """Instant query: the result list (vector, or matrix for a range selector)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        return self.api("query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                        "step": str(step)})["result"]

    def alerts(self) -> list[dict]:
        """Pending and firing alerts of the rule manager (/api/v1/alerts)."""
        return self.api("alerts")["alerts"]

    def rules(self) -> list[dict]:
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]

    def targets(self) -> list[dict]:
        return self.api("targets")["activeTargets"]


class Prometheus(_Server, PrometheusAPI):
    name = "prometheus"

    def __init__(self, binary: str, workdir: Path, config: Path, port: int | None = None,
                 args: tuple[str, ...] = ()) -> None:
        port = port or free_port()
        data = workdir / "prometheus-data"
        _Server.__init__(self, [binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
                                f"--web.listen-address=127.0.0.1:{port}", *args], workdir, port)


class Alertmanager(_Server):
    name = "alertmanager"

    def __init__(self, binary: str, workdir: Path, config: Path, port: int | None = None) -> None:
        port = port or free_port()
        data = workdir / "alertmanager-data"
        super().__init__([binary, f"--config.file={config}", f"--storage.path={data}",
                          f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                         workdir, port)

    def alerts(self, **matchers: str) -> list[dict]:
        """/api/v2/alerts, filtered by label equality matchers."""
        query = urllib.parse.urlencode([("filter", f'{k}="{v}"') for k, v in matchers.items()])
        return http_json(f"{self.url}/api/v2/alerts?{query}")


class WebhookSink:
    """A webhook receiver on 127.0.0.1: records every POST (path, JSON body)."""

    def __init__(self) -> None:
        received: list[tuple[str, dict]] = []
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    received.append((self.path, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._received = received
        self._lock = lock
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def received(self) -> list[tuple[str, dict]]:
        with self._lock:
            return list(self._received)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- test copies of deploy/


def prometheus_test_config(dest: Path, *, static_targets: list[str], file_sd_targets: list[str],
                           alertmanager: str, interval: str = "1s", for_scale: float = 60) -> Path:
    """Copy deploy/prometheus to `dest` as a test copy (see the module docstring); return prometheus.yml."""
    shutil.copytree(PROMETHEUS_DIR, dest)
    config_path = dest / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    config["global"].update(scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "logtaild"]
    assert job["static_configs"] == [{"targets": ["localhost:10181"]}], job["static_configs"]
    job["static_configs"] = [{"targets": static_targets}]
    # The shipped targets/logtaild.yml (an empty list) stays next to this one: both are read.
    assert job["file_sd_configs"][0]["files"] == ["targets/*.yml"]
    (dest / "targets" / "e2e.yml").write_text(yaml.safe_dump([{"targets": file_sd_targets}]))
    (am,) = config["alerting"]["alertmanagers"]
    assert am["static_configs"] == [{"targets": ["localhost:9093"]}]
    am["static_configs"] = [{"targets": [alertmanager]}]
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    alerts_path = dest / "rules" / "logtaild-alerts.yml"
    doc = yaml.safe_load(alerts_path.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = scale_duration(rule["for"], for_scale)
    alerts_path.write_text(yaml.safe_dump(doc, sort_keys=False, width=200))
    return config_path


def alertmanager_test_config(dest: Path, webhook_url: str) -> Path:
    """Copy deploy/alertmanager to `dest` with every receiver URL on `webhook_url`; return the config."""
    shutil.copytree(ALERTMANAGER_DIR, dest)
    path = dest / "alertmanager.yml"
    text = path.read_text()
    assert EXAMPLE_WEBHOOK in text
    path.write_text(text.replace(EXAMPLE_WEBHOOK, webhook_url))
    return path


# --------------------------------------------------------------------------- dashboards and rules


def dashboard_queries() -> list[tuple[str, str, bool]]:
    """(where, PromQL, is a range query) for every panel target, variable query and annotation of every
    dashboard in deploy/grafana/dashboards, variables not yet substituted."""
    found = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for t in panel["targets"]:
                found.append((f'{path.stem} panel {panel["id"]} "{panel["title"]}" {t["refId"]}', t["expr"],
                              bool(t.get("range"))))
        for var in dash["templating"]["list"]:
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
            assert m, var["query"]["query"]
            found.append((f'{path.stem} variable {var["name"]}', m.group(1), False))
        for ann in dash["annotations"]["list"]:
            found.append((f'{path.stem} annotation "{ann["name"]}"', ann["expr"], True))
    return found


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana's $variables, longest name first ($__rate_interval before $__range...)."""
    for var in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${var}", values[var])
    assert "$" not in expr, expr
    return expr


def recording_rules() -> list[dict]:
    doc = yaml.safe_load((PROMETHEUS_DIR / "rules" / "logtaild-recording.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def samples(result: list[dict]) -> dict[tuple, dict[float, float]]:
    """A matrix result as {sorted labels without __name__: {timestamp: value}}."""
    out: dict[tuple, dict[float, float]] = {}
    for series in result:
        labels = tuple(sorted((k, v) for k, v in series["metric"].items() if k != "__name__"))
        out[labels] = {float(t): float(v) for t, v in series["values"]}
    return out


def wait_until(condition, timeout: float, what: str, interval: float = 0.5):
    """daemon.wait_for with a slower poll (these conditions are HTTP queries)."""
    return wait_for(condition, timeout, what, interval)


def stop_all(stops: list[Callable[[], object]]) -> None:
    """Run every teardown step, the last started first, even when some fail; then fail with what failed."""
    errors = []
    for stop in reversed(stops):
        try:
            stop()
        except Exception as exc:  # keep tearing down the rest
            errors.append(repr(exc))
    assert not errors, errors

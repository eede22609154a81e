"""A real daemon following several files from a YAML config: combined and json formats, a glob that
gains a file while running, constant labels per file, the grouped report, SLO gauges with the owning
team, route normalization and the route cap; and `--once` with `--config` as with `--file`.
Exact counts throughout.
"""
from __future__ import annotations

import collections
import json
import re
import shutil
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, parse_reports, wait_for

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
T = "[17/May/2015:10:05:03 +0000]"


def combined(route: str, status: int = 200, seconds: float | None = 0.01, request: str | None = None) -> str:
    request = f"GET {route} HTTP/1.1" if request is None else request
    tail = "" if seconds is None else f" {seconds}"
    return f'10.0.0.1 - - {T} "{request}" {status} 100 "-" "Mozilla/5.0"{tail}\n'


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def appended(path: Path, lines: list[str]) -> None:
    with open(path, "a") as handle:
        handle.writelines(lines)


def test_two_files_one_glob_labels_slo_cap_and_grouped_report(tmp_path: Path) -> None:
    site = tmp_path / "site.log"
    jdir = tmp_path / "json"
    jdir.mkdir()
    old_a = jdir / "a.jsonl"
    old_a.write_text('{"path": "/old", "status_code": 200}\n' * 4)  # there before the start: read from its end
    config = write_config(tmp_path / "config.yaml", f"""
interval: 60            # one report, at exit: every count in it
rescan_interval: 0.2
files:
  - path: {site}
    format: combined
    latency_unit: seconds
    labels: {{service: shop, team: web}}
  - path: {jdir}/*.jsonl
    format: json
    labels: {{team: identity}}
routes:
  max: 5
  rules:
    - {{match: "^/static/.*", replace: "/static/*"}}
slo:
  - {{route: "/api/orders/:id", latency_threshold: 0.3, latency_objective: 0.95, availability: 0.9995,
     team: payments}}
  - {{route: "/static/.*", latency_threshold: 0.1}}
""")
    daemon = Daemon("--config", str(config), "--log-level", "debug").wait_ready()
    try:
        wait_for(lambda: daemon.value("logtaild_file_offset_bytes", file=str(old_a)) == old_a.stat().st_size, 10,
                 "a.jsonl opened at its end")
        # site.log appears after the start: read from its start
        site_lines = (
            [combined(f"/api/orders/{n}", 200, 0.1) for n in range(1, 7)]  # 6 fast, one route after :id
            + [combined("/api/orders/77", 500, 0.4), combined("/api/orders/9f8e7d6c5b4a3f2e1d0c", 200, 0.9)]
            + [combined("/static/app.js?v=3", 200, 0.05), combined("/static/img/logo.png", 304, 0.2)]
            + [combined("-", 408, None, request="-")]  # a connection closed before any request
            + [combined("/p/a", 200), combined("/p/b", 404)]  # routes 4 and 5: the cap is full
            + [combined(f"/p/{c}", 200) for c in "cdefghij"] * 2  # 16 requests to 8 routes past the cap
            + ["this is not a log line\n"]
        )
        appended(site, site_lines)
        new_a = ['{"service": "auth-service", "timestamp": "2024-05-17T10:05:03Z", "status_code": 200, '
                 '"latency_ms": 350, "error": false}\n'] * 3 + [
            json.dumps({"service": "auth-service", "path": "/login?next=/", "method": "POST", "status_code": 401,
                        "latency_ms": 20}) + "\n"]
        appended(old_a, new_a)
        # a file that starts matching the glob while logtaild runs, written whole before it is found
        new_b = jdir / "b.jsonl"
        new_b.write_text("".join(json.dumps({"service": "billing", "request": "GET /invoices/12 HTTP/2.0",
                                             "status": "200", "bytes": 5, "latency_ms": 5}) + "\n"
                                 for _ in range(5)))
        wait_for(lambda: (daemon.value("logtaild_lines_read_total", file=str(site)) == len(site_lines)
                          and daemon.value("logtaild_lines_read_total", file=str(old_a)) == len(new_a)
                          and daemon.value("logtaild_lines_read_total", file=str(new_b)) == 5), 15, "every line read")

        def requests(**labels: str) -> float:
            return daemon.value("logtaild_http_requests_total", **labels)

        # -- site.log: its constant labels on every request series, normalization, the cap
        shop = {"service": "shop", "team": "web"}
        assert requests(**shop) == len(site_lines) - 1
        assert requests(**shop, route="/api/orders/:id", status="200") == 7
        assert requests(**shop, route="/api/orders/:id", status="500") == 1
        assert requests(**shop, route="/static/*") == 2
        assert requests(**shop, route="-", method="-", status="408") == 1
        assert requests(**shop, route="/p/a") == 1 and requests(**shop, route="/p/b", status="404") == 1
        assert requests(**shop, route="__other__") == 16
        assert daemon.value("logtaild_route_overflow_total", file=str(site)) == 16
        assert daemon.value("logtaild_routes", file=str(site)) == 5
        assert daemon.value("logtaild_lines_malformed_total", file=str(site), reason="fields") == 1
        assert not [s for s in daemon.samples() if s[0] == "logtaild_http_requests_total"
                    and s[1].get("route", "").startswith("/p/") and s[1]["route"] not in ("/p/a", "/p/b")]
        # every request series of site.log carries exactly its labels
        for name, labels, _value in daemon.samples():
            if name == "logtaild_http_requests_total" and labels.get("service") == "shop":
                assert set(labels) == {"service", "team", "route", "method", "status"}
        # latency: the trailing request time in seconds, slow counts against each route's threshold
        assert daemon.value("logtaild_http_request_duration_seconds_count", **shop,
                            route="/api/orders/:id") == 8
        assert daemon.value("logtaild_http_requests_slow_total", **shop, route="/api/orders/:id") == 2  # 0.4, 0.9
        assert daemon.value("logtaild_http_requests_slow_total", **shop, route="/static/*") == 1  # 0.2 > 0.1
        assert daemon.value("logtaild_http_request_duration_seconds_bucket", **shop, route="/api/orders/:id",
                            le="0.3") == 6

        # -- SLO gauges from the config, with the owning team
        def gauge(name: str, route: str, **labels: str) -> list[tuple[dict[str, str], float]]:
            return [(lab, v) for n, lab, v in daemon.samples()
                    if n == name and lab.get("route") == route and all(lab.get(k) == x for k, x in labels.items())]

        assert gauge("logtaild_slo_latency_threshold_seconds", "/api/orders/:id") == [
            ({"service": "shop", "team": "payments", "route": "/api/orders/:id"}, 0.3)]
        assert gauge("logtaild_slo_latency_objective", "/api/orders/:id") == [
            ({"service": "shop", "team": "payments", "route": "/api/orders/:id"}, 0.95)]
        assert gauge("logtaild_slo_availability_objective", "/api/orders/:id") == [
            ({"service": "shop", "team": "payments", "route": "/api/orders/:id"}, 0.9995)]
        # an SLO without a team keeps the file's team label; routes without an SLO get the defaults
        assert gauge("logtaild_slo_latency_threshold_seconds", "/static/*") == [
            ({"service": "shop", "team": "web", "route": "/static/*"}, 0.1)]
        assert gauge("logtaild_slo_availability_objective", "/p/a", service="shop") == [
            ({"service": "shop", "team": "web", "route": "/p/a"}, 0.999)]

        # -- the json glob: old lines of a.jsonl not counted, b.jsonl read from its start
        assert daemon.value("logtaild_http_requests_total", route="/old") == 0
        identity = {"team": "identity"}
        assert requests(**identity) == len(new_a) + 5
        assert requests(**identity, service="auth-service", route="-", method="-", status="200") == 3
        assert requests(**identity, service="auth-service", route="/login", method="POST", status="401") == 1
        assert requests(**identity, service="billing", route="/invoices/:id", method="GET", status="200") == 5
        assert daemon.value("logtaild_http_response_bytes_total", service="billing") == 25
        assert daemon.value("logtaild_http_request_duration_seconds_sum", service="auth-service") == pytest.approx(
            (3 * 350 + 20) / 1000)
        assert gauge("logtaild_slo_latency_threshold_seconds", "/invoices/:id") == [
            ({"team": "identity", "route": "/invoices/:id"}, 0.5)]
        code, _seconds = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert "Traceback" not in daemon.err.text

    # -- the report: one (at exit), rows grouped under each file's path
    [report] = parse_reports(daemon.out.text)
    [(length, total)] = daemon.windows()
    assert total == len(site_lines) - 1 + len(new_a) + 5
    assert set(report.groups) == {str(site), str(old_a), str(new_b)}

    def counts(rows: list[tuple[str, str, float]]) -> dict[tuple[str, str], int]:
        return {(route, status): round(qps * length) for route, status, qps in rows}

    assert counts(report.groups[str(site)]) == {
        ("-", "408"): 1, ("/api/orders/:id", "200"): 7, ("/api/orders/:id", "500"): 1, ("/p/a", "200"): 1,
        ("/p/b", "404"): 1, ("/static/*", "200"): 1, ("/static/*", "304"): 1, ("__other__", "200"): 16}
    assert counts(report.groups[str(old_a)]) == {("-", "200"): 3, ("/login", "401"): 1}
    assert counts(report.groups[str(new_b)]) == {("/invoices/:id", "200"): 5}
    assert round(report.totals["all"] * length) == total
    text = daemon.out.text
    assert text.index(f"[{old_a}]") < text.index(f"[{new_b}]") < text.index(f"[{site}]") < text.index("TOTAL")


# ---- --once with --config --------------------------------------------------------------------------

def run_once(*args: str) -> tuple[Daemon, int]:
    daemon = Daemon(*args, "--once", "--log-level", "debug", listen=False)
    code = daemon.proc.wait(30)
    daemon.out.join(5)
    daemon.err.join(5)
    return daemon, code


def test_once_with_config_reads_the_apache_fixture(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    shutil.copy(FIXTURES / "apache-combined-3000.log", log)
    lines = log.read_bytes().splitlines()
    expected = collections.Counter(line.split(b'"')[2].split()[0].decode() for line in lines)
    config = write_config(tmp_path / "c.yaml", f"from_start: true\nfiles: [{{path: {log}, format: combined}}]\n")
    daemon, code = run_once("--config", str(config))
    assert code == 0, daemon.err.text
    [(_length, total)] = daemon.windows()
    assert total == 3000
    [report] = parse_reports(daemon.out.text)
    assert not report.groups  # one file: no [path] lines
    statuses = {s: q for s, q in report.totals.items() if s != "all"}
    assert {s: round(q / report.totals["all"] * total) for s, q in statuses.items()} == expected
    assert "serving" not in daemon.err.text  # no HTTP server in --once


def test_once_with_config_as_with_file(tmp_path: Path) -> None:
    """The same TSV file through --file and through --config gives the same report rows."""
    log = tmp_path / "access.tsv"
    log.write_text("".join(f"10.0.0.1\tGET /r/{i % 7}\t{200 if i % 5 else 503}\t10\t{i % 30}\n" for i in range(500)))
    by_file, code = run_once("--file", str(log), "--from-start")
    assert code == 0, by_file.err.text
    config = write_config(tmp_path / "c.yaml", f"files: [{{path: {log}}}]\n")
    by_config, code = run_once("--config", str(config), "--from-start")
    assert code == 0, by_config.err.text
    config = write_config(tmp_path / "c2.yaml", f"from_start: true\nfiles: [{{path: {log}}}]\n")
    by_yaml_flag, code = run_once("--config", str(config))
    assert code == 0, by_yaml_flag.err.text

    def shape(daemon: Daemon) -> tuple[int, list[tuple[str, str]], dict[str, float]]:
        [(_length, total)] = daemon.windows()
        [report] = parse_reports(daemon.out.text)
        ratios = {s: round(q / report.totals["all"] * total) for s, q in report.totals.items()}
        return total, [(r, s) for r, s, _q in report.rows], ratios

    assert shape(by_file) == shape(by_config) == shape(by_yaml_flag)
    assert shape(by_file)[0] == 500 and shape(by_file)[2] == {"200": 400, "503": 100, "all": 500}
    assert shape(by_file)[1] == [("/r/:id", "200"), ("/r/:id", "503")]


def test_once_with_config_groups_several_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.jsonl"
    shutil.copy(FIXTURES / "nginx-combined-edge-cases.log", a)
    b.write_text('{"path": "/x", "status": 201}\n' * 3)
    config = write_config(tmp_path / "c.yaml", f"""from_start: true
files:
  - {{path: {a}, format: combined}}
  - {{path: {b}, format: json}}
""")
    daemon, code = run_once("--config", str(config))
    assert code == 0, daemon.err.text
    [(_length, total)] = daemon.windows()
    assert total == 10
    [report] = parse_reports(daemon.out.text)
    assert {g: sorted((r, s) for r, s, _q in rows) for g, rows in report.groups.items()} == {
        str(a): [("-", "400"), ("/assets/xxxx", "200"), ("/ocelot", "200"), ("/stringpatch", "404"),
                 ("/test.html", "404")],
        str(b): [("/x", "201")],
    }
    assert re.search(r"^TOTAL\tall\t", daemon.out.text, re.M)


def test_a_glob_gaining_its_second_file_does_not_recount_the_first_in_the_report(tmp_path: Path) -> None:
    """With one file, report rows have no group; when a second file starts matching, the rows get
    grouped by path from then on, and the first file's history is not counted again."""
    logs = tmp_path / "logs"
    logs.mkdir()
    first, second = logs / "a.log", logs / "b.log"
    first.write_text("")
    config = write_config(tmp_path / "c.yaml",
                          f"interval: 0.3\nrescan_interval: 0.1\nfiles: [{{path: {logs}/*.log}}]\n")
    daemon = Daemon("--config", str(config), "--log-level", "debug").wait_ready()
    try:
        appended(first, ["10.0.0.1\tGET /a\t200\t1\n"] * 40)
        wait_for(lambda: sum(n for _l, n in daemon.windows()) == 40, 10, "a report of the first file's lines")
        second.write_text("10.0.0.1\tGET /b\t200\t1\n" * 7)
        wait_for(lambda: daemon.value("logtaild_lines_read_total", file=str(second)) == 7, 10, "b.log read")
        appended(first, ["10.0.0.1\tGET /a\t200\t1\n"] * 3)
        wait_for(lambda: daemon.value("logtaild_lines_read_total", file=str(first)) == 43, 10, "a.log read")
        code, _seconds = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert sum(n for _length, n in daemon.windows()) == 50  # every line in exactly one report
    reports = parse_reports(daemon.out.text)
    assert not reports[0].groups
    grouped = [r for r in reports if r.groups]
    assert grouped and all(set(r.groups) <= {str(first), str(second)} for r in grouped)
    assert sum(1 for r in grouped for row in r.groups.get(str(second), []) if row[:2] == ("/b", "200")) >= 1

"""`logtaild --file` with no config on real nginx, Apache and JSON logs (the format detected), `--format` and
`--log-format`, a config with custom nginx and Apache formats, the `--once` malformed summary, and
format config errors: exact counts read from the cron textfile (`--once --state-file --textfile`).
"""
from __future__ import annotations

import collections
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.cli import run, signal_handlers_kept
from tests.unit.test_formats_production import APACHE, NGINX_MAIN, apache_lines, nginx_lines

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(autouse=True)
def keep_signal_handlers() -> Iterator[None]:
    with signal_handlers_kept():
        yield




def counters(tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
             ) -> tuple[dict[str, list[Sample]], str]:
    """One `--once --from-start` pass with a state file and textfile: the samples by family, and stderr."""
    textfile = tmp_path / "out.prom"
    code, _out, err = run([*argv, "--once", "--from-start", "--state-file", str(tmp_path / "state.json"),
                           "--textfile", str(textfile)], capsys)
    assert code == 0, err
    families = {f.name: f.samples for f in text_string_to_metric_families(textfile.read_text())}
    return families, err


def by_status(families: dict[str, list[Sample]]) -> dict[str, int]:
    out: collections.Counter[str] = collections.Counter()
    for sample in families["logtaild_http_requests"]:
        out[sample.labels["status"]] += int(sample.value)
    return dict(out)


def malformed(families: dict[str, list[Sample]]) -> int:
    return int(sum(s.value for s in families["logtaild_lines_malformed"]))


def test_apache_combined_without_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          caplog: pytest.LogCaptureFixture) -> None:
    log = shutil.copy(FIXTURES / "apache-combined-3000.log", tmp_path / "access.log")
    with caplog.at_level(logging.INFO, logger="logtaild"):
        families, err = counters(tmp_path, ["--file", str(log)], capsys)
    assert by_status(families) == {"200": 2641, "304": 211, "301": 68, "404": 58, "206": 21, "500": 1}
    assert malformed(families) == 0 and "malformed" not in err
    said = [r.getMessage() for r in caplog.records if "detected format" in r.getMessage()]
    assert said == [f"{log}: detected format combined from the first 20 lines (20 parse)"]


def test_nginx_combined_without_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = shutil.copy(FIXTURES / "nginx-combined-edge-cases.log", tmp_path / "access.log")
    families, _err = counters(tmp_path, ["--file", str(log)], capsys)
    assert by_status(families) == {"200": 4, "404": 2, "400": 1}
    assert malformed(families) == 0


def test_json_without_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "access.jsonl"
    log.write_text("".join(json.dumps({"path": f"/p{i % 3}", "status": 200 + (i % 2) * 300, "latency_ms": 7})
                           + "\n" for i in range(50)))
    families, _err = counters(tmp_path, ["--file", str(log)], capsys)
    assert by_status(families) == {"200": 25, "500": 25}
    assert int(sum(s.value for s in families["logtaild_http_request_duration_seconds"]
                   if s.name.endswith("_count"))) == 50


def test_tsv_without_a_config_keeps_the_fast_path_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "access.tsv"
    log.write_bytes(b"".join(b"10.0.0.1\tGET /u/%d\t200\t5\t3\n" % i for i in range(500)))
    families, _err = counters(tmp_path, ["--file", str(log)], capsys)
    assert by_status(families) == {"200": 500}


def test_format_flag_and_the_once_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A format that does not fit: every line malformed, one summary line naming the reasons and the
    first line (escaped), and the format that would have parsed them. (Cron mode, `--once` with a state
    file, prints no summary: cron mails whatever a job writes.)"""
    log = tmp_path / "access.log"
    log.write_bytes(b"\x1b[2Jbad\tline\n" + (FIXTURES / "nginx-combined-edge-cases.log").read_bytes())
    code, out, err = run(["--file", str(log), "--format", "tsv", "--once", "--from-start"], capsys)
    assert code == 0 and out.endswith("TOTAL\tall\t0\n")
    summary = [line for line in err.splitlines() if line.startswith("logtaild: ")]
    assert summary == [f"logtaild: {log}: 8 of 8 lines malformed for format tsv (fields=8); "
                       "first: \\x1b[2Jbad\\x09line"]
    families, err = counters(tmp_path, ["--file", str(log), "--format", "tsv"], capsys)
    assert malformed(families) == 8
    assert not [line for line in err.splitlines() if line.startswith("logtaild: ")]


def test_mostly_malformed_first_lines_name_the_format_that_parses_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    log = shutil.copy(FIXTURES / "apache-combined-3000.log", tmp_path / "access.log")
    with caplog.at_level(logging.INFO, logger="logtaild"):
        families, _err = counters(tmp_path, ["--file", str(log), "--format", "json"], capsys)
    assert malformed(families) == 3000
    said = [r.getMessage() for r in caplog.records if "malformed for format" in r.getMessage()]
    assert said == [f"{log}: 100 of the first 100 lines are malformed for format json; format combined parses "
                    "100 of them: set `format: combined` for this file"]


def test_log_format_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines, expected = nginx_lines(300)
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    families, err = counters(tmp_path, ["--file", str(log), "--log-format", NGINX_MAIN], capsys)
    assert malformed(families) == 0, err
    assert sum(by_status(families).values()) == 300
    upstream = [s for s in families["logtaild_http_upstream_duration_seconds"] if s.name.endswith("_count")]
    assert sum(s.value for s in upstream) == sum(expected.upstream)


def config_file(tmp_path: Path, nginx_log: Path, apache_log: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps({"files": [
        {"path": str(nginx_log), "format": "nginx", "log_format": NGINX_MAIN,
         "label_fields": {"vhost": "$host", "version": "$sent_http_x_version"}},
        {"path": str(apache_log), "format": "apache", "log_format": APACHE,
         "label_fields": {"vhost": "%v", "version": "%{X-Version}o"}, "labels": {"service": "sites"}},
    ]}))
    return path


def test_a_config_with_custom_nginx_and_apache_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nginx, ng_expected = nginx_lines(1200)
    apache, ap_expected = apache_lines(800)
    (tmp_path / "nginx.log").write_bytes(b"\n".join(nginx) + b"\n")
    (tmp_path / "apache.log").write_bytes(b"\n".join(apache) + b"\n")
    config = config_file(tmp_path, tmp_path / "nginx.log", tmp_path / "apache.log")
    families, err = counters(tmp_path, ["--config", str(config)], capsys)
    assert malformed(families) == 0, err
    requests: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for sample in families["logtaild_http_requests"]:
        labels = sample.labels
        requests[labels["vhost"], labels["version"], labels.get("service", "")] += int(sample.value)
    want: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for expected, service in ((ng_expected, ""), (ap_expected, "sites")):
        for (_route, _method, _status, extra), n in expected.requests.items():
            values = dict(extra)
            want[values["vhost"], values["version"], service] += n
    assert requests == want
    hist: collections.Counter[str] = collections.Counter()
    for sample in families["logtaild_http_request_duration_seconds"]:
        if sample.name.endswith("_bucket"):
            hist[sample.labels["le"]] += int(sample.value)
    latency = [a + b for a, b in zip(ng_expected.latency, ap_expected.latency)]
    assert [hist[le] for le in ("0.005", "0.05", "0.5")] == [sum(latency[:i + 1]) for i in range(3)]
    up: collections.Counter[str] = collections.Counter()
    for sample in families["logtaild_http_upstream_duration_seconds"]:
        if sample.name.endswith("_bucket"):
            assert "service" not in sample.labels  # only the nginx file has upstream times
            up[sample.labels["le"]] += int(sample.value)
    assert [up[le] for le in ("0.005", "0.05", "0.5")] == [sum(ng_expected.upstream[:i + 1]) for i in range(3)]


@pytest.mark.parametrize(("entry", "message"), [
    ({"format": "nginx", "log_format": "$status$body_bytes_sent$request"},
     "files[0].log_format: $body_bytes_sent is followed by $request"),
    ({"format": "apache", "log_format": "%h %{User-Agent i"}, "files[0].log_format: an unterminated %{"),
    ({"format": "nginx"}, "files[0].log_format: required with format nginx"),
    ({"format": "combined", "log_format": "$status"}, "files[0].log_format: only the nginx and apache formats"),
    ({"format": "nginx", "log_format": '"$request" $status', "latency_unit": "seconds"},
     "files[0].latency_unit: the nginx format knows the unit"),
    ({"format": "nginx", "log_format": '"$request" $status', "label_fields": {"vhost": "$host"}},
     "files[0].label_fields.vhost: $host is not a field of the log format"),
    ({"format": "nginx", "log_format": '"$request" $status $host', "label_fields": {"route": "$host"}},
     "files[0].label_fields.route: not a usable Prometheus label name"),
    ({"format": "nginx", "log_format": '"$request" $status $host', "label_fields": {"9x": "$host"}},
     "files[0].label_fields.9x: not a usable Prometheus label name"),
    ({"format": "nginx", "log_format": '"$request" $status $host', "label_fields": {"team": "$host"},
      "labels": {"team": "web"}}, "files[0].label_fields.team: team is already a constant label"),
    ({"format": "json", "label_fields": {"service": "svc"}}, "files[0].label_fields.service: the json format's"),
    ({"label_fields": {"vhost": "host"}}, "files[0].label_fields: needs a format with named fields"),
    ({"format": "nginx", "log_format": '"$request" $status', "upstream_field": "$upstream_response_time"},
     "files[0].upstream_field: $upstream_response_time is not a field"),
    ({"format": "tsv", "upstream_field": "x"}, "files[0].upstream_field: only the nginx, apache and json"),
    ({"format": "nginx", "log_format": '"$request" $status', "upstream_unit": "hours"},
     "files[0].upstream_unit: must be seconds"),
    ({"format": "nginx", "log_format": '"$request" $status $host', "label_values_max": 0},
     "files[0].label_values_max: must be at least 1"),
])
def test_format_config_errors_name_the_key(entry: dict[str, object], message: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"files": [{"path": "a.log", **entry}]}))
    for argv in (["--config", str(path), "--once"], ["--check-config", str(path)]):
        code, out, err = run(argv, capsys)
        assert (code, out) == (2, ""), err
        assert err.startswith(f"logtaild: error: {message}"), err
        assert len(err.splitlines()) == 1


def test_format_flags_need_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("files: [{path: a.log}]\n")
    code, _out, err = run(["--config", str(path), "--format", "tsv", "--once"], capsys)
    assert code == 2 and "--format and --log-format apply to --file" in err
    code, _out, err = run(["--file", "a.log", "--format", "xml", "--once"], capsys)
    assert code == 2 and "--format" in err

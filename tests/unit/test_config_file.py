"""The YAML config: every key, errors that name the key path, bucket generators, `--check-config`.

The example config in deploy/ is validated here through the real `logtaild --check-config`.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
import yaml

from logtaild import cli
from logtaild.config import (
    DEFAULT_BUCKETS,
    BasicAuthConfig,
    Config,
    ConfigError,
    FileConfig,
    GeneratorConfig,
    HistogramConfig,
    NativeHistogramsConfig,
    QueueConfig,
    RemoteWriteConfig,
    RoutesConfig,
    RuleConfig,
    SloConfig,
    TlsClientConfig,
    load,
    to_dict,
)
from logtaild.count.parsers import make_parser
from tests.support.cli import run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "config.example.yaml"

#: Every key, each with a value other than its default.
EVERY_KEY = """\
listen: "127.0.0.1:19999"
interval: 2.5
state_file: /tmp/state.json
from_start: true
poll_interval: 0.1
drain_grace: 3
max_line: 4096
rescan_interval: 1
web_config: null
files:
  - path: /var/log/nginx/*.log
    format: combined
    latency_unit: seconds
    labels: {service: shop, team: web}
  - path: /var/log/app.jsonl
    format: json
    latency_unit: microseconds
    fields: {path: url.path, request: req, method: verb, status: code, bytes: size, latency: took,
             service: svc}
  - path: /var/log/nginx/api.log
    format: nginx
    log_format: '$remote_addr [$time_local] "$request" $status $body_bytes_sent $request_time
      "$upstream_response_time" $host $request_id'
    label_fields: {vhost: $host}
    label_values_max: 20
    upstream_field: $upstream_response_time
    upstream_unit: seconds
    exemplar_field: $request_id
    native_histograms: {enabled: false, schema: 2, zero_threshold_s: 0.001, max_buckets: 10}
routes:
  max: 50
  builtin: false
  max_length: 128
  max_series: 5000
  rules:
    - {match: "^/static/", replace: "/static/*"}
    - {match: "^/u/(\\\\w+)$", replace: "/u/:name"}
histogram:
  exponential: {start: 0.01, factor: 3, count: 4}
slo:
  - {route: "/api/.*", latency_threshold: 0.3, latency_objective: 0.95, availability: 0.9995, team: payments}
  - {route: "/"}
remote_write:
  - url: https://vm.example.org:8428/api/v1/write
    interval: 5
    timeout: 3
    basic_auth: {username: logtaild, password_file: /dev/null}
    tls: {ca_file: /dev/null, cert_file: /dev/null, key_file: /dev/null, insecure_skip_verify: true}
    headers: {X-Scope-OrgID: web}
    external_labels: {site: a}
    queue: {max_samples: 1000, min_backoff: 1, max_backoff: 8}
  - url: http://127.0.0.1:9090/api/v1/write
    bearer_token_file: /dev/null
native_histograms: {enabled: true, schema: 5, zero_threshold_s: 0.0001, max_buckets: 300}
report: latency
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_key(tmp_path: Path) -> None:
    config = load(str(write(tmp_path, EVERY_KEY)))
    assert config == Config(
        listen="127.0.0.1:19999", interval=2.5, state_file="/tmp/state.json", from_start=True, poll_interval=0.1,
        drain_grace=3.0, max_line=4096, rescan_interval=1.0, web_config=None,
        files=(
            FileConfig("/var/log/nginx/*.log", "combined", {"service": "shop", "team": "web"}, "seconds"),
            FileConfig("/var/log/app.jsonl", "json", {}, "microseconds",
                       {"path": "url.path", "request": "req", "method": "verb", "status": "code", "bytes": "size",
                        "latency": "took", "service": "svc"}),
            FileConfig("/var/log/nginx/api.log", "nginx",
                       log_format='$remote_addr [$time_local] "$request" $status $body_bytes_sent $request_time '
                       '"$upstream_response_time" $host $request_id', label_fields={"vhost": "$host"},
                       label_values_max=20, upstream_field="$upstream_response_time",
                       native_histograms=NativeHistogramsConfig(False, 2, 0.001, 10), exemplar_field="$request_id"),
        ),
        routes=RoutesConfig(50, False, (RuleConfig("^/static/", "/static/*"), RuleConfig(r"^/u/(\w+)$", "/u/:name")),
                            max_length=128, max_series=5000),
        histogram=HistogramConfig(exponential=GeneratorConfig(0.01, 4, factor=3.0)),
        slo=(SloConfig("/api/.*", 0.3, 0.95, 0.9995, "payments"), SloConfig("/")),
        remote_write=(
            RemoteWriteConfig("https://vm.example.org:8428/api/v1/write", 5.0, 3.0,
                              BasicAuthConfig("logtaild", "/dev/null"), None,
                              TlsClientConfig("/dev/null", "/dev/null", "/dev/null", True),
                              {"X-Scope-OrgID": "web"}, {"site": "a"}, QueueConfig(1000, 1.0, 8.0)),
            RemoteWriteConfig("http://127.0.0.1:9090/api/v1/write", bearer_token_file="/dev/null"),
        ),
        native_histograms=NativeHistogramsConfig(True, 5, 0.0001, 300),
        report="latency",
    )
    # each file gets a working parser with its options
    for file in config.files:
        make_parser(file)


def _keys(cls: type, prefix: str = "") -> set[str]:
    """Every key path a config can have (list items as [])."""
    out = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        out.add(path)
        inner = hints[f.name]
        if typing.get_origin(inner) in (typing.Union, types.UnionType):
            inner = next(a for a in typing.get_args(inner) if a is not type(None))
        if typing.get_origin(inner) is tuple:
            inner, path = typing.get_args(inner)[0], path + "[]"
        if dataclasses.is_dataclass(inner):
            out |= _keys(inner, path + ".")
    return out


def _used(data: object, prefix: str = "") -> set[str]:
    """The key paths a YAML document sets, in the form `_keys` gives."""
    out = set()
    if isinstance(data, dict):
        for key, value in data.items():
            path = prefix + key
            out.add(path)
            if key in ("labels", "fields", "headers", "external_labels"):  # free-form mappings
                continue
            if isinstance(value, dict):
                out |= _used(value, path + ".")
            elif isinstance(value, list):
                for item in value:
                    out |= _used(item, path + "[].")
    return out


def test_the_every_key_config_covers_every_key() -> None:
    """A key added to Config without a test here fails (the other histogram forms have their own tests)."""
    generators = {"histogram.linear", "histogram.buckets", "histogram.linear.start", "histogram.linear.count",
                  "histogram.linear.width", "histogram.linear.factor", "histogram.exponential.width"}
    assert _keys(Config) - _used(yaml.safe_load(EVERY_KEY)) == generators


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert load(str(write(tmp_path, ""))) == Config()
    assert load(str(write(tmp_path, "# only a comment\n"))) == Config()


def test_defaults_of_a_file_entry(tmp_path: Path) -> None:
    config = load(str(write(tmp_path, "files:\n  - path: a.log\n")))
    assert config.files == (FileConfig("a.log", "auto", {}, None, {}),)


def test_label_and_team_values_may_be_numbers(tmp_path: Path) -> None:
    config = load(str(write(tmp_path, "files: [{path: a, labels: {shard: 7}}]\nslo: [{route: /, team: 42}]\n")))
    assert config.files[0].labels == {"shard": "7"} and config.slo[0].team == "42"


# ---- errors name the key path ---------------------------------------------------------------------

ERRORS = [
    # (yaml, the whole message, or its start up to "...")
    ("fromat: tsv", "fromat: unknown key (known: ..."),
    ("files: [{path: a, fromat: tsv}]",
     "files[0].fromat: unknown key (known: exemplar_field, fields, format, label_fields, ..."),
    ("files: [{format: tsv}]", "files[0].path: required"),
    ("files: [{path: ''}]", "files[0].path: must not be empty"),
    ("files: [{path: a}, {path: b}, {path: a}]", "files[2].path: 'a' is already files[0].path"),
    ("files: a.log", "files: expected a list, got str"),
    ("files: [a.log]", "files[0]: expected a mapping, got str"),
    ("files: [{path: a, format: xml}]",
     "files[0].format: must be one of auto, tsv, combined, json, nginx, apache, got 'xml'"),
    ("files: [{path: a, format: combined, latency_unit: hours}]",
     "files[0].latency_unit: must be seconds, milliseconds or microseconds"),
    ("files: [{path: a, format: tsv, latency_unit: seconds}]",
     "files[0].latency_unit: the tsv format's latency is always in milliseconds"),
    ("files: [{path: a, format: combined, fields: {status: code}}]",
     "files[0].fields: only the json format maps fields"),
    ("files: [{path: a, format: json, fields: {colour: c}}]", "files[0].fields.colour: unknown field (known: ..."),
    ("files: [{path: a, format: json, fields: {route: r, path: p}}]",
     "files[0].fields.path: give route or path, not both"),
    ("files: [{path: a, format: json, fields: {status: [a]}}]", "files[0].fields.status: expected str, got list..."),
    ("files: [{path: a, labels: {route: x}}]", "files[0].labels.route: not a usable Prometheus label name"),
    ("files: [{path: a, labels: {__x: x}}]", "files[0].labels.__x: not a usable Prometheus label name"),
    ("files: [{path: a, labels: {'bad-name': x}}]", "files[0].labels.bad-name: not a usable Prometheus label name"),
    ("files: [{path: a, labels: [x]}]", "files[0].labels: expected a mapping, got list"),
    ("listen: 'localhost'", "listen: 'localhost' is not [HOST]:PORT ..."),
    ("listen: ':70000'", "listen: ':70000' is not [HOST]:PORT ..."),
    ("interval: fast", "interval: expected float, got str 'fast'"),
    ("interval: 0", "interval: must be a positive number, got 0.0"),
    ("interval: .nan", "interval: must be a positive number, got nan"),
    ("poll_interval: -1", "poll_interval: must be a positive number, got -1.0"),
    ("rescan_interval: .inf", "rescan_interval: must be a positive number, got inf"),
    ("max_line: 10", "max_line: must be at least 256, got 10"),
    ("max_line: true", "max_line: expected int, got bool True"),
    ("from_start: 1", "from_start: expected bool, got int 1"),
    ("routes: {max: 0}", "routes.max: must be at least 1, got 0"),
    ("routes: {max: 1.5}", "routes.max: expected int, got float 1.5"),
    ("routes: {rules: [{match: '('}]}", "routes.rules[0].replace: required"),
    ("routes: {rules: [{match: '(', replace: x}]}", "routes.rules[0].match: invalid regex: ..."),
    ("routes: {rules: [{match: a, replace: '\\2'}]}", "routes.rules[0].replace: invalid replacement: ..."),
    ("routes: {cap: 5}", "routes.cap: unknown key (known: builtin, max, max_length, max_series, rules)"),
    ("routes: {max_length: 15}", "routes.max_length: must be at least 16, got 15"),
    ("routes: {max_series: 0}", "routes.max_series: must be at least 1, got 0"),
    ("histogram: {buckets: []}", "histogram.buckets: must be a non-empty, strictly increasing list"),
    ("histogram: {buckets: [0.5, 0.1]}", "histogram.buckets: must be a non-empty, strictly increasing list"),
    ("histogram: {buckets: [0, 1]}", "histogram.buckets[0]: must be a positive number, got 0.0"),
    ("histogram: {buckets: [1, x]}", "histogram.buckets[1]: expected float, got str 'x'"),
    ("histogram: {buckets: [1], linear: {start: 1, count: 2, width: 1}}",
     "histogram: give only one of buckets, exponential, linear (got buckets, linear)"),
    ("histogram: {exponential: {start: 1, count: 3}}", "histogram.exponential.factor: required, > 1"),
    ("histogram: {exponential: {start: 1, count: 3, factor: 1}}", "histogram.exponential.factor: required, > 1"),
    ("histogram: {exponential: {start: 1, count: 3, width: 2}}",
     "histogram.exponential.width: not used by exponential buckets (give factor)"),
    ("histogram: {exponential: {start: 0, count: 3, factor: 2}}",
     "histogram.exponential.start: must be a positive number, got 0.0"),
    ("histogram: {exponential: {start: 1, count: 0, factor: 2}}", "histogram.exponential.count: must be 1 to 100"),
    ("histogram: {exponential: {count: 3, factor: 2}}", "histogram.exponential.start: required"),
    ("histogram: {linear: {start: 1, count: 101, width: 1}}", "histogram.linear.count: must be 1 to 100"),
    ("histogram: {linear: {start: 1, count: 3, width: 0}}", "histogram.linear.width: required, > 0"),
    ("histogram: {linear: {start: 1, count: 3, factor: 2}}",
     "histogram.linear.factor: not used by linear buckets (give width)"),
    ("slo: [{latency_threshold: 1}]", "slo[0].route: required"),
    ("slo: [{route: '/'}, {route: '[', team: x}]", "slo[1].route: invalid regex: ..."),
    ("slo: [{route: /, latency_threshold: 0}]", "slo[0].latency_threshold: must be a positive number, got 0.0"),
    ("slo: [{route: /, latency_objective: 1}]",
     "slo[0].latency_objective: must be between 0 and 1 (exclusive), got 1.0"),
    ("slo: [{route: /, availability: 99.9}]", "slo[0].availability: must be between 0 and 1 (exclusive), got 99.9"),
    ("slo: [{route: /, owner: x}]", "slo[0].owner: unknown key (known: availability, latency_objective, ..."),
    ("slo: {route: /}", "slo: expected a list, got dict"),
    ("- a\n- b\n", "config: expected a mapping, got list"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS,
                         ids=[m.split(":")[0] + " " + m.split(":")[1][:30] for _t, m in ERRORS])
def test_errors_name_the_key_path(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(str(write(tmp_path, text + "\n")))
    got = str(info.value)
    if message.endswith("..."):
        assert got.startswith(message[:-3]), got
    else:
        assert got == message
    assert "\n" not in got


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothere\.yaml: No such file or directory$"):
        load(str(tmp_path / "nothere.yaml"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+ not valid YAML"):
        load(str(write(tmp_path, "a: 1\nb: [\n", "bad.yaml")))
    (tmp_path / "latin1.yaml").write_bytes(b"listen: '\xe9'\n")
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load(str(tmp_path / "latin1.yaml"))


# ---- histogram bounds -----------------------------------------------------------------------------

def test_bucket_generators_and_slo_thresholds() -> None:
    def bounds(**hist: object) -> tuple[float, ...]:
        return Config(histogram=HistogramConfig(**hist)).bucket_bounds()  # type: ignore[arg-type]

    assert bounds() == DEFAULT_BUCKETS  # 0.5 (the default SLO threshold) is already one
    assert bounds(buckets=(0.1, 1.0)) == (0.1, 0.5, 1.0)
    assert bounds(exponential=GeneratorConfig(0.005, 5, factor=2)) == (0.005, 0.01, 0.02, 0.04, 0.08, 0.5)
    assert bounds(exponential=GeneratorConfig(0.1, 3, factor=10)) == (0.1, 0.5, 1.0, 10.0)
    assert bounds(linear=GeneratorConfig(0.1, 4, width=0.1)) == (0.1, 0.2, 0.3, 0.4, 0.5)  # no 0.30000000000000004
    with_slo = Config(histogram=HistogramConfig(buckets=(1.0, 2.0)), slo=(SloConfig("/a", 0.3), SloConfig("/b", 1.0)))
    assert with_slo.bucket_bounds() == (0.3, 0.5, 1.0, 2.0)


def test_generators_from_yaml(tmp_path: Path) -> None:
    config = load(str(write(tmp_path, "histogram: {linear: {start: 0.25, width: 0.25, count: 4}}\n")))
    assert config.bucket_bounds() == (0.25, 0.5, 0.75, 1.0)
    config = load(str(write(tmp_path, "histogram: {exponential: {start: 0.001, factor: 4, count: 3}}\n")))
    assert config.bucket_bounds() == (0.001, 0.004, 0.016, 0.5)


# ---- the command line -----------------------------------------------------------------------------

def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run(list(argv), capsys)


def test_check_config_prints_the_effective_config_which_loads_back_the_same(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, EVERY_KEY)
    code, out, err = run_cli(capsys, "--check-config", str(path))
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert printed == to_dict(load(str(path)))
    assert printed["files"][1]["fields"]["path"] == "url.path" and printed["routes"]["max"] == 50
    # the output is itself a valid config, equal to the input
    assert load(str(write(tmp_path, out, "effective.yaml"))) == load(str(path))


def test_check_config_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "files: [{path: a, format: json, fields: {colour: c}}]\n")
    code, out, err = run_cli(capsys, "--check-config", str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("logtaild: error: files[0].fields.colour: unknown field")
    code, _out, err = run_cli(capsys, "--config", str(path), "--once")
    assert code == 2 and "files[0].fields.colour" in err and "Traceback" not in err


def test_flags_override_the_config(tmp_path: Path) -> None:
    path = write(tmp_path, "listen: ':1'\ninterval: 5\nfiles: [{path: a.log, format: combined}]\n")
    base = {"config": str(path), "listen": None, "interval": None, "state_file": None, "from_start": False,
            "file": ()}
    config = cli.effective_config(base)
    assert (config.listen, config.interval, config.files[0].format) == (":1", 5.0, "combined")
    config = cli.effective_config({**base, "listen": "127.0.0.1:2", "interval": 0.5, "state_file": "s.json",
                                   "from_start": True})
    assert (config.listen, config.interval, config.state_file, config.from_start) == ("127.0.0.1:2", 0.5, "s.json",
                                                                                       True)
    config = cli.effective_config({**base, "file": ("b.tsv",)})  # --file replaces the config's files
    assert config.files == (FileConfig("b.tsv"),)
    with pytest.raises(ConfigError, match="nothing to follow"):
        cli.effective_config({**base, "config": str(write(tmp_path, "interval: 1\n", "empty.yaml"))})


def test_the_example_config_passes_check_config() -> None:
    """deploy/config.example.yaml through the real command, as an operator would run it."""
    result = subprocess.run([sys.executable, "-m", "logtaild", "--check-config", str(EXAMPLE)],
                            capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    effective = yaml.safe_load(result.stdout)
    config = load(str(EXAMPLE))
    assert effective == to_dict(config)
    assert {f.format for f in config.files} == {"combined", "json"}
    assert config.slo and all(slo.team for slo in config.slo[:2])
    for file in config.files:
        make_parser(file)


def test_the_example_config_documents_every_key() -> None:
    """Each key of Config appears in the example (set, or in a comment), with a comment explaining it."""
    text = EXAMPLE.read_text()
    for key in sorted(_keys(Config)):
        leaf = key.rsplit(".", 1)[-1].replace("[]", "")
        assert f"{leaf}:" in text, f"{key} is not in {EXAMPLE.name}"
    comments = [line for line in text.splitlines() if line.lstrip().startswith("#")]
    assert len(comments) > 60

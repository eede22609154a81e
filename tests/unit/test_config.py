"""Config: every error names its key path, bucket bounds, listen forms, loading files."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from logtaild.config import (
    DEFAULT_BUCKETS,
    DEFAULT_PORT,
    Config,
    ConfigError,
    FileConfig,
    NativeHistogramsConfig,
    RuleConfig,
    build,
    check,
    dump_yaml,
    load,
    parse_listen,
    to_dict,
)


def conf(data: dict[str, Any]) -> Config:
    return check(build(Config, data))


def error(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        conf(data)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults() -> None:
    config = conf({})
    assert config == Config()
    assert config.listen == f":{DEFAULT_PORT}" == ":10181"
    assert config.interval == 10.0 and config.files == () and config.routes.max == 1000


def test_full_config_maps_onto_the_dataclasses() -> None:
    config = conf({
        "listen": "127.0.0.1:9",
        "interval": 2,                         # an int where a float is expected is fine
        "files": [{"path": "/var/log/a.tsv", "labels": {"team": 42}}],
        "routes": {"max": 50, "rules": [{"match": "^/blog/.*", "replace": "/blog/*"}]},
        "slo": [{"route": "/api.*", "latency_threshold": 0.3, "team": "payments"}],
    })
    assert config.interval == 2.0 and isinstance(config.interval, float)
    assert config.files == (FileConfig("/var/log/a.tsv", labels={"team": "42"}),)
    assert config.routes.rules == (RuleConfig("^/blog/.*", "/blog/*"),)
    assert config.slo[0].latency_threshold == 0.3 and config.slo[0].availability == 0.999


@pytest.mark.parametrize(("data", "message"), [
    # unknown keys, top level and nested
    ({"intervall": 5}, "intervall: unknown key (known: "),
    ({"files": [{"path": "a", "fromat": "tsv"}]},
     "files[0].fromat: unknown key (known: exemplar_field, fields, format, label_fields, "),
    ({"files": [{"path": "a"}, {"path": "b", "x": 1}]}, "files[1].x: unknown key"),
    ({"routes": {"rules": [{"match": "a", "replace": "b", "flags": "i"}]}}, "routes.rules[0].flags: unknown key"),
    ({"histogram": {"exponential": {"start": 1, "count": 2, "factr": 2}}}, "histogram.exponential.factr: unknown key"),
    # required keys
    ({"files": [{"format": "tsv"}]}, "files[0].path: required"),
    ({"slo": [{"team": "x"}]}, "slo[0].route: required"),
    # wrong types
    ({"interval": "fast"}, "interval: expected float, got str 'fast'"),
    ({"interval": True}, "interval: expected float, got bool True"),
    ({"max_line": 1.5}, "max_line: expected int, got float 1.5"),
    ({"max_line": True}, "max_line: expected int, got bool True"),
    ({"from_start": "yes"}, "from_start: expected bool, got str 'yes'"),
    ({"files": "/var/log/a.tsv"}, "files: expected a list, got str"),
    ({"files": [None]}, "files[0]: expected a mapping, got NoneType"),
    ({"files": [{"path": ["a"]}]}, "files[0].path: expected str, got list ['a']"),
    ({"files": [{"path": "a", "labels": ["x"]}]}, "files[0].labels: expected a mapping, got list"),
    ({"files": [{"path": "a", "labels": {"team": {"x": 1}}}]}, "files[0].labels.team: expected str, got dict"),
    ({"routes": 5}, "routes: expected a mapping, got int"),
    ({"routes": {"builtin": "no"}}, "routes.builtin: expected bool, got str 'no'"),
    ({"histogram": {"buckets": [0.1, "x"]}}, "histogram.buckets[1]: expected float, got str 'x'"),
    ({"histogram": None}, "histogram: expected a mapping, got NoneType"),
    # bad regexes
    ({"routes": {"rules": [{"match": "(", "replace": "x"}]}}, "routes.rules[0].match: invalid regex: "),
    ({"routes": {"rules": [{"match": "a", "replace": "b"}, {"match": "[", "replace": "x"}]}},
     "routes.rules[1].match: invalid regex: "),
    ({"routes": {"rules": [{"match": "/(a)", "replace": r"\2"}]}},
     "routes.rules[0].replace: invalid replacement: invalid group reference 2"),
    ({"slo": [{"route": "*api"}]}, "slo[0].route: invalid regex: no argument for repetition operator"),
    ({"slo": [{"route": "/api(?=/v1)"}]}, "slo[0].route: invalid regex: "),  # RE2: no lookarounds
    # bad listen
    ({"listen": "localhost"}, "listen: 'localhost' is not [HOST]:PORT"),
    ({"listen": ":0"}, "listen: ':0' is not [HOST]:PORT"),
    ({"listen": 10181}, "listen: '10181' is not [HOST]:PORT"),  # ints become strings, then fail the format
    # buckets
    ({"histogram": {"buckets": [0.1, 0.05]}}, "histogram.buckets: must be a non-empty, strictly increasing list"),
    ({"histogram": {"buckets": [0.1, 0.1]}}, "histogram.buckets: must be a non-empty, strictly increasing list"),
    ({"histogram": {"buckets": []}}, "histogram.buckets: must be a non-empty, strictly increasing list"),
    ({"histogram": {"buckets": [-1.0, 1.0]}}, "histogram.buckets[0]: must be a positive number, got -1.0"),
    ({"histogram": {"buckets": [1], "linear": {"start": 1, "count": 2, "width": 1}}},
     "histogram: give only one of buckets, exponential, linear (got buckets, linear)"),
    ({"histogram": {"exponential": {"start": 0.001, "count": 10}}}, "histogram.exponential.factor: required, > 1"),
    ({"histogram": {"exponential": {"start": 0.001, "count": 10, "factor": 1}}},
     "histogram.exponential.factor: required, > 1"),
    ({"histogram": {"linear": {"start": 0.1, "count": 101, "width": 0.1}}}, "histogram.linear.count: must be 1 to 100"),
    # objectives out of range
    ({"slo": [{"route": "/", "latency_objective": 1.0}]},
     "slo[0].latency_objective: must be between 0 and 1 (exclusive), got 1.0"),
    ({"slo": [{"route": "/", "availability": 0}]}, "slo[0].availability: must be between 0 and 1 (exclusive), got 0.0"),
    ({"slo": [{"route": "/", "availability": 1.5}]}, "slo[0].availability: must be between 0 and 1"),
    ({"slo": [{"route": "/", "latency_threshold": 0}]}, "slo[0].latency_threshold: must be a positive number, got 0.0"),
    # other ranges
    ({"interval": 0}, "interval: must be a positive number, got 0.0"),
    ({"interval": float("nan")}, "interval: must be a positive number, got nan"),
    ({"poll_interval": float("inf")}, "poll_interval: must be a positive number, got inf"),
    ({"max_line": 10}, "max_line: must be at least 256, got 10"),
    ({"routes": {"max": 0}}, "routes.max: must be at least 1, got 0"),
    ({"files": [{"path": ""}]}, "files[0].path: must not be empty"),
    ({"files": [{"path": "a", "format": "csv"}]},
     "files[0].format: must be one of auto, tsv, combined, json, nginx, apache, got 'csv'"),
    ({"files": [{"path": "a", "labels": {"route": "x"}}]}, "files[0].labels.route: not a usable Prometheus label"),
    ({"files": [{"path": "a", "labels": {"9x": "x"}}]}, "files[0].labels.9x: not a usable Prometheus label"),
    # native histograms, exemplars, the report
    ({"native_histograms": {"schema": 9}}, "native_histograms.schema: must be between -4 and 8, got 9"),
    ({"native_histograms": {"schema": "3"}}, "native_histograms.schema: expected int, got str"),
    ({"native_histograms": {"zero_threshold_s": -1}}, "native_histograms.zero_threshold_s: must be a number of"),
    ({"native_histograms": {"zero_threshold_s": 2}}, "native_histograms.zero_threshold_s: 2.0 s would put"),
    ({"native_histograms": {"max_buckets": -1}}, "native_histograms.max_buckets: must be >= 0 (0: no limit)"),
    ({"native_histograms": {"schmea": 3}}, "native_histograms.schmea: unknown key"),
    ({"native_histograms": "off"}, "native_histograms: expected a mapping, got str"),
    ({"files": [{"path": "a", "native_histograms": {"schema": -5}}]},
     "files[0].native_histograms.schema: must be between -4 and 8, got -5"),
    ({"files": [{"path": "a", "format": "tsv", "exemplar_field": "x"}]},
     "files[0].exemplar_field: the tsv format has no field for a trace id"),
    ({"files": [{"path": "a", "exemplar_field": ""}]}, "files[0].exemplar_field: must not be empty"),
    ({"report": "fancy"}, "report: must be one of counts, latency, got 'fancy'"),
    # not a mapping at all
    (["a"], "config: expected a mapping, got list"),
])
def test_errors_name_the_key_path(data: Any, message: str) -> None:
    assert error(data).startswith(message)


def test_bucket_bounds_default_and_slo_thresholds() -> None:
    assert Config().bucket_bounds() == DEFAULT_BUCKETS  # the default 0.5 s threshold is already a bound
    config = conf({"slo": [{"route": "/a", "latency_threshold": 0.3}, {"route": "/b", "latency_threshold": 0.025}]})
    bounds = config.bucket_bounds()
    assert 0.3 in bounds and 0.025 in bounds and 0.5 in bounds
    assert bounds == tuple(sorted({*DEFAULT_BUCKETS, 0.3}))


def test_bucket_bounds_custom_and_generated() -> None:
    assert conf({"histogram": {"buckets": [0.1, 1, 2]}}).bucket_bounds() == (0.1, 0.5, 1.0, 2.0)
    assert conf({"histogram": {"exponential": {"start": 0.001, "count": 4, "factor": 10}},
                 "slo": [{"route": "/", "latency_threshold": 0.25}]}).bucket_bounds() == (
        0.001, 0.01, 0.1, 0.25, 0.5, 1.0)
    # linear steps are rounded, so 0.1 + 0.2 is the bound 0.3, not 0.30000000000000004
    assert conf({"histogram": {"linear": {"start": 0.1, "count": 3, "width": 0.1}}}).bucket_bounds() == (
        0.1, 0.2, 0.3, 0.5)


@pytest.mark.parametrize(("text", "expected"), [
    (":10181", ("", 10181)),
    ("127.0.0.1:9", ("127.0.0.1", 9)),
    ("[::1]:10181", ("::1", 10181)),
    ("[::]:1", ("::", 1)),
    ("localhost:65535", ("localhost", 65535)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
])
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", [
    "", "10181", ":", "host:", ":0", ":65536", ":123456", "::1:10181", "[::1]", "[::1]10181", "[host]:80",
    "a:b:80", ":-1", ": 80", ":80 ", "[::1]:0",
])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_listen(text)
    assert str(info.value) == (f"listen: {text!r} is not [HOST]:PORT (for example :10181 or 127.0.0.1:10181)")


def test_load_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("listen: 127.0.0.1:10181\nfiles:\n  - path: /var/log/a.tsv\n")
    config = load(str(path))
    assert config.listen == "127.0.0.1:10181" and config.files == (FileConfig("/var/log/a.tsv"),)


def test_load_empty_file_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("# nothing\n")
    assert load(str(path)) == Config()


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert str(info.value) == f"{path}: No such file or directory"


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path))
    assert str(info.value) == f"{tmp_path}: Is a directory"


@pytest.mark.parametrize(("text", "line"), [
    ("listen: :1\nfiles: [\n", 3),
    ("a: b\n  c: d\n", 2),
    ("key: 'unterminated\n", 2),
    ("\tlisten: x\n", 1),
])
def test_load_invalid_yaml(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: line {line} not valid YAML: ")
    assert "\n" not in message


def test_load_unsafe_yaml_tag_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("listen: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert str(info.value).startswith(f"{path}: line 1 not valid YAML: ")


def test_load_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"listen: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert str(info.value) == f"{path}: not valid UTF-8 (byte 8)"


def test_load_checks_values(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("files:\n  - path: a\n    fromat: tsv\n")
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert str(info.value).startswith("files[0].fromat: unknown key")


def test_to_dict_round_trips() -> None:
    config = conf({"files": [{"path": "a", "labels": {"x": "y"}}], "slo": [{"route": "/"}],
                   "histogram": {"buckets": [0.1, 1.0]}})
    data = to_dict(config)
    assert data["files"] == [{"path": "a", "format": "auto", "labels": {"x": "y"}, "latency_unit": None,
                              "fields": {}, "log_format": None, "label_fields": {}, "label_values_max": 100,
                              "upstream_field": None, "upstream_unit": "seconds", "native_histograms": None,
                              "exemplar_field": None}]
    assert data["histogram"] == {"buckets": [0.1, 1.0], "exponential": None, "linear": None}
    assert conf(data) == config


def test_dump_yaml_loads_back_to_the_same_config(tmp_path: Path) -> None:
    config = conf({"files": [{"path": "a", "labels": {"x": "y"}}], "interval": 2})
    text = dump_yaml(config)
    assert text.startswith("listen: :10181\ninterval: 2.0\n")  # field order, not sorted
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load(str(path)) == config


def test_yaml_and_click_are_each_imported_by_one_module() -> None:
    """DESIGN: each third-party library is imported by exactly one module."""
    package = Path(__file__).resolve().parents[2] / "logtaild"
    importers: dict[str, list[str]] = {"yaml": [], "click": []}
    for source in sorted(package.rglob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for library in importers:
                if any(name == library or name.startswith(library + ".") for name in names):
                    importers[library].append(str(source.relative_to(package.parent)))
    assert sorted(set(importers["yaml"])) == ["logtaild/config.py"]
    assert sorted(set(importers["click"])) == ["logtaild/cli.py"]


def test_native_histograms_false_turns_them_off_and_files_inherit() -> None:
    config = conf({"native_histograms": False, "files": [{"path": "a"}, {"path": "b", "native_histograms": {
        "schema": 1}}, {"path": "c", "native_histograms": True}]})
    assert config.native_histograms == NativeHistogramsConfig(enabled=False)
    assert [config.native_for(file) for file in config.files] == [
        NativeHistogramsConfig(enabled=False), NativeHistogramsConfig(schema=1), NativeHistogramsConfig()]
    assert conf({}).native_histograms == NativeHistogramsConfig(False, 3, 2.0 ** -128, 160)  # off unless configured
    assert conf({"native_histograms": True}).native_histograms == NativeHistogramsConfig(True, 3, 2.0 ** -128, 160)
    assert conf({"native_histograms": {"schema": 2}}).native_histograms.enabled  # a mapping turns them on

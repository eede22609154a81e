"""`Config`: frozen dataclasses with the defaults, YAML in and out, and `ConfigError` naming the key path.

The YAML is mapped onto the dataclasses by their type hints, so a key that is not a field is an
error ("files[0].fromat: unknown key"), and so is a value of the wrong type; checks that types
cannot express (ranges, regexes, formats) follow in `check`. This is the one module that imports
yaml: it reads config files (and, through `read_yaml`, the web config) and prints the effective
config (`dump_yaml`, for --check-config). yaml is imported by those two functions, not at import:
it costs about 30 ms of start-up that a `--file ... --once` without a config file does not need.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from logtaild.regex import FullMatch, RegexError, Rule

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

DEFAULT_PORT = 10181
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: `auto`: detected from the file's first lines (tsv, json or combined); nginx and apache take `log_format`
FORMATS = ("auto", "tsv", "combined", "json", "nginx", "apache")
#: what `format: auto` chooses among (the names in count.detect.DETECTABLE)
DETECTED_FORMATS = ("tsv", "json", "combined")
UNITS = ("seconds", "milliseconds", "microseconds")
#: label names taken by the request series themselves
RESERVED_LABELS = ("route", "method", "status", "le", "file")
#: the shortest `routes.max_length`: a cut value keeps at least 13 bytes of the route before the "…"
MIN_MAX_LENGTH = 16
#: Names a json file's `fields` may map (formats.JSON_FIELDS; `path` is another name for `route`).
JSON_FIELDS = ("route", "request", "method", "status", "bytes", "latency", "service", "path")


class ConfigError(ValueError):
    """A bad flag or config value; the message names the key path."""


@dataclass(frozen=True)
class NativeHistogramsConfig:
    """Native (exponential) buckets kept beside the classic ones: off unless configured.

    `native_histograms: true`, or a mapping of these keys, turns them on (`enabled` defaults to true
    once the key is there); `false` turns them off. Off by default as in client_golang, whose native
    histograms are opt-in per histogram: they roughly halve the compiled core's lines per second and
    add about 500 bytes per timed series, and only a Prometheus asked to ingest them (2.x with
    `--enable-feature=native-histograms`, 3.8+ with `scrape_native_histograms`) uses them. The
    defaults are count/native.py's (client_golang's zero threshold, 2^-128 s).
    """

    enabled: bool = True
    #: resolution: each power of two is split into 2^schema buckets (-4 to 8; 3: bounds 9 % apart)
    schema: int = 3
    #: latencies at or below this many seconds count in the zero bucket
    zero_threshold_s: float = 2.0 ** -128
    #: populated buckets per histogram above which the resolution is halved (0: no limit)
    max_buckets: int = 160


#: `report:` values: the fixed columns, or those and the latency percentiles
REPORTS = ("counts", "latency")
#: what `exemplar_field` may hold: a trace id in hex, short enough for OpenMetrics' 128-character
#: exemplar label set with the name `trace_id`
EXEMPLAR_MAX = 128 - len("trace_id")


@dataclass(frozen=True)
class FileConfig:
    """One followed path (or glob) and how to read it."""

    path: str
    format: str = "auto"
    labels: dict[str, str] = field(default_factory=dict)
    #: combined format: unit of an optional trailing request time ("seconds" as nginx's
    #: $request_time, "microseconds" as Apache's %D), or None when lines carry none
    latency_unit: str | None = None
    #: json format: our field name -> the field name in the log's objects
    fields: dict[str, str] = field(default_factory=dict)
    #: nginx and apache formats: the server's log_format / LogFormat string, as in its config
    log_format: str | None = None
    #: label name -> a field of the format (`$host`, `%v`, `%{X-Version}i`, a json key)
    label_fields: dict[str, str] = field(default_factory=dict)
    #: distinct values per label of `label_fields` in this file; the rest are counted as __other__
    label_values_max: int = 100
    #: the field holding upstream times (default: nginx's $upstream_response_time when the format has it)
    upstream_field: str | None = None
    #: unit of `upstream_field` when it is not one of nginx's upstream variables (which are seconds)
    upstream_unit: str = "seconds"
    #: this file's native histogram settings (None: the top-level `native_histograms`)
    native_histograms: NativeHistogramsConfig | None = None
    #: a field holding a trace id (`$request_id`, `%{traceparent}i`, a json key): exemplars on the buckets
    exemplar_field: str | None = None


@dataclass(frozen=True)
class RuleConfig:
    """A route rewrite: the first rule whose `match` regex is found applies `replace` (re.sub)."""

    match: str
    replace: str


@dataclass(frozen=True)
class RoutesConfig:
    """Route normalization and the caps on what each file exports (count/routes.py's defaults)."""

    max: int = 1000
    builtin: bool = True
    rules: tuple[RuleConfig, ...] = ()
    #: route and label values longer than this (UTF-8 bytes, after escaping) are cut, ending in "…"
    max_length: int = 256
    #: request series per file; new label sets past it count under the overflow series of their status
    max_series: int = 20000


@dataclass(frozen=True)
class GeneratorConfig:
    """Exponential (start * factor**i) or linear (start + width*i) bucket bounds."""

    start: float
    count: int
    factor: float | None = None
    width: float | None = None


@dataclass(frozen=True)
class HistogramConfig:
    """The classic bucket bounds (seconds): a list, or one generator; none of them: DEFAULT_BUCKETS."""

    buckets: tuple[float, ...] | None = None
    exponential: GeneratorConfig | None = None
    linear: GeneratorConfig | None = None


@dataclass(frozen=True)
class SloConfig:
    """Objectives for the routes whose normalized value matches `route` (a regex, full match)."""

    route: str
    latency_threshold: float = 0.5
    latency_objective: float = 0.99
    availability: float = 0.999
    team: str = ""


# ---- remote_write: pushing the aggregates to a Prometheus remote-write receiver -------------------

@dataclass(frozen=True)
class BasicAuthConfig:
    """HTTP basic auth towards a receiver: the user, and the file its password is read from."""

    username: str
    password_file: str  # read at every push (so a rotated secret applies), checked readable at start


@dataclass(frozen=True)
class TlsClientConfig:
    """TLS towards a receiver: the CA to verify it with, a client certificate, or no verification."""

    ca_file: str | None = None
    cert_file: str | None = None  # client certificate (mutual TLS), with key_file
    key_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class QueueConfig:
    """What is kept while a receiver is down: whole pushes, oldest dropped first past `max_samples`."""

    max_samples: int = 500_000
    min_backoff: float = 0.5
    max_backoff: float = 30.0


@dataclass(frozen=True)
class RemoteWriteConfig:
    """One receiver of logtaild's own series in the remote-write 1.0 format."""

    url: str
    interval: float = 15.0
    timeout: float = 10.0
    basic_auth: BasicAuthConfig | None = None
    bearer_token_file: str | None = None
    tls: TlsClientConfig = field(default_factory=TlsClientConfig)
    headers: dict[str, str] = field(default_factory=dict)
    external_labels: dict[str, str] = field(default_factory=dict)
    queue: QueueConfig = field(default_factory=QueueConfig)


@dataclass(frozen=True)
class Config:
    """The whole configuration: the defaults, a config file's values, and the flags on top."""

    listen: str = f":{DEFAULT_PORT}"
    interval: float = 10.0
    state_file: str | None = None
    files: tuple[FileConfig, ...] = ()
    routes: RoutesConfig = field(default_factory=RoutesConfig)
    histogram: HistogramConfig = field(default_factory=HistogramConfig)
    slo: tuple[SloConfig, ...] = ()
    from_start: bool = False
    poll_interval: float = 0.25
    drain_grace: float = 2.0
    max_line: int = 65536
    rescan_interval: float = 5.0
    #: exporter-toolkit web config (TLS, mTLS, basic auth) for the HTTP server; see logtaild/webconfig.py
    web_config: str | None = None
    #: receivers of pushes (remote write); see RemoteWriteConfig
    remote_write: tuple[RemoteWriteConfig, ...] = ()
    #: native histograms for every file without its own `native_histograms`
    native_histograms: NativeHistogramsConfig = field(default_factory=lambda: NativeHistogramsConfig(enabled=False))
    #: the report's columns: `counts` (the fixed format) or `latency` (with p50 p95 p99 mean_ms)
    report: str = "counts"

    def native_for(self, file: FileConfig) -> NativeHistogramsConfig:
        """The native histogram settings a file counts with (its own, else the top-level ones)."""
        return file.native_histograms if file.native_histograms is not None else self.native_histograms

    def bucket_bounds(self) -> tuple[float, ...]:
        """Histogram bounds in seconds, with every SLO threshold added so slow counts are exact."""
        hist = self.histogram
        if hist.buckets is not None:
            bounds = list(hist.buckets)
        elif hist.exponential is not None:
            gen = hist.exponential
            bounds = [gen.start * (gen.factor or 2.0) ** i for i in range(gen.count)]
        elif hist.linear is not None:
            gen = hist.linear
            bounds = [gen.start + (gen.width or 1.0) * i for i in range(gen.count)]
        else:
            bounds = list(DEFAULT_BUCKETS)
        bounds += [slo.latency_threshold for slo in self.slo] + [SloConfig("").latency_threshold]
        return tuple(sorted({round(b, 9) for b in bounds}))


def parse_listen(text: str) -> tuple[str, int]:
    """`[HOST]:PORT` -> (host, port); an empty host means all interfaces; IPv6 as `[::1]:PORT`."""
    match = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]*)):(\d{1,5})", text)
    if not match or not 0 < int(match.group(3)) < 65536:
        raise ConfigError(f"listen: {text!r} is not [HOST]:PORT (for example :{DEFAULT_PORT} or "
                          f"127.0.0.1:{DEFAULT_PORT})")
    return match.group(1) or match.group(2) or "", int(match.group(3))


# ---- mapping YAML onto the dataclasses ----------------------------------------------------------

D = TypeVar("D", bound="DataclassInstance")


def _type_name(kind: object) -> str:
    name = getattr(kind, "__name__", None)
    return name if isinstance(name, str) else str(kind).replace("typing.", "")


def _convert(kind: object, value: object, where: str) -> object:
    """Parsed YAML `value` as the field type hint `kind` says (optional, dataclass, tuple, dict, scalar)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        kind = next(option for option in options if option is not type(None))
        origin = typing.get_origin(kind)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if isinstance(value, bool) and "enabled" in {f.name for f in dataclasses.fields(kind)}:
            return build(kind, {"enabled": value}, where)  # `key: false` turns a feature off
        return build(kind, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        item = typing.get_args(kind)[0]
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {str(k): _scalar(str, v, f"{where}.{k}") for k, v in value.items()}
    if not isinstance(kind, type):  # a field type this mapper does not know: a bug here, not in the YAML
        raise TypeError(f"{where}: cannot map a value onto {kind!r}")
    return _scalar(kind, value, where)


def _scalar(kind: type, value: object, where: str) -> object:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # label values such as `team: 42`
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {_type_name(kind)}, got {type(value).__name__} {value!r:.40}")
    return value


def build(cls: type[D], data: object, where: str = "") -> D:
    """Build dataclass `cls` from a mapping, naming the key path in every error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(f"{_join(where, key)}: unknown key (known: {', '.join(sorted(names))})")
    kwargs: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], _join(where, f.name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(where, f.name)}: required")
    return cls(**kwargs)


def _join(where: str, key: object) -> str:
    text = str(key)
    if not text.isprintable():  # a key with a newline would make the one-line error two lines
        text = repr(text)
    return f"{where}.{text}" if where else text


# ---- checks beyond types --------------------------------------------------------------------------

def _positive(value: float, where: str) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{where}: must be a positive number, got {value}")


def _fraction(value: float, where: str) -> None:
    if not 0 < value < 1:
        raise ConfigError(f"{where}: must be between 0 and 1 (exclusive), got {value}")


def _regex(pattern: str, where: str) -> None:
    try:
        FullMatch(pattern)
    except RegexError as exc:
        raise ConfigError(f"{where}: invalid regex: {exc}") from None


def check(config: Config) -> Config:
    """Validate what types cannot; returns the config for chaining."""
    parse_listen(config.listen)
    for name in ("interval", "poll_interval", "drain_grace", "rescan_interval"):
        _positive(getattr(config, name), name)
    if config.max_line < 256:
        raise ConfigError(f"max_line: must be at least 256, got {config.max_line}")
    for i, file in enumerate(config.files):
        if not file.path:
            raise ConfigError(f"files[{i}].path: must not be empty")
        first = next(j for j, other in enumerate(config.files) if other.path == file.path)
        if first != i:  # the second entry would be ignored: its format and labels never used
            raise ConfigError(f"files[{i}].path: {file.path!r} is already files[{first}].path")
        _check_file(file, f"files[{i}]")
    _check_routes(config.routes)
    _check_histogram(config.histogram)
    for i, slo in enumerate(config.slo):
        _regex(slo.route, f"slo[{i}].route")
        _positive(slo.latency_threshold, f"slo[{i}].latency_threshold")
        _fraction(slo.latency_objective, f"slo[{i}].latency_objective")
        _fraction(slo.availability, f"slo[{i}].availability")
    for i, receiver in enumerate(config.remote_write):
        _check_remote_write(receiver, f"remote_write[{i}]", [r.url for r in config.remote_write[:i]])
    _check_native(config.native_histograms, "native_histograms")
    if config.report not in REPORTS:
        raise ConfigError(f"report: must be one of {', '.join(REPORTS)}, got {config.report!r}")
    return config


def _check_native(native: NativeHistogramsConfig, where: str) -> None:
    if not -4 <= native.schema <= 8:
        raise ConfigError(f"{where}.schema: must be between -4 and 8, got {native.schema}")
    if not (native.zero_threshold_s >= 0 and math.isfinite(native.zero_threshold_s)):
        raise ConfigError(f"{where}.zero_threshold_s: must be a number of seconds >= 0, got {native.zero_threshold_s}")
    if native.zero_threshold_s >= 1.0:
        raise ConfigError(f"{where}.zero_threshold_s: {native.zero_threshold_s} s would put most latencies in the "
                          "zero bucket (it is the width of the bucket for latencies near 0)")
    if native.max_buckets < 0:
        raise ConfigError(f"{where}.max_buckets: must be >= 0 (0: no limit), got {native.max_buckets}")


def _check_file(file: FileConfig, where: str) -> None:
    """Format, latency unit, json fields, log format, labels and label fields of one file entry."""
    if file.native_histograms is not None:
        _check_native(file.native_histograms, f"{where}.native_histograms")
    if file.exemplar_field is not None and (not file.exemplar_field or file.format == "tsv"):
        raise ConfigError(f"{where}.exemplar_field: " + (
            "the tsv format has no field for a trace id" if file.exemplar_field else "must not be empty"))
    if file.format not in FORMATS:
        raise ConfigError(f"{where}.format: must be one of {', '.join(FORMATS)}, got {file.format!r}")
    if file.latency_unit not in (None, *UNITS):
        raise ConfigError(f"{where}.latency_unit: must be seconds, milliseconds or microseconds")
    if file.format == "tsv" and file.latency_unit not in (None, "milliseconds"):
        raise ConfigError(f"{where}.latency_unit: the tsv format's latency is always in milliseconds")
    if file.format in ("nginx", "apache") and file.latency_unit is not None:
        raise ConfigError(f"{where}.latency_unit: the {file.format} format knows the unit of each time field")
    if file.fields and file.format != "json":
        raise ConfigError(f"{where}.fields: only the json format maps fields")
    for name in file.fields:
        if name not in JSON_FIELDS:
            raise ConfigError(f"{where}.fields.{name}: unknown field (known: {', '.join(JSON_FIELDS)})")
    if "route" in file.fields and "path" in file.fields:
        raise ConfigError(f"{where}.fields.path: give route or path, not both")
    _check_log_format(file, where)
    for label in file.labels:
        if not _label_name_ok(label):
            raise ConfigError(f"{where}.labels.{label}: not a usable Prometheus label name")
    _check_label_fields(file, where)


def _check_log_format(file: FileConfig, where: str) -> None:
    """`log_format` with the formats that take one; `upstream_field` where there are fields to name."""
    if file.format in ("nginx", "apache") and not (file.log_format or "").strip():
        raise ConfigError(f"{where}.log_format: required with format {file.format} (the server's "
                          f"{'log_format' if file.format == 'nginx' else 'LogFormat'} string)")
    if file.log_format is not None and file.format not in ("nginx", "apache"):
        raise ConfigError(f"{where}.log_format: only the nginx and apache formats take a log_format")
    if file.upstream_field is not None and file.format not in ("nginx", "apache", "json"):
        raise ConfigError(f"{where}.upstream_field: only the nginx, apache and json formats have fields")
    if file.upstream_unit not in UNITS:
        raise ConfigError(f"{where}.upstream_unit: must be seconds, milliseconds or microseconds")


def _label_name(label: str) -> bool:
    """A Prometheus label name that is not one of the reserved `__` names."""
    return bool(re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label)) and not label.startswith("__")


def _label_name_ok(label: str) -> bool:
    """A label name a file may add to its series: not one logtaild's series already have."""
    return _label_name(label) and label not in RESERVED_LABELS


def _check_label_fields(file: FileConfig, where: str) -> None:
    """Label names as Prometheus allows them, clashing with no other label of the file's series."""
    if file.label_values_max < 1:
        raise ConfigError(f"{where}.label_values_max: must be at least 1, got {file.label_values_max}")
    if file.label_fields and file.format in ("auto", "tsv"):
        raise ConfigError(f"{where}.label_fields: needs a format with named fields (json, combined, nginx, "
                          f"apache), not {file.format}")
    for label, source in file.label_fields.items():
        key = f"{where}.label_fields.{label}"
        if not _label_name_ok(label):
            raise ConfigError(f"{key}: not a usable Prometheus label name (and not one of "
                              f"{', '.join(RESERVED_LABELS)})")
        if label in file.labels:
            raise ConfigError(f"{key}: {label} is already a constant label of the file (labels.{label})")
        if file.format == "json" and label == "service" and file.fields.get("service", "service") != "":
            raise ConfigError(f"{key}: the json format's service key is the service label already")
        if not source:
            raise ConfigError(f"{key}: must name a field of the format")


def _check_routes(routes: RoutesConfig) -> None:
    if routes.max < 1:
        raise ConfigError(f"routes.max: must be at least 1, got {routes.max}")
    if routes.max_length < MIN_MAX_LENGTH:  # room for the marker and a recognizable prefix
        raise ConfigError(f"routes.max_length: must be at least {MIN_MAX_LENGTH}, got {routes.max_length}")
    if routes.max_series < 1:
        raise ConfigError(f"routes.max_series: must be at least 1, got {routes.max_series}")
    for i, rule in enumerate(routes.rules):
        try:  # compiled as the limiter compiles it (RE2), the template read as re.sub reads it
            Rule(rule.match, rule.replace)
        except RegexError as exc:
            what = "invalid regex" if exc.part == "match" else "invalid replacement"
            raise ConfigError(f"routes.rules[{i}].{exc.part}: {what}: {exc}") from None


def _check_histogram(hist: HistogramConfig) -> None:
    given = [name for name in ("buckets", "exponential", "linear") if getattr(hist, name) is not None]
    if len(given) > 1:
        raise ConfigError(f"histogram: give only one of buckets, exponential, linear (got {', '.join(given)})")
    if hist.buckets is not None:
        if not hist.buckets or list(hist.buckets) != sorted(set(hist.buckets)):
            raise ConfigError("histogram.buckets: must be a non-empty, strictly increasing list")
        for i, bound in enumerate(hist.buckets):
            _positive(bound, f"histogram.buckets[{i}]")
    for name, gen, step in (("exponential", hist.exponential, "factor"), ("linear", hist.linear, "width")):
        if gen is None:
            continue
        _positive(gen.start, f"histogram.{name}.start")
        if not 1 <= gen.count <= 100:
            raise ConfigError(f"histogram.{name}.count: must be 1 to 100")
        other = "width" if step == "factor" else "factor"
        if getattr(gen, other) is not None:
            raise ConfigError(f"histogram.{name}.{other}: not used by {name} buckets (give {step})")
        value = getattr(gen, step)
        if value is None or value <= (1 if step == "factor" else 0):
            raise ConfigError(f"histogram.{name}.{step}: required, {'> 1' if step == 'factor' else '> 0'}")


#: headers remote write sets itself (and Authorization, from basic_auth or bearer_token_file)
_RESERVED_HEADERS = {"content-encoding", "content-type", "x-prometheus-remote-write-version", "user-agent",
                     "authorization", "content-length", "host"}


def _readable(path: str, where: str) -> None:
    """A file the daemon must read later: fail now, at start, with the reason."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None


def _check_remote_write(receiver: RemoteWriteConfig, where: str, earlier: list[str]) -> None:
    """URL, timings, credentials, TLS files, headers, labels and the queue of one receiver."""
    import urllib.parse  # here, not at import (start-up: it brings ipaddress): only remote_write has URLs

    url = urllib.parse.urlsplit(receiver.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"{where}.url: must be an http:// or https:// URL with a host, got {receiver.url!r}")
    if url.username is not None or url.password is not None:
        raise ConfigError(f"{where}.url: put credentials in basic_auth, not in the URL")
    try:
        url.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise ConfigError(f"{where}.url: {exc}") from None
    if receiver.url in earlier:
        raise ConfigError(f"{where}.url: {receiver.url!r} is listed twice")
    _positive(receiver.interval, f"{where}.interval")
    _positive(receiver.timeout, f"{where}.timeout")
    if receiver.basic_auth is not None and receiver.bearer_token_file is not None:
        raise ConfigError(f"{where}: give basic_auth or bearer_token_file, not both")
    if receiver.basic_auth is not None:
        _readable(receiver.basic_auth.password_file, f"{where}.basic_auth.password_file")
    if receiver.bearer_token_file is not None:
        _readable(receiver.bearer_token_file, f"{where}.bearer_token_file")
    tls = receiver.tls
    if (tls.cert_file is None) != (tls.key_file is None):
        raise ConfigError(f"{where}.tls: give cert_file and key_file together")
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, name)
        if path is not None:
            _readable(path, f"{where}.tls.{name}")
    for name in receiver.headers:
        if name.lower() in _RESERVED_HEADERS:
            raise ConfigError(f"{where}.headers.{name}: set by logtaild itself")
    for label in receiver.external_labels:
        if not _label_name(label):
            raise ConfigError(f"{where}.external_labels.{label}: not a usable Prometheus label name")
    queue = receiver.queue
    if queue.max_samples < 1:
        raise ConfigError(f"{where}.queue.max_samples: must be at least 1, got {queue.max_samples}")
    _positive(queue.min_backoff, f"{where}.queue.min_backoff")
    _positive(queue.max_backoff, f"{where}.queue.max_backoff")
    if queue.max_backoff < queue.min_backoff:
        raise ConfigError(f"{where}.queue.max_backoff: must be at least min_backoff ({queue.min_backoff})")


def read_yaml(path: str, what: str = "") -> object:
    """Parse a YAML file; every problem is a one-line ConfigError naming the file (and line)."""
    import yaml  # here, not at import: start-up without a config file never parses YAML

    name = f"{what} {path}".strip()
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"{name}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not valid UTF-8 (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{name}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return data if data is not None else {}


def load(path: str) -> Config:
    """Read and validate a YAML config file."""
    return check(build(Config, read_yaml(path)))


def to_dict(config: Config) -> dict[str, object]:
    """The effective config as plain data: mappings, lists and scalars (tuples become lists)."""
    return {name: _plain(value) for name, value in dataclasses.asdict(config).items()}


def _plain(value: object) -> object:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def dump_yaml(config: Config) -> str:
    """The effective config as YAML, in field order (what --check-config prints)."""
    import yaml  # start-up: only --check-config prints YAML

    text: str = yaml.safe_dump(to_dict(config), sort_keys=False)
    return text

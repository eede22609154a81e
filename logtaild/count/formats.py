"""The value parsers every format shares, `ParseError` with the reason a line was rejected, and the
tsv and json parsers.

The pieces shared by every format (request line, status, numbers, upstream times, the servers'
escapes) live here, so the TSV fast path in `aggregate.py` rejects exactly the lines `parse_tsv`
rejects, and every format rejects a bad status or size for the same reason.

- `tsv`: `ip<TAB>METHOD route<TAB>status<TAB>bytes[<TAB>latency_ms]` (`parse_tsv`, the fast path).
- `json`: one object per line, our field names mapped onto the log's keys by the file's `fields`.
  Without label, upstream or exemplar fields and dotted keys the parser names the keys for the compiled
  core's JSON scanner (`core_format`, see _json.h), which counts the lines it reads as this parser does.

The format strings (nginx, Apache, and the `combined` preset) are compiled in `logformat.py`;
`parsers.make_parser` builds the parser of one followed file, whatever its format.
"""
from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from logtaild.count.labelcap import LabelCap
from logtaild.count.record import AccessRecord

#: Reasons a line is malformed; they are the values of the `reason` label.
REASONS = ("fields", "request", "status", "bytes", "latency", "encoding")

#: Methods kept as label values; any other well-formed token becomes OTHER, so an attacker cannot
#: mint series through the method label. Only the standard methods (RFC 9110 and PATCH): each one
#: kept multiplies every route's series, and WebDAV or cache-purge methods are rare enough to
#: count together as OTHER (nine methods plus OTHER bound the method label at ten values).
KNOWN_METHODS = frozenset("GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH".split())
_MAX_METHOD = 32
#: sizes at or above 2**63 are garbage (and would overflow consumers of the exposition)
MAX_BYTES = 1 << 63


class ParseError(ValueError):
    """A line no parser accepts; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def decode(raw: bytes) -> str:
    """Strict UTF-8, so label values are always valid UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError("encoding", str(exc)) from None


_CANONICAL_METHODS = {method: method for method in KNOWN_METHODS}


def parse_method(token: str) -> str:
    """The method label: a known method, or OTHER for any other well-formed token."""
    known = _CANONICAL_METHODS.get(token)
    if known is not None:
        return known  # the one string of the method, not the line's copy: series keys keep it
    if not token or len(token) > _MAX_METHOD or not token.isascii() or not token.isalpha():
        raise ParseError("request", f"bad method {token[:40]!r}")
    return "OTHER"


def route_of(target: str) -> str:
    """The path part of a request target: no query string or fragment; absolute URIs lose scheme/host."""
    if target == "*":
        return "*"
    if not target.startswith("/"):
        scheme, sep, rest = target.partition("://")
        if not sep or not scheme.isalpha():
            raise ParseError("request", f"bad target {target[:40]!r}")
        # the authority ends at the first "/", "?" or "#": "http://h?next=/admin" is the route "/"
        end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
        target = rest[end:] if rest.startswith("/", end) else "/"
    for cut in ("?", "#"):
        target = target.split(cut, 1)[0]
    return target or "/"


def path_part(target: bytes) -> bytes:
    """A request target without its query string and fragment."""
    for cut in (b"?", b"#"):
        end = target.find(cut)
        if end >= 0:
            target = target[:end]
    return target


def split_request(raw: bytes) -> tuple[bytes, bytes]:
    """`METHOD target [protocol]` -> (method, target without query and fragment), as bytes."""
    parts = raw.split(b" ")
    if len(parts) not in (2, 3) or not parts[1]:
        raise ParseError("request", f"{len(parts)} words")
    return parts[0], path_part(parts[1])


#: The route of every `CONNECT host:port` request: the authority is not a path, and one route per
#: host would let a client mint series.
CONNECT_ROUTE = "__connect__"


def parse_request(raw: bytes) -> tuple[str, str]:
    """`METHOD target [protocol]` -> (method label, route).

    Only the method and the path are decoded (strict UTF-8): the query string, the fragment and
    the protocol are not part of any label, so their bytes are not judged. A request line that is
    not `METHOD target [protocol]` is malformed for the reason `encoding` when it holds invalid
    UTF-8 (a TLS handshake sent to the HTTP port), else `request`, whatever its spaces.
    """
    try:
        method, path = split_request(raw)
        label = parse_method(decode(method))
        if label == "CONNECT" and not path.startswith(b"/"):
            return label, CONNECT_ROUTE  # the authority form, `host:port`
        return label, route_of(decode(path))
    except ParseError as exc:
        if exc.reason == "request" and not _is_utf8(raw):
            raise ParseError("encoding", "invalid UTF-8 in the request") from None
        raise


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def parse_status(raw: bytes | str | int) -> str:
    """A status code 100-599 as its 3-digit string."""
    text = str(raw, "ascii", "replace") if isinstance(raw, bytes) else str(raw)
    if len(text) != 3 or not text.isascii() or not text.isdigit() or not "100" <= text <= "599":
        raise ParseError("status", f"{text[:20]!r}")
    return sys.intern(text)  # one string per code, however many series keep it


def parse_bytes(raw: bytes | str | int) -> int:
    """A non-negative size; `-` (what nginx and Apache write for an empty body) is 0."""
    if raw in (b"-", "-"):
        return 0
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ParseError("bytes", f"{raw!r:.40}") from None
    if not 0 <= value < MAX_BYTES:
        raise ParseError("bytes", "negative" if value < 0 else "too large")
    return value


def parse_latency_ms(raw: bytes | str | float, scale: float = 1.0) -> float:
    """A finite non-negative latency, converted to milliseconds by `scale`."""
    try:
        value = float(raw) * scale
    except (TypeError, ValueError):
        raise ParseError("latency", f"{raw!r:.40}") from None
    if not 0.0 <= value < math.inf:
        raise ParseError("latency", "not a finite non-negative number")
    return value


_SEPARATORS = re.compile(rb"[,:]")


def parse_upstream_ms(raw: bytes, scale: float = 1000.0) -> float | None:
    """nginx's upstream times (`0.004, 0.012 : 0.001`, seconds) -> their sum in ms; None when all are `-`.

    `,` separates the servers tried in turn, ` : ` the upstream groups of internal redirects; `-`
    is a server that was not asked (or no upstream at all), which is no observation, not an error.
    """
    if raw == b"-":
        return None
    if b"," not in raw and b":" not in raw:
        return parse_latency_ms(raw, scale)  # the common case: one upstream, one try
    total, seen = 0.0, False
    for part in _SEPARATORS.split(raw):
        part = part.strip()
        if part == b"-":
            continue
        total += parse_latency_ms(part, scale)  # "" and garbage: ParseError("latency")
        seen = True
    return total if seen else None


def parse_tsv(line: bytes) -> AccessRecord:
    """`ip<TAB>METHOD route<TAB>status<TAB>bytes[<TAB>latency_ms]`."""
    fields = line.split(b"\t")
    if len(fields) not in (4, 5):
        raise ParseError("fields", f"{len(fields)} fields")
    method, route = parse_request(fields[1])
    status = parse_status(fields[2])
    size = parse_bytes(fields[3])
    latency = parse_latency_ms(fields[4]) if len(fields) == 5 else None
    return AccessRecord(route, method, status, size, latency)


Parser = Callable[[bytes], AccessRecord]

#: The route (and method) of a request the server logged without a request line: nginx and Apache
#: write `"-"` (a connection closed before a request, status 408) or `""` (an empty request, 400).
#: These are responses the server sent, so they are counted, under this one bounded value.
NO_REQUEST = "-"

#: a trace id kept as an exemplar: hex digits, at most 120 (OpenMetrics allows 128 characters for an
#: exemplar's label names and values together, and `trace_id` takes 8); or a W3C `traceparent` header,
#: whose trace-id part is taken
_TRACE_ID = re.compile(rb"[0-9A-Fa-f]{1,120}")
_TRACEPARENT = re.compile(rb"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def trace_id(raw: bytes) -> str | None:
    """The trace id in an `exemplar_field` value, or None when it holds none (`-`, not hex, too long):
    a line is never malformed for its trace id, it just has no exemplar."""
    if _TRACE_ID.fullmatch(raw):
        return raw.decode("ascii")
    match = _TRACEPARENT.fullmatch(raw)
    return match.group(1).decode("ascii") if match else None

#: Multipliers from a configured latency unit to milliseconds (the internal unit).
LATENCY_SCALES = {"seconds": 1000.0, "milliseconds": 1.0, "microseconds": 0.001}


# ---- values as web servers log them -------------------------------------------------------------

#: nginx escapes `"`, `\` and bytes outside 0x20-0x7e as `\xHH`; Apache writes `\"`, `\\`, `\n`...
_ESCAPE = re.compile(rb"\\(x[0-9A-Fa-f]{2}|.)", re.S)
_SIMPLE_ESCAPES = {b'"': b'"', b"\\": b"\\", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b",
                   b"v": b"\v", b"f": b"\f"}


def _unescape_one(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    if len(code) == 3:
        return bytes((int(code[1:], 16),))
    return _SIMPLE_ESCAPES.get(code, match.group(0))


def unescape_logged(raw: bytes) -> bytes:
    """Undo nginx's and Apache's escaping of a logged value (`\\x22`, `\\"`, `\\\\`, `\\xC3\\xA9`)."""
    return _ESCAPE.sub(_unescape_one, raw) if b"\\" in raw else raw


# ---- json ---------------------------------------------------------------------------------------

#: Our field names -> the keys looked up, in order, when the file's `fields` does not name one.
#: They fit telemetry such as {"service": "auth-service", "status_code": 200, "latency_ms": 350}
#: and the common nginx `escape=json` templates ("request", "status", "body_bytes_sent").
JSON_DEFAULTS: dict[str, tuple[str, ...]] = {
    "route": ("path", "route", "uri"),
    "request": ("request",),
    "method": ("method",),
    "status": ("status_code", "status"),
    "bytes": ("bytes", "body_bytes_sent"),
    "latency": ("latency_ms", "duration_ms"),
    "service": ("service",),
}
#: Names accepted in `fields`: `path` is another name for `route`.
JSON_FIELDS = (*JSON_DEFAULTS, "path")
#: Distinct `service` label values per file; later values are counted as "__other__".
MAX_SERVICES = 100
_MISSING = object()


def _lookup(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The first key present (a dotted key also walks nested objects: `http.request.method`)."""
    for key in keys:
        if key in obj:
            return obj[key]
        if "." in key:
            value: Any = obj
            for part in key.split("."):
                if not isinstance(value, dict) or part not in value:
                    break
                value = value[part]
            else:
                return value
    return _MISSING


def _text(value: Any, reason: str, what: str) -> str:
    """A JSON string as a label-safe str (no lone surrogates from `\\ud800` escapes)."""
    if not isinstance(value, str):
        raise ParseError(reason, f"{what} is not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError("encoding", f"{what} is not valid Unicode") from None
    return value


def _number(value: Any, reason: str, what: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ParseError(reason, f"{what} is not a number")
    return value


def make_json_parser(fields: Mapping[str, str] | None = None, latency_unit: str | None = None,
                     label_keys: Mapping[str, str] | None = None, max_label_values: int = MAX_SERVICES,
                     upstream_key: str | None = None, upstream_scale: float = 1000.0,
                     exemplar_key: str | None = None) -> Parser:
    """A parser for one JSON object per line; `fields` maps our names onto the log's keys.

    route: from the route key (`path` by default; query string dropped, an absolute URL loses its
    host), else from a request line (`"GET /x HTTP/1.1"`), else NO_REQUEST. method: its key, else
    from the request line, else NO_REQUEST. status is required; bytes default to 0; latency is
    optional (milliseconds unless `latency_unit` says otherwise); a `service` value becomes the
    `service` label of the line's series (at most MAX_SERVICES values per file). A key mapped to ""
    is not looked up at all. `label_keys` maps label names onto keys (dotted for nested objects)
    whose values become labels of the line's series, each capped at `max_label_values` values.
    `upstream_key` names the upstream time (a number, or nginx's text such as `"0.004, 0.012"`,
    in seconds unless `upstream_scale` says otherwise); the parser then has `has_upstream`.
    `exemplar_key` names a trace id (`trace_id`), kept as the record's exemplar when valid.
    """
    keys = dict(JSON_DEFAULTS)
    for name, key in (fields or {}).items():
        name = "route" if name == "path" else name
        if name not in keys:
            raise ValueError(f"unknown json field {name!r} (known: {', '.join(JSON_FIELDS)})")
        keys[name] = (key,) if key else ()
    scale = LATENCY_SCALES[latency_unit or "milliseconds"]
    k_route, k_request, k_method = keys["route"], keys["request"], keys["method"]
    k_status, k_bytes, k_latency, k_service = keys["status"], keys["bytes"], keys["latency"], keys["service"]
    services: set[str] = set()
    extra, cap = _json_labels(label_keys or {}, max_label_values)
    k_upstream = (upstream_key,) if upstream_key else ()
    k_exemplar = (exemplar_key,) if exemplar_key else ()

    def parse_json(line: bytes) -> AccessRecord:
        text = decode(line)
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            raise ParseError("fields", "not a JSON document") from None
        if not isinstance(obj, dict):
            raise ParseError("fields", "not a JSON object")
        method = NO_REQUEST
        route = _lookup(obj, k_route)
        if route is not _MISSING and route is not None:
            route = route_of(_text(route, "request", "route"))
        else:
            request = _lookup(obj, k_request)
            if request is _MISSING or request is None:
                route = NO_REQUEST
            else:
                request = _text(request, "request", "request")  # JSON-escaped, not nginx-escaped
                method, route = (NO_REQUEST, NO_REQUEST) if request in ("-", "") else parse_request(
                    request.encode())
        raw_method = _lookup(obj, k_method)
        if raw_method is not _MISSING and raw_method is not None:
            method = parse_method(_text(raw_method, "request", "method"))
        raw_status = _lookup(obj, k_status)
        if raw_status is _MISSING or raw_status is None:
            raise ParseError("status", "missing")
        status = parse_status(_number(raw_status, "status", "status"))
        raw_bytes = _lookup(obj, k_bytes)
        size = 0
        if raw_bytes is not _MISSING and raw_bytes is not None:
            raw_bytes = _number(raw_bytes, "bytes", "bytes")
            if isinstance(raw_bytes, float):
                if not raw_bytes.is_integer():
                    raise ParseError("bytes", "not an integer")
                raw_bytes = int(raw_bytes)
            size = parse_bytes(raw_bytes)
        raw_latency = _lookup(obj, k_latency)
        latency = None
        if raw_latency is not _MISSING and raw_latency is not None:
            latency = parse_latency_ms(_number(raw_latency, "latency", "latency"), scale)
        labels: tuple[tuple[str, str], ...] = ()
        service = _lookup(obj, k_service)
        if service is not _MISSING and service is not None and service != "":
            if isinstance(service, (int, float)) and not isinstance(service, bool):
                service = str(service)
            service = _text(service, "fields", "service")
            if service not in services:
                if len(services) >= MAX_SERVICES:
                    service = "__other__"
                else:
                    services.add(service)
            labels = (("service", service),)
        if extra is not None:
            labels = extra(obj, labels)
        upstream = None
        if k_upstream:
            upstream = _json_upstream(_lookup(obj, k_upstream), upstream_scale)
        exemplar = None
        if k_exemplar:
            raw_id = _lookup(obj, k_exemplar)
            exemplar = trace_id(raw_id.encode("ascii", "replace")) if isinstance(raw_id, str) else None
        return AccessRecord(route, method, status, size, latency, labels, upstream, exemplar)

    if not label_keys and not upstream_key and not exemplar_key:
        names = _core_keys(keys)
        if names is not None:  # the compiled core's scanner for these keys (see _json.h)
            setattr(parse_json, "core_format", ("json", {"keys": names, "latency_scale": scale}))  # noqa: B010
    setattr(parse_json, "has_upstream", bool(upstream_key))  # noqa: B010 (read by the aggregator)
    setattr(parse_json, "label_cap", cap)  # noqa: B010 (merged counts go through the same cap)
    return parse_json


#: our field names -> the compiled JSON scanner's roles (_json.h's LJ_*), in the order of its raw key
_CORE_ROLES = {"route": 0, "request": 1, "method": 2, "status": 3, "service": 4, "bytes": 5, "latency": 6}


def _core_keys(keys: Mapping[str, tuple[str, ...]]) -> list[tuple[int, int, bytes]] | None:
    """The keys as the compiled scanner looks them up: (role, rank in the role's lookup order, UTF-8
    name); None when one is a dotted key (`_lookup` walks nested objects for it: Python reads those)."""
    out: list[tuple[int, int, bytes]] = []
    for name, role in _CORE_ROLES.items():
        for rank, key in enumerate(keys[name]):
            if "." in key:
                return None
            try:
                out.append((role, rank, key.encode("utf-8")))
            except UnicodeEncodeError:
                return None
    return out


def _json_upstream(value: Any, scale: float) -> float | None:
    """A JSON upstream time: a number, or nginx's text (`"0.004, 0.012 : 0.001"`, `"-"`); absent is None."""
    if value is _MISSING or value is None:
        return None
    if isinstance(value, str):
        return parse_upstream_ms(value.encode("utf-8", "replace"), scale)
    return parse_latency_ms(_number(value, "latency", "upstream"), scale)


def _json_labels(label_keys: Mapping[str, str], max_values: int) -> tuple[
        Callable[[dict[str, Any], tuple[tuple[str, str], ...]], tuple[tuple[str, str], ...]] | None, LabelCap]:
    """The step that adds `label_fields` labels to a parsed object's labels (None when there are none),
    and the cap it admits values through.

    A missing or null key is the value `-`, a number its text; anything else is malformed
    (`fields`), as the `service` value is. Values are capped per label (`__other__` past the cap).
    """
    if not label_keys:
        return None, LabelCap(max_values)
    keys = [(name, (label_keys[name],)) for name in sorted(label_keys)]
    cap = LabelCap(max_values, frozenset(label_keys))

    def add(obj: dict[str, Any], labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        out = list(labels)
        for name, key in keys:
            value = _lookup(obj, key)
            if value is _MISSING or value is None:
                value = "-"
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            out.append((name, cap.admit(name, _text(value, "fields", name))))
        return tuple(out)

    return add, cap


parse_json = make_json_parser()

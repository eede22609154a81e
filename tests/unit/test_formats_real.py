"""The combined and json parsers against real-world shapes, table-driven, and the real fixture files.

The fixtures in tests/fixtures/ are copies of public sample logs (see tests/fixtures/README.md).
"""
from __future__ import annotations

import collections
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from logtaild import config as config_module
from logtaild.config import FileConfig
from logtaild.count.aggregate import Aggregator
from logtaild.count.formats import (
    JSON_FIELDS,
    MAX_SERVICES,
    NO_REQUEST,
    ParseError,
    make_json_parser,
    parse_json,
    parse_tsv,
    unescape_logged,
)
from logtaild.count.parsers import FORMATS, PARSERS, make_combined_parser, make_parser, parse_combined
from logtaild.count.record import AccessRecord
from logtaild.count.routes import RouteLimiter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
APACHE = FIXTURES / "apache-combined-3000.log"
NGINX = FIXTURES / "nginx-combined-edge-cases.log"

T = b"[17/May/2015:10:05:03 +0000]"
UA = b'"Mozilla/5.0 (X11; Linux x86_64)"'


def combined(request: bytes, status: bytes = b"200", size: bytes = b"512", client: bytes = b"10.0.0.1",
             tail: bytes = b' "-" ' + UA) -> bytes:
    return client + b" - - " + T + b' "' + request + b'" ' + status + b" " + size + tail


def rec(route: str, status: str = "200", size: int = 512, method: str = "GET", latency: float | None = None,
        labels: tuple[tuple[str, str], ...] = ()) -> AccessRecord:
    return AccessRecord(route, method, status, size, latency, labels)


# ---- combined: accepted -------------------------------------------------------------------------

COMBINED_OK = [
    ("apache combined", combined(b"GET /index.html HTTP/1.1"), rec("/index.html")),
    ("query string dropped", combined(b"GET /search?q=a%20b&x=1 HTTP/1.1"), rec("/search")),
    ("HTTP/2.0", combined(b"GET /h2 HTTP/2.0"), rec("/h2")),
    ("HTTP/0.9 two words", combined(b"GET /old"), rec("/old")),
    ("OPTIONS *", combined(b"OPTIONS * HTTP/1.1", size=b"0"), rec("*", size=0, method="OPTIONS")),
    ("percent-encoding kept as written", combined(b"GET /a%20b/%E2%82%AC HTTP/1.1"), rec("/a%20b/%E2%82%AC")),
    ("raw UTF-8 path (escape=none)", combined("GET /café/日本 HTTP/1.1".encode()), rec("/café/日本")),
    ("nginx \\xHH-escaped UTF-8 path", combined(rb"GET /caf\xC3\xA9 HTTP/1.1"), rec("/café")),
    ("apache lowercase \\xhh", combined(rb"GET /caf\xc3\xa9 HTTP/1.1"), rec("/café")),
    ("apache escaped quote in request", combined(rb'GET /a\"b HTTP/1.1'), rec('/a"b')),
    ("nginx \\x22 quote in request", combined(rb"GET /a\x22b HTTP/1.1"), rec('/a"b')),
    ("escaped backslash in request", combined(rb"GET /a\\b HTTP/1.1"), rec("/a\\b")),
    ("escaped quotes in user agent", combined(b"GET / HTTP/1.1", tail=rb' "-" "Mozilla \"quoted\" \\"'), rec("/")),
    ("nginx \\x22 in user agent", combined(b"GET / HTTP/1.1", tail=rb' "-" "a\x22b"'), rec("/")),
    ('"-" request, 408', combined(b"-", b"408", b"0"), rec(NO_REQUEST, "408", 0, NO_REQUEST)),
    ('"" request, 400', combined(b"", b"400", b"0"), rec(NO_REQUEST, "400", 0, NO_REQUEST)),
    ("dash bytes", combined(b"HEAD / HTTP/1.1", b"304", b"-"), rec("/", "304", 0, "HEAD")),
    ("IPv6 client", combined(b"GET /v6 HTTP/1.1", client=b"2001:db8::1"), rec("/v6")),
    ("bracketed IPv6 client", combined(b"GET /v6 HTTP/1.1", client=b"[2001:db8::1]"), rec("/v6")),
    ("X-Forwarded-For list before client", combined(b"GET /x HTTP/1.1", client=b"10.0.0.2, 10.0.0.1, 127.0.0.1"),
     rec("/x")),
    ("quoted leading field", combined(b"GET /x HTTP/1.1", client=b'"10.5.1.2, 199.96.1.1" 10.2.1.185'), rec("/x")),
    ("user name with a space", b'1.2.3.4 - john doe ' + T + b' "GET /u HTTP/1.1" 200 5 "-" "-"', rec("/u", size=5)),
    ("common log format (no referer, agent)", combined(b"GET /c HTTP/1.0", tail=b""), rec("/c")),
    ("extra trailing quoted field", combined(b"GET / HTTP/1.1", tail=b' "-" "ua" "1.2.3.4"'), rec("/")),
    ("absolute URI (proxy)", combined(b"GET http://example.com/p?q=1 HTTP/1.1"), rec("/p")),
    ("CONNECT authority form", combined(b"CONNECT example.com:443 HTTP/1.1", b"200"), rec("__connect__",
     method="CONNECT")),
    ("CONNECT IPv6 authority", combined(b"CONNECT [2001:db8::1]:443 HTTP/1.1", b"200"), rec("__connect__",
     method="CONNECT")),
    ("unknown method is OTHER", combined(b"BREW /pot HTTP/1.1", b"418"), rec("/pot", "418", method="OTHER")),
    ("nginx 499", combined(b"POST /slow HTTP/1.1", b"499", b"0"), rec("/slow", "499", 0, "POST")),
    ("CRLF line end", combined(b"GET / HTTP/1.1") + b"\r", rec("/")),
    ("trailing spaces", combined(b"GET / HTTP/1.1") + b"  ", rec("/")),
    ("control char escaped by the server", combined(rb"GET /x\x1B[2J HTTP/1.1"), rec("/x\x1b[2J")),
    ("timestamp is not validated beyond [..]", b"1.2.3.4 - - [2015-05-17T10:05:03+00:00] \"GET / HTTP/1.1\" 200 1",
     rec("/", size=1)),
]


@pytest.mark.parametrize(("raw", "expected"), [(r, e) for _i, r, e in COMBINED_OK],
                         ids=[i for i, _r, _e in COMBINED_OK])
def test_combined_accepts(raw: bytes, expected: AccessRecord) -> None:
    assert parse_combined(raw) == expected


# ---- combined: rejected -------------------------------------------------------------------------

FULL = combined(b"GET /index.html HTTP/1.1")
COMBINED_BAD = [
    ("empty line", b"", "fields"),
    ("garbage", b"hello world", "fields"),
    ("a TSV line", b"10.0.0.1\tGET /\t200\t5", "fields"),
    ("a JSON line", b'{"path": "/", "status": 200}', "fields"),
    ("truncated in the time", FULL[:30], "fields"),
    ("truncated in the request", FULL[:FULL.index(b"index")], "fields"),
    ("truncated after the request", FULL[:FULL.index(b"200") - 1], "fields"),
    ("truncated after the status", FULL[:FULL.index(b"512") - 1], "fields"),
    ("truncated in the referer", FULL[:FULL.index(b'"-"') + 2], "fields"),
    ("truncated in the user agent", FULL[:-5], "fields"),
    ("two lines run together", FULL[:-10] + FULL, "fields"),
    ("no ident and user", b"1.2.3.4 " + T + b' "GET / HTTP/1.1" 200 1', "fields"),
    ("unescaped quote in the request", combined(b'GET /a"b HTTP/1.1'), "fields"),
    ("status 99", combined(b"GET / HTTP/1.1", b"99"), "status"),
    ("status 600", combined(b"GET / HTTP/1.1", b"600"), "status"),
    ("status -", combined(b"GET / HTTP/1.1", b"-"), "status"),
    ("bytes negative", combined(b"GET / HTTP/1.1", size=b"-5"), "bytes"),
    ("bytes not a number", combined(b"GET / HTTP/1.1", size=b"lots"), "bytes"),
    ("request one word", combined(b"GET"), "request"),
    ("request relative target", combined(b"GET index.html HTTP/1.1"), "request"),
    ("request with a space in the URL", combined(b"GET /a b HTTP/1.1"), "request"),
    # one word, and not UTF-8: the reason is encoding, whatever the spaces
    ("TLS handshake on the HTTP port", combined(rb"\x16\x03\x01\x00\xF1\x01\x00", b"400", b"157"), "encoding"),
    ("TLS handshake with a space", combined(rb"\x16\x03\x01 \xF1\x01\x00", b"400", b"157"), "encoding"),
    ("binary with two spaces", combined(rb"\x16\x03 \x01\xF1 \x01", b"400", b"157"), "encoding"),
    ("one word, valid UTF-8", combined(b"hello", b"400", b"157"), "request"),
    ("escaped invalid UTF-8 in path", combined(rb"GET /\xFF HTTP/1.1", b"404"), "encoding"),
    ("raw invalid UTF-8 in path", combined(b"GET /\xff HTTP/1.1", b"404"), "encoding"),
]


@pytest.mark.parametrize(("raw", "reason"), [(r, e) for _i, r, e in COMBINED_BAD],
                         ids=[i for i, _r, _e in COMBINED_BAD])
def test_combined_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_combined(raw)
    assert info.value.reason == reason


def test_invalid_utf8_outside_the_request_is_fine() -> None:
    """Only the request is decoded; a Latin-1 user agent does not make the line malformed."""
    assert parse_combined(combined(b"GET / HTTP/1.1", tail=b' "-" "Mozilla \xe9"')) == rec("/")


# ---- combined: the trailing request time --------------------------------------------------------

LATENCY = [
    # (id, latency_unit, tail after the user agent, expected latency in ms)
    ("nginx $request_time seconds", "seconds", b" 0.005", 5.0),
    ("nginx $request_time zero", "seconds", b" 0.000", 0.0),
    ("apache %D microseconds", "microseconds", b" 1234", 1.234),
    ("milliseconds", "milliseconds", b" 12", 12.0),
    ("after an extra quoted field", "seconds", b' "10.0.0.9, 10.0.0.8" 1.5', 1500.0),
    ("no trailing field: no latency", "seconds", b"", None),
    ("trailing quoted field: no latency", "seconds", b' "-"', None),
    ("trailing dash: no latency", "seconds", b" -", None),
    ("no unit configured: ignored", None, b" 0.005", None),
    ("no unit configured: garbage ignored", None, b" fast", None),
]


@pytest.mark.parametrize(("unit", "tail", "expected"), [(u, t, e) for _i, u, t, e in LATENCY],
                         ids=[i for i, _u, _t, _e in LATENCY])
def test_combined_trailing_request_time(unit: str | None, tail: bytes, expected: float | None) -> None:
    parse = make_combined_parser(unit)
    record = parse(combined(b"GET /t HTTP/1.1", tail=b' "-" ' + UA + tail))
    assert record.latency_ms == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("value", [b"fast", b"nan", b"inf", b"-0.5", b"1e999"])
def test_combined_bad_request_time(value: bytes) -> None:
    with pytest.raises(ParseError) as info:
        make_combined_parser("seconds")(combined(b"GET / HTTP/1.1", tail=b' "-" ' + UA + b" " + value))
    assert info.value.reason == "latency"


def test_unescape_logged() -> None:
    assert unescape_logged(rb"/a\x22b\\c\"d\ne\q") == b'/a"b\\c"d\ne\\q'
    assert unescape_logged(b"/plain") == b"/plain"


def test_hostile_lines_cost_linear_time() -> None:
    """No input makes the combined regex backtrack: every 64 KiB line is rejected in milliseconds."""
    hostile = [
        b"a " * 32768, b"a b c [" * 9000, b'1 - - [x] "' + b'\\"' * 30000, b" " * 65536, b'" ' * 32768,
        b'1 - - [x] "GET / HTTP/1.1" 200 5' + b' "a"' * 15000 + b' "',
        b'1 - - [x] "GET / HTTP/1.1" 200 5' + b" a" * 30000 + b' "',
        b'a b c [x] "r" 1 2' * 3800 + b' "', b' a b [::1] "x" 1 2' * 3500 + b' "',
        b'[::1] a b [::1] "x" 1 2' * 2800 + b' "', b"1 - - [x] \"" + b"\\" * 65000,
    ]
    start = time.perf_counter()
    for line in hostile:
        with pytest.raises(ParseError):
            parse_combined(line[:65536])
    assert time.perf_counter() - start < 1.0  # about 30 ms in all; a quadratic regex takes minutes


# ---- the fixtures ---------------------------------------------------------------------------------

def test_apache_fixture_exact_counts_per_status_and_method() -> None:
    lines = APACHE.read_bytes().splitlines()
    assert len(lines) == 3000
    # independently of the regex: the status is the first word after the request's closing quote
    by_split = collections.Counter(line.split(b'"')[2].split()[0].decode() for line in lines)
    methods_by_split = collections.Counter(line.split(b'"')[1].split()[0].decode() for line in lines)
    records = [parse_combined(line) for line in lines]
    assert collections.Counter(r.status for r in records) == by_split
    assert by_split == {"200": 2641, "304": 211, "301": 68, "404": 58, "206": 21, "500": 1}
    assert collections.Counter(r.method for r in records) == methods_by_split == {"GET": 2987, "HEAD": 13}
    assert sum(r.bytes for r in records) == sum(
        int(b) for b in (line.split(b'"')[2].split()[1] for line in lines) if b != b"-")
    assert all(r.route.startswith("/") and r.latency_ms is None for r in records)


def test_apache_fixture_through_the_aggregator() -> None:
    """The whole path the daemon takes: make_parser -> Aggregator (normalization, cap) -> counts."""
    agg = Aggregator(RouteLimiter(50), [5.0, 50.0], make_parser(FileConfig("x", format="combined")))
    data = APACHE.read_bytes().splitlines()
    for start in range(0, len(data), 700):
        agg.feed(data[start:start + 700])
    assert agg.lines == 3000 and sum(agg.malformed.values()) == 0
    per_status: collections.Counter[str] = collections.Counter()
    for (_route, status), n in agg.counts_by_route_status().items():
        per_status[status] += n
    assert per_status == {"200": 2641, "304": 211, "301": 68, "404": 58, "206": 21, "500": 1}
    assert agg.limiter.distinct == 50  # the capped rest is under __other__


def test_nginx_edge_case_fixture() -> None:
    records = [parse_combined(line) for line in NGINX.read_bytes().splitlines()]
    assert records == [
        rec("/ocelot", size=571),  # X-Forwarded-For list before the client
        rec("/stringpatch", "404", 612),  # an extra trailing "-" field
        rec("/ocelot", size=571),
        rec("/ocelot", size=571),
        rec("/assets/xxxx", size=25507),  # a quoted leading field; query dropped
        rec("/test.html", "404", 8571),  # IPv6 in an X-Forwarded-For list
        rec(NO_REQUEST, "400", 0, NO_REQUEST),  # the empty request ""
    ]


def test_nginx_edge_case_fixture_with_a_latency_unit() -> None:
    """A trailing quoted field is not a request time: with a unit configured the lines still parse."""
    parse = make_combined_parser("seconds")
    assert [parse(line).latency_ms for line in NGINX.read_bytes().splitlines()] == [None] * 7


# ---- json -----------------------------------------------------------------------------------------

TELEMETRY = {"service": "auth-service", "timestamp": "2024-05-17T10:05:03Z", "status_code": 200,
             "latency_ms": 350, "error": False}


def j(**obj: object) -> bytes:
    return json.dumps(obj).encode()


JSON_OK = [
    ("the telemetry shape", json.dumps(TELEMETRY).encode(),
     rec(NO_REQUEST, "200", 0, NO_REQUEST, 350.0, (("service", "auth-service"),))),
    ("path, method, status as a string", j(path="/users/7?x=1", method="POST", status="201", bytes=3),
     rec("/users/7", "201", 3, "POST")),
    ("route key", j(route="/r", status=204), rec("/r", "204", 0, NO_REQUEST)),
    ("uri key, absolute URL", j(uri="https://h.example/a/b#f", status=200), rec("/a/b", size=0, method=NO_REQUEST)),
    ("nginx escape=json template", j(request="GET /api?q=1 HTTP/2.0", status="200", body_bytes_sent="1024"),
     rec("/api", size=1024)),
    ("request line with non-ASCII", j(request="GET /café HTTP/1.1", status=200), rec("/café", size=0)),
    ('request "-" with 408', j(request="-", status=408), rec(NO_REQUEST, "408", 0, NO_REQUEST)),
    ("OPTIONS * request line", j(request="OPTIONS * HTTP/1.1", status=200), rec("*", size=0, method="OPTIONS")),
    ("path wins over request", j(path="/p", request="GET /r HTTP/1.1", method="PUT", status=200),
     rec("/p", size=0, method="PUT")),
    ("method key over the request line's", j(request="GET /r HTTP/1.1", method="HEAD", status=200),
     rec("/r", size=0, method="HEAD")),
    ("unknown method is OTHER", j(path="/", method="BREW", status=418), rec("/", "418", 0, "OTHER")),
    ("null fields are absent", j(path=None, status=200, bytes=None, latency_ms=None, service=None),
     rec(NO_REQUEST, size=0, method=NO_REQUEST)),
    ("float latency, integral float bytes", j(path="/", status=200, bytes=10.0, latency_ms=0.25),
     rec("/", size=10, method=NO_REQUEST, latency=0.25)),
    ("duration_ms key", j(path="/", status=200, duration_ms=7), rec("/", size=0, method=NO_REQUEST, latency=7.0)),
    ("numeric service", j(path="/", status=200, service=42),
     rec("/", size=0, method=NO_REQUEST, labels=(("service", "42"),))),
    ("empty service: no label", j(path="/", status=200, service=""), rec("/", size=0, method=NO_REQUEST)),
    ("percent-encoding kept", j(path="/a%2Fb", status=200), rec("/a%2Fb", size=0, method=NO_REQUEST)),
    ("CRLF and spaces around", b' {"path": "/", "status": 200} \r', rec("/", size=0, method=NO_REQUEST)),
]


@pytest.mark.parametrize(("raw", "expected"), [(r, e) for _i, r, e in JSON_OK], ids=[i for i, _r, _e in JSON_OK])
def test_json_accepts(raw: bytes, expected: AccessRecord) -> None:
    assert parse_json(raw) == expected


JSON_BAD = [
    ("not JSON", b"hello", "fields"),
    ("truncated object", json.dumps(TELEMETRY).encode()[:-8], "fields"),
    ("an array", b"[1, 2]", "fields"),
    ("a string", b'"GET /"', "fields"),
    ("deep nesting", b"[" * 50000 + b"]" * 50000, "fields"),
    ("empty line", b"", "fields"),
    ("a combined line", FULL, "fields"),
    ("status missing", j(path="/"), "status"),
    ("status null", j(path="/", status_code=None), "status"),
    ("status bool", j(path="/", status_code=True), "status"),
    ("status out of range", j(path="/", status_code=600), "status"),
    ("status float", j(path="/", status_code=200.0), "status"),
    ("status text", j(path="/", status="OK"), "status"),
    ("bytes negative", j(path="/", status=200, bytes=-1), "bytes"),
    ("bytes fractional", j(path="/", status=200, bytes=1.5), "bytes"),
    ("bytes text", j(path="/", status=200, bytes="many"), "bytes"),
    ("bytes object", j(path="/", status=200, bytes={"n": 1}), "bytes"),
    ("latency text", j(path="/", status=200, latency_ms="fast"), "latency"),
    ("latency negative", j(path="/", status=200, latency_ms=-1), "latency"),
    ("latency bool", j(path="/", status=200, latency_ms=True), "latency"),
    ("latency overflow", b'{"path": "/", "status": 200, "latency_ms": 1e999}', "latency"),
    ("path relative", j(path="index.html", status=200), "request"),
    ("path empty", j(path="", status=200), "request"),
    ("path not a string", j(path=7, status=200), "request"),
    ("method not a string", j(path="/", method=1, status=200), "request"),
    ("method with a digit", j(path="/", method="G3T", status=200), "request"),
    ("request one word", j(request="GET", status=400), "request"),
    ("lone surrogate in path", b'{"path": "/\\ud800", "status": 200}', "encoding"),
    ("lone surrogate in service", b'{"path": "/", "status": 200, "service": "\\udfff"}', "encoding"),
    ("service an object", j(path="/", status=200, service={"name": "x"}), "fields"),
    ("invalid UTF-8", b'{"path": "/\xff", "status": 200}', "encoding"),
]


@pytest.mark.parametrize(("raw", "reason"), [(r, e) for _i, r, e in JSON_BAD], ids=[i for i, _r, _e in JSON_BAD])
def test_json_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_json(raw)
    assert info.value.reason == reason


def test_json_fields_mapping_nested_keys_and_units() -> None:
    """ECS-style nested keys by dotted path, `path` as another name for `route`, a unit for latency."""
    parse = make_json_parser({"path": "url.path", "method": "http.request.method",
                              "status": "http.response.status_code", "latency": "event.duration",
                              "service": "service.name"}, "microseconds")
    line = j(url={"path": "/orders/9"}, http={"request": {"method": "GET"}, "response": {"status_code": 503}},
             event={"duration": 1500}, service={"name": "shop"})
    assert parse(line) == rec("/orders/9", "503", 0, "GET", 1.5, (("service", "shop"),))
    # a literal dotted key wins over the nested walk
    assert parse(b'{"url.path": "/lit", "url": {"path": "/nested"}, "http.response.status_code": 200}').route == "/lit"


def test_json_mapped_key_replaces_the_defaults() -> None:
    parse = make_json_parser({"status": "code", "latency": "request_time"}, "seconds")
    assert parse(j(path="/", code=302, request_time=0.25)) == rec("/", "302", 0, NO_REQUEST, 250.0)
    with pytest.raises(ParseError) as info:
        parse(j(path="/", status_code=200))  # the default key is no longer looked up
    assert info.value.reason == "status"


def test_json_field_mapped_to_empty_is_not_read() -> None:
    parse = make_json_parser({"service": "", "latency": ""})
    assert parse(json.dumps(TELEMETRY).encode()) == rec(NO_REQUEST, size=0, method=NO_REQUEST)


def test_json_service_values_are_capped_per_parser() -> None:
    parse = make_json_parser()
    seen = {parse(j(path="/", status=200, service=f"svc-{i}")).labels for i in range(MAX_SERVICES + 50)}
    assert len(seen) == MAX_SERVICES + 1
    assert (("service", "__other__"),) in seen
    assert parse(j(path="/", status=200, service="svc-3")).labels == (("service", "svc-3"),)  # known stays
    assert make_json_parser()(j(path="/", status=200, service="new")).labels == (("service", "new"),)


def test_json_unknown_field_name() -> None:
    with pytest.raises(ValueError, match="unknown json field 'colour'"):
        make_json_parser({"colour": "c"})


# ---- make_parser and the registry -----------------------------------------------------------------

def test_make_parser_keeps_the_tsv_fast_path() -> None:
    assert make_parser(FileConfig("x", format="tsv")) is parse_tsv
    assert make_parser(FileConfig("x", format="tsv", latency_unit="milliseconds")) is parse_tsv
    assert PARSERS["tsv"] is parse_tsv
    assert Aggregator(RouteLimiter(), [1.0], make_parser(FileConfig("x", format="tsv")))._fast
    assert not Aggregator(RouteLimiter(), [1.0], make_parser(FileConfig("x", format="combined")))._fast


def test_make_parser_applies_the_file_options() -> None:
    line = combined(b"GET / HTTP/1.1", tail=b' "-" "-" 0.5')
    assert make_parser(FileConfig("x", format="combined"))(line).latency_ms is None
    assert make_parser(FileConfig("x", format="combined", latency_unit="seconds"))(line).latency_ms == 500.0
    assert make_parser(FileConfig("x", format="combined", latency_unit="microseconds"))(line).latency_ms == 0.0005
    parse = make_parser(FileConfig("x", format="json", fields={"route": "u"}))
    assert parse(j(u="/x", status=200)).route == "/x"
    # every call builds a new parser: the json service cap is per file
    assert make_parser(FileConfig("x", format="json")) is not make_parser(FileConfig("x", format="json"))


def options(**given: object) -> SimpleNamespace:
    """Parser options as FileConfig has them, without its checks."""
    return SimpleNamespace(**{"format": "auto", "latency_unit": None, "fields": {}, "log_format": None,
                              "label_fields": {}, "label_values_max": 100, "upstream_field": None,
                              "upstream_unit": "seconds", **given})


@pytest.mark.parametrize(("options", "message"), [
    (options(format="xml"), "unknown format"),
    (options(format="tsv", latency_unit="seconds"), "tsv"),
    (options(format="combined", fields={"route": "r"}), "json format only"),
    (options(format="nginx"), "log_format is required"),
    (options(format="tsv", label_fields={"v": "x"}), "tsv"),
])
def test_make_parser_rejects_what_the_config_rejects(options: SimpleNamespace, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_parser(options)


def test_config_and_formats_agree_on_the_json_field_names() -> None:
    """config.py is a leaf (imports no sibling), so it keeps its own copy of the names."""
    assert sorted(config_module.JSON_FIELDS) == sorted(JSON_FIELDS)
    assert set(config_module.FORMATS) == set(FORMATS)
    assert set(PARSERS) <= set(FORMATS)

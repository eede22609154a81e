"""nginx `log_format` and Apache `LogFormat` strings: reading them, compiling them, and the parsers they
make, table-driven per variable and directive; the `combined` preset against the fixtures; upstream times.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from logtaild.count.formats import NO_REQUEST, ParseError, parse_upstream_ms
from logtaild.count.logformat import (
    COMBINED,
    CompiledFormat,
    FormatError,
    combined_preset,
    compile_format,
    field_key,
    prepare,
    tokenize_apache,
    tokenize_nginx,
)
from logtaild.count.parsers import has_upstream
from logtaild.count.record import AccessRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
T = "17/May/2015:10:05:03 +0000"


def nginx(fmt: str, **options: object) -> CompiledFormat:
    return CompiledFormat("nginx", fmt)


def parse_nginx(fmt: str, line: str | bytes, **options: object) -> AccessRecord:
    raw = line.encode() if isinstance(line, str) else line
    return compile_format("nginx", fmt, **options)(raw)  # type: ignore[arg-type]


def parse_apache(fmt: str, line: str | bytes, **options: object) -> AccessRecord:
    raw = line.encode() if isinstance(line, str) else line
    return compile_format("apache", fmt, **options)(raw)  # type: ignore[arg-type]


# ---- reading the format string ----------------------------------------------------------------------

def test_nginx_quoted_pieces_are_joined_as_nginx_does() -> None:
    escape, text = prepare("nginx", "'$remote_addr [$time_local] '\n   '\"$request\" $status'")
    assert (escape, text) == ("default", '$remote_addr [$time_local] "$request" $status')
    assert prepare("nginx", "escape=json '{\"s\":$status}'") == ("json", '{"s":$status}')
    assert prepare("nginx", '$status \\"$request\\"') == ("default", '$status "$request"')


def test_apache_quotes_as_written_or_backslash_escaped() -> None:
    assert prepare("apache", '%h \\"%r\\" %>s')[1] == prepare("apache", '%h "%r" %>s')[1] == '%h "%r" %>s'


def test_nginx_variables_are_fields_the_rest_literal() -> None:
    tokens = tokenize_nginx('$remote_addr ${host}:x "$request" $status$body_bytes_sent')
    names = [t.name for t in tokens if not isinstance(t, bytes)]
    assert names == ["$remote_addr", "$host", "$request", "$status", "$body_bytes_sent"]
    assert [t for t in tokens if isinstance(t, bytes)] == [b" ", b':x "', b'" ']


def test_apache_directives_with_modifiers_and_params() -> None:
    tokens = tokenize_apache('%h %{c}a %>s %<s %400,501{User-Agent}i %!200{Referer}i %{ms}T 100%% %^ti')
    names = [t.name for t in tokens if not isinstance(t, bytes)]
    assert names == ["%h", "%{c}a", "%>s", "%<s", "%{user-agent}i", "%{referer}i", "%{ms}T", "%^ti"]
    assert b" 100% " in tokens


def test_field_names_as_users_write_them() -> None:
    assert field_key("nginx", "${host}") == field_key("nginx", "$host") == "$host"
    assert field_key("apache", "%{X-Version}i") == "%{x-version}i"
    assert field_key("apache", "%v") == "%v"
    with pytest.raises(FormatError):
        field_key("nginx", "host")


@pytest.mark.parametrize(("server", "fmt", "message"), [
    ("nginx", "$status$body_bytes_sent$request", r"followed by \$request"),
    ("nginx", "$request_uri$status", "nothing between them"),
    ("nginx", "${host $status", "unterminated"),
    ("nginx", "$ $status", "not followed by a variable name"),
    ("nginx", "", "empty format"),
    ("nginx", "just text", "no field"),
    ("nginx", "escape=xml '$status'", "escape=xml"),
    ("nginx", "$status\\n$request", "line break"),
    ("apache", "%h %{User-Agent i %>s", "unterminated %{"),
    ("apache", "%h % %>s", "not followed by a directive"),
    ("apache", "%h%u %>s", "nothing between them"),
])
def test_format_strings_that_cannot_be_compiled(server: str, fmt: str, message: str) -> None:
    with pytest.raises(FormatError, match=message) as info:
        compile_format(server, fmt.replace("\\n", "\n"))
    assert info.value.key == "log_format"


def test_a_format_needs_a_status_field() -> None:
    with pytest.raises(FormatError, match="no status field"):
        compile_format("nginx", '"$request" $body_bytes_sent')


def test_unknown_variables_and_directives_are_skipped_as_text() -> None:
    record = parse_nginx('$no_such_var "$request" $status $whatever_else', 'xyz "GET /a HTTP/1.1" 200 a_b')
    assert (record.route, record.status) == ("/a", "200")
    record = parse_apache('%Z %{whatever}Q "%r" %>s %J', 'a b "GET /a HTTP/1.1" 404 c')
    assert (record.route, record.status) == ("/a", "404")


def test_adjacent_fields_with_a_fixed_shape_are_split() -> None:
    record = parse_nginx('"$request" $status$body_bytes_sent', '"GET / HTTP/1.1" 200512')
    assert (record.status, record.bytes) == ("200", 512)


# ---- nginx variables, one by one ------------------------------------------------------------------

NGINX = [
    # (id, format, line, what the record has)
    ("$request", '"$request" $status', '"GET /a?b=1 HTTP/1.1" 200', {"route": "/a", "method": "GET"}),
    ("$request empty", '"$request" $status', '"" 400', {"route": NO_REQUEST, "method": NO_REQUEST}),
    ("$request_method $request_uri", '$request_method $request_uri $status', "POST /u/7?x=1 201",
     {"route": "/u/7", "method": "POST", "status": "201"}),
    ("$request_method $uri", '$request_method $uri $status', "PUT /caf\\xC3\\xA9 200",
     {"route": "/café", "method": "PUT"}),
    ("$request_uri without a method", '$request_uri $status', "/x 200", {"route": "/x", "method": NO_REQUEST}),
    ("$request_uri wins over $uri", '$uri $request_uri $status', "/norm /raw?q 200", {"route": "/raw"}),
    ("CONNECT via method and uri", '$request_method $request_uri $status', "CONNECT h.example:443 200",
     {"route": "__connect__", "method": "CONNECT"}),
    ("$status", '"$request" $status', '"GET / HTTP/1.1" 503', {"status": "503"}),
    ("$body_bytes_sent", '"$request" $status $body_bytes_sent', '"GET / HTTP/1.1" 200 77', {"bytes": 77}),
    ("$bytes_sent", '"$request" $status $bytes_sent', '"GET / HTTP/1.1" 200 300', {"bytes": 300}),
    ("$body_bytes_sent wins over $bytes_sent", '"$request" $status $bytes_sent $body_bytes_sent',
     '"GET / HTTP/1.1" 200 300 77', {"bytes": 77}),
    ("no bytes field: 0", '"$request" $status', '"GET / HTTP/1.1" 200', {"bytes": 0}),
    ("$request_time (seconds)", '"$request" $status rt=$request_time', '"GET / HTTP/1.1" 200 rt=0.250',
     {"latency_ms": 250.0}),
    ("$upstream_response_time", '"$request" $status urt=$upstream_response_time', '"GET / HTTP/1.1" 200 urt=0.120',
     {"upstream_ms": 120.0}),
    ("$upstream_response_time retries and redirects", '"$request" $status "$upstream_response_time"',
     '"GET / HTTP/1.1" 502 "0.004, 0.012 : 0.001"', {"upstream_ms": 17.0}),
    ("$upstream_response_time unquoted with spaces", '"$request" $status $upstream_response_time $host',
     '"GET / HTTP/1.1" 200 0.5, 0.25 : 0.25 h.example', {"upstream_ms": 1000.0}),
    ("$upstream_response_time - (no upstream)", '"$request" $status $upstream_response_time',
     '"GET / HTTP/1.1" 200 -', {"upstream_ms": None}),
    ("$upstream_header_time alone is not observed", '"$request" $status $upstream_header_time',
     '"GET / HTTP/1.1" 200 0.5', {"upstream_ms": None}),
    ("$time_local in brackets", '[$time_local] "$request" $status', f'[{T}] "GET / HTTP/1.1" 200', {"route": "/"}),
    ("$time_local bare", '$time_local "$request" $status', f'{T} "GET / HTTP/1.1" 200', {"route": "/"}),
    ("$time_iso8601", '$time_iso8601 "$request" $status', '2015-05-17T10:05:03+00:00 "GET / HTTP/1.1" 200',
     {"route": "/"}),
    ("$msec", '$msec "$request" $status', '1431857103.123 "GET / HTTP/1.1" 200', {"route": "/"}),
    ("$remote_addr X-Forwarded-For list", '$remote_addr - $remote_user [$time_local] "$request" $status',
     f'10.0.0.2, 10.0.0.1 - - [{T}] "GET / HTTP/1.1" 200', {"route": "/"}),
    ("$http_x_forwarded_for list", '$http_x_forwarded_for "$request" $status',
     '10.0.0.2, 10.0.0.1 "GET / HTTP/1.1" 200', {"route": "/"}),
    ("$upstream_addr and $upstream_status lists unquoted",
     '"$request" $status ua=$upstream_addr us=$upstream_status $host',
     '"GET / HTTP/1.1" 200 ua=10.0.0.1:80, 10.0.0.2:80 : unix:/run/app.sock us=502, 504 : 200 h.example',
     {"status": "200"}),
    ("\\x22 in a quoted value", '"$request" $status "$http_user_agent"', '"GET /a\\x22b HTTP/1.1" 200 "x\\x22y"',
     {"route": '/a"b'}),
    ("${variable} form", '"${request}" ${status}', '"GET /b HTTP/1.1" 200', {"route": "/b"}),
]


@pytest.mark.parametrize(("fmt", "line", "expected"), [(f, line, e) for _i, f, line, e in NGINX],
                         ids=[i for i, _f, _l, _e in NGINX])
def test_nginx_variables(fmt: str, line: str, expected: dict[str, object]) -> None:
    record = parse_nginx(fmt, line)
    assert {name: getattr(record, name) for name in expected} == expected


def test_nginx_escape_json() -> None:
    fmt = "escape=json '{\"request\":\"$request\",\"status\":$status,\"ua\":\"$http_user_agent\",\"h\":\"$host\"}'"
    line = '{"request":"GET /caf\\u00e9?q=\\"x\\" HTTP/1.1","status":200,"ua":"a\\"b","h":"h\\\\1"}'
    record = parse_nginx(fmt, line, label_fields={"vhost": "$host"})
    assert (record.route, record.status, record.labels) == ("/café", "200", (("vhost", "h\\1"),))


def test_nginx_escape_none() -> None:
    record = parse_nginx("escape=none '\"$request\" $status'", '"GET /a\\x41 HTTP/1.1" 200')
    assert record.route == "/a\\x41"


# ---- Apache directives, one by one ---------------------------------------------------------------

APACHE = [
    ("%r", '"%r" %>s', '"GET /a?b HTTP/1.1" 200', {"route": "/a", "method": "GET"}),
    ("%r with \\\"", '"%r" %>s', '"GET /a\\"b HTTP/1.1" 200', {"route": '/a"b'}),
    ("%m %U %q", "%m %U%q %>s", "DELETE /x/1?y=2 204", {"route": "/x/1", "method": "DELETE", "status": "204"}),
    ("%>s final status", '"%r" %s %>s', '"GET / HTTP/1.1" 302 200', {"status": "200"}),
    ("%s when there is no %>s", '"%r" %s', '"GET / HTTP/1.1" 302', {"status": "302"}),
    ("%b", '"%r" %>s %b', '"GET / HTTP/1.1" 200 1234', {"bytes": 1234}),
    ("%b - is 0", '"%r" %>s %b', '"GET / HTTP/1.1" 304 -', {"bytes": 0}),
    ("%B", '"%r" %>s %B', '"GET / HTTP/1.1" 200 0', {"bytes": 0}),
    ("%O", '"%r" %>s %O', '"GET / HTTP/1.1" 200 345', {"bytes": 345}),
    ("%b wins over %O", '"%r" %>s %O %b', '"GET / HTTP/1.1" 200 345 100', {"bytes": 100}),
    ("%D microseconds", '"%r" %>s %D', '"GET / HTTP/1.1" 200 1500', {"latency_ms": 1.5}),
    ("%T seconds", '"%r" %>s %T', '"GET / HTTP/1.1" 200 2', {"latency_ms": 2000.0}),
    ("%{s}T seconds", '"%r" %>s %{s}T', '"GET / HTTP/1.1" 200 1', {"latency_ms": 1000.0}),
    ("%{ms}T milliseconds", '"%r" %>s %{ms}T', '"GET / HTTP/1.1" 200 42', {"latency_ms": 42.0}),
    ("%{us}T microseconds", '"%r" %>s %{us}T', '"GET / HTTP/1.1" 200 42', {"latency_ms": 0.042}),
    ("%D wins over %T", '"%r" %>s %T %D', '"GET / HTTP/1.1" 200 0 2500', {"latency_ms": 2.5}),
    ("%t", '%t "%r" %>s', f'[{T}] "GET / HTTP/1.1" 200', {"route": "/"}),
    ("%h %l %u", '%h %l %u %t "%r" %>s', f'::1 - frank [{T}] "GET / HTTP/1.1" 200', {"route": "/"}),
    ("%v %p %{Header}i %{VAR}e", '%v:%p "%r" %>s "%{User-Agent}i" %{UNIQUE_ID}e',
     'h.example:443 "GET / HTTP/1.1" 200 "curl/8" YJx1', {"route": "/"}),
    ("%{c}a %a", '%a %{c}a "%r" %>s', '10.0.0.1 10.0.0.2 "GET / HTTP/1.1" 200', {"route": "/"}),
]


@pytest.mark.parametrize(("fmt", "line", "expected"), [(f, line, e) for _i, f, line, e in APACHE],
                         ids=[i for i, _f, _l, _e in APACHE])
def test_apache_directives(fmt: str, line: str, expected: dict[str, object]) -> None:
    record = parse_apache(fmt, line)
    assert {name: getattr(record, name) for name in expected} == expected


def test_apache_upstream_through_upstream_field() -> None:
    """Apache logs no upstream time of its own; a response header with one is named in upstream_field."""
    fmt = '"%r" %>s %D "%{X-Upstream-Time}o"'
    parse = compile_format("apache", fmt, upstream_field="%{x-upstream-time}o", upstream_scale=1.0)
    assert has_upstream(parse)
    assert parse(b'"GET / HTTP/1.1" 200 3000 "2.5"').upstream_ms == 2.5
    assert parse(b'"GET / HTTP/1.1" 200 3000 "-"').upstream_ms is None
    assert not has_upstream(compile_format("apache", fmt))


# ---- malformed lines and their reasons ------------------------------------------------------------

MAIN = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
        '"$http_user_agent" rt=$request_time urt="$upstream_response_time" $host')


def main_line(request: str = "GET / HTTP/1.1", status: str = "200", size: str = "5", rt: str = "0.010",
              urt: str = "0.008", host: str = "h.example") -> bytes:
    return (f'10.0.0.1 - - [{T}] "{request}" {status} {size} "-" "curl" rt={rt} urt="{urt}" {host}').encode()


BAD = [
    ("not the format", b"hello world", "fields"),
    ("truncated", main_line()[:-20], "fields"),
    ("a line too many fields", main_line() + b" extra", "fields"),
    ("status", main_line(status="2x0"), "status"),
    ("status empty", main_line(status=""), "status"),
    ("bytes", main_line(size="lots"), "bytes"),
    ("request time", main_line(rt="fast"), "latency"),
    ("request time negative", main_line(rt="-1"), "latency"),
    ("upstream garbage", main_line(urt="soon"), "latency"),
    ("upstream empty part", main_line(urt="0.1, , 0.2"), "latency"),
    ("request not METHOD target", main_line(request="GET"), "request"),
    ("request relative target", main_line(request="GET a/b HTTP/1.1"), "request"),
    ("TLS handshake", main_line(request="\\x16\\x03\\x01\\x00\\xF1"), "encoding"),
    ("TLS handshake with spaces", main_line(request="\\x16\\x03 \\x01 \\xF1 \\x00"), "encoding"),
    ("invalid UTF-8 path", main_line(request="GET /\\xFF HTTP/1.1"), "encoding"),
]


@pytest.mark.parametrize(("line", "reason"), [(line, r) for _i, line, r in BAD], ids=[i for i, _l, _r in BAD])
def test_malformed_reasons(line: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        compile_format("nginx", MAIN)(line)
    assert info.value.reason == reason


def test_a_trailing_cr_or_spaces_are_fine() -> None:
    parse = compile_format("nginx", MAIN)
    assert parse(main_line() + b"\r").status == parse(main_line() + b"  ").status == "200"


def test_hostile_lines_cost_linear_time() -> None:
    parse = compile_format("nginx", MAIN, label_fields={"vhost": "$host"})
    hostile = [b"a " * 32768, b"1, " * 21000, b'1 - - [x] "' + b'\\"' * 30000, b"[" * 65536,
               b'1 - - [' + T.encode() + b'] "GET / HTTP/1.1" 200 5 "' + b'\\"' * 30000,
               b'1 - - [' + T.encode() + b'] "GET / HTTP/1.1" 200 5 "-" "-" rt=1 urt="' + b"1, " * 20000,
               b"1, 2 " * 13000 + b'- - [', main_line() * 500]
    start = time.perf_counter()
    for line in hostile:
        with pytest.raises(ParseError):
            parse(line[:65536])
    assert time.perf_counter() - start < 1.0


# ---- upstream times -------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    (b"0.004", 4.0), (b"0.004, 0.012", 16.0), (b"0.004, 0.012 : 0.001", 17.0), (b"-", None),
    (b"- : 0.020", 20.0), (b"0.010, -", 10.0), (b"-, - : -", None), (b"0.000", 0.0), (b"1.5,0.5", 2000.0),
])
def test_upstream_times_are_summed(raw: bytes, expected: float | None) -> None:
    result = parse_upstream_ms(raw)
    assert result == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("raw", [b"", b"x", b"0.1,", b"nan", b"inf", b"-0.5", b"1e999", b"0.1 0.2"])
def test_bad_upstream_times_are_latency_errors(raw: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_upstream_ms(raw)
    assert info.value.reason == "latency"


# ---- labels from fields ---------------------------------------------------------------------------

def test_label_fields_are_capped_per_label() -> None:
    parse = compile_format("nginx", MAIN, label_fields={"vhost": "$host"}, max_label_values=3)
    seen = [dict(parse(main_line(host=f"h{i}")).labels)["vhost"] for i in range(6)]
    assert seen == ["h0", "h1", "h2", "__other__", "__other__", "__other__"]
    assert dict(parse(main_line(host="h1")).labels)["vhost"] == "h1"  # a known value stays
    assert dict(parse(main_line(host="__other__")).labels)["vhost"] == "__other__"


def test_label_values_are_unescaped_and_strict_utf8() -> None:
    parse = compile_format("nginx", MAIN, label_fields={"vhost": "$host"})
    assert parse(main_line(host="caf\\xC3\\xA9")).labels == (("vhost", "café"),)
    with pytest.raises(ParseError) as info:
        parse(main_line(host="\\xFF"))
    assert info.value.reason == "encoding"


@pytest.mark.parametrize(("fields", "key"), [
    ({"vhost": "$server_addr"}, "label_fields.vhost"),
    ({"vhost": "host"}, "label_fields.vhost"),
])
def test_a_label_field_the_format_lacks(fields: dict[str, str], key: str) -> None:
    with pytest.raises(FormatError) as info:
        compile_format("nginx", MAIN, label_fields=fields)
    assert info.value.key == key


def test_an_upstream_field_the_format_lacks() -> None:
    with pytest.raises(FormatError) as info:
        compile_format("nginx", MAIN, upstream_field="$upstream_header_time")
    assert info.value.key == "upstream_field"


# ---- the combined preset --------------------------------------------------------------------------

def test_combined_is_a_preset_of_the_format_strings() -> None:
    assert COMBINED == '%h %l %u %t "%r" %>s %b'
    assert not has_upstream(combined_preset())


@pytest.mark.parametrize("name", ["apache-combined-3000.log", "nginx-combined-edge-cases.log"])
def test_the_preset_equals_the_nginx_combined_string_with_trailing_fields(name: str) -> None:
    """On the fixtures: the preset and an explicit Apache "combined" string agree where both apply."""
    preset = combined_preset()
    explicit = compile_format("apache", '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"')
    for line in (FIXTURES / name).read_bytes().splitlines():
        record = preset(line)
        try:
            other = explicit(line)
        except ParseError:
            assert name.startswith("nginx")  # the edge cases have an extra trailing field
            continue
        assert record == other


# ---- CONNECT and request reasons in every format --------------------------------------------------

def test_connect_is_one_route_whatever_the_host() -> None:
    from logtaild.count.aggregate import Aggregator
    from logtaild.count.parsers import PARSERS
    from logtaild.count.routes import RouteLimiter

    tsv = [b"10.0.0.1\tCONNECT h%d.example:443 HTTP/1.1\t200\t0" % i for i in range(300)]
    combined = [b'1.2.3.4 - - [' + T.encode() + b'] "CONNECT h%d.example:443 HTTP/1.1" 200 0' % i for i in range(300)]
    for fmt, lines in (("tsv", tsv), ("combined", combined)):
        agg = Aggregator(RouteLimiter(10), [5.0], PARSERS[fmt])
        agg.feed(lines)
        assert {key[:3] for key in agg.slots} == {("__connect__", "CONNECT", "200")}
        assert agg.limiter.distinct == 1


@pytest.mark.parametrize(("request_line", "reason"), [
    (b"\x16\x03\x01\x00\xf1\x01", "encoding"),            # no space
    (b"\x16\x03 \x01\xf1\x01", "encoding"),               # one space: two words
    (b"\x16\x03 \x01\xf1 \x01", "encoding"),              # three words
    (b"\x16\x03\x01 / HTTP/1.1", "request"),              # valid UTF-8, but no method token
    (b"GET /\xff HTTP/1.1", "encoding"),
    (b"GET / HTTP/1.1 extra", "request"),
    (b"GET / HTTP/1.1\xff", None),                        # the protocol is not part of any label
])
def test_request_reasons_are_the_same_in_tsv_and_through_the_fast_path(request_line: bytes,
                                                                        reason: str | None) -> None:
    from logtaild.count.aggregate import Aggregator
    from logtaild.count.formats import parse_tsv
    from logtaild.count.routes import RouteLimiter

    line = b"10.0.0.1\t" + request_line + b"\t400\t0"
    if reason is None:
        assert parse_tsv(line).status == "400"
    else:
        with pytest.raises(ParseError) as info:
            parse_tsv(line)
        assert info.value.reason == reason
    agg = Aggregator(RouteLimiter(10), [5.0])
    agg.feed([line, line])
    assert agg.malformed.get(reason or "fields", 0) == (2 if reason else 0)


def test_directives_pasted_whole() -> None:
    """The line from nginx.conf or httpd.conf, copied with its name and quotes, reads the same."""
    whole = "log_format main escape=json '{\"s\":$status,' '\"r\":\"$request\"}';"
    assert prepare("nginx", whole) == ("json", '{"s":$status,"r":"$request"}')
    assert prepare("nginx", "main '$status'") == ("default", "$status")
    apache = 'LogFormat "%h %l %u %t \\"%r\\" %>s %b" common'
    assert prepare("apache", apache) == ("default", '%h %l %u %t "%r" %>s %b')
    assert prepare("apache", '"%h \\"%r\\" %>s"') == ("default", '%h "%r" %>s')
    assert prepare("apache", '"%r" %>s "%{User-Agent}i"')[1] == '"%r" %>s "%{User-Agent}i"'  # not one quoted string


@pytest.mark.parametrize(("value", "reason"), [("GET /\\ud800 HTTP/1.1", "encoding"), ("GET /\\x HTTP/1.1", "fields")])
def test_nginx_escape_json_bad_escapes(value: str, reason: str) -> None:
    parse = compile_format("nginx", "escape=json '{\"request\":\"$request\",\"status\":$status}'")
    with pytest.raises(ParseError) as info:
        parse(('{"request":"' + value + '","status":200}').encode())
    assert info.value.reason == reason

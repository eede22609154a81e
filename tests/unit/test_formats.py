"""The TSV parser, table-driven: what it accepts (and as what), and why it rejects the rest."""
from __future__ import annotations

import pytest

from logtaild.count.formats import REASONS, ParseError, parse_bytes, parse_latency_ms, parse_status, parse_tsv
from logtaild.count.record import AccessRecord

IP = b"10.0.0.1"


def line(*fields: bytes) -> bytes:
    return b"\t".join(fields)


ACCEPTED = [
    # (id, line, expected record)
    ("4 fields", line(IP, b"GET /", b"200", b"512"), AccessRecord("/", "GET", "200", 512, None)),
    ("5 fields", line(IP, b"POST /api", b"201", b"0", b"12.5"), AccessRecord("/api", "POST", "201", 0, 12.5)),
    ("latency integer", line(IP, b"GET /", b"200", b"1", b"7"), AccessRecord("/", "GET", "200", 1, 7.0)),
    ("latency zero", line(IP, b"GET /", b"200", b"1", b"0"), AccessRecord("/", "GET", "200", 1, 0.0)),
    ("query dropped", line(IP, b"GET /search?q=a&b=c", b"200", b"5"),
     AccessRecord("/search", "GET", "200", 5, None)),
    ("fragment dropped", line(IP, b"GET /doc#intro", b"200", b"5"), AccessRecord("/doc", "GET", "200", 5, None)),
    ("query then fragment", line(IP, b"GET /doc?x=1#y", b"200", b"5"),
     AccessRecord("/doc", "GET", "200", 5, None)),
    ("empty query on root", line(IP, b"GET /?", b"200", b"5"), AccessRecord("/", "GET", "200", 5, None)),
    ("absolute URI", line(IP, b"GET http://example.com/a/b?x=1", b"200", b"5"),
     AccessRecord("/a/b", "GET", "200", 5, None)),
    ("absolute URI https port", line(IP, b"GET https://example.com:8443/x", b"200", b"5"),
     AccessRecord("/x", "GET", "200", 5, None)),
    ("absolute URI no path", line(IP, b"GET http://example.com", b"200", b"5"),
     AccessRecord("/", "GET", "200", 5, None)),
    ("absolute URI query only", line(IP, b"GET http://example.com?next=/admin", b"200", b"5"),
     AccessRecord("/", "GET", "200", 5, None)),
    ("absolute URI fragment only", line(IP, b"GET http://example.com#/x", b"200", b"5"),
     AccessRecord("/", "GET", "200", 5, None)),
    ("OPTIONS *", line(IP, b"OPTIONS *", b"200", b"0"), AccessRecord("*", "OPTIONS", "200", 0, None)),
    ("HTTP/1.1 third word", line(IP, b"GET /x HTTP/1.1", b"200", b"5"), AccessRecord("/x", "GET", "200", 5, None)),
    ("unknown method", line(IP, b"BREW /pot", b"418", b"5"), AccessRecord("/pot", "OTHER", "418", 5, None)),
    ("lowercase method is OTHER", line(IP, b"get /", b"200", b"5"), AccessRecord("/", "OTHER", "200", 5, None)),
    ("WebDAV method is OTHER", line(IP, b"PROPFIND /dav", b"207", b"5"),
     AccessRecord("/dav", "OTHER", "207", 5, None)),
    ("PATCH is kept", line(IP, b"PATCH /a", b"204", b"0"), AccessRecord("/a", "PATCH", "204", 0, None)),
    ("dash bytes is 0", line(IP, b"HEAD /", b"304", b"-"), AccessRecord("/", "HEAD", "304", 0, None)),
    ("status bounds low", line(IP, b"GET /", b"100", b"1"), AccessRecord("/", "GET", "100", 1, None)),
    ("status bounds high", line(IP, b"GET /", b"599", b"1"), AccessRecord("/", "GET", "599", 1, None)),
    ("CRLF, 4 fields", line(IP, b"GET /", b"200", b"512\r"), AccessRecord("/", "GET", "200", 512, None)),
    ("CRLF, 5 fields", line(IP, b"GET /", b"200", b"512", b"3.5\r"), AccessRecord("/", "GET", "200", 512, 3.5)),
    ("percent-encoding kept", line(IP, b"GET /a%20b", b"200", b"1"), AccessRecord("/a%20b", "GET", "200", 1, None)),
    ("UTF-8 route", line(IP, "GET /caf\u00e9".encode(), b"200", b"1"),
     AccessRecord("/caf\u00e9", "GET", "200", 1, None)),
    ("empty ip field", line(b"", b"GET /", b"200", b"1"), AccessRecord("/", "GET", "200", 1, None)),
]


@pytest.mark.parametrize(("raw", "expected"), [(r, e) for _i, r, e in ACCEPTED], ids=[i for i, _r, _e in ACCEPTED])
def test_parse_tsv_accepts(raw: bytes, expected: AccessRecord) -> None:
    assert parse_tsv(raw) == expected


REJECTED = [
    # fields
    ("3 fields", line(IP, b"GET /", b"200"), "fields"),
    ("6 fields", line(IP, b"GET /", b"200", b"1", b"2", b"3"), "fields"),
    ("empty line", b"", "fields"),
    ("tabs only", b"\t\t", "fields"),
    ("no tabs", b"GET / 200 5", "fields"),
    # request
    ("request one word", line(IP, b"GET", b"200", b"1"), "request"),
    ("request four words", line(IP, b"GET / HTTP/1.1 x", b"200", b"1"), "request"),
    ("request double space", line(IP, b"GET  /", b"200", b"1"), "request"),
    ("request empty", line(IP, b"", b"200", b"1"), "request"),
    ("request relative target", line(IP, b"GET index.html", b"200", b"1"), "request"),
    ("request bad scheme", line(IP, b"GET 1http://x/", b"200", b"1"), "request"),
    ("method with digit", line(IP, b"G3T /", b"200", b"1"), "request"),
    ("method too long", line(IP, b"A" * 33 + b" /", b"200", b"1"), "request"),
    ("method non-ASCII", line(IP, "G\u00c9T /".encode(), b"200", b"1"), "request"),
    ("request TOTAL forgery", line(IP, b"GET TOTAL", b"200", b"1"), "request"),
    # status
    ("status 99", line(IP, b"GET /", b"99", b"1"), "status"),
    ("status 099", line(IP, b"GET /", b"099", b"1"), "status"),
    ("status 600", line(IP, b"GET /", b"600", b"1"), "status"),
    ("status abc", line(IP, b"GET /", b"abc", b"1"), "status"),
    ("status 20", line(IP, b"GET /", b"20", b"1"), "status"),
    ("status 2000", line(IP, b"GET /", b"2000", b"1"), "status"),
    ("status with space", line(IP, b"GET /", b" 200", b"1"), "status"),
    ("status empty", line(IP, b"GET /", b"", b"1"), "status"),
    ("status non-ASCII", line(IP, b"GET /", "2\u0660\u0660".encode(), b"1"), "status"),
    # bytes
    ("bytes negative", line(IP, b"GET /", b"200", b"-1"), "bytes"),
    ("bytes non-numeric", line(IP, b"GET /", b"200", b"abc"), "bytes"),
    ("bytes float", line(IP, b"GET /", b"200", b"1.5"), "bytes"),
    ("bytes empty", line(IP, b"GET /", b"200", b""), "bytes"),
    ("bytes hex", line(IP, b"GET /", b"200", b"0x10"), "bytes"),
    ("bytes NUL", line(IP, b"GET /", b"200", b"1\x00"), "bytes"),
    ("bytes double dash", line(IP, b"GET /", b"200", b"--"), "bytes"),
    ("bytes 5000 digits", line(IP, b"GET /", b"200", b"9" * 5000), "bytes"),
    # latency
    ("latency nan", line(IP, b"GET /", b"200", b"1", b"nan"), "latency"),
    ("latency inf", line(IP, b"GET /", b"200", b"1", b"inf"), "latency"),
    ("latency -inf", line(IP, b"GET /", b"200", b"1", b"-inf"), "latency"),
    ("latency negative", line(IP, b"GET /", b"200", b"1", b"-0.5"), "latency"),
    ("latency non-numeric", line(IP, b"GET /", b"200", b"1", b"fast"), "latency"),
    ("latency empty", line(IP, b"GET /", b"200", b"1", b""), "latency"),
    ("latency dash", line(IP, b"GET /", b"200", b"1", b"-"), "latency"),
    ("latency overflow", line(IP, b"GET /", b"200", b"1", b"1e999"), "latency"),
    # encoding (in the request field, the only field decoded as text)
    ("invalid UTF-8 in route", line(IP, b"GET /\xff\xfe", b"200", b"1"), "encoding"),
    ("truncated UTF-8", line(IP, b"GET /caf\xc3", b"200", b"1"), "encoding"),
    ("overlong UTF-8 slash", line(IP, b"GET /\xc0\xaf", b"200", b"1"), "encoding"),
    ("UTF-8 surrogate", line(IP, b"GET /\xed\xa0\x80", b"200", b"1"), "encoding"),
]


@pytest.mark.parametrize(("raw", "reason"), [(r, e) for _i, r, e in REJECTED], ids=[i for i, _r, _e in REJECTED])
def test_parse_tsv_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_tsv(raw)
    assert info.value.reason == reason


def test_every_reason_is_covered_by_the_table() -> None:
    assert {reason for _i, _r, reason in REJECTED} == set(REASONS)


def test_first_bad_field_decides_the_reason() -> None:
    """Fields are checked left to right, so a line bad in several fields has one stable reason."""
    with pytest.raises(ParseError) as info:
        parse_tsv(line(IP, b"GET", b"abc", b"-5", b"nan"))
    assert info.value.reason == "request"
    with pytest.raises(ParseError) as info:
        parse_tsv(line(IP, b"GET /", b"abc", b"-5", b"nan"))
    assert info.value.reason == "status"


def test_parse_error_message_names_reason() -> None:
    err = ParseError("status", "'abc'")
    assert str(err) == "status: 'abc'"
    assert ParseError("fields").args == ("fields",)


@pytest.mark.parametrize(("raw", "expected"), [(200, "200"), ("404", "404"), (b"503", "503")])
def test_parse_status_types(raw: bytes | str | int, expected: str) -> None:
    assert parse_status(raw) == expected


@pytest.mark.parametrize("raw", ["2\u00b2\u00b3", "1\u0660\u0660", 99, 600, "1e2"])
def test_parse_status_rejects_non_ascii_and_out_of_range(raw: str | int) -> None:
    with pytest.raises(ParseError) as info:
        parse_status(raw)
    assert info.value.reason == "status"


def test_parse_bytes_and_latency_helpers() -> None:
    assert parse_bytes("-") == 0
    assert parse_bytes(17) == 17
    assert parse_latency_ms("1.5", scale=1000.0) == 1500.0
    with pytest.raises(ParseError):
        parse_bytes(None)  # type: ignore[arg-type]
    with pytest.raises(ParseError):
        parse_latency_ms("1e308", scale=1000.0)  # finite input, infinite after scaling

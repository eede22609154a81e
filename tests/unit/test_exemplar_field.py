"""`exemplar_field`: the trace id each format's parser puts on its records, and what is not one."""
from __future__ import annotations

import pytest

from logtaild.config import FileConfig
from logtaild.count.formats import trace_id
from logtaild.count.logformat import FormatError
from logtaild.count.parsers import make_parser

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(("raw", "kept"), [
    (TRACE.encode(), TRACE),
    (b"ABCDEF0123", "ABCDEF0123"),
    (f"00-{TRACE}-00f067aa0ba902b7-01".encode(), TRACE),  # a W3C traceparent: its trace id
    (b"-", None),
    (b"", None),
    (b"not-hex", None),
    (b"a" * 120, "a" * 120),
    (b"a" * 121, None),  # past OpenMetrics' 128 characters with `trace_id`
    (b'4bf9"} 1', None),
])
def test_trace_id(raw: bytes, kept: str | None) -> None:
    assert trace_id(raw) == kept


def test_nginx_request_id() -> None:
    parse = make_parser(FileConfig("a", "nginx", log_format='"$request" $status $body_bytes_sent $request_time '
                                   '$request_id', exemplar_field="$request_id"))
    record = parse(f'"GET /x HTTP/1.1" 200 5 0.012 {TRACE}'.encode())
    assert (record.route, record.latency_ms, record.exemplar) == ("/x", 12.0, TRACE)
    assert parse(b'"GET /x HTTP/1.1" 200 5 0.012 -').exemplar is None


def test_apache_header() -> None:
    parse = make_parser(FileConfig("a", "apache", log_format='"%r" %>s %b %D "%{traceparent}i"',
                                   exemplar_field="%{traceparent}i"))
    record = parse(f'"GET / HTTP/1.1" 200 5 1500 "00-{TRACE}-00f067aa0ba902b7-01"'.encode())
    assert (record.latency_ms, record.exemplar) == (1.5, TRACE)


def test_json_key() -> None:
    parse = make_parser(FileConfig("a", "json", exemplar_field="trace.id"))
    record = parse(b'{"path": "/", "status": 200, "latency_ms": 3, "trace": {"id": "abc123"}}')
    assert (record.latency_ms, record.exemplar) == (3.0, "abc123")
    assert parse(b'{"path": "/", "status": 200, "trace": {"id": 17}}').exemplar is None


def test_a_field_the_format_lacks_is_an_error_naming_the_key() -> None:
    with pytest.raises(FormatError) as info:
        make_parser(FileConfig("a", "nginx", log_format='"$request" $status', exemplar_field="$request_id"))
    assert info.value.key == "exemplar_field"

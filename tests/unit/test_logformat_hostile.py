"""Hostile values in every field of compiled nginx and Apache formats (hypothesis): a parser accepts or
raises ParseError with a known reason, never anything else; accepted records are label-safe; label caps
hold; good lines among hostile ones are all counted."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logtaild.count import slots
from logtaild.count.aggregate import Aggregator
from logtaild.count.formats import REASONS, ParseError
from logtaild.count.logformat import compile_format
from logtaild.count.record import AccessRecord
from logtaild.count.routes import RouteLimiter
from tests.unit.test_hostile import SETTINGS, fragment_soup, hostile_line

NGINX = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
         '"$http_user_agent" rt=$request_time urt="$upstream_response_time" $host "$sent_http_x_version"')
APACHE = '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D %v "%{X-Version}o"'
FORMATS = {
    "nginx": (NGINX, {"vhost": "$host", "version": "$sent_http_x_version"}),
    "apache": (APACHE, {"vhost": "%v", "version": "%{X-Version}o"}),
}
# every field a hole: the template is the format with each field replaced by %s
TEMPLATES = {
    "nginx": b'%s - %s [%s] "%s" %s %s "%s" "%s" rt=%s urt="%s" %s "%s"',
    "apache": b'%s %s %s [%s] "%s" %s %s "%s" "%s" %s %s "%s"',
}
GOOD = {
    "nginx": b'1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /good-Zq9 HTTP/1.1" 200 10 "-" "curl" rt=0.005 '
             b'urt="0.004" h.example "1.0"',
    "apache": b'1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET /good-Zq9 HTTP/1.1" 200 10 "-" "curl" 5000 '
              b'h.example "1.0"',
}
VALUES = [b"-", b"", b"0.004, 0.012 : 0.001", b"200", b"GET / HTTP/1.1", b"\\x22", b'\\"', b"\\xFF", b"1e999",
          b"CONNECT h:443 HTTP/1.1", b"10.0.0.1, 10.0.0.2", b"10/Oct/2000:13:55:36 -0700", b"__other__"]
field_value = st.one_of(fragment_soup, st.sampled_from(VALUES), st.binary(max_size=40))


@st.composite
def templated(draw: st.DrawFn, server: str) -> bytes:
    template = TEMPLATES[server]
    return template % tuple(draw(field_value) for _ in range(template.count(b"%s")))


def check_record(record: AccessRecord) -> None:
    for value in (record.route, record.method, record.status, *(v for kv in record.labels for v in kv)):
        value.encode("utf-8")
    assert len(record.status) == 3 and record.status.isdigit()
    assert record.bytes >= 0
    for ms in (record.latency_ms, record.upstream_ms):
        assert ms is None or (math.isfinite(ms) and ms >= 0)


@pytest.mark.parametrize("server", sorted(FORMATS))
@SETTINGS
@given(data=st.data())
def test_hostile_fields_are_accepted_or_rejected_with_a_reason(server: str, data: st.DataObject) -> None:
    fmt, labels = FORMATS[server]
    parse = compile_format(server, fmt, label_fields=labels, max_label_values=3)
    for _ in range(5):
        line = data.draw(st.one_of(templated(server), hostile_line))
        try:
            record = parse(line)
        except ParseError as exc:
            assert exc.reason in REASONS
            continue
        check_record(record)
        assert all(len(v) >= 0 for _k, v in record.labels)


@pytest.mark.parametrize("server", sorted(FORMATS))
@SETTINGS
@given(data=st.data())
def test_good_lines_among_hostile_ones_are_all_counted_and_labels_stay_capped(server: str,
                                                                               data: st.DataObject) -> None:
    fmt, labels = FORMATS[server]
    from logtaild.count.parsers import has_upstream

    parse = compile_format(server, fmt, label_fields=labels, max_label_values=3)
    bad = data.draw(st.lists(templated(server), max_size=30))
    lines = [GOOD[server], *bad, GOOD[server]]
    agg = Aggregator(RouteLimiter(50), [5.0, 100.0], parse)
    assert agg.upstream == has_upstream(parse) == (server == "nginx")
    agg.feed(lines)
    good = sum(slots.count(s) for (route, *_r), s in agg.slots.items() if route == "/good-Zq9")
    assert good >= 2
    assert sum(slots.count(s) for s in agg.slots.values()) + sum(agg.malformed.values()) == len(lines)
    for name in labels:
        values = {dict(key[3])[name] for key in agg.slots}
        assert len(values - {"__other__"}) <= 3

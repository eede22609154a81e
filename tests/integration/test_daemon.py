"""The real `logtaild` process against the real simulator: exact counts on /metrics and in reports."""
from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, Simulator, parse_reports, wait_for

pytestmark = pytest.mark.integration


def test_metrics_and_reports_count_every_line_the_simulator_wrote(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    daemon = Daemon("--file", str(log), "--interval", "0.5", "--log-level", "debug").wait_ready()
    try:
        written = Simulator("--output-file", str(log), "--rate", "3000", "--lines", "6000",
                            "--latency", "--seed", "7").wait()
        wait_for(lambda: daemon.value("logtaild_lines_read_total") == written, 20, "all lines read")
        assert daemon.value("logtaild_http_requests_total") == written
        assert daemon.value("logtaild_http_request_duration_seconds_count") == written
        assert daemon.value("logtaild_http_request_duration_seconds_bucket", le="+Inf") == written
        assert daemon.value("logtaild_lines_malformed_total") == 0
        assert daemon.value("logtaild_build_info") == 1
        assert daemon.value("process_resident_memory_bytes") > 0
        code, seconds = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0 and seconds < 2.0
    reports = parse_reports(daemon.out.text)
    windows = daemon.windows()
    assert len(reports) == len(windows) >= 3
    assert sum(n for _length, n in windows) == written
    for report, (length, n) in zip(reports, windows):
        # the printed rate times the measured window length gives back the window's count
        assert round(report.totals["all"] * length) == n
        assert sum(q for _r, _s, q in report.rows) == pytest.approx(report.totals["all"], abs=0.05)


def test_malformed_lines_are_counted_by_reason_and_never_stop_the_daemon(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    daemon = Daemon("--file", str(log), "--interval", "0.5").wait_ready()
    try:
        bad = [b"garbage", b"1.2.3.4\tGET\t200\t1", b"1.2.3.4\tGET /\t999\t1",
               b"1.2.3.4\tGET /\t200\tlots", b"1.2.3.4\tGET /\t200\t1\tslow", b"1.2.3.4\tGET /\xff\t200\t1",
               b"\x00\x00\x00", b"\t\t\t\t", b"1.2.3.4\tGET /x\x1b[2J\t200\t5"]
        with open(log, "ab") as handle:
            for line in bad:
                handle.write(line + b"\n1.1.1.1\tGET /ok\t200\t10\n")
        wait_for(lambda: daemon.value("logtaild_lines_read_total") == 2 * len(bad), 10, "lines read")
        assert daemon.value("logtaild_http_requests_total", route="/ok") == len(bad)
        reasons = {r: daemon.value("logtaild_lines_malformed_total", reason=r)
                   for r in ("fields", "request", "status", "bytes", "latency", "encoding")}
        assert reasons == {"fields": 2, "request": 2, "status": 1, "bytes": 1, "latency": 1, "encoding": 1}
        # the escape sequence is a valid route; its label value is escaped when the series is created,
        # so /metrics and the report show the same safe text
        assert daemon.value("logtaild_http_requests_total", route="/x\\x1b[2J") == 1
        assert daemon.value("logtaild_http_requests_total", route="/x\x1b[2J") == 0
        wait_for(lambda: "/x\\x1b[2J" in daemon.out.text, 5, "the escaped route in a report")
        assert "\x1b" not in daemon.out.text
        assert daemon.proc.poll() is None
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.err.text


def test_a_missing_file_is_waited_for_then_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    daemon = Daemon("--file", str(log), "--interval", "0.5").wait_ready()
    try:
        wait_for(lambda: "waiting for the file to appear" in daemon.err.text, 5, "the waiting message")
        log.write_bytes(b"1.1.1.1\tGET /a\t200\t1\n" * 5)
        wait_for(lambda: daemon.value("logtaild_http_requests_total", route="/a") == 5, 10, "5 requests")
    finally:
        code, _ = daemon.stop()
    assert code == 0
    assert daemon.err.text.count("waiting for the file to appear") == 1


def test_sigint_also_exits_cleanly_with_a_last_report(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    daemon = Daemon("--file", str(log), "--interval", "30").wait_ready()
    with open(log, "ab") as handle:
        handle.write(b"1.1.1.1\tGET /a\t200\t1\n" * 3)
    wait_for(lambda: daemon.value("logtaild_lines_read_total") == 3, 10, "3 lines")
    code, seconds = daemon.stop(signal.SIGINT)
    assert code == 0 and seconds < 2.0
    [report] = parse_reports(daemon.out.text)
    assert [(route, status) for route, status, _q in report.rows] == [("/a", "200")]


def test_port_in_use_exits_2_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        daemon = Daemon("--file", str(tmp_path / "x.log"), port=port)
        code = daemon.proc.wait(10)
        daemon.err.join(2)
    assert code == 2
    assert daemon.err.lines == [f"logtaild: error: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_once_reads_the_whole_file_and_exits(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    written = Simulator("--output-file", str(log), "--rate", "50000", "--lines", "5000", "--seed", "3").wait()
    daemon = Daemon("--file", str(log), "--from-start", "--once", listen=False)
    assert daemon.proc.wait(30) == 0
    daemon.out.join(2)
    [report] = parse_reports(daemon.out.text)
    routes = {route for route, _status, _q in report.rows}
    assert routes <= {"/", "/library", "/blog", "/questions"} and "/" in routes
    assert written == 5000

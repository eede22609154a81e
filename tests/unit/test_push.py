"""run/push.py against a tiny local receiver answering the status each test wants: what is sent (decoded),
what is retried, dropped or rejected, the backoff, the log lines, TLS, credentials, and config errors."""
from __future__ import annotations

import http.server
import logging
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import pytest

from logtaild.config import (
    BasicAuthConfig,
    Config,
    ConfigError,
    QueueConfig,
    RemoteWriteConfig,
    TlsClientConfig,
    build,
    check,
)
from logtaild.export.snapshot import Snapshot
from logtaild.run.push import LOG_EVERY, Pusher, safe_url, ssl_context
from tests.support.certs import make_pki
from tests.unit.test_cli import assert_usage_error, run
from tests.unit.test_remote_write import by_name, decode


@dataclass
class Receiver:
    """A remote-write receiver on 127.0.0.1 answering `statuses` in turn (then the last one forever)."""

    statuses: list[int]
    requests: list[tuple[Message, bytes]] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None
    tls: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}/api/v1/write"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.headers, body))  # names case-insensitive
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                reply = b"" if status < 300 else b"out of order sample\nsecond line"
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://user:pw@127.0.0.1:1/elsewhere?token=x")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([200]).start()
    yield r
    r.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def snap() -> Snapshot:
    from tests.unit.test_exporter import snapshot
    return snapshot()


def pusher(url: str, clock: Clock | None = None, **config: object) -> Pusher:
    rw = RemoteWriteConfig(url, **config)  # type: ignore[arg-type]
    clock = clock or Clock()
    return Pusher(rw, snap, clock=clock, wall=lambda: 1_795_342_500.5, jitter=lambda: 1.0)


def test_a_push_is_the_snapshot_decoded_exactly_with_the_protocol_headers(receiver: Receiver) -> None:
    p = pusher(receiver.url, external_labels={"instance": "web1", "site": "a"}, headers={"X-Scope-OrgID": "t1"})
    p.push_now()
    assert p.send_queued(5.0)
    ((headers, body),) = receiver.requests
    assert headers["Content-Encoding"] == "snappy"
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert headers["X-Scope-OrgID"] == "t1"
    assert headers["User-Agent"].startswith("logtaild/")
    series = decode(body)
    assert by_name(series, "logtaild_http_requests_total", route="/", method="GET", status="200", site="a") == 10
    assert {ts for samples in series.values() for _, ts in samples} == {1_795_342_500_500}
    stats = p.stats()
    assert (stats.sent, stats.failed, stats.dropped, stats.retries, stats.pending) == (len(series), 0, 0, 0, 0)
    assert stats.bytes_sent == len(body) and stats.last_success == 1_795_342_500.5


def test_5xx_and_429_are_retried_with_capped_exponential_backoff(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "logtaild")
    r = Receiver([500, 503, 429, 500, 500, 500, 200]).start()
    try:
        clock = Clock()
        p = pusher(r.url, clock, queue=QueueConfig(min_backoff=0.5, max_backoff=4.0))
        p.push_now()
        delays = []
        while not p.send_queued(5.0):
            delays.append(p.retry_at - clock.now)  # the jitter is 1.0 here: the delay's upper end
        assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
        stats = p.stats()
        assert stats.retries == 6 and stats.sent > 0 and stats.failed == 0 and stats.pending == 0
        assert len(r.requests) == 7 and len({body for _h, body in r.requests}) == 1  # the same push each time
    finally:
        r.stop()
    # one line for the first failure; the rest within a minute are counted, not printed
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1 and "HTTP 500" in warnings[0] and "retrying in 0.5s" in warnings[0]
    assert any("delivering again after 6 failed attempts" in rec.getMessage() for rec in caplog.records)


def test_jitter_spreads_the_backoff_over_its_upper_half() -> None:
    rw = RemoteWriteConfig("http://127.0.0.1:9/", queue=QueueConfig(min_backoff=1, max_backoff=8))
    low = Pusher(rw, snap, jitter=lambda: 0.0)
    assert [low.backoff(n) for n in (1, 2, 3, 4, 5, 100)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_4xx_is_rejected_not_retried_and_logged(status: int, caplog: pytest.LogCaptureFixture) -> None:
    r = Receiver([status]).start()
    try:
        p = pusher(r.url)
        p.push_now()
        assert p.send_queued(5.0)  # done with: not queued again
        stats = p.stats()
        assert stats.failed > 0 and (stats.sent, stats.retries, stats.pending, stats.last_success) == (0, 0, 0, 0.0)
        assert len(r.requests) == 1
    finally:
        r.stop()
    (line,) = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert f"HTTP {status}" in line and "not retried" in line and "out of order sample second line" in line
    assert "\n" not in line


def test_a_redirect_is_not_followed(caplog: pytest.LogCaptureFixture) -> None:
    """Following it would send the credentials elsewhere (and urllib would turn the POST into a GET)."""
    r = Receiver([307]).start()
    try:
        p = pusher(r.url)
        p.push_now()
        assert p.send_queued(5.0) and p.stats().failed > 0 and len(r.requests) == 1
    finally:
        r.stop()
    assert "HTTP 307" in caplog.text and "a redirect to http://127.0.0.1:1/elsewhere, not followed" in caplog.text
    assert "token" not in caplog.text and "pw" not in caplog.text


def test_an_unreachable_receiver_is_retried_and_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    r = Receiver([200]).start()
    url = r.url
    r.stop()  # nothing listens there now
    clock = Clock()
    p = pusher(url, clock, timeout=1.0)
    for _ in range(3):
        p.push_now()
        assert not p.send_queued(1.0)
        clock.now += 10
    clock.now += LOG_EVERY
    assert not p.send_queued(1.0)
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "ConnectionRefusedError" in warnings[0] and "3 push(es) queued" in warnings[1]
    assert "(2 similar messages suppressed)" in warnings[1]
    assert p.stats().pending > 0 and p.stats().retries == 3  # the first attempt is no retry


def test_a_receiver_that_comes_back_gets_the_queue_oldest_first() -> None:
    r = Receiver([503, 503, 200]).start()
    try:
        p = pusher(r.url)
        p.push_now()
        assert not p.send_queued(5.0)
        p.push_now()
        assert not p.send_queued(5.0)
        assert p.send_queued(5.0) and p.send_queued(5.0)
        assert p.stats().pending == 0 and p.stats().dropped == 0
        first, second = p.stats().sent // 2, p.stats().sent
        assert first * 2 == second
    finally:
        r.stop()


def test_the_queue_drops_the_oldest_pushes_past_its_bound_and_counts_them() -> None:
    p = pusher("http://127.0.0.1:9/", queue=QueueConfig(max_samples=1))  # smaller than one push
    p.push_now()
    one = p.stats().pending
    for _ in range(4):
        p.push_now()
    stats = p.stats()
    assert stats.pending == one and stats.dropped == 4 * one  # the newest push is always kept


def test_tls_with_the_receivers_ca_and_a_tls_error_without_it(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    pki = make_pki(tmp_path / "pki")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(pki.server_cert, pki.server_key)
    r = Receiver([200], tls=server_tls).start()
    try:
        good = pusher(r.url.replace("127.0.0.1", "localhost"), tls=TlsClientConfig(ca_file=str(pki.ca)))
        good.push_now()
        assert good.send_queued(5.0) and good.stats().sent > 0
        untrusted = pusher(r.url.replace("127.0.0.1", "localhost"))
        untrusted.push_now()
        assert not untrusted.send_queued(5.0)  # retried: the certificate may be renewed
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
        skip = pusher(r.url, tls=TlsClientConfig(insecure_skip_verify=True))
        skip.push_now()
        assert skip.send_queued(5.0)
    finally:
        r.stop()


def test_basic_auth_and_bearer_token_read_from_their_files_at_each_push(tmp_path: Path, receiver: Receiver,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    p = pusher(receiver.url, basic_auth=BasicAuthConfig("logtaild", str(secret)))
    p.push_now()
    assert p.send_queued(5.0)
    assert receiver.requests[-1][0]["Authorization"] == "Basic bG9ndGFpbGQ6czNjcmV0"  # logtaild:s3cret
    secret.unlink()  # gone at run time: retried and logged, never a crash
    p.push_now()
    assert not p.send_queued(5.0)
    assert "cannot read the credentials" in caplog.text and "s3cret" not in caplog.text
    token = tmp_path / "token"
    token.write_text("abc\n")
    t = pusher(receiver.url, bearer_token_file=str(token))
    t.push_now()
    assert t.send_queued(5.0) and receiver.requests[-1][0]["Authorization"] == "Bearer abc"


def test_the_thread_pushes_on_its_interval_and_once_more_at_stop(receiver: Receiver) -> None:
    counts = iter(range(1, 1000))

    def growing() -> Snapshot:
        s = snap()
        s.checkpoint_writes = next(counts)
        return s
    p = Pusher(RemoteWriteConfig(receiver.url, interval=0.05), growing)
    p.start()
    import time
    deadline = time.monotonic() + 10
    while len(receiver.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    p.stop()
    values = [by_name(decode(body), "logtaild_checkpoint_writes_total") for _h, body in receiver.requests]
    assert len(values) >= 4 and values == sorted(values) and values == list(range(1, len(values) + 1))
    assert p.stats().dropped == 0 and p.stats().pending == 0


def test_stop_with_the_receiver_down_returns_and_counts_the_unsent_as_dropped() -> None:
    p = Pusher(RemoteWriteConfig("http://127.0.0.1:9/", interval=3600, timeout=0.5), snap)
    p.start()
    p.stop()
    stats = p.stats()
    assert stats.sent == 0 and stats.pending == 0 and stats.dropped > 0


def test_the_url_label_carries_no_secrets() -> None:
    assert safe_url("https://mimir.example.org:8443/api/v1/push?token=x#f") == "https://mimir.example.org:8443/api/v1/push"
    assert safe_url("http://[::1]:8428/api/v1/write") == "http://[::1]:8428/api/v1/write"


def test_a_bad_tls_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"^remote_write\[1\]\.tls: "):
        ssl_context(RemoteWriteConfig("https://x/", tls=TlsClientConfig(ca_file=str(bad))), "remote_write[1]")


def test_a_bad_ca_file_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    log = tmp_path / "access.log"
    log.write_text("")
    config = tmp_path / "c.yaml"
    from tests.support.daemon import free_port
    config.write_text(f"files: [{{path: {log}}}]\nlisten: 127.0.0.1:{free_port()}\n"
                      f"remote_write:\n  - {{url: 'https://x/', tls: {{ca_file: {bad}}}}}\n")
    line = assert_usage_error(*run(["--config", str(config)], capsys))
    assert line.startswith("logtaild: error: remote_write[0].tls: ")


@pytest.mark.parametrize(("receiver_yaml", "message"), [
    ({"url": "ftp://x/"}, "remote_write[0].url: must be an http:// or https:// URL with a host, got 'ftp://x/'"),
    ({"url": "http:///write"}, "remote_write[0].url: must be an http:// or https:// URL with a host"),
    ({"url": "https://u:p@x/"}, "remote_write[0].url: put credentials in basic_auth, not in the URL"),
    ({"url": "http://x/", "interval": 0}, "remote_write[0].interval: must be a positive number"),
    ({"url": "http://x/", "basic_auth": {"username": "u", "password_file": "/nonexistent/pw"}},
     "remote_write[0].basic_auth.password_file: cannot read /nonexistent/pw: No such file or directory"),
    ({"url": "http://x/", "bearer_token_file": "/nonexistent/t"},
     "remote_write[0].bearer_token_file: cannot read /nonexistent/t"),
    ({"url": "http://x/", "tls": {"cert_file": "/etc/hostname"}}, "remote_write[0].tls: give cert_file and key_file"),
    ({"url": "http://x/", "headers": {"Content-Type": "x"}}, "remote_write[0].headers.Content-Type: set by logtaild"),
    ({"url": "http://x/", "external_labels": {"__x": "1"}}, "remote_write[0].external_labels.__x: not a usable"),
    ({"url": "http://x/", "queue": {"max_samples": 0}}, "remote_write[0].queue.max_samples: must be at least 1"),
    ({"url": "http://x/", "queue": {"min_backoff": 5, "max_backoff": 1}}, "remote_write[0].queue.max_backoff:"),
    ({"url": "http://x/", "tls": {"insecure_skip_verify": "yes"}},
     "remote_write[0].tls.insecure_skip_verify: expected bool"),
    ({"interval": 1}, "remote_write[0].url: required"),
])
def test_config_errors_name_the_key(receiver_yaml: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check(build(Config, {"remote_write": [receiver_yaml]}))
    assert str(err.value).startswith(message), str(err.value)


def test_a_missing_password_file_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("remote_write:\n  - url: http://127.0.0.1:9/api/v1/write\n"
                      f"    basic_auth: {{username: u, password_file: {tmp_path}/pw}}\n")
    for argv in (["--check-config", str(config)], ["--config", str(config), "--file", "x"]):
        line = assert_usage_error(*run(argv, capsys))
        assert line == (f"logtaild: error: remote_write[0].basic_auth.password_file: cannot read {tmp_path}/pw: "
                        "No such file or directory")


def test_the_daemon_keeps_tailing_and_serving_while_a_receiver_hangs_or_refuses(tmp_path: Path) -> None:
    """The real process: one receiver never answers (each request times out), another answers 400. Lines
    are still counted at once, /metrics and /healthz answer, each problem is one log line, nothing crashes."""
    import socket
    import time

    from tests.support.daemon import Daemon, wait_for
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)  # accepts connections (the kernel does), never reads or answers
    refuse = Receiver([400]).start()
    log = tmp_path / "access.tsv"
    log.write_text("")
    config = tmp_path / "c.yaml"
    config.write_text(f"""files: [{{path: {log}}}]
remote_write:
  - {{url: "http://127.0.0.1:{hang.getsockname()[1]}/api/v1/write", interval: 0.2, timeout: 1}}
  - {{url: "{refuse.url}", interval: 0.2}}
""")
    daemon = Daemon("--config", str(config), "--interval", "3600")
    try:
        daemon.wait_ready()
        for i in range(1, 6):
            with log.open("a") as handle:
                handle.write("10.0.0.1\tGET /\t200\t1\t2\n" * 100)
            wait_for(lambda n=i: daemon.value("logtaild_http_requests_total") == 100 * n, 5, f"{100 * i} lines")
            time.sleep(0.3)
        assert daemon.get("/healthz") == "ok\n"
        wait_for(lambda: daemon.value("logtaild_remote_write_samples_total", result="failed") > 0, 5, "a rejection")
        hung = f"http://127.0.0.1:{hang.getsockname()[1]}/api/v1/write"
        wait_for(lambda: daemon.value("logtaild_remote_write_retries_total", url=hung) >= 1, 10, "a retry")
    finally:
        code, _took = daemon.stop()
        refuse.stop()
        hang.close()
    assert code == 0
    warnings = [line for line in daemon.err.lines if "remote_write" in line and "WARNING" in line]
    assert len(warnings) == 2, daemon.err.text  # one per receiver: the rest were suppressed (once a minute)
    assert any("TimeoutError" in w or "timed out" in w for w in warnings), warnings
    assert any("HTTP 400" in w and "not retried" in w for w in warnings), warnings
    assert "Traceback" not in daemon.err.text


def test_a_reload_keeps_the_running_receivers_and_says_so() -> None:
    from logtaild.run.reload import plan_reload
    running = Config(remote_write=(RemoteWriteConfig("http://127.0.0.1:9/api/v1/write"),))
    new = Config(remote_write=(RemoteWriteConfig("http://127.0.0.1:9/api/v1/write", interval=5),))
    plan = plan_reload(running, new, {}, running.bucket_bounds())
    assert plan.config.remote_write == running.remote_write
    assert "reload: remote_write changed; it applies at the next restart" in plan.warnings


def test_job_and_instance_default_as_a_scrape_would_set_them(receiver: Receiver) -> None:
    import socket
    p = pusher(receiver.url)
    p.push_now()
    assert p.send_queued(5.0)
    key = next(k for k in decode(receiver.requests[-1][1]) if dict(k)["__name__"] == "logtaild_build_info")
    assert dict(key)["job"] == "logtaild" and dict(key)["instance"] == socket.gethostname()
    q = pusher(receiver.url, external_labels={"job": "web", "instance": ""})  # an empty value: no label
    q.push_now()
    assert q.send_queued(5.0)
    key = next(k for k in decode(receiver.requests[-1][1]) if dict(k)["__name__"] == "logtaild_build_info")
    assert dict(key)["job"] == "web" and "instance" not in dict(key)

"""`--web-config`: the real daemon behind TLS, mutual TLS and basic auth, with real HTTPS clients
(urllib/ssl and curl), and the TLS server's behaviour with hostile or clumsy clients."""
from __future__ import annotations

import base64
import http.client
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from logtaild.export.http import Limits
from logtaild.export.server import serve
from logtaild.export.webconfig import load_web_config
from tests.support.certs import Pki, make_pki
from tests.support.daemon import ROOT, Daemon, free_port, wait_for
from tests.support.tools import require_tool

pytestmark = pytest.mark.integration

USER, PASSWORD = "prometheus", "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(6)).decode()
PATHS = ("/metrics", "/healthz", "/", "/status.json", "/nothing-here")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def auth(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def get(port: int, path: str, context: ssl.SSLContext | None, headers: dict[str, str] | None = None,
        scheme: str = "https") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def web_config(tmp_path: Path, pki: Pki, *, users: bool = True, client_auth: str | None = None) -> Path:
    lines = ["tls_server_config:", f"  cert_file: {pki.server_cert}", f"  key_file: {pki.server_key}"]
    if client_auth:
        lines += [f"  client_auth_type: {client_auth}", f"  client_ca_file: {pki.client_ca}"]
    if users:
        lines += ["basic_auth_users:", f"  {USER}: {HASH}"]
    path = tmp_path / "web.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start(tmp_path: Path, config: Path, ready: ssl.SSLContext, headers: dict[str, str] | None = None) -> Daemon:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    daemon = Daemon("--file", str(log), "--interval", "0.5", "--log-level", "debug", "--web-config", str(config))

    def up() -> bool:
        if daemon.proc.poll() is not None:
            raise AssertionError(f"logtaild exited {daemon.proc.returncode}: {daemon.err.text}")
        try:
            return get(daemon.port, "/healthz", ready, headers)[0] == 200
        except OSError:
            return False

    wait_for(up, 15, "logtaild to serve /healthz over TLS")
    with open(log, "ab") as handle:
        handle.write(b"1.1.1.1\tGET /ok\t200\t10\n" * 3)
    return daemon


def test_tls_and_basic_auth_cover_every_path_and_secrets_stay_out_of_the_logs(tmp_path: Path, pki: Pki) -> None:
    context = pki.client_context()
    daemon = start(tmp_path, web_config(tmp_path, pki), context, auth())
    try:
        for path in PATHS:
            status, headers, _ = get(daemon.port, path, context)
            assert status == 401, path
            assert headers["WWW-Authenticate"] == 'Basic realm="logtaild", charset="UTF-8"'
            assert get(daemon.port, path, context, auth(password="wrong"))[0] == 401, path
            assert get(daemon.port, path, context, auth(user="admin"))[0] == 401, path
        assert get(daemon.port, "/nothing-here", context, auth())[0] == 404
        for path in ("/healthz", "/", "/status.json"):
            assert get(daemon.port, path, context, auth())[0] == 200, path
        wait_for(lambda: b'logtaild_http_requests_total{method="GET",route="/ok",status="200"} 3.0'
                 in get(daemon.port, "/metrics", context, auth())[2], 10, "3 requests on /metrics")

        # plain HTTP on the TLS port: a clean 400, and the server keeps serving TLS
        status, _, body = get(daemon.port, "/metrics", None, scheme="http")
        assert status == 400 and b"HTTP request to an HTTPS server" in body
        assert get(daemon.port, "/metrics", context, auth())[0] == 200

        # an HTTPS client that does not trust our CA refuses the server
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            get(daemon.port, "/metrics", ssl.create_default_context(), auth())

        curl = require_tool("curl")
        base = [curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(pki.ca),
                f"https://127.0.0.1:{daemon.port}/metrics"]
        assert subprocess.run(base, capture_output=True, text=True, timeout=10).stdout == "401"
        assert subprocess.run(base + ["-u", f"{USER}:nope"], capture_output=True, text=True,
                              timeout=10).stdout == "401"
        assert subprocess.run(base + ["-u", f"{USER}:{PASSWORD}"], capture_output=True, text=True,
                              timeout=10).stdout == "200"
        assert subprocess.run(base + ["--tls-max", "1.2", "-u", f"{USER}:{PASSWORD}"], capture_output=True,
                              text=True, timeout=10).stdout == "200"
        assert daemon.proc.poll() is None
    finally:
        code, _ = daemon.stop()
    assert code == 0
    logs = daemon.err.text + daemon.out.text
    assert "(TLS) (basic auth)" in logs
    token = auth()["Authorization"].split()[1]
    for secret in (PASSWORD, "correct horse", HASH, HASH[7:29], token, "wrong", "nope"):
        assert secret not in logs
    assert "Traceback" not in logs


def test_mutual_tls_refuses_clients_without_a_certificate_from_the_client_ca(tmp_path: Path, pki: Pki) -> None:
    with_cert = pki.client_context(with_cert=True)
    config = web_config(tmp_path, pki, users=False, client_auth="RequireAndVerifyClientCert")
    daemon = start(tmp_path, config, with_cert)
    try:
        assert get(daemon.port, "/metrics", with_cert)[0] == 200
        for context in (pki.client_context(), pki.client_context(stranger=True)):
            with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError,
                                http.client.RemoteDisconnected)):
                get(daemon.port, "/metrics", context)
        curl = require_tool("curl")
        base = [curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(pki.ca),
                f"https://127.0.0.1:{daemon.port}/healthz"]
        refused = subprocess.run(base, capture_output=True, text=True, timeout=10)
        assert refused.returncode != 0 and refused.stdout in ("000", "")
        accepted = subprocess.run(base + ["--cert", str(pki.client_cert), "--key", str(pki.client_key)],
                                  capture_output=True, text=True, timeout=10)
        assert accepted.stdout == "200"
        assert get(daemon.port, "/metrics", with_cert)[0] == 200  # still serving after the refusals
    finally:
        code, _ = daemon.stop()
    assert code == 0 and "Traceback" not in daemon.err.text


@pytest.mark.parametrize(("text", "message"), [
    ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth: x\n",
     "tls_server_config.client_auth: unknown key"),
    ("basic_auth_users:\n  alice: hunter2\n", "basic_auth_users.alice: not a bcrypt hash"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n", "cannot load cert_file"),
])
def test_a_bad_web_config_exits_2_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "web.yml"
    config.write_text(text)
    for args in (["--file", str(tmp_path / "x.log"), "--listen", f"127.0.0.1:{free_port()}",
                  "--web-config", str(config)],
                 ["--check-config", str(_config_with(tmp_path, config))],
                 ["--config", str(_config_with(tmp_path, config)), "--listen", f"127.0.0.1:{free_port()}",
                  "--detach", "--pidfile", str(tmp_path / "pid"), "--log-file", str(tmp_path / "log")]):
        proc = subprocess.run([sys.executable, "-m", "logtaild", *args], capture_output=True, text=True,
                              timeout=20, cwd=ROOT)
        assert proc.returncode == 2, proc.stderr
        [line] = proc.stderr.splitlines()
        assert line.startswith("logtaild: error: web config ") and message in line
        assert "hunter2" not in proc.stderr


def _config_with(tmp_path: Path, web: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"files: [{{path: {tmp_path / 'x.log'}}}]\nweb_config: {web}\n")
    return path


# ---- the TLS server in-process: slow, silent and broken clients ----------------------------------------

def _hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello\n"]


def test_a_silent_or_broken_client_never_blocks_the_tls_server(tmp_path: Path, pki: Pki) -> None:
    web = load_web_config(str(web_config(tmp_path, pki, users=False)))
    port = free_port()
    server = serve(_hello, "127.0.0.1", port, tls=web.context)
    context = pki.client_context()
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]  # connect, say nothing
    try:
        broken = socket.create_connection(("127.0.0.1", port))  # a TLS record type, then garbage
        broken.sendall(b"\x16\x03\x01\x00\x05garbage")
        start = time.monotonic()
        for _ in range(5):
            status, _headers, body = get(port, "/", context)
            assert (status, body) == (200, b"hello\n")
        assert time.monotonic() - start < 3.0  # nobody waited for the silent clients' handshakes
        assert closed_by_server(broken)  # the failed handshake ends that connection only
        # a client that starts a handshake and stops half-way holds only its own thread, too
        raw = socket.create_connection(("127.0.0.1", port))
        raw.sendall(b"\x16\x03\x01")
        assert get(port, "/", context)[0] == 200
        raw.close()
        broken.close()
    finally:
        for sock in silent:
            sock.close()
        server.shutdown()
        server.server_close()


def closed_by_server(sock: socket.socket) -> bool:
    """Read (a TLS alert, perhaps) until the server closes the connection."""
    sock.settimeout(5)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


def test_plain_http_gets_a_400_and_keep_alive_clients_finish(tmp_path: Path, pki: Pki) -> None:
    web = load_web_config(str(web_config(tmp_path, pki, users=False)))
    port = free_port()
    server = serve(_hello, "127.0.0.1", port, tls=web.context)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/", headers={"X-Padding": "x" * 20000})  # more than the server reads
        resp = conn.getresponse()
        assert resp.status == 400 and b"HTTPS server" in resp.read()
        threads = [threading.Thread(target=lambda: get(port, "/", pki.client_context())) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert get(port, "/", pki.client_context())[0] == 200
    finally:
        server.shutdown()
        server.server_close()


# ---- deadlines and limits, in-process with short deadlines ------------------------------------------------

SHORT = Limits(max_connections=8, head_deadline=1.0, idle_timeout=1.0, response_deadline=2.0)


def cut_after(sock: socket.socket, trickle: bytes, every: float = 0.2, limit: float = 6.0) -> float:
    """Send `trickle` every `every` s until the server closes the connection; seconds it took."""
    start = time.monotonic()
    sock.settimeout(every)
    while time.monotonic() - start < limit:
        try:
            sock.sendall(trickle)
            if sock.recv(4096) == b"":
                break
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except (OSError, ssl.SSLError):
            break
    return time.monotonic() - start


def test_trickling_clients_are_cut_at_the_head_deadline_with_and_without_tls(tmp_path: Path, pki: Pki) -> None:
    web = load_web_config(str(web_config(tmp_path, pki, users=False)))
    for tls in (None, web.context):
        port = free_port()
        server = serve(_hello, "127.0.0.1", port, tls=tls, limits=SHORT)
        try:
            raw = socket.create_connection(("127.0.0.1", port))
            sock = pki.client_context().wrap_socket(raw, server_hostname="localhost") if tls else raw
            sock.sendall(b"GET / HTTP/1.1\r\n")
            assert 0.9 < cut_after(sock, b"X: 1\r\n") < 2.5  # one header line every 0.2 s: cut at 1 s
            silent = socket.create_connection(("127.0.0.1", port))  # no handshake, no request at all
            assert 0.9 < cut_after(silent, b"", every=0.1) < 2.5
            scheme = "https" if tls else "http"
            assert get(port, "/", pki.client_context(), scheme=scheme)[0] == 200
            assert server.errors.lines >= 1  # said once, rate-limited
        finally:
            server.shutdown()


def test_heads_over_32_kib_get_413_and_the_connection_cap_evicts_the_oldest_waiting(tmp_path: Path) -> None:
    port = free_port()
    server = serve(_hello, "127.0.0.1", port, limits=SHORT)
    try:
        bomb = socket.create_connection(("127.0.0.1", port))
        bomb.sendall(b"GET / HTTP/1.1\r\n" + b"X-Bomb: " + b"b" * 40_000 + b"\r\n")
        bomb.settimeout(5)
        assert bomb.recv(100).startswith(b"HTTP/1.1 413 ")
        bomb.close()
        wait_for(lambda: server.open_connections() == 0, 5, "the 413 connection closed")
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(SHORT.max_connections)]
        wait_for(lambda: server.open_connections() == SHORT.max_connections, 5, "8 connections open")
        status = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        status.request("GET", "/")
        assert status.getresponse().status == 200  # the 9th got in: the oldest idle one was closed
        assert server.open_connections() <= SHORT.max_connections
        idle[0].settimeout(5)
        assert idle[0].recv(1) == b""
        for sock in idle:
            sock.close()
    finally:
        server.shutdown()


def test_only_get_and_head_and_a_body_is_never_read_into_memory() -> None:
    port = free_port()
    server = serve(_hello, "127.0.0.1", port, limits=SHORT)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for method, status, body in (("HEAD", 200, b""), ("POST", 405, b"method not allowed\n"),
                                     ("DELETE", 405, b"method not allowed\n"), ("GET", 200, b"hello\n")):
            conn.request(method, "/")
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (status, body), method
            if status == 405:
                assert resp.getheader("Allow") == "GET, HEAD"
        raw = socket.create_connection(("127.0.0.1", port))
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
        raw.settimeout(5)
        assert raw.recv(100).startswith(b"HTTP/1.1 413 ")
        raw.close()
    finally:
        server.shutdown()

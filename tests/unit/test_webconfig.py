"""The web config file (exporter-toolkit format) and the basic-auth middleware, without a server."""
from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logtaild.config import ConfigError
from logtaild.export.webconfig import BasicAuth, load_web_config, max_cost, parse_web_config, protect
from tests.support.certs import Pki, make_pki

PASSWORD = "s3cret-Pa55"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def call(app, header: str | None = None, path: str = "/metrics") -> tuple[str, dict[str, str]]:
    seen: dict[str, object] = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    if header is not None:
        environ["HTTP_AUTHORIZATION"] = header
    b"".join(app(environ, start_response))
    return seen["status"], seen["headers"]  # type: ignore[return-value]


def basic(user: str | bytes, password: str | bytes) -> str:
    raw = (user if isinstance(user, bytes) else user.encode()) + b":" + (
        password if isinstance(password, bytes) else password.encode())
    return "Basic " + base64.b64encode(raw).decode()


# ---- the file ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "message"), [
    ({"tls_server_confg": {}}, "tls_server_confg: unknown key"),
    ({"basic_auth_users": {"a": HASH}, "extra": 1}, "extra: unknown key"),
    ({"tls_server_config": {"cert_file": "c", "key_file": "k", "certfile": "x"}},
     "tls_server_config.certfile: unknown key"),
    ({"tls_server_config": {"cert_file": "c", "key_file": "k", "cipher_suites": ["x"]}},
     "tls_server_config.cipher_suites: not supported by logtaild"),
    ({"http_server_config": {"http2": False}}, "http_server_config: not supported by logtaild"),
    ({"tls_server_config": {"cert_file": "c"}}, "tls_server_config.key_file: required"),
    ({"tls_server_config": {"key_file": "k"}}, "tls_server_config.cert_file: required"),
    ({"tls_server_config": {"cert_file": "c", "key_file": "k", "client_auth_type": "Always"}},
     "tls_server_config.client_auth_type: must be one of NoClientCert, RequestClientCert"),
    ({"tls_server_config": {"cert_file": "c", "key_file": "k", "client_ca_file": "ca"}},
     "tls_server_config.client_ca_file: set, but client_auth_type is NoClientCert"),
    ({"tls_server_config": {"cert_file": "c", "key_file": "k", "client_auth_type": "RequireAndVerifyClientCert"}},
     "tls_server_config.client_ca_file: required with client_auth_type RequireAndVerifyClientCert"),
    ({"tls_server_config": {"cert_file": "c", "key_file": "k", "min_version": "TLS10"}},
     "tls_server_config.min_version: must be TLS12 or TLS13"),
    ({"tls_server_config": {"cert_file": "c", "key_file": "k", "min_version": "TLS13", "max_version": "TLS12"}},
     "tls_server_config.min_version: above max_version"),
    ({"tls_server_config": {"cert_file": 3, "key_file": "k"}}, "tls_server_config.cert_file: expected a string"),
    ({"tls_server_config": ["x"]}, "tls_server_config: expected a mapping"),
    (["x"], "the file: expected a mapping"),
    ({"basic_auth_users": ["alice"]}, "basic_auth_users: expected a mapping"),
    ({"basic_auth_users": {"a:b": HASH}}, "must be non-empty without ':'"),
    ({"basic_auth_users": {"alice": "plaintext-password"}}, "basic_auth_users.alice: not a bcrypt hash"),
    ({"basic_auth_users": {"alice": HASH[:-1]}}, "basic_auth_users.alice: not a bcrypt hash"),
])
def test_bad_web_configs_name_the_key(data: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_web_config(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert "plaintext-password" not in str(info.value) and HASH[7:] not in str(info.value)


def test_a_full_config_loads_with_paths_relative_to_the_file(pki: Pki, tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    for name in ("server_cert", "server_key", "client_ca"):
        (folder / getattr(pki, name).name).write_bytes(getattr(pki, name).read_bytes())
    path = folder / "web.yml"
    path.write_text(f"""
tls_server_config:
  cert_file: {pki.server_cert.name}
  key_file: {pki.server_key.name}
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: {pki.client_ca.name}
  min_version: TLS13
basic_auth_users:
  prometheus: {HASH}
""")
    web = load_web_config(str(path))
    assert web.tls is not None and web.tls.cert_file == str(folder / pki.server_cert.name)
    assert web.context is not None and web.context.minimum_version.name == "TLSv1_3"
    assert web.context.verify_mode.name == "CERT_OPTIONAL"
    assert web.users == {"prometheus": HASH}
    assert HASH not in repr(web)
    assert load_web_config(str(_write(tmp_path / "empty.yml", ""))).context is None


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_unloadable_files_are_one_line_errors(pki: Pki, tmp_path: Path) -> None:
    missing = _write(tmp_path / "a.yml", "tls_server_config: {cert_file: nope.crt, key_file: nope.key}\n")
    with pytest.raises(ConfigError, match=r"cannot load cert_file .*nope.crt .*No such file"):
        load_web_config(str(missing))
    swapped = _write(tmp_path / "b.yml",
                     f"tls_server_config: {{cert_file: {pki.server_key}, key_file: {pki.server_cert}}}\n")
    with pytest.raises(ConfigError, match="cannot load cert_file"):
        load_web_config(str(swapped))
    with pytest.raises(ConfigError, match=r"web config .*nowhere.yml: No such file"):
        load_web_config(str(tmp_path / "nowhere.yml"))
    with pytest.raises(ConfigError, match="line 2 not valid YAML"):
        load_web_config(str(_write(tmp_path / "c.yml", "basic_auth_users: [\n")))


# ---- basic auth ----------------------------------------------------------------------------------------

def test_no_credentials_wrong_credentials_and_right_ones() -> None:
    app = BasicAuth(_app, {"prometheus": HASH})
    status, headers = call(app)
    assert status.startswith("401") and headers["WWW-Authenticate"] == 'Basic realm="logtaild", charset="UTF-8"'
    assert call(app, basic("prometheus", "wrong"))[0].startswith("401")
    assert call(app, basic("nobody", PASSWORD))[0].startswith("401")
    assert call(app, basic("prometheus", PASSWORD))[0] == "200 OK"
    assert call(app, basic("prometheus", PASSWORD), path="/healthz")[0] == "200 OK"
    assert call(app, basic("prometheus", PASSWORD + "x"))[0].startswith("401")


def test_verdicts_are_cached_so_scrapes_stay_fast() -> None:
    slow_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    app = BasicAuth(_app, {"prometheus": slow_hash})
    assert call(app, basic("prometheus", PASSWORD))[0] == "200 OK"
    assert call(app, basic("prometheus", "wrong"))[0].startswith("401")
    assert app.bcrypt_calls == 2
    start = time.perf_counter()
    for _ in range(200):
        assert call(app, basic("prometheus", PASSWORD))[0] == "200 OK"
        assert call(app, basic("prometheus", "wrong"))[0].startswith("401")
    assert app.bcrypt_calls == 2
    assert (time.perf_counter() - start) / 400 < 0.002  # a bcrypt at cost 10 takes ~50 ms


def test_the_failure_cache_is_bounded() -> None:
    app = BasicAuth(_app, {"prometheus": HASH})
    app.CACHE_MAX = 8
    for i in range(30):
        assert call(app, basic("prometheus", f"guess{i}"))[0].startswith("401")
    assert len(app._bad) == 8
    assert call(app, basic("prometheus", PASSWORD))[0] == "200 OK"


@pytest.mark.parametrize("header", [
    "", "Basic", "Basic ", "Bearer abc", "Basic !!!!", "Basic " + base64.b64encode(b"nocolon").decode(),
    basic(b"\xff\xfe", PASSWORD), basic("prometheus", "x" * 100), "basic " + base64.b64encode(b":").decode(),
    "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode() + "===", "Basic \u00e9\u00e9",
])
def test_malformed_authorization_headers_are_401(header: str) -> None:
    app = BasicAuth(_app, {"prometheus": HASH})
    assert call(app, header)[0].startswith("401")


def test_the_scheme_is_case_insensitive_and_utf8_users_work() -> None:
    app = BasicAuth(_app, {"prometheus": HASH, "zoë": HASH})
    assert call(app, "basic " + basic("prometheus", PASSWORD).split(" ")[1])[0] == "200 OK"
    assert call(app, basic("zoë", PASSWORD))[0] == "200 OK"


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet=st.characters(max_codepoint=255)))
def test_any_header_value_is_answered_without_an_exception(header: str) -> None:
    app = BasicAuth(_app, {"prometheus": HASH})
    assert call(app, header)[0].startswith("401")


def test_protect_without_users_is_the_app_itself() -> None:
    assert protect(_app, None) is _app
    assert protect(_app, parse_web_config({})) is _app
    assert isinstance(protect(_app, parse_web_config({"basic_auth_users": {"a": HASH}})), BasicAuth)


# ---- bcrypt: one at a time, unknown users at the configured cost --------------------------------------

def test_an_unknown_user_costs_a_bcrypt_of_the_highest_configured_cost() -> None:
    hashes = {"a": bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode(),
              "b": bcrypt.hashpw(b"y", bcrypt.gensalt(9)).decode()}
    assert max_cost(hashes.values()) == 9 and max_cost([]) == 4
    app = BasicAuth(_app, hashes)
    assert app._dummy.startswith(b"$2b$09$")

    def seconds(user: str) -> float:
        start = time.perf_counter()
        for i in range(3):
            assert call(app, basic(user, f"wrong {i}"))[0].startswith("401")
        return time.perf_counter() - start

    known, unknown = seconds("b"), seconds("nobody")
    assert 0.5 < unknown / known < 2.0  # before: a cost-4 dummy, 4 ms against 285 ms


def test_guesses_wait_for_one_bcrypt_slot_then_get_429_and_a_cached_password_never_waits() -> None:
    app = BasicAuth(_app, {"prometheus": HASH}, wait=0.3)
    assert call(app, basic("prometheus", PASSWORD))[0] == "200 OK"  # cached from now on
    assert app._bcrypt_slots.acquire(timeout=1)  # a guess is running bcrypt
    try:
        waiter = threading.Thread(target=lambda: statuses.append(call(app, basic("prometheus", "guess 1"))[0]))
        statuses: list[str] = []
        waiter.start()
        time.sleep(0.05)  # the first waiter takes the one waiting place
        start = time.perf_counter()
        status, headers = call(app, basic("prometheus", "guess 2"))
        assert status == "429 Too Many Requests" and headers["Retry-After"] == "1"
        assert time.perf_counter() - start < 0.05  # no place to wait: answered at once
        start = time.perf_counter()
        assert call(app, basic("prometheus", PASSWORD))[0] == "200 OK"
        assert time.perf_counter() - start < 0.01  # the cache is checked before the slot
        waiter.join(2)
        assert statuses == ["429 Too Many Requests"]  # waited 0.3 s, then gave up
    finally:
        app._bcrypt_slots.release()
    assert call(app, basic("prometheus", "guess 3"))[0].startswith("401")  # the slot is free again
    assert app.busy_refusals == 2

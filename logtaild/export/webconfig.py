"""`--web-config FILE`: TLS, mutual TLS and basic auth for the HTTP server, in the Prometheus
exporter-toolkit format (the file node_exporter and most exporters read), so one file can serve both.

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to the web config file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # default NoClientCert
      client_ca_file: clients-ca.crt
      min_version: TLS12             # TLS12 (default) or TLS13
      max_version: TLS13
    basic_auth_users:
      prometheus: $2b$12$...         # bcrypt hash (htpasswd -nBC 12 prometheus)

Unknown keys are errors naming the key; exporter-toolkit keys that logtaild does not implement
(cipher_suites, http_server_config, ...) are errors too, because silently ignoring a security setting
is worse than refusing to start.

The SSLContext made here is used by export/http.py, which does the handshakes (without blocking, in
its selector thread) and answers plain HTTP on the TLS port.

Basic auth is a WSGI middleware in front of every path. A bcrypt check costs tens of milliseconds by
design; verdicts are cached per (user, keyed hash of the password tried), so a scrape with the right
password costs one HMAC and one `hmac.compare_digest` after the first, and one with a wrong password
is not re-hashed either. At most one bcrypt runs at a time (a request waits up to `BCRYPT_WAIT`, then
gets 429), so guesses take one core at most and never delay a cached right password; an unknown user
costs a bcrypt of the highest configured cost, so timing does not tell which users exist. Passwords and
hashes are never logged.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import bcrypt

from logtaild.config import ConfigError, read_yaml

log = logging.getLogger("logtaild.web")

CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert",
                     "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
#: exporter-toolkit keys we recognise but do not implement: an error that says so, not "unknown key"
_UNSUPPORTED = {
    "": ("http_server_config", "rate_limit"),
    "tls_server_config": ("cipher_suites", "curve_preferences", "prefer_server_cipher_suites",
                          "client_allowed_sans", "cert", "key", "client_ca"),
}
_KNOWN = {
    "": ("tls_server_config", "basic_auth_users"),
    "tls_server_config": ("cert_file", "key_file", "client_auth_type", "client_ca_file",
                          "min_version", "max_version"),
}
REALM = "logtaild"
#: how long a request whose password is not cached waits for the bcrypt slot before a 429
BCRYPT_WAIT = 1.0


@dataclass(frozen=True)
class TLSConfig:
    cert_file: str
    key_file: str
    client_auth_type: str = "NoClientCert"
    client_ca_file: str | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"


@dataclass(frozen=True)
class WebConfig:
    """What a web config file says; `context` is the ready server SSLContext (None: plain HTTP)."""

    tls: TLSConfig | None = None
    users: dict[str, str] = field(default_factory=dict, repr=False)  # user -> bcrypt hash
    context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)


# ---- loading --------------------------------------------------------------------------------------

def load_web_config(path: str) -> WebConfig:
    """Read, validate and prepare (certificates loaded) a web config file; ConfigError on any problem."""
    data = read_yaml(path, "web config")
    return parse_web_config(data, os.path.dirname(os.path.abspath(path)),
                            f"web config {path}")


def parse_web_config(data: Any, base_dir: str = ".", where: str = "web config") -> WebConfig:
    """Validate the parsed YAML; relative file names are taken relative to `base_dir`."""
    _keys(data, "", where)
    tls = None
    if data.get("tls_server_config") is not None:
        tls = _tls(data["tls_server_config"], base_dir, where)
    users = _users(data.get("basic_auth_users"), where)
    context = server_context(tls, where) if tls else None
    return WebConfig(tls, users, context)


def _keys(data: Any, section: str, where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {section or 'the file'}: expected a mapping, got {type(data).__name__}")
    for key in data:
        name = f"{section}.{key}" if section else str(key)
        if key in _UNSUPPORTED[section]:
            raise ConfigError(f"{where}: {name}: not supported by logtaild (remove it)")
        if key not in _KNOWN[section]:
            raise ConfigError(f"{where}: {name}: unknown key (known: {', '.join(_KNOWN[section])})")


def _str(section: dict[str, Any], key: str, where: str, default: str | None = None) -> str | None:
    value = section.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: tls_server_config.{key}: expected a string, got {type(value).__name__}")
    return value or default


def _tls(section: Any, base_dir: str, where: str) -> TLSConfig:
    _keys(section, "tls_server_config", where)

    def path(key: str) -> str | None:
        value = _str(section, key, where)
        return os.path.join(base_dir, value) if value else None

    cert, key = path("cert_file"), path("key_file")
    if not cert or not key:
        missing = "cert_file" if not cert else "key_file"
        raise ConfigError(f"{where}: tls_server_config.{missing}: required")
    auth = _str(section, "client_auth_type", where, "NoClientCert")
    if auth not in CLIENT_AUTH_TYPES:
        raise ConfigError(f"{where}: tls_server_config.client_auth_type: must be one of "
                          f"{', '.join(CLIENT_AUTH_TYPES)}, got {auth!r}")
    ca = path("client_ca_file")
    if auth == "NoClientCert" and ca:
        raise ConfigError(f"{where}: tls_server_config.client_ca_file: set, but client_auth_type is "
                          "NoClientCert (client certificates would not be checked)")
    if auth != "NoClientCert" and not ca:
        raise ConfigError(f"{where}: tls_server_config.client_ca_file: required with client_auth_type "
                          f"{auth} (Python's ssl module cannot accept a client certificate without "
                          "verifying it)")
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        value = _str(section, name, where, default)
        if value not in TLS_VERSIONS:
            raise ConfigError(f"{where}: tls_server_config.{name}: must be TLS12 or TLS13, got {value!r}")
        versions[name] = value
    if TLS_VERSIONS[versions["min_version"]] > TLS_VERSIONS[versions["max_version"]]:
        raise ConfigError(f"{where}: tls_server_config.min_version: above max_version")
    return TLSConfig(cert, key, auth, ca, versions["min_version"], versions["max_version"])


def _users(section: Any, where: str) -> dict[str, str]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: basic_auth_users: expected a mapping of user: bcrypt hash")
    users: dict[str, str] = {}
    for user, hashed in section.items():
        name = str(user)
        if not name or ":" in name:
            raise ConfigError(f"{where}: basic_auth_users: user {name!r}: must be non-empty without ':'")
        if not isinstance(hashed, str) or not _is_bcrypt(hashed):
            # never echo the value: a password pasted by mistake would end up in the journal
            raise ConfigError(f"{where}: basic_auth_users.{name}: not a bcrypt hash "
                              "($2a$, $2b$ or $2y$, 60 characters; htpasswd -nBC 12 USER makes one)")
        users[name] = hashed
    return users


_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


def _is_bcrypt(hashed: str) -> bool:
    return bool(_BCRYPT.fullmatch(hashed))


def server_context(tls: TLSConfig, where: str = "web config") -> ssl.SSLContext:
    """The server-side SSLContext for `tls`; ConfigError naming the file that cannot be loaded."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{where}: tls_server_config: cannot load cert_file {tls.cert_file} / key_file "
                          f"{tls.key_file}: {_reason(exc)}") from None
    if tls.client_ca_file:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"{where}: tls_server_config.client_ca_file: cannot load "
                              f"{tls.client_ca_file}: {_reason(exc)}") from None
        # Go's RequestClientCert/RequireAnyClientCert accept any certificate; Python can only verify,
        # so those modes verify against client_ca_file too (stricter, never weaker)
        context.verify_mode = (ssl.CERT_REQUIRED if tls.client_auth_type in (
            "RequireAnyClientCert", "RequireAndVerifyClientCert") else ssl.CERT_OPTIONAL)
    return context


def _no_password() -> str:
    raise ValueError("the key is encrypted; give an unencrypted key_file")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.strerror:
        return exc.strerror
    return str(getattr(exc, "reason", None) or exc)


# ---- basic auth -----------------------------------------------------------------------------------

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


class BasicAuth:
    """WSGI middleware: every request needs `Authorization: Basic` with a user from `users`.

    Verdicts are cached by (user, HMAC of the password with a per-process random key): the key
    never leaves memory, so the cache holds nothing an attacker could test passwords against
    offline, and a cache hit costs one HMAC plus a `hmac.compare_digest`, checked before any wait.
    The failure cache is bounded; bcrypt runs `parallel` (1) at a time, and one more request may wait
    up to `wait` seconds for the slot; any other, or one still waiting after that, is answered 429 with
    Retry-After. So a flood of wrong passwords takes one core and two of the server's workers at most,
    the rest answered at once, and a scrape with a cached password never queues behind it.
    """

    CACHE_MAX = 4096

    def __init__(self, app: WsgiApp, users: dict[str, str], *, realm: str = REALM, parallel: int = 1,
                 wait: float = BCRYPT_WAIT, waiters: int = 1) -> None:
        self.app = app
        self._hashes = {user: hashed.encode() for user, hashed in users.items()}
        self._key = secrets.token_bytes(32)
        self._good: dict[str, bytes] = {}  # user -> keyed digest of the last password that verified
        self._bad: OrderedDict[bytes, None] = OrderedDict()  # keyed digests of failed attempts
        self._lock = threading.Lock()
        self._bcrypt_slots = threading.BoundedSemaphore(parallel)
        self._wait = wait
        self._waiters_max = waiters  # a worker that waits serves nobody else: a handful at most
        self._waiters = 0
        # an unknown user must cost what a known one costs: the highest configured cost (a cost-4 dummy
        # answered in 4 ms where a real check took 285 ms, telling which user names exist)
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(max_cost(users.values())))
        self._challenge = f'Basic realm="{realm}", charset="UTF-8"'
        self.bcrypt_calls = 0
        self.busy_refusals = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        verdict = self.check(environ.get("HTTP_AUTHORIZATION", ""))
        if verdict is True:
            return self.app(environ, start_response)
        if verdict is None:
            body = b"429 Too Many Requests: password checks are busy, retry\n"
            status, extra = "429 Too Many Requests", [("Retry-After", "1")]
        else:
            body = b"401 Unauthorized\n"
            status, extra = "401 Unauthorized", [("WWW-Authenticate", self._challenge)]
        start_response(status, [
            ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))), *extra,
            ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store"),
        ])
        return [body]

    def allowed(self, header: str) -> bool:
        """Does this Authorization header value carry a valid user and password?"""
        return self.check(header) is True

    def check(self, header: str) -> bool | None:
        """True (valid), False (not), None (not cached and the bcrypt slot stayed busy: try later)."""
        parsed = _parse_basic(header)
        if parsed is None:
            return False
        user_raw, password = parsed
        try:
            user = user_raw.decode("utf-8")
        except UnicodeDecodeError:
            return False
        digest = hmac.new(self._key, user_raw + b"\0" + password, hashlib.sha256).digest()
        good = self._good.get(user)
        if good is not None and hmac.compare_digest(good, digest):
            return True
        with self._lock:
            if digest in self._bad:
                return False
        ok = self._verify(user, password)
        if ok is None:
            return None
        with self._lock:
            if ok:
                self._good[user] = digest
            else:
                self._bad[digest] = None
                while len(self._bad) > self.CACHE_MAX:
                    self._bad.popitem(last=False)
        return ok

    def _verify(self, user: str, password: bytes) -> bool | None:
        hashed = self._hashes.get(user)
        if not self._bcrypt_slot():
            self.busy_refusals += 1
            return None
        try:
            self.bcrypt_calls += 1
            try:
                # an unknown user costs a bcrypt too, so timing does not tell which users exist
                ok = bcrypt.checkpw(password, hashed or self._dummy)
            except ValueError:  # bcrypt >= 5 refuses passwords over 72 bytes
                ok = False
        finally:
            self._bcrypt_slots.release()
        return ok and hashed is not None

    def _bcrypt_slot(self) -> bool:
        """Take the bcrypt slot: now, or after waiting up to `wait` if fewer than `waiters` already wait."""
        if self._bcrypt_slots.acquire(blocking=False):
            return True
        with self._lock:
            if self._waiters >= self._waiters_max:
                return False
            self._waiters += 1
        try:
            return self._bcrypt_slots.acquire(timeout=self._wait)
        finally:
            with self._lock:
                self._waiters -= 1


def _parse_basic(header: str) -> tuple[bytes, bytes] | None:
    """(user, password) bytes of a `Basic` Authorization value; None when it is not one."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        raw = base64.b64decode(token.strip().encode("latin-1"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    user_raw, sep, password = raw.partition(b":")
    return (user_raw, password) if sep else None


def max_cost(hashes: Iterable[str]) -> int:
    """The highest bcrypt cost among `hashes` (4, bcrypt's minimum, when there are none)."""
    return max((int(hashed[4:6]) for hashed in hashes), default=4)


def protect(app: WsgiApp, web: WebConfig | None) -> WsgiApp:
    """`app` behind basic auth when the web config has users; otherwise `app` itself."""
    return BasicAuth(app, web.users) if web is not None and web.users else app

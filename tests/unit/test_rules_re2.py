"""Route rules through RE2 (`logtaild/regex.py`): linear time on crafted routes, `re.sub`'s templates,
and patterns RE2 cannot compile as config errors naming the key, at load, at start and on reload."""
from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logtaild.config import Config, ConfigError, FileConfig, build, check, load
from logtaild.count.routes import RouteLimiter
from logtaild.regex import RegexError, Rule
from logtaild.run.service import Service

ROOT = Path(__file__).resolve().parents[2]


# ---- linear time ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", [r"^/(a+)+$", r"^/(a|aa)+$", r"^/(a|a?)+b$", r"^(/.*)*x$"])
def test_a_catastrophic_pattern_is_linear_on_a_crafted_route(pattern: str) -> None:
    limiter = RouteLimiter(rules=[(pattern, "/a")], builtin=False)
    route = "/" + "a" * 50_000 + "!"
    start = time.perf_counter()
    assert limiter.normalize(route) == route
    assert time.perf_counter() - start < 0.5  # Python's re takes longer than the universe has left


# ---- the replacement is read as re.sub reads it --------------------------------------------------------------

TEMPLATE_CASES = [
    (r"^/static/.*", "/static/*"),
    (r"^/blog/[^/]+$", "/blog/:slug"),
    (r"^/(?P<lang>en|de|fr)/", r"/\g<lang>/"),
    (r"/v(\d+)/", r"/v\1x/"),
    (r"^/(a)(b)?(c)?", r"[\2\3]"),            # groups that took no part: empty
    (r"^/x/(\w+)", "/日本/\\1/é"),             # non-ASCII literal text
    (r"^/(\w)", r"<\g<0>>\\"),                 # the whole match, an escaped backslash
    (r"x*", "-"),                              # empty matches, as re.sub places them
    (r"(a)|(b)", r"[\1\2]"),
]


@pytest.mark.parametrize(("pattern", "replace"), TEMPLATE_CASES)
@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(route=st.text(st.sampled_from("/abcxv01en日é"), max_size=30).map(lambda text: "/" + text))
def test_a_rule_replaces_as_re_sub_does(pattern: str, replace: str, route: str) -> None:
    # RE2's \w, \d, \s and \b are ASCII only, as Python's with re.ASCII (documented)
    assert Rule(pattern, replace).sub(route) == re.sub(pattern, replace, route, flags=re.ASCII)


# ---- what RE2 rejects -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("match", "replace", "error"), [
    (r"^/(a)\1", "x", r"routes.rules[2].match: invalid regex: invalid escape sequence: \1 (RE2 syntax"),
    (r"^/(?P<n>a)(?P=n)", "x", "routes.rules[2].match: invalid regex: invalid perl operator: (?P"),
    (r"^/api(?=/v1)", "x", "routes.rules[2].match: invalid regex: invalid perl operator: (?="),
    (r"^/api(?!/v1)", "x", "routes.rules[2].match: invalid regex: invalid perl operator: (?!"),
    (r"(?<=/)x", "x", "routes.rules[2].match: invalid regex: invalid perl operator: (?<"),
    (r"a++", "x", "routes.rules[2].match: invalid regex: bad repetition operator: ++"),
    (r"a{1001}", "x", "routes.rules[2].match: invalid regex: invalid repetition size: {1001}"),
    (r"(", "x", "routes.rules[2].match: invalid regex: missing ): ("),
    (r"^/(a)", r"\2", "routes.rules[2].replace: invalid replacement: invalid group reference 2"),
    (r"^/(a)", r"\g<nope>", "routes.rules[2].replace: invalid replacement: unknown group name 'nope'"),
    (r"^/(a)", r"\q", r"routes.rules[2].replace: invalid replacement: bad escape \q"),
])
def test_what_re2_cannot_do_is_a_config_error_naming_the_key(match: str, replace: str, error: str) -> None:
    rules = [{"match": "^/a", "replace": "/a"}, {"match": "^/b", "replace": "/b"}, {"match": match, "replace": replace}]
    with pytest.raises(ConfigError) as exc:
        check(build(Config, {"routes": {"rules": rules}}))
    assert str(exc.value).startswith(error), str(exc.value)
    assert "\n" not in str(exc.value)


def test_the_limiter_refuses_what_the_config_refuses() -> None:
    with pytest.raises(RegexError):
        RouteLimiter(rules=[(r"(?=x)", "y")])


BAD_CONFIG = "files:\n  - path: /var/log/a.tsv\nroutes:\n  rules:\n    - match: '^/api(?=/v1)'\n      replace: /api\n"


@pytest.mark.parametrize("flag", ["--check-config", "--config"])
def test_the_command_exits_2_with_one_line_and_nothing_from_re2(tmp_path: Path, flag: str) -> None:
    """Through a real process: RE2 writes its own complaints to file descriptor 2 unless told not to."""
    path = tmp_path / "c.yaml"
    path.write_text(BAD_CONFIG)
    argv = [sys.executable, "-m", "logtaild", flag, str(path)] + (["--once"] if flag == "--config" else [])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr == "logtaild: error: routes.rules[0].match: invalid regex: invalid perl operator: (?= " \
                          "(RE2 syntax: no backreferences or lookarounds)\n"


def test_a_reload_with_a_rule_re2_rejects_keeps_the_running_config(tmp_path: Path, caplog) -> None:
    log, path = tmp_path / "a.log", tmp_path / "c.yaml"
    log.write_bytes(b"1.1.1.1\tGET /api/v1\t200\t1\n")
    path.write_text(f"files:\n  - path: {log}\nfrom_start: true\n")
    service = Service(check(load(str(path))), reloader=lambda: check(load(str(path))))
    try:
        service.scan(initial=True)
        service.poll_all()
        before = service.config
        path.write_text(BAD_CONFIG.replace("/var/log/a.tsv", str(log)))
        with caplog.at_level(logging.ERROR, logger="logtaild"):
            assert not service.lifecycle.reload(lambda: None)
        assert service.config is before and service.reloads == {"success": 0, "failure": 1}
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == ["reload failed, keeping the running configuration: routes.rules[0].match: invalid "
                          "regex: invalid perl operator: (?= (RE2 syntax: no backreferences or lookarounds)"]
        assert [key[0] for key in service.sources[str(log)].agg.slots] == ["/api/v1"]
    finally:
        service.close()


def test_a_config_with_rules_re2_accepts_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("files:\n  - path: /var/log/a.tsv\nroutes:\n  rules:\n"
                    "    - {match: '^/(?P<lang>en|de)/', replace: '/\\g<lang>/'}\n"
                    "    - {match: '(?i)^/STATIC/', replace: '/static/'}\n")
    config = check(load(str(path)))
    limiter = RouteLimiter(rules=[(r.match, r.replace) for r in config.routes.rules])
    assert limiter.normalize("/de/x") == "/de/x" and limiter.normalize("/Static/app.js") == "/static/app.js"
    assert config.files == (FileConfig("/var/log/a.tsv"),)


def test_an_slo_route_pattern_is_matched_by_re2_in_linear_time(tmp_path: Path) -> None:
    """SLO `route` patterns see routes from the log too (up to `routes.max_length` bytes): a pattern that
    backtracks catastrophically in Python's re must still decide at once, and still match what it should."""
    log = tmp_path / "access.log"
    crafted = "/" + "a" * 200 + "!"
    log.write_bytes(f"1.1.1.1\tGET {crafted}\t200\t5\n1.1.1.1\tGET /aaaa\t200\t5\n".encode())
    config = check(build(Config, {"files": [{"path": str(log), "format": "tsv"}], "from_start": True,
                          "routes": {"builtin": False},
                          "slo": [{"route": r"/(a+)+", "latency_threshold": 0.25, "team": "as"}]}))
    service = Service(config, once=True, out=open(tmp_path / "report", "w"))
    start = time.perf_counter()
    assert service.run() == 0
    objectives = service.snapshot().files[0].objectives
    assert time.perf_counter() - start < 5
    assert objectives["/aaaa"].team == "as" and objectives["/aaaa"].latency_threshold_s == 0.25
    assert objectives[crafted].team == ""  # no full match: the defaults

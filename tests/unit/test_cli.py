"""The `logtaild` command through `cli.main`: help, version, one-line errors with exit 2, --check-config,
a `--once --from-start` pass, and a port in use."""
from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from logtaild import __version__
from logtaild.config import Config, FileConfig, to_dict
from logtaild.count import core
from tests.support.cli import run, signal_handlers_kept


def assert_usage_error(code: int, out: str, err: str) -> str:
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("logtaild: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(autouse=True)
def keep_signal_handlers() -> Iterator[None]:
    with signal_handlers_kept():
        yield


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "access.tsv"
    path.write_bytes(
        b"10.0.0.1\tGET /\t200\t512\t12\n"
        b"10.0.0.2\tGET /?q=1\t200\t100\n"
        b"10.0.0.3\tPOST /users/42\t201\t7\t3.5\n"
        b"10.0.0.4\tGET /help\t500\t0\n"
        b"10.0.0.5\tGET /\t404\t-\n"
        b"garbage line\n"
        b"10.0.0.6\tGET /users/7\t201\t1\n"
    )
    return path


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--help"], capsys)
    assert (code, err) == (0, "")
    assert out.startswith("Usage: logtaild [OPTIONS]")
    assert "  Examples:\n    logtaild --file /var/log/nginx/access.tsv\n" in out
    assert "logtaild --file access.log --from-start --once" in out
    for flag in ("--file", "--interval", "--listen", "--from-start", "--once", "--version", "--config",
                 "--state-file", "--check-config"):
        assert flag in out
    assert run(["-h"], capsys)[1] == out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """The version, and which counting core runs (compiled, or the Python core and why)."""
    line = f"logtaild, version {__version__} (counting core: {core.DESCRIPTION})\n"
    assert run(["--version"], capsys) == (0, line, "")


@pytest.mark.parametrize(("argv", "message"), [
    (["--bogus"], "logtaild: error: No such option"),
    (["--file", "x", "--interval", "abc"],
     "logtaild: error: Invalid value for '--interval': 'abc' is not a valid float"),
    (["--file", "x", "--interval", "0"], "logtaild: error: interval: must be a positive number, got 0.0"),
    (["--file", "x", "--interval", "-1"], "logtaild: error: interval: must be a positive number, got -1.0"),
    (["--file", "x", "--interval", "nan"], "logtaild: error: interval: must be a positive number, got nan"),
    (["--file", "x", "--interval"], "logtaild: error: Option '--interval' requires an argument"),
    ([], "logtaild: error: nothing to follow: give --file PATH or a config with files"),
    (["--once"], "logtaild: error: nothing to follow"),
    (["--file", "x", "--listen", "10181"], "logtaild: error: listen: '10181' is not [HOST]:PORT"),
    (["--file", "x", "--listen", ":70000"], "logtaild: error: listen: ':70000' is not [HOST]:PORT"),
    (["--file", "x", "--log-level", "loud"], "logtaild: error: Invalid value for '--log-level'"),
    (["unexpected-argument"], "logtaild: error: Got unexpected extra argument (unexpected-argument)"),
])
def test_usage_errors_are_one_line_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = assert_usage_error(*run(argv, capsys))
    assert line.startswith(message), line


@pytest.mark.parametrize(("text", "message"), [
    ("files:\n  - path: a\n    fromat: tsv\n", "files[0].fromat: unknown key"),
    ("interval: soon\n", "interval: expected float, got str 'soon'"),
    ("files: [\n", "line 2 not valid YAML: "),
    ("routes:\n  rules:\n    - match: '('\n      replace: x\n", "routes.rules[0].match: invalid regex: "),
])
def test_bad_config_file(tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    for flag in ("--config", "--check-config"):
        line = assert_usage_error(*run([flag, str(path), "--file", "x"] if flag == "--config" else [flag, str(path)],
                                       capsys))
        assert message in line, line


def test_missing_and_binary_config_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    line = assert_usage_error(*run(["--config", str(missing), "--file", "x"], capsys))
    assert line == f"logtaild: error: {missing}: No such file or directory"
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    line = assert_usage_error(*run(["--check-config", str(binary)], capsys))
    assert line == f"logtaild: error: {binary}: not valid UTF-8 (byte 0)"


def test_config_directory_is_refused_by_click(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = assert_usage_error(*run(["--config", str(tmp_path), "--file", "x"], capsys))
    assert "is a directory" in line


def test_check_config_prints_the_effective_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("listen: 127.0.0.1:10181\ninterval: 2\nfiles:\n  - path: /var/log/a.tsv\n")
    code, out, err = run(["--check-config", str(path)], capsys)
    assert (code, err) == (0, "")
    expected = Config(listen="127.0.0.1:10181", interval=2.0, files=(FileConfig("/var/log/a.tsv"),))
    assert yaml.safe_load(out) == to_dict(expected)
    assert out.startswith("listen: 127.0.0.1:10181\ninterval: 2.0\nstate_file: null\nfiles:\n- path: /var/log/a.tsv\n")
    assert "max_line: 65536\n" in out  # defaults are shown too


def test_once_from_start_prints_one_report(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--file", str(log_file), "--once", "--from-start"], capsys)
    assert code == 0
    assert "Traceback" not in err
    lines = out.splitlines()
    assert len(lines[0]) == 24 and lines[0][-5:-4] == " "  # time.ctime(): "Sun Nov 22 10:15:00 2026"
    assert lines[1] == "=" * 29
    rows = [tuple(line.split("\t")) for line in lines[2:]]
    assert all(len(row) == 3 for row in rows)
    # QPS depends on how fast the file was read: compare route and status, and that each QPS is a number
    assert [row[:2] for row in rows] == [
        ("/", "200"), ("/", "404"), ("/help", "500"), ("/users/:id", "201"),
        ("TOTAL", "200"), ("TOTAL", "201"), ("TOTAL", "404"), ("TOTAL", "500"), ("TOTAL", "all"),
    ]
    for _route, _status, qps in rows:
        assert float(qps) > 0 and qps == qps.rstrip("0") and len(qps.partition(".")[2]) <= 2
    assert rows[-1][0:2] == ("TOTAL", "all")
    assert out.endswith("\n") and not out.endswith("\n\n")


def test_once_without_from_start_reads_nothing(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(["--file", str(log_file), "--once"], capsys)
    assert code == 0
    assert out.splitlines()[1:] == ["=" * 29, "TOTAL\tall\t0"]


def test_port_in_use_exits_2_naming_the_port(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = assert_usage_error(*run(["--file", str(log_file), "--listen", f"127.0.0.1:{port}"], capsys))
    assert line == f"logtaild: error: cannot listen on 127.0.0.1:{port}: Address already in use"

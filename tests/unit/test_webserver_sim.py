"""tools/webserver_sim.py: line format, exact counts, determinism, weights, rotation, incidents, ramp, signals.

Fast (a few seconds): most runs use --rate so nothing waits on the default 10-100 ms pauses.
"""
from __future__ import annotations

import itertools
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tools import webserver_sim as sim

SIM = Path(sim.__file__).resolve()
LINE_RE = re.compile(
    r"^(?P<ip>\d{1,3}(?:\.\d{1,3}){3})\t(?P<method>GET|POST) (?P<route>/\S*)\t"
    r"(?P<status>200|404|500)\t(?P<bytes>\d+)(?:\t(?P<latency>\d+\.\d{1,3}))?$"
)
WROTE_RE = re.compile(r"^webserver_sim: wrote (\d+) lines$")
HOSTILE = "/<script>alert(1)</script>"


def parse(line: str) -> dict[str, str]:
    match = LINE_RE.match(line.rstrip("\n"))
    assert match, f"malformed line {line!r}"
    return match.groupdict()


def reported(stderr: str) -> int:
    """N from the last stderr line, which must be exactly `webserver_sim: wrote N lines`."""
    last = stderr.rstrip("\n").splitlines()[-1]
    match = WROTE_RE.match(last)
    assert match, f"last stderr line is {last!r}"
    return int(match.group(1))


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> int:
    assert sim.main(list(argv)) == 0
    return reported(capsys.readouterr().err)


def timed(count: int, **kwargs: object) -> list[tuple[float, dict[str, str]]]:
    """(schedule time, parsed fields) of the first `count` generated lines."""
    lines = sim.generate_lines(**kwargs)  # type: ignore[arg-type]
    return [(t, parse(line)) for t, line in itertools.islice(lines, count)]


def share(rows: list[dict[str, str]], key: str, value: str) -> float:
    return sum(row[key] == value for row in rows) / len(rows)


# --------------------------------------------------------------------------- counts and format


def test_lines_writes_exactly_n_well_formed_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "access.log"
    assert run_main(capsys, "--output-file", str(out), "--lines", "1234", "--rate", "1000000") == 1234
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == 1234
    for row in map(parse, lines):
        assert 64 <= int(row["bytes"]) <= 1024
        assert all(0 <= int(octet) <= 255 for octet in row["ip"].split("."))
        assert row["latency"] is None


def test_zero_lines_and_append_modes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "access.log"
    assert run_main(capsys, "--output-file", str(out), "--lines", "0") == 0
    assert out.read_text() == ""
    args = ("--output-file", str(out), "--lines", "10", "--rate", "1000000")
    run_main(capsys, *args)
    run_main(capsys, *args)  # appends by default
    assert len(out.read_text().splitlines()) == 20
    run_main(capsys, *args, "--no-append")
    assert len(out.read_text().splitlines()) == 10


def test_latency_field_is_long_tailed() -> None:
    rows = [row for _, row in timed(20_000, seed=3, latency=True, schedule=sim.RateSchedule(rate=1e6))]
    values = sorted(float(row["latency"]) for row in rows)
    median, p99 = values[len(values) // 2], values[int(len(values) * 0.99)]
    assert 5 < median < 40, median
    assert 100 < p99 < 3000, p99
    assert values[-1] > 1000, "no tail to seconds"
    assert all(re.fullmatch(r"\d+\.\d{3}", row["latency"]) for row in rows[:100])


# --------------------------------------------------------------------------- determinism and weights


def test_seed_makes_content_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = []
    for name, seed in (("a", "42"), ("b", "42"), ("c", "43")):
        out = tmp_path / f"{name}.log"
        run_main(capsys, "--output-file", str(out), "--lines", "500", "--seed", seed, "--rate", "1e6", "--latency")
        texts.append(out.read_text())
    assert texts[0] == texts[1]
    assert texts[0] != texts[2]
    # The default random pauses are seeded too.
    assert list(itertools.islice(sim.generate_lines(7), 50)) == list(itertools.islice(sim.generate_lines(7), 50))


def test_weights_are_roughly_right() -> None:
    rows = [parse(line) for line in sim.sample_lines(20_000, seed=1)]
    routes = Counter(row["route"] for row in rows)
    for route, weight in sim.BASE_ROUTES:
        assert routes[route] / len(rows) == pytest.approx(weight / 95, abs=0.015), route
    assert share(rows, "method", "GET") == pytest.approx(0.95, abs=0.01)
    for status, weight in sim.STATUSES:
        assert share(rows, "status", status) == pytest.approx(weight / 96, abs=0.01), status
    sizes = [int(row["bytes"]) for row in rows]
    assert min(sizes) == 64 and max(sizes) == 1024
    assert statistics.mean(sizes) == pytest.approx(544, abs=10)
    assert len({row["ip"] for row in rows}) > 5000


def test_extra_hostile_route_gets_a_small_weight(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "access.log"
    run_main(capsys, "--output-file", str(out), "--lines", "5000", "--rate", "1e6", "--seed", "2",
             "--routes", f"{HOSTILE},/extra")
    rows = [parse(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert 0.004 < share(rows, "route", HOSTILE) < 0.02
    assert 0.004 < share(rows, "route", "/extra") < 0.02


# --------------------------------------------------------------------------- pacing, rotation, ramp


def test_rate_paces_lines_on_the_wall_clock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "access.log"
    began = time.monotonic()
    assert run_main(capsys, "--output-file", str(out), "--rate", "2000", "--duration", "0.5") == 1000
    assert 0.45 < time.monotonic() - began < 1.5
    assert len(out.read_text().splitlines()) == 1000


def test_rotation_keeps_every_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "access.log"
    before = time.time()
    total = run_main(capsys, "--output-file", str(out), "--rate", "4000", "--duration", "0.7",
                     "--log-rotation-interval", "0.15")
    after = time.time()
    rotated = [p for p in tmp_path.iterdir() if p != out]
    assert len(rotated) >= 3, rotated  # several in the same second: .1, .2... suffixes
    for path in rotated:
        match = re.fullmatch(r"access\.log\.(\d+)(?:\.\d+)?", path.name)
        assert match, path.name
        assert int(before) <= int(match.group(1)) <= after + 1
    counted = sum(len(p.read_text().splitlines()) for p in tmp_path.iterdir())
    assert counted == total == 2800


def test_rotated_name_never_overwrites(tmp_path: Path) -> None:
    path = str(tmp_path / "a.log")
    assert sim.rotated_name(path, 1000.7) == f"{path}.1000"
    Path(f"{path}.1000").touch()
    Path(f"{path}.1000.1").touch()
    assert sim.rotated_name(path, 1000.2) == f"{path}.1000.2"


def test_ramp_schedule_rises_linearly_then_holds() -> None:
    times = [t for t, _ in itertools.islice(
        sim.generate_lines(1, schedule=sim.RateSchedule(ramp=sim.Ramp(0, 1000, 1.0))), 2000)]
    per_half_second = Counter(int(t * 2) for t in times)
    assert per_half_second[0] == pytest.approx(125, abs=1)  # integral of 1000*t over [0, .5)
    assert per_half_second[1] == pytest.approx(375, abs=1)
    assert per_half_second[2] == pytest.approx(500, abs=1)  # holding 1000/s
    assert times == sorted(times)


def test_ramp_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "access.log"
    # 0 -> 4000/s over 0.25 s (500 lines), then 4000/s for 0.25 s (1000 lines).
    assert run_main(capsys, "--output-file", str(out), "--ramp", "0:4000:0.25", "--duration", "0.5") == 1500


# --------------------------------------------------------------------------- incidents


def in_window(rows: list[tuple[float, dict[str, str]]], lo: float, hi: float) -> list[dict[str, str]]:
    return [row for t, row in rows if lo <= t < hi]


def test_errors_incident_on_every_route() -> None:
    incident = sim.parse_incident("errors:1:1")
    rows = timed(3000, seed=4, incidents=[incident], schedule=sim.RateSchedule(rate=1000))
    assert share(in_window(rows, 1, 2), "status", "500") == pytest.approx(0.5, abs=0.06)
    assert share(in_window(rows, 0, 1) + in_window(rows, 2, 3), "status", "500") < 0.03


def test_errors_incident_on_one_route() -> None:
    incident = sim.parse_incident("errors@/blog:0:10")
    rows = [row for _, row in timed(5000, seed=5, incidents=[incident], schedule=sim.RateSchedule(rate=1000))]
    blog = [row for row in rows if row["route"] == "/blog"]
    others = [row for row in rows if row["route"] != "/blog"]
    assert share(blog, "status", "500") == pytest.approx(0.5, abs=0.08)
    assert share(others, "status", "500") < 0.03


def test_latency_incident_multiplies_latency() -> None:
    incident = sim.parse_incident("latency:1:1")
    rows = timed(3000, seed=6, latency=True, incidents=[incident], schedule=sim.RateSchedule(rate=1000))
    during = statistics.median(float(r["latency"]) for r in in_window(rows, 1, 2))
    outside = statistics.median(float(r["latency"]) for r in in_window(rows, 0, 1) + in_window(rows, 2, 3))
    assert 6 < during / outside < 16


def test_drop_incident_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    incident = sim.parse_incident("drop:1:0.5")
    rows = timed(2000, seed=7, incidents=[incident], schedule=sim.RateSchedule(rate=1000))
    assert not in_window(rows, 1, 1.5)
    assert len(in_window(rows, 0, 2.5)) == 2000
    out = tmp_path / "access.log"
    total = run_main(capsys, "--output-file", str(out), "--rate", "2000", "--duration", "0.4",
                     "--incident", "drop:0.1:0.2")
    assert total == 400  # 0.4 s at 2000/s less 0.2 s dropped


def test_errors_incident_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "access.log"
    run_main(capsys, "--output-file", str(out), "--lines", "2000", "--rate", "1e6", "--seed", "8",
             "--incident", "errors:0:100")
    rows = [parse(line) for line in out.read_text().splitlines()]
    assert share(rows, "status", "500") == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize(
    "argv",
    [
        ["--incident", "latency:0:1"],  # needs --latency
        ["--incident", "errors@/nowhere:0:1"],
        ["--incident", "fire:0:1"],
        ["--incident", "errors:0"],
        ["--routes", "/a b"],
        ["--ramp", "10:0:5"],
        ["--rate", "100", "--ramp", "1:2:3"],
    ],
)
def test_bad_options_are_rejected(tmp_path: Path, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        sim.main(["--output-file", str(tmp_path / "x.log"), *argv])
    assert exc.value.code == 2


def test_incident_route_may_contain_colons() -> None:
    incident = sim.parse_incident("errors@/a:b:1.5:2")
    assert (incident.kind, incident.route, incident.start, incident.duration) == ("errors", "/a:b", 1.5, 2.0)


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize(
    ("signum", "extra"),
    [(signal.SIGTERM, []), (signal.SIGINT, ["--rate", "50000", "--log-rotation-interval", "0.1"])],
)
def test_signal_flushes_and_reports_the_count(tmp_path: Path, signum: int, extra: list[str]) -> None:
    out = tmp_path / "access.log"
    proc = subprocess.Popen(
        [sys.executable, str(SIM), "--output-file", str(out), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    written = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in tmp_path.iterdir())
    assert reported(stderr) == written >= 3
    assert stderr.count("wrote") == 1

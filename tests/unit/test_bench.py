"""bench/: the smoke run on a tiny file (its exact-totals check must pass), and the generator's
expected totals against an independent recount. No timing assertions: the machine is noisy."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from bisect import bisect_left
from pathlib import Path

import pytest

from bench import check, gen

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_checks_exact_totals(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tools = "logtaild,cat" + (",mawk" if shutil.which("mawk") else "")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "check,catchup", "--lines", "20000",
         "--reps", "1", "--tools", tools, "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert (out / "results.json").exists(), done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["check"]["ok"], results["check"]["problems"]
    assert results["check"]["lines"] == 20000
    assert results["catchup"]["summary"]["logtaild"]["exit_codes"] == [0]
    if "mawk" in tools:
        assert results["catchup"]["verified"]["mawk"]["ok"], results["catchup"]["verified"]["mawk"]
    assert "totals" in done.stdout and "PASS" in done.stdout
    assert done.returncode == 0, done.stderr[-2000:]


LINE = re.compile(r"^[0-9.]+\t([A-Z]+) (\S+)\t(\d{3})\t(\d+)(?:\t(\d+\.\d{3}))?$")


def test_generator_totals_match_an_independent_recount(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    expected = gen.generate(path, 5000, seed=7)
    requests: dict[tuple[str, str, str], list[int]] = {}
    hist: dict[tuple[str, str], list[int]] = {}
    lines = path.read_text().splitlines()
    for line in lines:
        match = LINE.match(line)
        assert match, line
        method, target, status, size, latency = match.groups()
        route = re.sub(r"/\d+(?=/|$)", "/:id", re.split(r"[?#]", target)[0])
        slot = requests.setdefault((route, method, status), [0, 0])
        slot[0] += 1
        slot[1] += int(size)
        if latency is not None:
            buckets = hist.setdefault((route, method), [0] * (len(gen.BOUNDS_MS) + 1))
            buckets[bisect_left(gen.BOUNDS_MS, float(latency))] += 1
    assert len(lines) == expected.lines == 5000
    comparison = check.compare(expected, requests, hist, "recount")
    assert comparison.ok, comparison.problems[:5]
    assert 30 <= len({r for r, _m, _s in requests}) <= 60  # about 50 routes
    assert any(":id" in r for r, _m, _s in requests)


def test_generator_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    gen.generate(a, 2000, seed=3)
    gen.generate(b, 2000, seed=3)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("awk", ["mawk", "gawk"])
def test_awk_program_counts_exactly(tmp_path: Path, awk: str) -> None:
    exe = shutil.which(awk)
    if not exe:
        pytest.skip(f"{awk} not installed")
    path = tmp_path / "log.tsv"
    expected = gen.generate(path, 3000, seed=5)
    out = subprocess.run([exe, "-f", str(ROOT / "bench" / "awk" / "aggregate.awk"), str(path)],
                         capture_output=True, text=True, check=True).stdout
    requests, hist, bad = check.parse_awk(out)
    comparison = check.compare(expected, requests, hist, awk)
    assert bad == 0 and comparison.ok, comparison.problems[:5]

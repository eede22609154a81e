"""The fuzz targets build and run clean for a few seconds (`python -m fuzz`; CI runs them for a minute
in `.ci/run`): the scanners under AddressSanitizer and UBSan, and the sanitized compiled core against
the Python path. Needs clang and atheris: skipped without them, a failure under `CI=true`.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _missing() -> str | None:
    if not any(shutil.which(name) for name in ("clang", "clang-14", "clang-15", "clang-16")):
        return "clang (apt-get install clang-14 libclang-rt-14-dev)"
    if importlib.util.find_spec("atheris") is None:
        return "atheris (pip install -e '.[fuzz]')"
    return None


def test_the_fuzz_targets_run_clean(tmp_path: Path) -> None:
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the fuzz test needs {missing}")
        pytest.skip(f"needs {missing}")
    done = subprocess.run([sys.executable, "-m", "fuzz", "--seconds", "4", "--out", str(tmp_path)], cwd=ROOT,
                          env={**os.environ, "LOGTAILD_CORE": "auto"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["target"] for r in results] == ["scan", "differential"]
    for result in results:
        assert result["executions"] > 50 and result["coverage_edges"] > 50, result

"""`pip` builds logtaild where no C compiler works: the wheel has no compiled core, and logtaild runs on
the pure-Python core, says so in one warning line, and counts exactly; with the compiler the same
build carries the core. (CI runs the unit tests a second time on the Python core.)

The wheel is built from a copy of this checkout's sources (pip builds in the source tree, and would
reuse a `build/` folder's compiled core) with pip's build isolation (setuptools from the package
index), and unpacked into a folder put first on the path.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.daemon import ROOT

pytestmark = pytest.mark.integration


def build(tmp_path: Path, name: str, env: dict[str, str]) -> Path:
    """The wheel pip builds here with `env`, unpacked: the folder to put on PYTHONPATH."""
    out, source = tmp_path / name, tmp_path / f"{name}-source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", "build", "dist", "*.egg-info", "*.so", "__pycache__", ".git", "out", ".hypothesis"))
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert run.returncode == 0, run.stderr[-2000:]
    (wheel,) = out.glob("logtaild-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(out / "site")
    return out / "site"


def logtaild(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("LOGTAILD_CORE", None)  # the default choice: the compiled core if there is one
    return subprocess.run([sys.executable, "-m", "logtaild", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=env)


def test_without_a_compiler_the_wheel_installs_and_counts_on_the_python_core(tmp_path: Path) -> None:
    site = build(tmp_path, "no-cc", {"CC": "false"})
    assert not list(site.glob("logtaild/count/_core*.so"))
    version = logtaild(site, "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert "counting core: python (the compiled core was not built" in version.stdout
    log = tmp_path / "access.log"
    log.write_bytes(b"1.2.3.4\tGET /a\t200\t10\t5\n" * 3 + b"1.2.3.4\tGET /b\t500\t10\n")
    once = logtaild(site, "--file", str(log), "--once", "--from-start", cwd=tmp_path)
    assert once.returncode == 0, once.stderr
    warnings = [line for line in once.stderr.splitlines() if "pure-Python core" in line]
    assert len(warnings) == 1 and "Traceback" not in once.stderr, once.stderr
    rows = [line.split("\t") for line in once.stdout.splitlines() if "\t" in line]
    assert [row[:2] for row in rows] == [["/a", "200"], ["/b", "500"], ["TOTAL", "200"], ["TOTAL", "500"],
                                         ["TOTAL", "all"]]


def test_with_the_compiler_the_same_build_carries_the_compiled_core(tmp_path: Path) -> None:
    site = build(tmp_path, "cc", {})
    assert len(list(site.glob("logtaild/count/_core*.so"))) == 1
    version = logtaild(site, "--version", cwd=tmp_path)
    assert version.returncode == 0 and "counting core: compiled (C)" in version.stdout, version

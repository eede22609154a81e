"""The package's shape, checked: a docstring per module, each third-party library imported by exactly one
module, and the dependencies in pyproject.toml matching what the code imports.

The layer rules themselves (cli > run > export > count | tail > config, no cycles) are import-linter
contracts in pyproject.toml, run by `.ci/run`; this file checks what import-linter does not.
"""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections import defaultdict
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "logtaild"
#: names imported that are no installed library: the package itself, and typeshed's stub-only module
NOT_THIRD_PARTY = {"logtaild", "__future__", "_typeshed"}
#: distributions a declared dependency brings that the code may import under their own name
DISTRIBUTION_OF = {"daemon": "python-daemon", "yaml": "pyyaml", "prometheus_client": "prometheus-client"}


def _modules() -> dict[str, ast.Module]:
    return {str(path.relative_to(ROOT)): ast.parse(path.read_text(), str(path))
            for path in sorted(PACKAGE.rglob("*.py"))}


def _third_party(tree: ast.Module) -> set[str]:
    """Top-level names of every non-stdlib, non-logtaild import in a module (nested ones too)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - NOT_THIRD_PARTY


def _distribution(name: str) -> str:
    found = packages_distributions().get(name)
    return (found[0] if found else DISTRIBUTION_OF.get(name, name)).lower().replace("_", "-")


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~ ;\[]", spec, maxsplit=1)[0].lower().replace("_", "-")
            for spec in project["dependencies"]}


def test_every_module_says_what_it_owns() -> None:
    missing = [path for path, tree in _modules().items()
               if path.endswith("__init__.py") is False and not ast.get_docstring(tree)]
    assert missing == []


#: code protoc generates, one module per .proto file: the package they share is protobuf's one owner
GENERATED = re.compile(r"logtaild/export/prompb/\w+_pb2\.py")


def _owner(path: str) -> str:
    return path.rsplit("/", 1)[0] + "/ (generated)" if GENERATED.fullmatch(path) else path


def test_each_third_party_library_is_imported_by_one_module() -> None:
    importers: dict[str, set[str]] = defaultdict(set)
    for path, tree in _modules().items():
        for name in _third_party(tree):
            importers[name].add(_owner(path))
    shared = {name: paths for name, paths in importers.items() if len(paths) > 1}
    assert shared == {}


def test_each_module_imports_at_most_one_third_party_library() -> None:
    several = {path: sorted(names) for path, tree in _modules().items()
               if len(names := _third_party(tree)) > 1}
    assert several == {}


def test_dependencies_match_the_imports() -> None:
    imported = {_distribution(name) for tree in _modules().values() for name in _third_party(tree)}
    declared = _declared()
    assert imported - declared == set(), "imported but not declared in pyproject.toml"
    assert declared - imported == set(), "declared in pyproject.toml but imported nowhere"


def test_only_core_imports_the_compiled_core() -> None:
    """`logtaild/count/core.py` chooses the core: nothing else may import the extension, so the choice
    (LOGTAILD_CORE, the fallback and its warning) is made in one place."""
    importers = set()
    for path, tree in _modules().items():
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            if any(name.endswith("_core") for name in names) or module.endswith("._core"):
                importers.add(path)
    assert importers == {"logtaild/count/core.py"}


def test_a_once_run_imports_no_export_stack(tmp_path: Path) -> None:
    """`logtaild --once` counts and prints: the HTTP server, prometheus-client, the web config (ssl,
    bcrypt), multiprocessing on one CPU and importlib.metadata are start-up it does not need; nor, on a
    plain file without a config or a state file, yaml, re2 (no rules, no SLOs), ctypes (no arena cap
    without threads), socket (no systemd), tempfile and hashlib (no checkpoint), the snapshot types
    and the reload planner."""
    import subprocess

    log = tmp_path / "a.tsv"
    log.write_bytes(b"10.0.0.1\tGET / HTTP/1.1\t200\t1\t1.0\n")
    code = ("import os, sys\nos.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
            "from logtaild.cli import main\n"
            f"try:\n    main(['--file', {str(log)!r}, '--format', 'tsv', '--from-start', '--once'])\n"
            "except SystemExit:\n    pass\n"
            "print('MODULES', *sorted(sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    loaded = {name for line in done.stdout.splitlines() if line.startswith("MODULES ") for name in line.split()[1:]}
    assert "TOTAL" in done.stdout, done.stderr[-500:]
    unwanted = {"prometheus_client", "cheroot", "ssl", "bcrypt", "multiprocessing", "importlib.metadata",
                "logtaild.export.server", "logtaild.export.collector", "logtaild.export.status",
                "logtaild.export.webconfig", "http.server",
                "yaml", "re2", "ctypes", "socket", "tempfile", "hashlib", "logtaild.export.snapshot",
                "logtaild.run.reload"}
    assert "logtaild.count.aggregate" in loaded and not loaded & unwanted

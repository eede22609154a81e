"""The import rules of count/ and export/ (DESIGN.md, "Layers"), read from the source, not by importing.

count/ does no I/O and knows no metrics: stdlib and its own modules only. export/ reads counts and never
the tailer or the loop: no tail/ or run/. Each third-party library is imported by one module: in export/,
prometheus_client by promclient.py alone, bcrypt by webconfig.py alone.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "logtaild"


def imported(path: Path) -> set[str]:
    """Every module name `path` imports (top level or not, TYPE_CHECKING blocks included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).glob("*.py"))


def _third_party(name: str) -> str | None:
    top = name.split(".")[0]
    return None if top in sys.stdlib_module_names or top in ("logtaild", "__future__") else top


@pytest.mark.parametrize("path", modules("count"), ids=lambda p: p.name)
def test_count_imports_only_the_stdlib_and_itself(path: Path) -> None:
    for name in imported(path):
        assert _third_party(name) is None, name
        if name.startswith("logtaild."):
            assert name.startswith("logtaild.count"), name


@pytest.mark.parametrize("path", modules("export"), ids=lambda p: p.name)
def test_export_never_imports_the_tailer_or_the_loop(path: Path) -> None:
    for name in imported(path):
        assert not name.startswith(("logtaild.tail", "logtaild.run", "logtaild.cli")), name


@pytest.mark.parametrize(("library", "owner"), [("prometheus_client", "promclient.py"), ("bcrypt", "webconfig.py")])
def test_one_module_imports_each_library(library: str, owner: str) -> None:
    users = {path.name for path in modules("export") + modules("count")
             if any(_third_party(name) == library for name in imported(path))}
    assert users == {owner}


def test_only_the_adapter_and_webconfig_import_third_party_code() -> None:
    allowed = {"promclient.py": {"prometheus_client"}, "webconfig.py": {"bcrypt"}}
    for path in modules("export"):
        libraries = {lib for lib in map(_third_party, imported(path)) if lib}
        assert libraries <= allowed.get(path.name, set()), path.name

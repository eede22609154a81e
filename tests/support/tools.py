"""Finding external tools (prometheus, logrotate, chromium...) for tests that need them.

Under CI (`CI=true`) a missing tool is a failure, because .ci/run is supposed to install it;
on a developer machine it is a skip with the install hint.
"""
from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str, package: str | None = None) -> str:
    """Return the absolute path of executable `name`, or fail (CI) / skip (elsewhere)."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if path:
        return path
    hint = f"{name} not found (apt-get install -y {package or name})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(hint)
    pytest.skip(hint)

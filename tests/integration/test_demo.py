"""The README's first command: the live demo shows reports and /metrics within seconds."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.daemon import ROOT, free_port

pytestmark = pytest.mark.integration


def test_demo_shows_reports_and_metrics() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), "--duration", "5.5",
                          "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "=============================" in run.stdout and "\nTOTAL\tall\t" in run.stdout
    assert 'logtaild_http_requests_total{method="GET",route="/"' in run.stderr

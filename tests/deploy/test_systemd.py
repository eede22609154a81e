"""deploy/systemd/logtaild.service: the required settings, `systemd-analyze verify`, and an exposure
score of at most 2.0 from `systemd-analyze security --offline=true`.

Both commands work without systemd running as PID 1 (containers, CI): `verify` loads the unit into
a private manager in test mode; `--man=no` skips looking up Documentation= man pages,
`--generators=no` runs no generator (some need root) and `--recursive-errors=no` (systemd >= 250)
makes the exit status reflect this unit only, not the host's units it is ordered after.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "logtaild.service"
INSTALLED_BINARY = "/usr/local/bin/logtaild"
MAX_EXPOSURE = 2.0


def service_settings(text: str) -> dict[str, list[str]]:
    """[Service] key -> values, in order (keys such as SystemCallFilter= may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def existing_binary() -> str:
    """The venv's logtaild when it is installed there, else /bin/true."""
    candidate = Path(sys.executable).parent / "logtaild"
    if candidate.is_file():
        return str(candidate)
    return shutil.which("true") or "/bin/true"


def verifiable_copy(tmp_path: Path, extra: str = "") -> Path:
    """A copy of the unit that `systemd-analyze verify` can load on a machine without logtaild installed.

    verify checks that each command's binary exists and is executable, and /usr/local/bin/logtaild
    exists only where logtaild is installed for real; so the copy runs an existing binary instead
    (the venv's logtaild if present, else /bin/true). Nothing else in the unit is changed.
    """
    text = UNIT.read_text(encoding="utf-8").replace(INSTALLED_BINARY, existing_binary())
    copy = tmp_path / UNIT.name  # the same name: verify derives the unit name from the file name
    copy.write_text(text + extra, encoding="utf-8")
    return copy


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("systemd-analyze", "systemd")
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=60, check=False
    )


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return analyze("verify", "--man=no", "--generators=no", "--recursive-errors=no", str(unit))


def about_unit(result: subprocess.CompletedProcess[str]) -> list[str]:
    """Output lines that concern our unit (the host's own units may have warnings of their own)."""
    return [line for line in (result.stdout + result.stderr).splitlines() if "logtaild" in line]


def test_unit_has_the_required_settings() -> None:
    settings = service_settings(UNIT.read_text(encoding="utf-8"))
    expected = {
        "Type": "notify",
        "ExecStart": f"{INSTALLED_BINARY} --config /etc/logtaild/config.yaml --state-file /var/lib/logtaild/state.json",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "WatchdogSec": "30",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "DynamicUser": "yes",
        "SupplementaryGroups": "adm",
        "StateDirectory": "logtaild",
        "ConfigurationDirectory": "logtaild",
        "TimeoutStopSec": "10",
        # a flood of scrapes must not starve the tailer of descriptors (the default soft limit is 1024)
        "LimitNOFILE": "65536",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "SystemCallArchitectures": "native",
        "MemoryDenyWriteExecute": "yes",
    }
    for key, value in expected.items():
        assert settings.get(key) == [value], key
    assert settings["SystemCallFilter"][0] == "@system-service"
    assert "PrivateNetwork" not in settings  # it must listen on TCP 10181


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    result = verify(verifiable_copy(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert about_unit(result) == [], output


def test_verify_does_report_a_broken_unit(tmp_path: Path) -> None:
    """The check above is not vacuous: a bad key in the same copy is reported, naming the unit."""
    result = verify(verifiable_copy(tmp_path, "\n[Service]\nNoSuchSetting=1\n"))
    assert result.returncode != 0
    assert any("NoSuchSetting" in line for line in about_unit(result)), result.stderr


def exposure(unit: Path) -> tuple[float, str]:
    """The overall exposure score `systemd-analyze security --offline=true` gives `unit`, and its output."""
    result = analyze("security", "--offline=true", "--no-pager", str(unit))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    match = re.search(r"Overall exposure level for logtaild\.service: (\d+(?:\.\d+)?)", output)
    assert match, output
    return float(match.group(1)), output


def test_security_exposure_is_at_most_2() -> None:
    score, output = exposure(UNIT)
    assert score <= MAX_EXPOSURE, output


@pytest.mark.parametrize("setting", ["CapabilityBoundingSet=~", "SystemCallFilter="])
def test_security_score_reacts_to_weakening(tmp_path: Path, setting: str) -> None:
    """Sanity check of the parsing above: a weaker copy scores worse than the unit."""
    weaker = tmp_path / UNIT.name
    weaker.write_text(UNIT.read_text(encoding="utf-8") + f"\n[Service]\n{setting}\n", encoding="utf-8")
    assert exposure(weaker)[0] > exposure(UNIT)[0]

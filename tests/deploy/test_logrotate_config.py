"""deploy/logrotate/nginx: logrotate parses it, and it rotates the way logtaild expects.

The config is run on a copy whose paths point into a temp dir (logs, nginx pid file, logrotate's
state file). `logrotate -d` is a dry run; the real runs check rename + create and delaycompress.
"""
from __future__ import annotations

import grp
import gzip
import os
import pwd
import subprocess
from pathlib import Path

from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "logrotate" / "nginx"


def owner_for(real_owner: bool) -> str:
    """`www-data adm` as in the config when asked and possible (root, both exist), else our own ids."""
    if real_owner and os.geteuid() == 0:
        try:
            pwd.getpwnam("www-data"), grp.getgrnam("adm")
            return "www-data adm"
        except KeyError:
            pass
    return f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"


def local_copy(tmp_path: Path, *, real_owner: bool = False, dateext: bool = False) -> tuple[Path, Path]:
    """(config copy, logs dir) with every absolute path moved under tmp_path."""
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    text = CONFIG.read_text(encoding="utf-8")
    assert "/var/log/nginx/*.log" in text and "create 0640 www-data adm" in text
    text = text.replace("/var/log/nginx/", f"{logs}/").replace("/run/nginx.pid", f"{tmp_path}/nginx.pid")
    text = text.replace("/etc/logrotate.d/httpd-prerotate", f"{tmp_path}/httpd-prerotate")
    text = text.replace("www-data adm", owner_for(real_owner))
    if dateext:
        text = text.replace("#dateext", "dateext")
    config = tmp_path / "nginx.conf"
    config.write_text(text, encoding="utf-8")
    return config, logs


def logrotate(config: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("logrotate")
    state = config.parent / "logrotate.status"
    return subprocess.run([tool, *flags, "-s", str(state), str(config)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_config_parses_in_a_dry_run(tmp_path: Path) -> None:
    config, logs = local_copy(tmp_path, real_owner=True)
    (logs / "access.log").write_text("1.2.3.4\tGET /\t200\t100\n")
    result = logrotate(config, "-d", "-f")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "error" not in output.lower(), output
    assert f"rotating pattern: {logs}/*.log" in output and "14 rotations" in output, output
    assert f"renaming {logs}/access.log to {logs}/access.log.1" in output, output
    assert (logs / "access.log").read_text() == "1.2.3.4\tGET /\t200\t100\n"  # dry run: untouched


def test_dry_run_reports_a_broken_config(tmp_path: Path) -> None:
    """The dry-run check is not vacuous. logrotate exits 0 on an unknown keyword (it only prints
    `error: ... unknown option`), hence the check for `error` in the output as well as the status."""
    config, _ = local_copy(tmp_path)
    config.write_text(config.read_text().replace("\tdelaycompress\n", "\tdelaycompres\n"))
    result = logrotate(config, "-d")
    assert "error: " in result.stderr and "unknown option 'delaycompres'" in result.stderr, result.stderr


def test_rotation_renames_creates_and_delays_compression(tmp_path: Path) -> None:
    config, logs = local_copy(tmp_path)
    log = logs / "access.log"
    log.write_text("first\n")
    first_inode = log.stat().st_ino
    assert logrotate(config, "-f").returncode == 0
    # rename + create: the old inode lives on, uncompressed, under the rotated name; a new empty file
    assert (logs / "access.log.1").stat().st_ino == first_inode
    assert (logs / "access.log.1").read_text() == "first\n"
    assert log.read_text() == "" and log.stat().st_ino != first_inode
    assert log.stat().st_mode & 0o777 == 0o640
    log.write_text("second\n")
    assert logrotate(config, "-f").returncode == 0
    assert (logs / "access.log.1").read_text() == "second\n"  # the newest rotated file stays plain
    assert gzip.decompress((logs / "access.log.2.gz").read_bytes()) == b"first\n"


def test_dateext_names(tmp_path: Path) -> None:
    config, logs = local_copy(tmp_path, dateext=True)
    (logs / "access.log").write_text("line\n")
    assert logrotate(config, "-f").returncode == 0
    rotated = sorted(p.name for p in logs.iterdir() if p.name != "access.log")
    assert len(rotated) == 1 and rotated[0].startswith("access.log-"), rotated

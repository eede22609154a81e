"""deploy/cron/logtaild: the crontab line is valid and its command works (paths moved into a temp dir)."""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
CRON = ROOT / "deploy" / "cron" / "logtaild"


def job() -> tuple[list[str], str]:
    """(the five time fields and the user, the command) of the one job line."""
    lines = [line for line in CRON.read_text().splitlines()
             if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]
    assert len(lines) == 1, lines
    fields = lines[0].split(None, 6)
    return fields[:6], fields[6]


def test_the_job_runs_every_minute_as_an_unprivileged_user() -> None:
    when_and_user, _command = job()
    assert when_and_user == ["*", "*", "*", "*", "*", "www-data"]


def test_the_command_counts_appended_lines_into_the_textfile(tmp_path: Path) -> None:
    _when, command = job()
    command = command.split(">>")[0]
    for real in ("/var/log/nginx", "/var/lib/logtaild-cron", "/var/lib/prometheus/node-exporter"):
        command = command.replace(real, str(tmp_path))
    argv = shlex.split(command)
    assert argv[0] == "logtaild"
    argv = [sys.executable, "-m", "logtaild", *argv[1:]]
    log = tmp_path / "access.tsv"
    log.write_bytes(b"")
    for lines in (0, 3):
        with open(log, "ab") as handle:
            handle.write(b"1.1.1.1\tGET /a\t200\t10\n" * lines)
        run = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert run.returncode == 0, run.stderr
    text = (tmp_path / "logtaild.prom").read_text()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "logtaild_http_requests_total"]
    assert [(s.labels["route"], s.value) for s in samples] == [("/a", 3.0)]

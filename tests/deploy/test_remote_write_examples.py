"""The scaling examples of deploy/: Prometheus agent mode, federation and a site Prometheus with remote_write
pass `promtool check config`; logtaild's own commented `remote_write:` example is a valid config once
uncommented. (tests/integration/test_fleet.py runs the federation example and logtaild's pushes for real.)"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from logtaild.config import Config, build, check
from tests.support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", "prometheus")


@pytest.mark.parametrize(("name", "flags"), [("agent.yml", ["--agent"]), ("federation.yml", []),
                                             ("site-remote-write.yml", [])])
def test_promtool_check_config(promtool: str, name: str, flags: list[str]) -> None:
    result = subprocess.run([promtool, "check", "config", *flags, name], cwd=PROMETHEUS_DIR, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {name} is valid" in result.stdout


def test_the_agent_config_is_agent_only(promtool: str) -> None:
    """No rules or alerting in agent mode: the receiver evaluates them."""
    config = yaml.safe_load((PROMETHEUS_DIR / "agent.yml").read_text())
    assert "rule_files" not in config and "alerting" not in config
    assert config["scrape_configs"][0]["job_name"] == "logtaild" and config["remote_write"]


def test_federation_takes_the_aggregates_and_keeps_the_sites_labels() -> None:
    (job,) = yaml.safe_load((PROMETHEUS_DIR / "federation.yml").read_text())["scrape_configs"]
    assert job["honor_labels"] is True and job["metrics_path"] == "/federate"
    assert any("job_(route" in match for match in job["params"]["match[]"])


def test_logtaild_remote_write_example_is_a_valid_config(tmp_path: Path) -> None:
    text = (ROOT / "deploy" / "config.example.yaml").read_text()
    block = text[text.index("# remote_write:\n"):]
    lines = [line[2:] for line in block.splitlines() if line.startswith("#")]
    uncommented = "\n".join(line for line in lines if not line.lstrip().startswith("# "))
    data = yaml.safe_load(uncommented)
    # the secret and CA files exist on a real host; here temporary stand-ins (they are only checked readable)
    receiver = data["remote_write"][0]
    for where, key in ((receiver["basic_auth"], "password_file"), (receiver["tls"], "ca_file"),
                       (receiver["tls"], "cert_file"), (receiver["tls"], "key_file")):
        stand_in = tmp_path / Path(where[key]).name
        stand_in.write_text("x")
        where[key] = str(stand_in)
    config = check(build(Config, data))
    (rw,) = config.remote_write
    assert rw.external_labels == {"job": "logtaild", "instance": "web1.example.org", "site": "par1"}
    assert rw.interval == 15 and rw.queue.max_samples == 500000
    assert re.match(r"https://", rw.url)

"""The format examples in the docs and in deploy/config.example.yaml are valid configs whose format
strings compile, and the commented nginx and Apache examples of the example config read the lines
their servers write."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from logtaild.config import Config, build, check
from logtaild.count.parsers import make_parser
from logtaild.run.fileformats import check_formats

ROOT = Path(__file__).resolve().parents[2]
T = "17/May/2015:10:05:03 +0000"


def yaml_blocks(path: Path) -> list[str]:
    return [block for block in re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S) if "files:" in block]


@pytest.mark.parametrize("page", ["formats.md", "configuration.md"])
def test_the_yaml_examples_are_valid_configs(page: str) -> None:
    blocks = yaml_blocks(ROOT / "docs" / page)
    assert blocks
    for block in blocks:
        check_formats(check(build(Config, yaml.safe_load(block))))


def commented_entries() -> list[dict[str, object]]:
    """The example config's commented file entries (`# - path: ...` and the lines under them)."""
    text = (ROOT / "deploy" / "config.example.yaml").read_text()
    entries = re.findall(r"(?m)^  # - path:.*\n(?:^  #   .*\n)+", text)
    assert len(entries) == 2
    out = []
    for entry in entries:
        uncommented = "\n".join(line.replace("  #", "  ", 1) for line in entry.splitlines())
        out.append(yaml.safe_load("files:\n" + uncommented)["files"][0])
    return out


def test_the_commented_nginx_and_apache_examples_read_their_servers_lines() -> None:
    nginx, apache = commented_entries()
    config = check_formats(check(build(Config, {"files": [nginx, apache]})))
    parse_nginx, parse_apache = (make_parser(f) for f in config.files)
    record = parse_nginx(
        f'10.0.0.1 - - [{T}] "GET /api/x HTTP/1.1" 200 5 "-" "curl" rt=0.010 uct="0.001" uht="0.008" '
        f'urt="0.004, 0.005" shop.example "1.4.2" 4bf92f3577b34da6a3ce929d0e0e4736'.encode())
    assert record.labels == (("version", "1.4.2"), ("vhost", "shop.example"))
    assert record.exemplar == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert record.upstream_ms == pytest.approx(9.0) and record.latency_ms == pytest.approx(10.0)
    record = parse_apache(f'10.0.0.1 - - [{T}] "GET /x HTTP/1.1" 200 5 "-" "curl" 1500 shop.example 1.4.2'
                          .encode())
    assert record.labels == (("version", "1.4.2"), ("vhost", "shop.example")) and record.latency_ms == 1.5

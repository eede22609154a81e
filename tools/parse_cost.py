#!/usr/bin/env python3
"""Per-line parse cost of the formats on the fixtures and on generated production logs (docs/performance.md).

    python tools/parse_cost.py [--rounds 15] [--old-rev REV]

Each parser is timed with timeit over the same lines, the parsers taking turns round after round, and
the lowest time per line is printed (the least disturbed by other load on a shared machine). With
`--old-rev`, the `combined` parser of `logtaild/count/formats.py` at that git revision (before the format
strings) runs beside today's preset, on the same lines. Also printed: the compiled regex alone and a
split-by-literals scanner doing the same field split (with no unescaping), the two ways a format string
could be matched.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from logtaild.config import FileConfig  # noqa: E402 (after the path set-up, as a script)
from logtaild.count.logformat import CompiledFormat  # noqa: E402
from logtaild.count.parsers import make_parser, parse_combined  # noqa: E402
from tests.unit.test_formats_production import (  # noqa: E402
    APACHE_CONFIG,
    NGINX_CONFIG,
    apache_lines,
    nginx_lines,
)

FIXTURES = ROOT / "tests" / "fixtures"


def old_combined(rev: str) -> Callable[[bytes], object]:
    """The combined parser as formats.py had it at `rev` (loaded from `git show`, under another name)."""
    source = subprocess.run(["git", "show", f"{rev}:logtaild/count/formats.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(source)
    spec = importlib.util.spec_from_file_location("old_formats", handle.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser: Callable[[bytes], object] = module.parse_combined
    return parser


def scanner(literals: list[bytes]) -> Callable[[bytes], list[bytes]]:
    """Split a line at each literal in turn: the other way to match a format (no escapes handled)."""
    def scan(line: bytes) -> list[bytes]:
        out, pos = [], 0
        for literal in literals:
            end = line.find(literal, pos)
            if end < 0:
                raise ValueError("no match")
            out.append(line[pos:end])
            pos = end + len(literal)
        out.append(line[pos:])
        return out
    return scan


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--rounds", type=int, default=15)
    options.add_argument("--old-rev", help="a git revision whose formats.py has the regex combined parser")
    args = options.parse_args()
    apache = (FIXTURES / "apache-combined-3000.log").read_bytes().splitlines()
    edge = (FIXTURES / "nginx-combined-edge-cases.log").read_bytes().splitlines() * 400
    nginx, _ = nginx_lines(3000)
    custom_apache, _ = apache_lines(3000)
    compiled = CompiledFormat("nginx", NGINX_CONFIG.log_format or "")
    regex, _groups = compiled._regex(["$host", "$sent_http_x_version"])
    literals = [token for token in compiled.tokens if isinstance(token, bytes)]
    if isinstance(compiled.tokens[0], bytes):  # a leading literal: the scanner starts after it
        literals = literals[1:]
    cases: list[tuple[str, Callable[[bytes], object], list[bytes]]] = [
        ("apache fixture (3,000 lines), combined preset", parse_combined, apache),
        ("nginx edge-case fixture (7 lines x 400), combined preset", parse_combined, edge),
        ("nginx main + rt/uct/uht/urt, vhost and version labels", make_parser(NGINX_CONFIG), nginx),
        ("nginx main + rt/uct/uht/urt, no labels",
         make_parser(FileConfig("x", "nginx", log_format=NGINX_CONFIG.log_format)), nginx),
        ("  its regex alone (fullmatch + groups)", lambda line: regex.fullmatch(line).groups(),  # type: ignore[union-attr]
         nginx),
        ("  a split-by-literals scanner alone", scanner(literals), nginx),
        ("apache %D %v custom, vhost and version labels", make_parser(APACHE_CONFIG), custom_apache),
    ]
    if args.old_rev:
        old = old_combined(args.old_rev)
        cases[1:1] = [("apache fixture (3,000 lines), old combined parser", old, apache)]
        cases[3:3] = [("nginx edge-case fixture (7 lines x 400), old combined parser", old, edge)]
    best = {name: float("inf") for name, _parse, _lines in cases}
    for _round in range(args.rounds):
        for name, parse, lines in cases:
            seconds = timeit.timeit(lambda parse=parse, lines=lines: [parse(line) for line in lines], number=1)
            best[name] = min(best[name], seconds / len(lines) * 1e6)
    for name, _parse, _lines in cases:
        print(f"{best[name]:6.2f} us/line  {name}")
    print(f"(python {sys.version.split()[0]}, best of {args.rounds} rounds)")


if __name__ == "__main__":
    main()

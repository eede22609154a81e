"""`python -m bench.check_worker LOG EXPECTED_JSON [--profile OUT]`: logtaild's exact-totals check in
a child process (so the measured logtaild, possibly a `--rev` snapshot, is the one imported).

Prints one JSON object: the comparison and the seconds the pass took. With `--profile OUT`, the pass
runs under cProfile and the stats are dumped to OUT (then the seconds include cProfile's overhead).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.check import check_logtaild
from bench.gen import Expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.check_worker")
    parser.add_argument("log")
    parser.add_argument("expected")
    parser.add_argument("--profile", metavar="OUT")
    args = parser.parse_args(argv)
    expected = Expected.from_json(json.loads(Path(args.expected).read_text()))
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
        comparison, seconds = check_logtaild(Path(args.log), expected)
        profiler.disable()
        profiler.dump_stats(args.profile)
    else:
        comparison, seconds = check_logtaild(Path(args.log), expected)
    import logtaild
    print(json.dumps({**comparison.to_json(), "seconds": seconds, "logtaild": logtaild.__file__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

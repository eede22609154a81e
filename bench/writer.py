"""`python -m bench.writer`: appends the bench's log, in one of bench/formats.py's formats, at a rate.

For the steady-state phase on formats other than tsv (tools/webserver_sim.py writes tsv): the lines of
the bench log (or of `--source`), converted by formats._line, are appended in one write every 10 ms,
as many as the rate has made due, until SIGTERM; then `wrote N lines` on stderr, as the simulator says it.
"""
from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
import time
from pathlib import Path

from bench.formats import _line


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.writer")
    p.add_argument("--output-file", type=Path, required=True)
    p.add_argument("--source", type=Path, required=True, help="a tsv log whose lines are written, in a loop")
    p.add_argument("--format", required=True)
    p.add_argument("--rate", type=float, required=True)
    args = p.parse_args()
    with open(args.source, "rb") as handle:
        source = [raw.rstrip(b"\n") for raw in itertools.islice(handle, 200_000)]
    lines = itertools.cycle([_line(args.format, raw) + b"\n" if args.format != "tsv" else raw + b"\n"
                             for raw in source])
    stop = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    fd = os.open(args.output_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    start, written = time.monotonic(), 0
    while not stop:
        due = int((time.monotonic() - start) * args.rate) - written
        if due > 0:
            os.write(fd, b"".join(itertools.islice(lines, due)))
            written += due
        time.sleep(0.01)
    os.close(fd)
    print(f"bench.writer: wrote {written} lines", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

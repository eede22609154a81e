"""`python -m bench.hostile`: logtaild's catch-up on hostile combined logs, one CPU, median of 3.

Two generated logs of combined lines (1M by default), each line a request no earlier line made:
- `ids`: `/api/v1/users/<random id>/orders/<uuid>?q=<random>`, every raw key new, every path key one of
  a few (the ids are replaced in the compiled core, so the core still counts almost every line);
- `words`: `/search/<random word>/<random word>`, a new route per line until the route cap (1,000), then
  `__other__`: every line is a decision for Python (normalization, the cap), the core's worst case.
Prints lines/s per file and which core counted; `--lines N`, `--out DIR`. logtaild runs with bytecode
caches, as the other phases run it (bench.context's measured environment), after one untimed run.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import string
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.context import measured_env

HEAD = '10.{a}.{b}.{c} - - [01/Dec/2026:12:00:00 +0000] "GET {target} HTTP/1.1" {status} {size} "-" "ua/{n}"\n'


def generate(path: Path, kind: str, lines: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    letters = string.ascii_lowercase
    with open(path, "w") as out:
        for n in range(lines):
            if kind == "ids":
                target = f"/api/v1/users/{rng.randrange(10**12)}/orders/{uuid.UUID(int=rng.getrandbits(128))}" \
                         f"?q={rng.randrange(10**9)}"
            else:
                target = "/search/" + "".join(rng.choices(letters, k=10)) + "/" + "".join(rng.choices(letters, k=6))
            out.write(HEAD.format(a=n % 256, b=(n >> 8) % 256, c=rng.randrange(256), target=target,
                                  status=rng.choice((200, 200, 404, 500)), size=rng.randrange(100000), n=n % 97))


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hostile")
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "hostile")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logtaild = str(Path(sys.executable).parent / "logtaild")
    pin = [shutil.which("taskset") or "taskset", "-c", str(min(os.sched_getaffinity(0)))]
    for kind in ("ids", "words"):
        path = args.out / f"hostile-{kind}-{args.lines}.log"
        if not path.exists():
            generate(path, kind, args.lines)
        config = args.out / f"hostile-{kind}.yaml"
        config.write_text(f'{{"files": [{{"path": "{path}", "format": "combined"}}]}}')
        argv = [*pin, logtaild, "--config", str(config), "--from-start", "--once", "--log-level", "warning"]
        env = measured_env(dict(os.environ))
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, env=env)  # fills the bytecode cache
        walls = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, env=env)
            walls.append(time.perf_counter() - start)
        wall = statistics.median(walls)
        print(f"hostile {kind}: {args.lines:,} lines in {wall:.2f} s (median of 3, one CPU): "
              f"{args.lines / wall / 1e6:.2f}M lines/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

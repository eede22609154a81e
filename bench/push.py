"""Push cost (`python -m bench --only push`): CPU and bytes of one remote-write push at 1k and 10k series.

A `Snapshot` is built with N request series (N/2 routes x statuses 200 and 500, every line with a latency,
so each route also has a histogram: the same shape as the scrape phase's), and one push is what the pusher
thread does at each tick: the families (families.py) flattened to samples, the WriteRequest (protobuf,
values updated in place after the first push) and its snappy compression. CPU is `time.process_time` in a
child process that imports logtaild from the tree under test (`--rev` applies); the first push (every
message built) is reported apart from the steady ones (the median of `reps`), and so is the memory the
encoder holds between pushes (the resident size it added).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.context import Context

WORKER = "bench.push"


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


def measure(series: int, reps: int) -> dict[str, Any]:
    """One series count, in this process (the child's side)."""
    from logtaild.count import slots as layout
    from logtaild.export.remote_write import RemoteWriteEncoder, SnapshotSamples
    from logtaild.export.snapshot import FileSnapshot, Snapshot
    from logtaild.tail.filestream import StreamStats

    bounds = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
    slots = [((f"/route/{i // 2}", "GET", ("200", "500")[i % 2], ()),
              layout.filled(100 + i, 1000 * i, 12.5 * i, [i % 7] * (len(bounds) + 1))) for i in range(series)]
    snap = Snapshot([FileSnapshot("/var/log/access.log", {}, slots, bounds, series * 100, {}, StreamStats(),
                                  series // 2)], "bench")
    samples_of, encoder = SnapshotSamples(), RemoteWriteEncoder({"instance": "web1", "site": "a"})
    rss_before = _rss_mb()

    def push() -> tuple[float, Any]:
        """What the pusher does at each tick: the samples streamed from the families into the encoder."""
        start = time.process_time()
        encoded = encoder.encode(samples_of(snap), int(time.time() * 1000))
        return time.process_time() - start, encoded

    def families() -> float:
        start = time.process_time()
        for _sample in samples_of(snap):
            pass
        return time.process_time() - start

    first_s, encoded = push()
    cpu_s = statistics.median(push()[0] for _ in range(reps))
    held_mb = _rss_mb() - rss_before  # the label caches, and what the heap kept of a push's transients
    families_s = statistics.median(families() for _ in range(max(1, reps // 4)))
    return {"series": series, "samples": encoded.samples, "held_mb": round(held_mb, 1), "raw_bytes": encoded.raw_bytes,
            "compressed_bytes": len(encoded.body), "first_cpu_ms": round(first_s * 1000, 1),
            "cpu_ms": round(cpu_s * 1000, 1), "families_ms": round(families_s * 1000, 1),
            "encode_compress_ms": round((cpu_s - families_s) * 1000, 1), "reps": reps}


def run(ctx: Context, series_counts: list[int], reps: int) -> dict[str, Any]:
    """Every series count in a fresh child process; results keyed by the count."""
    out: dict[str, Any] = {}
    for n in series_counts:
        done = subprocess.run([ctx.python, "-m", WORKER, str(n), str(reps)], capture_output=True, text=True,
                              env=ctx.env, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"push worker for {n} series: {done.stderr.strip()[-500:]}")
        row = json.loads(done.stdout)
        out[str(n)] = row
        ctx.log(f"push: {n:,} series, {row['samples']:,} samples: {row['cpu_ms']:.0f} ms CPU per push "
                f"(first {row['first_cpu_ms']:.0f} ms), {row['compressed_bytes'] / 1e3:.0f} kB compressed, "
                f"{row['raw_bytes'] / 1e3:.0f} kB raw; {row['held_mb']:.0f} MB held between pushes")
    return out


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))

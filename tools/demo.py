#!/usr/bin/env python3
"""A live demo: the simulator writes a rotating access log, logtaild follows it.

Shows logtaild's reports as they come, and every few seconds an excerpt of /metrics, until Ctrl-C
(or --duration). Stdlib only; uses the `logtaild` next to this Python (a venv) or `python -m logtaild`.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _excerpt(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError as exc:
        return f"(metrics not reachable yet: {exc})"
    keep = ("logtaild_http_requests_total{", "logtaild_http_request_duration_seconds_count",
            "logtaild_lines_read_total", "logtaild_rotations_total{")
    return "\n".join(line for line in text.splitlines() if line.startswith(keep))


def _pump(proc: subprocess.Popen, done: threading.Event) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
    done.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=10181)
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds")
    parser.add_argument("--rate", type=float, default=40, help="simulated requests per second")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="logtaild-demo-"))
    log = folder / "access.log"
    sim = subprocess.Popen([sys.executable, str(ROOT / "tools" / "webserver_sim.py"), "--output-file",
                            str(log), "--rate", str(args.rate), "--latency", "--log-rotation-interval",
                            "30", "--incident", "errors@/blog:20:15"])
    tail = subprocess.Popen([sys.executable, "-m", "logtaild", "--file", str(log), "--interval", "2",
                             "--listen", f"127.0.0.1:{args.port}", "--log-level", "warning"],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    done = threading.Event()
    threading.Thread(target=_pump, args=(tail, done), daemon=True).start()
    print(f"# simulated log: {log}; metrics: http://127.0.0.1:{args.port}/metrics; Ctrl-C stops",
          file=sys.stderr)
    start = time.monotonic()
    try:
        while not done.is_set() and (not args.duration or time.monotonic() - start < args.duration):
            left = args.duration - (time.monotonic() - start) if args.duration else 5
            if done.wait(min(5, max(left, 0.1))) or (args.duration and left < 5):
                break
            print(f"\n# /metrics excerpt\n{_excerpt(args.port)}\n", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in (tail, sim):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (tail, sim):
            proc.wait(10)
    return 0 if tail.returncode in (0, -signal.SIGTERM) else tail.returncode or 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

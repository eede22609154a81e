#!/usr/bin/env python3
"""A live demo: the simulator writes a rotating access log, logtaild follows it.

Shows logtaild's reports as they come, and every few seconds an excerpt of /metrics, until Ctrl-C
(or --duration). Stdlib only; runs `python -m logtaild` with this Python (the venv's).

The status page (http://127.0.0.1:PORT/) judges each route against its SLO. The simulator fails about
1% of requests with a 500 and makes about 1% slower than 0.5 s, on purpose: against the defaults
(99.9% available, 99% under 0.5 s) every route would burn its budget 10 times too fast and show red.
The demo therefore gives logtaild SLOs that fit this traffic (SLO_YAML below), so steady routes are
green and only the simulated incidents change a colour: /blog turns red while half its requests
fail, /library yellow while its latency is ten times higher.
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

#: schedule seconds: start and length of each simulated incident
ERRORS_AT, ERRORS_FOR = 20, 15
LATENCY_AT, LATENCY_FOR = 50, 20
#: objectives that the simulator's steady traffic meets (see the module docstring)
SLO_YAML = """\
# logtaild config written by tools/demo.py
files:
  - path: {log}
# The simulator fails ~1% of requests (500) and makes ~1% slower than 0.5 s by design. These
# objectives allow 10% of each, so steady traffic is green and only the incidents change a colour.
slo:
  - route: .*
    availability: 0.9         # at most 10% of the requests fail with a 5xx
    latency_threshold: 0.5    # seconds (the default)
    latency_objective: 0.9    # at least 90% are faster than that
"""


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
    config = folder / "logtaild.yaml"
    config.write_text(SLO_YAML.format(log=log))
    sim = subprocess.Popen([sys.executable, str(ROOT / "tools" / "webserver_sim.py"), "--output-file",
                            str(log), "--rate", str(args.rate), "--latency", "--log-rotation-interval",
                            "30", "--incident", f"errors@/blog:{ERRORS_AT}:{ERRORS_FOR}",
                            "--incident", f"latency@/library:{LATENCY_AT}:{LATENCY_FOR}"])
    tail = subprocess.Popen([sys.executable, "-m", "logtaild", "--config", str(config), "--interval", "2",
                             "--listen", f"127.0.0.1:{args.port}", "--log-level", "warning"],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    done = threading.Event()
    threading.Thread(target=_pump, args=(tail, done), daemon=True).start()
    url = f"http://127.0.0.1:{args.port}"
    print(f"# simulated log: {log}; config: {config}; metrics: {url}/metrics; Ctrl-C stops\n"
          f"# status page: {url}/ (SLOs fitted to the simulator: steady routes are green)\n"
          f"# incidents: /blog fails half its requests from {ERRORS_AT} s to {ERRORS_AT + ERRORS_FOR} s (red),"
          f" /library is 10x slower from {LATENCY_AT} s to {LATENCY_AT + LATENCY_FOR} s (yellow)",
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

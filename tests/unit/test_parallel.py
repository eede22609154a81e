"""Catch-up on two cores: half a large backlog counted in a forked worker gives the same counts."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

import logtaild.run.service as service
from logtaild.config import Config, FileConfig, NativeHistogramsConfig, RoutesConfig
from logtaild.count import slots
from logtaild.count.routes import OVERFLOW_ROUTE
from logtaild.run.parallel import RangeJob
from logtaild.tail.filestream import FileStream


def write_log(path: Path, lines: int) -> None:
    rows = []
    for i in range(lines):
        route = f"/api/items/{i % 7}" if i % 3 else f"/r{i % 40}"
        rows.append(f"10.0.0.{i % 250}\tGET {route}?q={i}\t{(200, 404, 500)[i % 3]}\t{i % 900}\t{i % 3000 / 7:.3f}\n")
        if i % 997 == 0:
            rows.append("malformed line\n")
    path.write_text("".join(rows))


def by_method_status(counts: dict) -> dict:
    out: dict = {}
    for (_route, method, status, _labels), values in counts.items():
        numbers = values[:-1]  # the native buckets apart: the counts add up per route
        acc = out.setdefault((method, status), [0] * len(numbers))
        out[method, status] = [a + b for a, b in zip(acc, numbers)]
    return out


def _native(slot: slots.Slot) -> tuple:
    """The slot's native buckets (turned on below): (schema, zero count, buckets), () without."""
    hist = slots.native_histogram(slot)
    return () if hist is None else (hist.schema, hist.zero, tuple(hist.buckets()))


def run_once(path: Path, min_bytes: int, monkeypatch, max_routes: int = 1000, cores: int = 2):
    """One `--once` pass; asserts that a range job ran exactly when it should have."""
    monkeypatch.setattr(service, "PARALLEL_MIN_BYTES", min_bytes)
    monkeypatch.setattr(service, "usable_cores", lambda: cores)
    jobs = []
    monkeypatch.setattr(service, "RangeJob", lambda *args: jobs.append(args) or RangeJob(*args))
    config = Config(files=(FileConfig(str(path)),), from_start=True, routes=RoutesConfig(max=max_routes),
                    native_histograms=NativeHistogramsConfig())
    svc = service.Service(config, once=True, out=io.StringIO())
    assert svc.run() == 0
    assert len(jobs) == (1 if cores > 1 and os.path.getsize(path) >= min_bytes else 0)
    [source] = svc.sources.values()
    # exact counts; latency sums apart, as float addition order differs between one pass and two
    counts = {key: [slots.count(slot), slots.byte_count(slot), *slots.bucket_counts(slot, len(svc.bounds_s) + 1),
                    _native(slot)]
              for key, slot in source.agg.slots.items()}
    sums = {key: slots.latency_sum_ms(slot) for key, slot in source.agg.slots.items()}
    return counts, sums, source.agg.lines, dict(source.agg.malformed), source.stream.stats.bytes_read


@pytest.mark.parametrize("max_routes", [1000, 10])
def test_split_catch_up_counts_exactly_what_one_process_counts(tmp_path: Path, monkeypatch,
                                                              max_routes: int) -> None:
    log = tmp_path / "access.log"
    write_log(log, 20_000)
    serial = run_once(log, 1 << 60, monkeypatch, max_routes)
    split = run_once(log, 1 << 16, monkeypatch, max_routes)
    if max_routes >= 1000:
        assert split[0] == serial[0]  # counts, bytes and every histogram bucket (native too), per series
        assert all(values[-1] for key, values in split[0].items() if values[2:-1] != [0] * (len(values) - 3))
    else:
        # past the cap, which routes won a slot depends on the order they were seen in: the sum
        # over routes (the __other__ series included) is what must not change
        assert by_method_status(split[0]) == by_method_status(serial[0])
    assert split[2:] == serial[2:] == (20_000 + 21, {**split[3]}, os.path.getsize(log))
    assert split[3]["fields"] == 21
    assert sum(split[1].values()) == pytest.approx(sum(serial[1].values()), rel=1e-12)  # float order
    routes = {key[0] for key in split[0]}
    assert len(routes - {OVERFLOW_ROUTE}) <= max_routes


def test_one_usable_cpu_counts_a_large_backlog_in_one_process(tmp_path: Path, monkeypatch) -> None:
    """Under `taskset -c 0` (or CPUAffinity=) a worker would only take turns with the parent."""
    log = tmp_path / "access.log"
    write_log(log, 2_000)
    serial = run_once(log, 1 << 10, monkeypatch, cores=1)  # asserts that no job ran
    assert serial[2] == 2_000 + 3


def test_checkpoint_stays_at_the_range_start_until_released(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"x" * 10 + b"\n" + b"line\n" * 1000)
    stream = FileStream(str(log), from_start=True)
    fd, start, end = stream.split_backlog(1000)
    os.close(fd)
    assert start == 0 and end > 2000 and (end - 11) % 5 == 0
    lines = [line for batch in stream.poll() for line in batch]
    assert len(lines) == (os.path.getsize(log) - end) // 5
    assert stream.positions()[-1].offset == 0
    stream.release()
    assert stream.positions()[-1].offset == os.path.getsize(log)

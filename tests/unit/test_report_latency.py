"""`--report latency` (config `report: latency`): the header line and the p50 p95 p99 mean_ms columns."""
from __future__ import annotations

from pathlib import Path

import pytest

from logtaild.cli import main
from logtaild.count import slots as layout
from logtaild.count.latency import Timing, timing
from logtaild.count.native import NativeSpec, bucket_index, upper_bound
from logtaild.count.window import LATENCY_HEADER, format_report
from tests.support.clock import utc  # noqa: F401 (an autouse fixture: the tests run in UTC)

WALL = 1795342500.0
BOUNDS_S = [0.01, 0.1, 1.0]


SCHEMA_0 = NativeSpec(schema=0)


def _timing(latencies_ms: list[float], spec: NativeSpec | None = SCHEMA_0) -> Timing:
    bounds_ms = [b * 1000 for b in BOUNDS_S]
    slot = layout.new_slot(bounds_ms, detailed=True)
    for ms in latencies_ms:
        layout.observe(slot, bounds_ms, 1, ms, spec)
    return timing([slot], len(BOUNDS_S) + 1)


def test_golden_latency_report() -> None:
    # schema 0: 3 ms is in (2^-9, 2^-8] s = (1.953, 3.906] ms; 300 ms in (250, 500] ms
    assert bucket_index(0.003, 0) == -8 and bucket_index(0.3, 0) == -1
    counts = {("", "/", "200"): 4, ("", "/", "500"): 1, ("", "/nolat", "200"): 2}
    latency = {("", "/", "200"): _timing([3.0, 3.0, 3.0, 300.0]), ("", "/", "500"): _timing([300.0]),
               ("", "/nolat", "200"): _timing([])}
    lower, upper = upper_bound(-9, 0) * 1000, upper_bound(-8, 0) * 1000

    def low(frac: float) -> str:  # inside (1.953, 3.906] ms, exponentially
        return f"{lower * (upper / lower) ** frac:.1f}"

    def high(frac: float) -> str:  # inside (250, 500] ms
        return f"{250 * 2 ** frac:.1f}"

    assert format_report(counts, 10.0, WALL, latency, BOUNDS_S) == (
        "Sun Nov 22 10:15:00 2026\n"
        "=============================\n"
        f"{LATENCY_HEADER}\n"
        f"/\t200\t0.4\t{low(2 / 3)}\t{high(0.8)}\t{high(0.96)}\t77.2\n"      # ranks 2, 3.8, 3.96 of 4
        f"/\t500\t0.1\t{high(0.5)}\t{high(0.95)}\t{high(0.99)}\t300.0\n"
        "/nolat\t200\t0.2\t-\t-\t-\t-\n"
        f"TOTAL\t200\t0.6\t{low(2 / 3)}\t{high(0.8)}\t{high(0.96)}\t77.2\n"
        f"TOTAL\t500\t0.1\t{high(0.5)}\t{high(0.95)}\t{high(0.99)}\t300.0\n"
        f"TOTAL\tall\t0.7\t{low(2.5 / 3)}\t{high(0.875)}\t{high(0.975)}\t121.8\n"  # ranks 2.5, 4.75, 4.95 of 5
    )
    assert LATENCY_HEADER == "route\tstatus\tqps\tp50_ms\tp95_ms\tp99_ms\tmean_ms"


def test_without_native_buckets_the_columns_come_from_the_classic_ones() -> None:
    counts = {("", "/", "200"): 2}
    text = format_report(counts, 1.0, WALL, {("", "/", "200"): _timing([50.0, 50.0], None)}, BOUNDS_S)
    assert text.splitlines()[3] == "/\t200\t2\t55.0\t95.5\t99.1\t50.0"  # linear in (10, 100] ms


def test_the_default_report_is_unchanged() -> None:
    counts = {("", "/", "200"): 4}
    assert format_report(counts, 10.0, WALL) == format_report(counts, 10.0, WALL, None, BOUNDS_S)
    assert LATENCY_HEADER not in format_report(counts, 10.0, WALL)


def test_once_with_report_latency(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "a.log"
    log.write_text("1.1.1.1\tGET /a HTTP/1.1\t200\t5\t12.5\n1.1.1.1\tGET /a HTTP/1.1\t200\t5\t30\n"
                   "1.1.1.1\tGET /b HTTP/1.1\t500\t5\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["--file", str(log), "--once", "--from-start", "--report", "latency"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == LATENCY_HEADER
    rows = [line.split("\t") for line in lines[3:]]
    assert [row[:2] for row in rows] == [["/a", "200"], ["/b", "500"], ["TOTAL", "200"], ["TOTAL", "500"],
                                         ["TOTAL", "all"]]
    # native buckets are off by default: the default classic bounds, 12.5 ms in (10, 25], 30 ms in (25, 50]
    assert rows[0][3:] == ["25.0", "47.5", "49.5", "21.2"]
    assert rows[1][3:] == ["-"] * 4
    assert all(len(row) == 7 for row in rows)
    config = tmp_path / "native.yml"  # with native buckets: the columns come from them
    config.write_text(f"native_histograms: true\nfiles: [{{path: {log}}}]\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(config), "--once", "--from-start", "--report", "latency"])
    assert exit_info.value.code == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[3:]]
    values, _mean = _timing([12.5, 30.0], NativeSpec()).percentiles(BOUNDS_S)  # the default schema, 3
    assert rows[0][3:] == [f"{v * 1000:.1f}" for v in values if v is not None] + ["21.2"]

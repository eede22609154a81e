"""The atheris target: the compiled core (built with AddressSanitizer, UBSan and libFuzzer's coverage by
run.py) against the Python path on the same input.

An input is a header byte (the format: tsv, combined, combined with a latency unit, an nginx
log_format with upstream times; the route cap) and lines; lines that start with `{` are JSON instead
(the header's low bit: the default keys, or remapped keys with a latency unit). The lines are fed
in a few batches to two aggregators, one per core, whose slots, malformed reasons and routes must be
identical (latency sums to the last bits). A third aggregator, compiled, is fed the same batches as the
tailer's Chunks (one buffer, lines and newlines: the core's scan_chunk), from a random offset of a
buffer that starts with other bytes, and must count the same. Run it through `python -m fuzz`, which sets LD_PRELOAD.
"""
from __future__ import annotations

import importlib.util
import math
import os
import sys

CORE_SO = os.environ.get("LOGTAILD_FUZZ_CORE")  # the sanitized build of logtaild/count/_core.c

import atheris  # noqa: E402  (after the dlopen flags: the sanitized core resolves libFuzzer's hooks)

if CORE_SO:
    spec = importlib.util.spec_from_file_location("logtaild.count._core", CORE_SO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["logtaild.count._core"] = module

with atheris.instrument_imports(include=["logtaild"]):
    from logtaild.count import core, slots
    from logtaild.count.aggregate import Aggregator
    from logtaild.count.formats import Parser, make_json_parser, parse_tsv
    from logtaild.count.logformat import compile_format
    from logtaild.count.parsers import make_combined_parser
    from logtaild.count.routes import RouteLimiter
    from logtaild.tail.filestream import Chunk

BOUNDS_MS = [1.0, 5.0, 25.0, 100.0, 1000.0]
SETUPS = [("tsv", None), ("combined", None), ("combined", "seconds"), ("nginx", None)]
JSON_SETUPS = [("json", None), ("json", "seconds")]
NGINX = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" '
         '"$http_user_agent" $request_time $upstream_response_time')


#: one parser per setup: without label fields a parser keeps no state between lines (a JSON parser's
#: `service` values are capped per parser: each aggregator gets its own, see _aggregator)
PARSERS = {setup: parse_tsv if setup[0] == "tsv" else compile_format("nginx", NGINX) if setup[0] == "nginx"
           else make_combined_parser(setup[1]) for setup in SETUPS}


def _json_parser(unit: str | None) -> Parser:
    if unit is None:
        return make_json_parser()
    return make_json_parser({"route": "request", "status": "code", "bytes": "code", "latency": "t"}, unit)


def _aggregator(fmt: str, unit: str | None, max_routes: int, rules: bool, compiled: bool | None) -> Aggregator:
    limiter = RouteLimiter(max_routes, [(r"^/r/[^/]+$", "/r/:x")] if rules else [], max_series=50)
    parser = _json_parser(unit) if fmt == "json" else PARSERS[fmt, unit]
    return Aggregator(limiter, BOUNDS_MS, parser, compiled=compiled)


def _same(fast: Aggregator, ref: Aggregator) -> None:
    if fast.slots.keys() != ref.slots.keys():
        raise AssertionError(f"series differ: {set(fast.slots) ^ set(ref.slots)}")
    for key, slot in fast.slots.items():
        want = ref.slots[key]
        width = len(BOUNDS_MS) + 1
        if (slots.count(slot), slots.byte_count(slot), slots.bucket_counts(slot, width)) != (
                slots.count(want), slots.byte_count(want), slots.bucket_counts(want, width)):
            raise AssertionError(f"{key}: {slot} != {want}")
        if not math.isclose(slots.latency_sum_ms(slot), slots.latency_sum_ms(want), rel_tol=1e-12, abs_tol=1e-9):
            raise AssertionError(f"{key}: latency sum {slot} != {want}")
    if fast.malformed != ref.malformed or fast.last_malformed != ref.last_malformed:
        raise AssertionError(f"malformed: {fast.malformed} != {ref.malformed}")
    for key, slot in fast.slots.items():
        want = ref.slots[key]
        if slots.upstream_bucket_counts(slot, BOUNDS_MS) != slots.upstream_bucket_counts(want, BOUNDS_MS) or not \
                math.isclose(slots.upstream_sum_ms(slot, BOUNDS_MS), slots.upstream_sum_ms(want, BOUNDS_MS),
                             rel_tol=1e-12, abs_tol=1e-9):
            raise AssertionError(f"{key}: upstream {slot} != {want}")
    if fast.limiter.distinct != ref.limiter.distinct:
        raise AssertionError("admitted routes differ")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    head = data[0]
    fmt, unit = JSON_SETUPS[head & 1] if data[1:2] == b"{" else SETUPS[head & 3]
    max_routes = (1, 3, 1000, 1000)[(head >> 2) & 3]
    rules = bool(head & 16)
    batch = 1 + (head >> 5)  # 1..8 lines a batch
    lines = data[1:].split(b"\n")
    fast = _aggregator(fmt, unit, max_routes, rules, None)
    ref = _aggregator(fmt, unit, max_routes, rules, False)
    chunked = _aggregator(fmt, unit, max_routes, rules, None)
    assert fast.core_name == "compiled"
    for start in range(0, len(lines), batch):
        fast.feed(lines[start:start + batch])
        ref.feed(lines[start:start + batch])
        lead = data[:head % 7]  # bytes before the span, as a buffer's earlier lines or a skipped line's rest
        body = b"".join(line + b"\n" for line in lines[start:start + batch])
        chunked.feed(Chunk(lead + body + data[:head % 5], len(lead), len(lead) + len(body)))
    _same(fast, ref)
    _same(chunked, ref)
    if chunked.lines != ref.lines:
        raise AssertionError(f"lines: {chunked.lines} != {ref.lines}")


def main() -> None:
    if not core.available():
        raise SystemExit(f"the compiled core is not loaded: {core.DESCRIPTION}")
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

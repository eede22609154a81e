"""Metric families from a `Snapshot`: which metrics logtaild exports, their names, help and values.

`build` turns the plain slots and counters into exposition.py's `Family` model, whose samples are
keyed by their rendered label string, so series from several files with the same labels add up, and
files with different constant labels share a family. Metric names are a contract (dashboards and
alerts depend on them; see DESIGN.md): renaming one here is a breaking change.
"""
from __future__ import annotations

import dataclasses
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate, islice

from logtaild.count import slots as layout
from logtaild.count.labelcap import OVERFLOW_VALUE
from logtaild.count.routes import OVERFLOW_METHOD, OVERFLOW_ROUTE
from logtaild.count.slots import Slot
from logtaild.export.exposition import HISTOGRAM, Family, Group, HistogramValue, LabelText, Number, Scrape
from logtaild.export.promclient import float_to_go
from logtaild.export.snapshot import DEFAULT_OBJECTIVE, FileSnapshot, Snapshot


class _Families:
    """Metric families by name, created on first use, with samples merged by label string (so series
    from several files with the same labels add up)."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}

    def family(self, name: str, kind: str, doc: str) -> Family:
        family = self.families.get(name)
        if family is None:
            family = self.families[name] = Family(name, kind, doc)
        return family

    def add(self, name: str, kind: str, doc: str, labels: LabelText, value: Number) -> None:
        values = self.family(name, kind, doc).values
        values[labels] = values.get(labels, 0) + value


def build(snap: Snapshot, scrape: Scrape, detail: bool = False) -> list[Family]:
    """Every family of a snapshot, in the order prometheus-client would show them.

    `detail`: the histograms also carry their native buckets and exemplars (for OpenMetrics and the
    protobuf format; the text format shows neither, so its scrapes do not pay for adding them up).
    """
    out = _Families()
    for file in snap.files:
        _requests(out, file, scrape, detail)
        _file_metrics(out, file, scrape)
    _process_metrics(out, snap, scrape)
    _remote_write_metrics(out, snap, scrape)
    scrape.finish()
    return list(out.families.values())


def _merge(values: dict[LabelText, Number], keys: list[LabelText], numbers: Sequence[Number]) -> None:
    """`values[key] += number` for each pair: one dict update when no key repeats (one file, the usual
    case), else key by key (files with the same labels, or two label sets that render the same)."""
    fresh = dict(zip(keys, numbers))
    if len(fresh) == len(keys) and values.keys().isdisjoint(fresh):
        values.update(fresh)
        return
    for key, n in zip(keys, numbers):
        values[key] = values.get(key, 0) + n


def _requests(out: _Families, file: FileSnapshot, scrape: Scrape, detail: bool) -> None:
    if not file.slots:
        return
    slots = [slot for _key, slot in file.slots]
    entries = list(scrape.slot_entries(file.labels, [key for key, _slot in file.slots]))
    labels = [labels for labels, _group in entries]
    _merge(out.family("logtaild_http_requests", "counter", "HTTP requests seen in the access log.").values,
           labels, layout.counts(slots))
    _merge(out.family("logtaild_http_response_bytes", "counter", "Response bytes seen in the access log.").values,
           labels, layout.byte_counts(slots))
    # the histogram is per (route, method, extra): the slots of its statuses added up
    buckets = len(file.bounds_s) + 1  # the request part's width: slots may have an upstream part after it
    timed = _by_group(entries, slots, layout.timed(slots, buckets))
    if timed:
        _histograms(out, file, timed.values(), detail)
    upstream = _by_group(entries, slots, layout.upstream_timed(slots, file.bounds_s))
    if upstream:
        _upstream_histograms(out, file, upstream.values(), detail)
    _objectives(out, file, scrape)


def _by_group(entries: Sequence[tuple[LabelText, Group]], slots: Sequence[Slot],
              keep: Sequence[bool]) -> dict[LabelText, tuple[Group, list[Slot]]]:
    """The slots to keep (those with an observation), by histogram series."""
    out: dict[LabelText, tuple[Group, list[Slot]]] = {}
    for (_labels, group), slot, kept in zip(entries, slots, keep):
        if kept:  # a slot without any observation has no histogram
            have = out.get(group.key)
            if have is None:
                out[group.key] = (group, [slot])
            else:
                have[1].append(slot)
    return out


def _histograms(out: _Families, file: FileSnapshot, timed: Iterable[tuple[Group, list[Slot]]],
                detail: bool = False) -> None:
    family = out.family(HISTOGRAM, "histogram", "Request latency from the access log.")
    slow = out.family("logtaild_http_requests_slow", "counter",
                      "Requests slower than their route's SLO latency threshold.").values
    bounds = file.bounds_s
    les = (*map(float_to_go, bounds), "+Inf")
    fast_at: dict[float, int] = {}  # latency threshold -> buckets at or below it
    for group, slots in timed:
        latency_ms, buckets = layout.latency_totals(slots, len(les))
        width = min(len(les), len(buckets))  # a slot as wide as the bounds (always, but never misreport)
        counts = list(accumulate(islice(buckets, width)))
        value = HistogramValue(group, les if width == len(les) else les[:width], counts, latency_ms / 1000.0)
        if detail:
            value.native = layout.native_totals(slots)
            value.exemplars = layout.latest_exemplars(slots) if width == len(les) else None
        family.add_histogram(value)
        # slow: above the route's threshold, which is always one of the bounds (config.bucket_bounds)
        threshold = file.objectives.get(group.route, DEFAULT_OBJECTIVE).latency_threshold_s
        fast = fast_at.get(threshold)
        if fast is None:
            fast = fast_at[threshold] = bisect_right(bounds, threshold)
        fast = min(fast, width)
        slow[group.key] = slow.get(group.key, 0) + (counts[-1] - (counts[fast - 1] if fast else 0))


UPSTREAM_HISTOGRAM = "logtaild_http_upstream_duration_seconds"
_HEAD = f"{HISTOGRAM}_bucket{{".encode()
_UPSTREAM_HEAD = f"{UPSTREAM_HISTOGRAM}_bucket{{".encode()


def _upstream_histograms(out: _Families, file: FileSnapshot, timed: Iterable[tuple[Group, list[Slot]]],
                         detail: bool = False) -> None:
    """Upstream times (the sum of a request's upstream tries), with the request histogram's buckets."""
    family = out.family(UPSTREAM_HISTOGRAM, "histogram",
                        "Upstream response time from the access log (the sum of the upstreams tried).")
    les = (*map(float_to_go, file.bounds_s), "+Inf")
    for group, slots in timed:
        upstream_ms, buckets = layout.upstream_totals(slots, file.bounds_s)
        # the series' label string is the request histogram's; only the sample name differs
        named = dataclasses.replace(group, bucket_head=_UPSTREAM_HEAD + group.bucket_head[len(_HEAD):])
        value = HistogramValue(named, les, list(accumulate(buckets)), upstream_ms / 1000.0)
        if detail:
            value.native = layout.native_totals(slots, upstream=True)
        family.add_histogram(value)


def _label_overflow(out: _Families, file: FileSnapshot, scrape: Scrape) -> None:
    """Requests whose value of a `label_fields` label was counted as __other__ (past the label's cap)."""
    over = dict.fromkeys(file.label_fields, 0)
    for (_route, _method, _status, extra), slot in file.slots:
        for name, value in extra:
            if value == OVERFLOW_VALUE and name in over:
                over[name] += layout.count(slot)
    for name, requests in over.items():
        out.add("logtaild_label_overflow", "counter",
                "Requests counted under __other__ because a label's cap of values was hit.",
                scrape.labels({"file": file.path, "label": name}), requests)


def _objectives(out: _Families, file: FileSnapshot, scrape: Scrape) -> None:
    routes = list(dict.fromkeys([key[0] for key, _slot in file.slots]))
    objectives = [file.objectives.get(route, DEFAULT_OBJECTIVE) for route in routes]
    # the SLO's owning team; an SLO without one keeps the file's constant `team` label, if any
    team = file.labels.get("team", "")
    labels = scrape.route_labels(file.labels, [(route, objective.team or team)
                                               for route, objective in zip(routes, objectives)])
    for name, doc, field_name in (
        ("logtaild_slo_latency_threshold_seconds", "Latency above which a request is slow.", "latency_threshold_s"),
        ("logtaild_slo_latency_objective", "Fraction of requests that must be faster than the threshold.",
         "latency_objective"),
        ("logtaild_slo_availability_objective", "Fraction of requests that must not fail with 5xx.",
         "availability_objective"),
    ):
        _merge(out.family(name, "gauge", doc).values, labels,
               [getattr(objective, field_name) for objective in objectives])


def _file_metrics(out: _Families, file: FileSnapshot, scrape: Scrape) -> None:
    lab = {"file": file.path}
    labels = scrape.labels(lab)
    stats = file.stats
    counters: list[tuple[str, str, Number]] = [
        ("logtaild_lines_read", "Lines read from the file.", file.lines),
        ("logtaild_lines_cut", "Over-long lines dropped.", stats.lines_cut),
        ("logtaild_bytes_read", "Bytes read from the file.", stats.bytes_read),
        ("logtaild_file_reopens", "Times the path was opened again.", stats.reopens),
        ("logtaild_drain_timeouts", "Old files closed while still growing.", stats.drain_timeouts),
        ("logtaild_read_errors", "Failed opens, reads and stats (retried).", stats.read_errors),
        ("logtaild_route_overflow", "Requests counted under __other__ because the route cap was hit.",
         sum(layout.counts([slot for key, slot in file.slots
                            if key[0] == OVERFLOW_ROUTE and key[1] != OVERFLOW_METHOD]))),
        # the series cap's overflow series are the only ones with this method (see routes.overflow_key)
        ("logtaild_series_overflow", "Requests counted under the overflow series because the series cap was hit.",
         sum(layout.counts([slot for key, slot in file.slots if key[1] == OVERFLOW_METHOD]))),
    ]
    for name, doc, value in counters:
        out.add(name, "counter", doc, labels, value)
    _label_overflow(out, file, scrape)
    for reason, value in file.malformed.items():
        out.add("logtaild_lines_malformed", "counter", "Lines no parser accepted, by reason.",
                scrape.labels({**lab, "reason": reason}), value)
    for kind, value in stats.rotations.items():
        out.add("logtaild_rotations", "counter", "Rotations and truncations, by kind.",
                scrape.labels({**lab, "kind": kind}), value)
    gauges: list[tuple[str, str, Number]] = [
        ("logtaild_file_size_bytes", "Size of the file being followed.", stats.size),
        ("logtaild_file_offset_bytes", "Read offset in the file.", stats.offset),
        ("logtaild_file_lag_bytes", "Bytes written but not read yet.", stats.lag),
        ("logtaild_last_read_timestamp_seconds", "When data was last read.", stats.last_read),
        ("logtaild_routes", "Distinct route values.", file.routes),
        ("logtaild_series", "Request series (route, method, status, labels) of the file.", len(file.slots)),
    ]
    for name, doc, value in gauges:
        out.add(name, "gauge", doc, labels, value)


def _process_metrics(out: _Families, snap: Snapshot, scrape: Scrape) -> None:
    out.add("logtaild_build_info", "gauge", "logtaild version.", scrape.labels({"version": snap.version}), 1)
    for name, kind, doc, value in (
        ("logtaild_checkpoint_writes", "counter", "State file writes.", snap.checkpoint_writes),
        ("logtaild_checkpoint_failures", "counter", "Failed state file writes.", snap.checkpoint_failures),
        ("logtaild_checkpoint_last_write_timestamp_seconds", "gauge", "Last successful state write.",
         snap.checkpoint_last_write),
        ("logtaild_checkpoint_fallbacks", "counter",
         "Checkpoints taken from the state file's previous generation (the current one was damaged).",
         snap.checkpoint_fallbacks),
        ("logtaild_loop_last_tick_timestamp_seconds", "gauge", "When the main loop last ran.",
         snap.last_tick),
    ):
        out.add(name, kind, doc, scrape.labels({}), value)
    for result, value in snap.reloads.items():
        out.add("logtaild_config_reloads", "counter", "Configuration reloads, by result.",
                scrape.labels({"result": result}), value)


def _remote_write_metrics(out: _Families, snap: Snapshot, scrape: Scrape) -> None:
    """Per remote-write receiver (run/push.py): samples by result, retries, queue, last success."""
    for receiver in snap.remote_write:
        lab = {"url": receiver.url}
        for result, value in (("sent", receiver.sent), ("failed", receiver.failed), ("dropped", receiver.dropped)):
            out.add("logtaild_remote_write_samples", "counter",
                    "Samples pushed to a remote-write receiver, by result (sent, failed: rejected with a 4xx, "
                    "dropped: never sent).", scrape.labels({**lab, "result": result}), value)
        labels = scrape.labels(lab)
        for name, kind, doc, number in (
            ("logtaild_remote_write_retries", "counter", "Remote-write requests sent again after a failure.",
             receiver.retries),
            ("logtaild_remote_write_sent_bytes", "counter", "Compressed remote-write request bytes accepted.",
             receiver.bytes_sent),
            ("logtaild_remote_write_pending_samples", "gauge", "Samples queued for a remote-write receiver.",
             receiver.pending),
            ("logtaild_remote_write_last_success_timestamp_seconds", "gauge",
             "When a remote-write receiver last accepted a push.", receiver.last_success),
        ):
            out.add(name, kind, doc, labels, number)

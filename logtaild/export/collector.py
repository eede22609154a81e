"""The prometheus-client side of a scrape: our collector, the registry, and the textfile.

The loop thread never calls prometheus-client; at scrape time the collector asks the service for a
`Snapshot` (taken under the service's lock) and builds the metric families (families.py). A scrape in
the text format or OpenMetrics is written straight from that model with label strings cached per
series (`LogtaildRegistry.exposition`, about 10x faster than going through prometheus-client with
10,000 series); `collect()` turns the same model into prometheus-client `Metric`s for everything else,
and the tests hold both to the same bytes.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from itertools import chain
from typing import TYPE_CHECKING, cast

from logtaild.export.exposition import Family, LabelCache, LabelText, render, to_float
from logtaild.export.families import build
from logtaild.export.promclient import (
    CollectorRegistry,
    Encoder,
    Exemplar,
    Metric,
    ProcessCollector,
    fast_format,
    write_to_textfile,
)
from logtaild.export.snapshot import Labels, Snapshot

if TYPE_CHECKING:  # the module itself on the first protobuf scrape: see negotiation.py
    from logtaild.export.protobuf import LabelBytes


class LogtaildCollector:
    """Turns a `Snapshot` into metric families: prometheus-client `Metric`s (`collect`), or the text
    format / OpenMetrics directly (`exposition`, the fast path of a scrape; see exposition.py)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot
        self._labels = LabelCache()
        # the protobuf scrapes' own label caches (recording: they need each new series' label set)
        self._pb_labels = LabelCache(record=True)
        self._pb_bytes: LabelBytes | None = None  # made by the first protobuf scrape
        self._pb_lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        cache = LabelCache(record=True)
        families = build(self._snapshot(), cache.scrape(), detail=True)
        assert cache.labels_of is not None  # a recording cache always has it
        yield from (_metric(family, cache.labels_of) for family in families)

    def exposition(self, openmetrics: bool = False, any_names: bool = True,
                   names: frozenset[str] | None = None) -> Iterator[bytes] | None:
        """What prometheus-client's text format (or OpenMetrics, without `# EOF`) makes of `collect()`
        (of the samples in `names`, when given, as its `restricted_registry` would), byte for byte
        once joined (tests/unit/test_exporter_text.py); None if `any_names` is False and a label name
        is outside the legacy set (the escaping scheme would rewrite it)."""
        families = build(self._snapshot(), self._labels.scrape(), detail=openmetrics)
        if not any_names and self._labels.odd_names:
            return None
        return render(families, openmetrics, names)

    def protobuf(self) -> list[bytes]:
        """The families in the protobuf format (delimited MetricFamily messages), native buckets included.

        Label strings and serialized labels are cached between protobuf scrapes (one at a time, under
        a lock of their own), as the text format's are.
        """
        from logtaild.export.protobuf import LabelBytes  # here: see negotiation.py

        snap = self._snapshot()
        with self._pb_lock:
            if self._pb_bytes is None:
                self._pb_bytes = LabelBytes()
            try:
                return self._encode(snap, self._pb_bytes)
            except KeyError:  # a label string neither cache holds (never expected): start both afresh
                self._pb_labels, self._pb_bytes = LabelCache(record=True), LabelBytes()
                return self._encode(snap, self._pb_bytes)

    def _encode(self, snap: Snapshot, label_bytes: LabelBytes) -> list[bytes]:
        from logtaild.export.protobuf import encode

        labels_of = self._pb_labels.labels_of
        assert labels_of is not None  # a recording cache always has it
        try:
            return encode(build(snap, self._pb_labels.scrape(), detail=True), labels_of, label_bytes)
        finally:
            labels_of.clear()  # the label sets noted are serialized now; the next scrape notes only new ones


def _metric(family: Family, labels_of: dict[LabelText, Labels]) -> Metric:
    """One family as a prometheus-client `Metric` (the slow path: name[] filters, other encoders)."""
    metric = Metric(family.name, family.doc, family.kind)
    if family.kind != "histogram":
        sample = family.name + "_total" if family.kind == "counter" else family.name
        for text, value in family.values.items():
            metric.add_sample(sample, labels_of[text], to_float(value))
        return metric
    for hist in family.histograms.values():
        labels = labels_of[hist.group.key]
        exemplars = hist.exemplars or [None] * len(hist.les)
        for le, n, ex in zip(hist.les, hist.counts, exemplars):
            metric.add_sample(family.name + "_bucket", {**labels, "le": le}, to_float(n),
                              exemplar=None if ex is None else Exemplar({"trace_id": ex[0]}, ex[1], ex[2]))
        metric.add_sample(family.name + "_count", labels, to_float(hist.counts[-1]))
        metric.add_sample(family.name + "_sum", labels, to_float(hist.sum_s))
    return metric


class LogtaildRegistry(CollectorRegistry):
    """Our collector and prometheus-client's process collector, plus the fast path (`exposition`)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        # our collector has no describe() (its families depend on the files): without the flag,
        # prometheus-client's `name[]` filter would leave it, and every logtaild_* sample, out
        super().__init__(auto_describe=False, support_collectors_without_names=True)
        self.collector = LogtaildCollector(snapshot)
        self.register(self.collector)
        # process_* alone, for the fast path (the flag: see above)
        self._process = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
        process = ProcessCollector(registry=self._process)
        self.register(process)

    def exposition(self, encoder: Encoder, names: frozenset[str] | None = None) -> Iterator[bytes] | None:
        """`encoder(self)` (one of prometheus-client's, as `choose_encoder` picked it), or with `names`
        `encoder(self.restricted_registry(names))` (`/metrics?name[]=...`), as chunks to join, with our
        families rendered by exposition.py; None when that renderer cannot write what `encoder` would.

        The filter goes through the same renderer: prometheus-client's would build a `Metric` per
        series of every family first (at the series cap, +40 MB RSS for one filtered scrape)."""
        how = fast_format(encoder)
        if how is None:
            return None
        openmetrics, any_names = how
        pieces = self.collector.exposition(openmetrics, any_names, names)
        if pieces is None:
            return None
        return chain(pieces, self._process_part(encoder, names))

    def _process_part(self, encoder: Encoder, names: frozenset[str] | None) -> Iterator[bytes]:
        """process_* (and OpenMetrics' `# EOF`), rendered once the chunks before them are consumed."""
        if names is None:
            yield encoder(self._process)
        else:  # a RestrictedRegistry collects as a registry does, which is all an encoder uses
            yield encoder(cast(CollectorRegistry, self._process.restricted_registry(names)))

    def protobuf(self) -> list[bytes]:
        """The whole registry in the protobuf format (delimited MetricFamily messages), process_* last."""
        from logtaild.export.protobuf import encode, process_families  # here: see negotiation.py

        labels_of: dict[LabelText, Labels] = {}
        process = process_families(
            [(m.name, m.type, m.documentation, [(s.name, s.labels, s.value) for s in m.samples])
             for m in self._process.collect()], labels_of)
        return self.collector.protobuf() + encode(process, labels_of)


def build_registry(snapshot: Callable[[], Snapshot]) -> LogtaildRegistry:
    """A fresh registry with our collector and the process collector."""
    return LogtaildRegistry(snapshot)


def write_textfile(path: str, snapshot: Callable[[], Snapshot]) -> None:
    """The same families as /metrics (no process_*), for node_exporter's textfile collector.

    prometheus-client writes a temp file next to `path` and renames it, so a scrape never sees half.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LogtaildCollector(snapshot))
    write_to_textfile(path, registry)

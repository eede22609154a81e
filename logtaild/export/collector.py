"""The prometheus-client side of a scrape: our collector, the registry, and the textfile.

The loop thread never calls prometheus-client; at scrape time the collector asks the service for a
`Snapshot` (taken under the service's lock) and builds the metric families (families.py). A scrape in
the text format or OpenMetrics is written straight from that model with label strings cached per
series (`LogtaildRegistry.exposition`, about 10x faster than going through prometheus-client with
10,000 series); `collect()` turns the same model into prometheus-client `Metric`s for everything else,
and the tests hold both to the same bytes.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import chain

from logtaild.export.exposition import Family, LabelCache, LabelText, render, to_float
from logtaild.export.families import build
from logtaild.export.promclient import (
    CollectorRegistry,
    Encoder,
    Metric,
    ProcessCollector,
    fast_format,
    write_to_textfile,
)
from logtaild.export.snapshot import Labels, Snapshot


class LogtaildCollector:
    """Turns a `Snapshot` into metric families: prometheus-client `Metric`s (`collect`), or the text
    format / OpenMetrics directly (`exposition`, the fast path of a scrape; see exposition.py)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot
        self._labels = LabelCache()

    def collect(self) -> Iterator[Metric]:
        cache = LabelCache(record=True)
        families = build(self._snapshot(), cache.scrape())
        assert cache.labels_of is not None  # a recording cache always has it
        yield from (_metric(family, cache.labels_of) for family in families)

    def exposition(self, openmetrics: bool = False, any_names: bool = True) -> Iterator[bytes] | None:
        """What prometheus-client's text format (or OpenMetrics, without `# EOF`) makes of `collect()`,
        byte for byte once joined (tests/unit/test_exporter_text.py); None if `any_names` is False and
        a label name is outside the legacy set (the escaping scheme would rewrite it)."""
        families = build(self._snapshot(), self._labels.scrape())
        if not any_names and self._labels.odd_names:
            return None
        return render(families, openmetrics)


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
        for le, n in zip(hist.les, hist.counts):
            metric.add_sample(family.name + "_bucket", {**labels, "le": le}, to_float(n))
        metric.add_sample(family.name + "_count", labels, to_float(hist.counts[-1]))
        metric.add_sample(family.name + "_sum", labels, to_float(hist.sum_s))
    return metric


class LogtaildRegistry(CollectorRegistry):
    """Our collector and prometheus-client's process collector, plus the fast path (`exposition`)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        super().__init__(auto_describe=False)
        self.collector = LogtaildCollector(snapshot)
        self.register(self.collector)
        self._process = CollectorRegistry(auto_describe=False)  # process_* alone, for the fast path
        process = ProcessCollector(registry=self._process)
        self.register(process)

    def exposition(self, encoder: Encoder) -> Iterator[bytes] | None:
        """`encoder(self)` (one of prometheus-client's, as `choose_encoder` picked it), as chunks to join,
        with our families rendered by exposition.py; None when that renderer cannot write what
        `encoder` would."""
        how = fast_format(encoder)
        if how is None:
            return None
        openmetrics, any_names = how
        pieces = self.collector.exposition(openmetrics, any_names)
        if pieces is None:
            return None
        return chain(pieces, self._process_part(encoder))

    def _process_part(self, encoder: Encoder) -> Iterator[bytes]:
        """process_* (and OpenMetrics' `# EOF`), rendered once the chunks before them are consumed."""
        yield encoder(self._process)


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

"""The protobuf exposition format: content negotiation for it, and the families encoded as delimited
`io.prometheus.client.MetricFamily` messages (the generated classes of prompb/metrics.proto).

Prometheus asks for this format first when native histograms are on (`--enable-feature=native-histograms`,
or `scrape_native_histograms` in 3.x); it is the only one that carries native buckets. Each histogram
carries its classic buckets too (cumulative, +Inf left implicit as `sample_count`, as client_golang
sends them), so a Prometheus that keeps classic histograms from protobuf scrapes
(`always_scrape_classic_histograms`) or converts them (`convert_classic_histograms_to_nhcb`) gets the
same series as from the text format. Sample names follow the text format: a counter's family is named
`<name>_total`, a histogram's `<name>` (Prometheus adds `_bucket`, `_sum`, `_count` to the classic part).
Exemplars (hex trace ids) go on the classic bucket they fall in, and, with their timestamps, on the
native histogram's own list.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from logtaild.count.slots import Exemplar
from logtaild.export.exposition import Family, HistogramValue, LabelText, label_string, to_float
from logtaild.export.prompb import metrics_pb2 as pb
from logtaild.export.snapshot import Labels

CONTENT_TYPE = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
_MEDIA = "application/vnd.google.protobuf"
_KINDS = {"counter": pb.COUNTER, "gauge": pb.GAUGE, "histogram": pb.HISTOGRAM}


def wants_protobuf(accept: str) -> bool:
    """Whether an Accept header prefers the delimited MetricFamily protobuf format to every text format.

    Only an explicit `application/vnd.google.protobuf` range with `proto=io.prometheus.client.MetricFamily`
    and `encoding=delimited` counts (`*/*` is a browser's or curl's, and gets text); it wins when no
    other range has a higher `q`.
    """
    proto_q, other_q = 0.0, 0.0
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        options = {name.strip().lower(): value.strip().strip('"')
                   for name, _eq, value in (p.partition("=") for p in params)}
        try:
            q = float(options.get("q", "1"))
        except ValueError:
            q = 0.0
        if media.lower() == _MEDIA:
            if (options.get("proto") == "io.prometheus.client.MetricFamily"
                    and options.get("encoding") == "delimited"):
                proto_q = max(proto_q, q)
        elif media:
            other_q = max(other_q, q)
    return proto_q > 0 and proto_q >= other_q


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def delimited(message: bytes) -> bytes:
    """A message with its length in front (a varint), as the delimited encoding streams them."""
    return _varint(len(message)) + message


def _labels(metric: pb.Metric, labels: Labels) -> None:
    for name, value in sorted(labels.items()):
        pair = metric.label.add()
        pair.name, pair.value = name, value


def _exemplar(into: pb.Exemplar, exemplar: Exemplar) -> None:
    trace, value_s, timestamp = exemplar
    pair = into.label.add()
    pair.name, pair.value = "trace_id", trace
    into.value = value_s
    seconds = math.floor(timestamp)
    into.timestamp.seconds = seconds
    into.timestamp.nanos = min(int(round((timestamp - seconds) * 1e9)), 999_999_999)


def _histogram(into: pb.Histogram, value: HistogramValue) -> None:
    counts = value.counts
    into.sample_count = int(counts[-1])
    into.sample_sum = value.sum_s
    exemplars: Sequence[Exemplar | None] = value.exemplars or [None] * len(counts)
    for le, n, exemplar in zip(value.les, counts, exemplars):
        if le == "+Inf":
            continue  # implicit: sample_count
        bucket = into.bucket.add()
        bucket.cumulative_count = int(n)
        bucket.upper_bound = float(le)
        if exemplar is not None:
            _exemplar(bucket.exemplar, exemplar)
    native = value.native
    if native is None:
        return
    into.schema = native.schema
    into.zero_threshold = native.spec.zero_threshold
    into.zero_count = native.zero
    spans, deltas = native.spans()
    if not spans:
        spans = [(0, 0)]  # the no-op span: a native histogram without buckets (yet)
    for offset, length in spans:
        span = into.positive_span.add()
        span.offset, span.length = offset, length
    into.positive_delta.extend(deltas)
    for exemplar in exemplars:
        if exemplar is not None:
            _exemplar(into.exemplars.add(), exemplar)


class LabelBytes:
    """Each series' labels serialized once (`Metric.label` fields), kept between scrapes.

    A scrape's label strings come from a recording `LabelCache` kept between scrapes too: it notes
    (`labels_of`) only the label strings it renders anew, and those are serialized here; the rest were
    serialized by an earlier scrape. Like the label cache, only what the last scrape used is kept.
    """

    def __init__(self) -> None:
        self._bytes: dict[LabelText, bytes] = {}
        self._used: dict[LabelText, bytes] = {}

    def get(self, text: LabelText, labels_of: dict[LabelText, Labels]) -> bytes:
        """The serialized labels of a label string (KeyError: neither known nor rendered this scrape)."""
        found = self._used.get(text)
        if found is None:
            found = self._bytes.get(text)
            if found is None:
                metric = pb.Metric()
                _labels(metric, labels_of[text])
                found = metric.SerializeToString()
            self._used[text] = found
        return found

    def finish(self) -> None:
        """Keep what this scrape used, drop the rest."""
        self._bytes, self._used = self._used, {}

    def clear(self) -> None:
        self._bytes, self._used = {}, {}


def encode(families: Iterable[Family], labels_of: dict[LabelText, Labels],
           cache: LabelBytes | None = None) -> list[bytes]:
    """The families as delimited MetricFamily messages, one piece each (`labels_of`: the label set of
    every label string rendered, as a recording `LabelCache` notes them; `cache`: labels serialized by
    earlier scrapes). Each metric starts from its serialized labels (merged in, as protobuf parses
    concatenated fields), so a series' labels are not rebuilt field by field at every scrape."""
    labels = cache or LabelBytes()
    out: list[bytes] = []
    for family in families:
        message = pb.MetricFamily(name=family.name + "_total" if family.kind == "counter" else family.name,
                                  help=family.doc, type=_KINDS[family.kind])
        if family.kind == "histogram":
            for hist in family.histograms.values():
                metric = message.metric.add()
                metric.MergeFromString(labels.get(hist.group.key, labels_of))
                _histogram(metric.histogram, hist)
        else:
            counter = family.kind == "counter"
            for text, number in family.values.items():
                metric = message.metric.add()
                metric.MergeFromString(labels.get(text, labels_of))
                if counter:
                    metric.counter.value = to_float(number)
                else:
                    metric.gauge.value = to_float(number)
        out.append(delimited(message.SerializeToString()))
    labels.finish()
    return out


def process_families(metrics: Iterable[tuple[str, str, str, list[tuple[str, Labels, float]]]],
                     labels_of: dict[LabelText, Labels]) -> list[Family]:
    """prometheus-client's process metrics, given as (name, type, help, [(sample name, labels, value)]),
    as counter and gauge families (their labels recorded in `labels_of`)."""
    out = []
    for name, kind, doc, samples in metrics:
        if kind not in ("counter", "gauge"):
            continue  # the process collector has no other kind
        family = Family(name, kind, doc)
        for _sample, labels, value in samples:
            text = label_string(labels).encode()
            labels_of[text] = labels
            family.values[text] = value
        out.append(family)
    return out

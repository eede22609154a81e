"""A snapshot as a Prometheus remote-write 1.0 request: the series /metrics shows, flattened to samples.

The families come from families.py, exactly as a scrape builds them, so what a receiver stores is what
a scraper would have stored: counters as `<name>_total`, histograms as their classic `_bucket` (with
`le`), `_sum` and `_count` series, every sample stamped with the push's time. Each series' labels are
sorted by name with `__name__` among them (the protocol requires it), and the receiver's external labels
are added where the series has no label of that name (as Prometheus does with `external_labels`); a
label with an empty value is left out, as Prometheus' data model has it.

The encoding is the generated protobuf code (prompb/remote_pb2.py) and the compression snappy's block
format (snappy.py). Building the messages is most of the work, so `RemoteWriteEncoder` keeps its request
between pushes and only sets the new values and timestamp (a new series is appended; the request is built
afresh when a series went away, after a reload); the route cap bounds what it keeps.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from logtaild.export.exposition import Family, LabelCache, to_float
from logtaild.export.families import build
from logtaild.export.promclient import ProcessCollector
from logtaild.export.prompb.remote_pb2 import Label, Sample, WriteRequest
from logtaild.export.snappy import compress
from logtaild.export.snapshot import Labels, Snapshot

#: the request headers of remote write 1.0 (besides auth and the user's own)
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}

#: what tells one series from another within a push: (name, the label string or labels, le) - cheap to
#: make from the families, whose label strings are kept between scrapes
SeriesKey = tuple[str, object, str]
#: one sample before the receiver's labels are added: (key, metric name, labels without __name__ and le,
#: le ("" but for a histogram bucket), value)
FlatSample = tuple[SeriesKey, str, Labels, str, float]


def sample(name: str, labels: Labels, value: float) -> FlatSample:
    """A sample given by its name and labels (its key made from them)."""
    return (name, tuple(sorted(labels.items())), ""), name, labels, "", value


def flatten(families: Iterable[Family], labels_of: Mapping[bytes, Labels]) -> Iterator[FlatSample]:
    """Every sample of `families` as the text format would write it (`labels_of`: a recording cache's)."""
    for family in families:
        if family.kind != "histogram":
            name = family.name + "_total" if family.kind == "counter" else family.name
            for text, value in family.values.items():
                yield (name, text, ""), name, labels_of[text], "", to_float(value)
            continue
        bucket, count, total = family.name + "_bucket", family.name + "_count", family.name + "_sum"
        for hist in family.histograms.values():
            text = hist.group.key
            labels = labels_of[text]
            for le, n in zip(hist.les, hist.counts):
                yield (bucket, text, le), bucket, labels, le, to_float(n)
            yield (count, text, ""), count, labels, "", to_float(hist.counts[-1])
            yield (total, text, ""), total, labels, "", to_float(hist.sum_s)


class SnapshotSamples:
    """The logtaild families of snapshots, as samples: the families a scrape builds, label strings kept.

    One recording `LabelCache` is kept between pushes (a scrape's cache), so a push renders only the
    label strings of new series; its map back to labels only grows, so it is started afresh when it
    holds more than twice the series a push used (after a reload dropped routes, say).
    """

    def __init__(self) -> None:
        self._cache = LabelCache(record=True)

    def __call__(self, snap: Snapshot) -> list[FlatSample]:
        families = build(snap, self._cache.scrape())
        labels_of = self._cache.labels_of
        assert labels_of is not None  # a recording cache always has it
        samples = list(flatten(families, labels_of))
        if len(labels_of) > 2 * len(samples) + 64:
            self._cache = LabelCache(record=True)
        return samples


def process_samples() -> Iterator[FlatSample]:
    """prometheus-client's process_* metrics (CPU, memory, descriptors), as /metrics shows them."""
    for metric in ProcessCollector(registry=None).collect():
        for one in metric.samples:
            yield sample(one.name, dict(one.labels), float(one.value))


@dataclass(frozen=True)
class Encoded:
    """One push: the snappy-compressed WriteRequest, and what it holds."""

    body: bytes
    samples: int
    raw_bytes: int     # the WriteRequest before compression
    timestamp_ms: int


class RemoteWriteEncoder:
    """Builds WriteRequests for one receiver (its external labels).

    The request is kept between pushes and its values updated in place: building 60,000 `TimeSeries`
    messages costs about 0.5 s of CPU, updating their samples a fraction of that. The order of the series
    in a request means nothing, so a new series is appended; when a series goes away the request is rebuilt.
    """

    def __init__(self, external_labels: Mapping[str, str] | None = None) -> None:
        self.external_labels = dict(external_labels or {})
        self._request = WriteRequest()
        self._index: dict[SeriesKey, int] = {}  # series -> its place in the request
        self._samples: list[Sample] = []        # the one sample of each series, by place

    def _labels(self, name: str, labels: Labels, le: str) -> list[Label]:
        merged = {**self.external_labels, **labels, "__name__": name}  # the series' own labels win
        if le:
            merged["le"] = le
        # an empty value is no label at all in Prometheus' data model (receivers may refuse one)
        return [Label(name=k, value=v) for k, v in sorted(merged.items()) if v]

    def write_request(self, samples: Iterable[FlatSample], timestamp_ms: int) -> WriteRequest:
        """The samples as one WriteRequest, each series with one sample at `timestamp_ms`.

        The request returned is the encoder's own, valid until the next call.
        """
        flat = samples if isinstance(samples, list) else list(samples)
        if not self._update(flat, timestamp_ms):  # a series went away: start afresh
            self._request, self._index, self._samples = WriteRequest(), {}, []
            self._update(flat, timestamp_ms)
        return self._request

    def _update(self, flat: list[FlatSample], timestamp_ms: int) -> bool:
        """Set every series' sample, adding new series; False if a series of the last push is missing."""
        index, refs, series = self._index, self._samples, self._request.timeseries
        known, old = 0, len(index)
        for key, name, labels, le, value in flat:
            at = index.get(key)
            if at is None:
                at = index[key] = len(refs)
                refs.append(series.add(labels=self._labels(name, labels, le)).samples.add())
            elif at < old:
                known += 1
            ref = refs[at]
            ref.value = value
            ref.timestamp = timestamp_ms
        return known == old  # keys are unique within a push, so fewer known ones means some went away

    def encode(self, samples: Iterable[FlatSample], timestamp_ms: int) -> Encoded:
        """The samples as a compressed request body, ready to POST with `HEADERS`."""
        request = self.write_request(samples, timestamp_ms)
        raw = request.SerializeToString()
        return Encoded(compress(raw), len(request.timeseries), len(raw), timestamp_ms)

"""A snapshot as a Prometheus remote-write 1.0 request: the series /metrics shows, flattened to samples.

The families come from families.py, exactly as a scrape builds them, so what a receiver stores is what
a scraper would have stored: counters as `<name>_total`, histograms as their classic `_bucket` (with
`le`), `_sum` and `_count` series, every sample stamped with the push's time. Each series' labels are
sorted by name with `__name__` among them (the protocol requires it), and the receiver's external labels
are added where the series has no label of that name (as Prometheus does with `external_labels`); a
label with an empty value is left out, as Prometheus' data model has it.

The encoding is the generated protobuf code (prompb/remote_pb2.py) and the compression snappy's block
format (snappy.py). Making the label messages is most of the work, so `RemoteWriteEncoder` keeps each
series' labels, serialized, between pushes; the route cap bounds what it keeps.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from logtaild.export.exposition import Family, LabelCache, to_float
from logtaild.export.families import build
from logtaild.export.promclient import ProcessCollector
from logtaild.export.prompb.remote_pb2 import Label, TimeSeries, WriteRequest
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
    holds more than twice the label strings a push used (after a reload dropped routes, say).
    """

    def __init__(self) -> None:
        self._cache = LabelCache(record=True)

    def __call__(self, snap: Snapshot) -> Iterator[FlatSample]:
        """The samples, made as they are read (a list of 100,000 of them would be 30 MB for a moment)."""
        families = build(snap, self._cache.scrape())
        labels_of = self._cache.labels_of
        assert labels_of is not None  # a recording cache always has it
        if len(labels_of) > 2 * sum(len(f.values) + len(f.histograms) for f in families) + 64:
            self._cache = LabelCache(record=True)  # this push still reads the old map, complete
        return flatten(families, labels_of)


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


#: series per WriteRequest piece: the messages of one piece exist at a time, so memory stays small
PIECE = 4096


class RemoteWriteEncoder:
    """Builds the request bodies for one receiver (its external labels).

    What costs is making the label messages, so each series' labels are kept, serialized (a `TimeSeries`
    with labels only, about 150 bytes), and merged into a fresh message at each push; only the series a
    push used are kept for the next one. The request is built and serialized `PIECE` series at a time and
    the pieces joined: protobuf defines the concatenation of two serialized messages as their merge, and
    merging appends repeated fields, so the joined bytes are the one WriteRequest of all the series. Keeping
    the messages and updating their values would cost less CPU (0.3 s a push instead of 0.75 s at 125,000
    samples, by the bench) but hold about 110 MB more; the label bytes are about 20 MB.
    """

    def __init__(self, external_labels: Mapping[str, str] | None = None) -> None:
        self.external_labels = dict(external_labels or {})
        self._labels: dict[SeriesKey, bytes] = {}

    def _series_labels(self, name: str, labels: Labels, le: str) -> bytes:
        merged = {**self.external_labels, **labels, "__name__": name}  # the series' own labels win
        if le:
            merged["le"] = le
        # an empty value is no label at all in Prometheus' data model (receivers may refuse one)
        return TimeSeries(labels=[Label(name=k, value=v) for k, v in sorted(merged.items()) if v]).SerializeToString()

    def serialize(self, samples: Iterable[FlatSample], timestamp_ms: int) -> tuple[bytes, int]:
        """The samples as one serialized WriteRequest (each series with one sample at `timestamp_ms`), and
        how many series it holds."""
        old = self._labels
        kept: dict[SeriesKey, bytes] = {}
        pieces, count = [], 0
        request = WriteRequest()
        add = request.timeseries.add
        for key, name, labels, le, value in samples:
            encoded = old.get(key)
            if encoded is None:
                encoded = self._series_labels(name, labels, le)
            kept[key] = encoded
            series = add()
            series.MergeFromString(encoded)
            series.samples.add(value=value, timestamp=timestamp_ms)
            count += 1
            if count % PIECE == 0:
                pieces.append(request.SerializeToString())
                request = WriteRequest()
                add = request.timeseries.add
        pieces.append(request.SerializeToString())
        self._labels = kept  # a series that went away (after a reload) is forgotten
        return b"".join(pieces), count

    def encode(self, samples: Iterable[FlatSample], timestamp_ms: int) -> Encoded:
        """The samples as a compressed request body, ready to POST with `HEADERS`."""
        raw, count = self.serialize(samples, timestamp_ms)
        return Encoded(compress(raw), count, len(raw), timestamp_ms)

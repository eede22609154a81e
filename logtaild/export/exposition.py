"""The scrape's sample model, series label strings cached between scrapes, and the text-format renderer.

Why this exists: with 10,000 series a scrape has about 62,000 samples, and prometheus-client's
`generate_latest` alone spends about 4 µs per sample re-sorting and re-escaping every sample's labels
(about 260 ms), before counting the cost of building its `Metric` objects. Here each series' label
string (`{k="v",...}`, sorted, escaped) is rendered once and kept while the series exists; a scrape
only adds the numbers up and formats the values. A scrape uses this renderer for the text format
and OpenMetrics, and converts the same model to prometheus-client `Metric`s for everything else
(`name[]` filtering, escaping schemes that rewrite names, the textfile), so both paths always show the
same samples, and the unit tests compare this output byte for byte with prometheus-client's.

What is copied from prometheus-client 0.26 (`exposition.generate_latest` and
`openmetrics.exposition.generate_latest`), and must stay in step with it: labels sorted by name;
label values escaped for backslash, newline and double quote (its `_escape` with ALLOWUTF8, which it
applies to label values in every scheme); `# HELP` text escaped for backslash and newline (and double
quote in OpenMetrics); in the text format counters' HELP/TYPE are named `<name>_total`, in OpenMetrics
`<name>`. Label names still go through its `escape_label_name`, and numbers through its
`floatToGoString`. Its "underscores" and "allow-utf-8" escaping schemes write legacy names (all of
ours, unless `LabelCache.odd_names`) unchanged.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice, repeat
from operator import add

from logtaild.count.native import NativeHistogram
from logtaild.count.slots import Exemplar, SlotKey
from logtaild.export.promclient import escape_label_name, float_to_go
from logtaild.export.snapshot import Labels

Number = int | float
LabelsKey = tuple[tuple[str, str], ...]  # a file's constant labels, as a cache key

HISTOGRAM = "logtaild_http_request_duration_seconds"
_LEGACY_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def escape_value(value: str) -> str:
    """A label value as prometheus-client escapes it (backslash first, so nothing is escaped twice)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _pairs(labels: Labels) -> list[str]:
    return [f'{escape_label_name(k)}="{escape_value(v)}"' for k, v in sorted(labels.items())]


def label_string(labels: Labels) -> str:
    """`{k="v",...}` as it follows the sample name in the text format; "" without labels."""
    return "{" + ",".join(_pairs(labels)) + "}" if labels else ""


@dataclass(frozen=True, eq=False)
class Group:
    """One histogram series (a file's (route, method, extra labels)): its label strings (UTF-8)."""

    key: bytes          # `{...}` without `le`: the _count, _sum and slow-counter label string
    route: str          # for the route's latency threshold
    bucket_head: bytes  # `<name>_bucket{` and the labels that sort before `le`
    bucket_tail: bytes  # the labels that sort after `le`, and `}`


def _group(labels: Labels, route: str) -> Group:
    before = _pairs({k: v for k, v in labels.items() if k < "le"})
    after = _pairs({k: v for k, v in labels.items() if k > "le"})
    return Group(label_string(labels).encode(), route,
                 (f"{HISTOGRAM}_bucket{{" + "".join(p + "," for p in before)).encode(),
                 ("".join("," + p for p in after) + "}").encode())


#: label strings are kept as UTF-8, so a scrape joins bytes into the one buffer it sends (a 5 MB str
#: joined, then encoded, then copied once more was three fresh buffers, each paid in page faults)
LabelText = bytes
SlotEntry = tuple[LabelText, Group]  # (the slot's label string, its histogram series)


class LabelCache:
    """Label strings kept between scrapes, keyed by what they are made of.

    Only the entries a scrape used are kept for the next one (`Scrape.finish`), so the cache never
    outgrows the live series (bounded by the route cap), and a series that goes away is dropped.
    With `record`, every label string rendered is also mapped back to its labels (`labels_of`), for
    building prometheus-client `Metric`s; a recording cache is meant for one scrape.
    """

    def __init__(self, record: bool = False) -> None:
        self.slots: dict[LabelsKey, dict[SlotKey, SlotEntry]] = {}
        self.routes: dict[LabelsKey, dict[tuple[str, str], LabelText]] = {}  # (route, team) -> SLO labels
        self.labels_of: dict[LabelText, Labels] | None = {} if record else None
        #: a label name outside the legacy set was rendered (never from a valid config): schemes other
        #: than "underscores" would write it differently, so those go to prometheus-client from then on
        self.odd_names = False

    def note(self, labels: Labels, text: LabelText) -> None:
        """Remember what a newly rendered label string is made of."""
        if self.labels_of is not None:
            self.labels_of[text] = labels
        if not self.odd_names and not all(map(_LEGACY_NAME.fullmatch, labels)):
            self.odd_names = True

    def scrape(self) -> Scrape:
        return Scrape(self)


class Scrape:
    """One scrape's use of a `LabelCache` (concurrent scrapes each have their own)."""

    def __init__(self, cache: LabelCache) -> None:
        self._cache = cache
        self._slots: dict[LabelsKey, dict[SlotKey, SlotEntry]] = {}
        self._routes: dict[LabelsKey, dict[tuple[str, str], LabelText]] = {}
        self._groups: dict[tuple[LabelsKey, str, str, LabelsKey], Group] = {}  # shared by new slot entries

    def labels(self, labels: Labels) -> LabelText:
        """The label string of a one-off label set (self-metrics: a few per file, not cached)."""
        text = label_string(labels).encode()
        self._cache.note(labels, text)
        return text

    def slot_entries(self, file_labels: Labels, keys: Iterable[SlotKey]) -> Iterator[SlotEntry]:
        """The label strings of a file's slots, in order: rendered on first sight, then reused."""
        fkey = tuple(file_labels.items())
        old = self._cache.slots.get(fkey, {}).get
        new = self._slots.setdefault(fkey, {})
        for key in keys:
            entry = old(key)
            if entry is None:
                entry = self._slot_entry(file_labels, fkey, key)
            new[key] = entry
            yield entry

    def _slot_entry(self, file_labels: Labels, fkey: LabelsKey, key: SlotKey) -> SlotEntry:
        route, method, status, extra = key
        labels = {**file_labels, **dict(extra), "route": route, "method": method, "status": status}
        gkey = (fkey, route, method, extra)
        group = self._groups.get(gkey)
        if group is None:
            hist = {**file_labels, **dict(extra), "route": route, "method": method}
            group = self._groups[gkey] = _group(hist, route)
            self._cache.note(hist, group.key)
        return self.labels(labels), group

    def route_labels(self, file_labels: Labels, routes: Iterable[tuple[str, str]]) -> list[LabelText]:
        """The label strings of routes' SLO gauges, for (route, team) pairs."""
        fkey = tuple(file_labels.items())
        old = self._cache.routes.get(fkey, {}).get
        new = self._routes.setdefault(fkey, {})
        out = []
        for route, team in routes:
            text = old((route, team))
            if text is None:
                text = self.labels({**file_labels, "route": route, "team": team})
            new[route, team] = text
            out.append(text)
        return out

    def finish(self) -> None:
        """Keep what this scrape used, drop the rest (the last of concurrent scrapes wins; all are valid)."""
        self._cache.slots = self._slots
        self._cache.routes = self._routes


# ---- the model ----------------------------------------------------------------------------------


@dataclass(slots=True)
class HistogramValue:
    """One histogram series' numbers: cumulative counts per `le` (the last is +Inf; never empty, as
    only slots with a latency make a histogram), and the sum. For the scrapes that show them (see
    `families.build`'s `detail`): the native buckets (None without), and the latest exemplar per `le`
    (None without any)."""

    group: Group
    les: tuple[str, ...]
    counts: list[Number]
    sum_s: float
    native: NativeHistogram | None = None
    exemplars: list[Exemplar | None] | None = None


@dataclass
class Family:
    """A metric family: values by label string (counters, gauges) or by `Group.key` (histograms)."""

    name: str
    kind: str  # counter, gauge, histogram
    doc: str
    values: dict[LabelText, Number] = field(default_factory=dict)
    histograms: dict[LabelText, HistogramValue] = field(default_factory=dict)

    def add_histogram(self, value: HistogramValue) -> None:
        """Merge one file's histogram into the family (files with equal labels share the series)."""
        have = self.histograms.get(value.group.key)
        if have is None:
            self.histograms[value.group.key] = value
            return
        if have.les == value.les:
            have.counts = list(map(add, have.counts, value.counts))
            have.sum_s += value.sum_s
            if value.exemplars is not None:
                have.exemplars = value.exemplars if have.exemplars is None else [
                    b if a is None or (b is not None and b[2] > a[2]) else a
                    for a, b in zip(have.exemplars, value.exemplars)]
        else:  # files with different bounds (not from one config): merge bucket by bucket, by `le`
            merged = dict(zip(have.les, have.counts))
            for le, n in zip(value.les, value.counts):
                merged[le] = merged.get(le, 0) + n
            have.les, have.counts = tuple(merged), list(merged.values())
            have.sum_s += value.sum_s
            have.exemplars = None  # the buckets no longer line up; such files are not from one config
        if value.native is not None:
            if have.native is None:
                have.native = value.native
            else:
                have.native.merge(value.native)


def to_float(value: Number) -> float:
    """The sample value prometheus-client gets (`+ 0.0`: a -0.0 shows as 0.0, as it always has)."""
    try:
        return float(value) + 0.0
    except OverflowError:  # a hostile line's 400-digit byte count must not break every scrape
        return float("inf")


# ---- the text format ----------------------------------------------------------------------------


def _format(values: Iterable[Number], memo: dict[Number, bytes]) -> None:
    """Put ` <value>\n` in `memo` for each value not there yet: each distinct value formatted once."""
    for value in set(values).difference(memo):
        memo[value] = b" " + float_to_go(to_float(value)).encode() + b"\n"


#: the parts of a histogram series, by sample-name suffix
HISTOGRAM_PARTS = ("_bucket", "_count", "_sum")


def _parts(family: Family, names: frozenset[str] | None) -> frozenset[str]:
    """Which of a family's samples a `name[]` filter keeps (all without one), as prometheus-client's
    `restricted_registry` keeps samples by name: a histogram's suffixes, or {""} for the one sample
    name of a counter (`_total`) or gauge; empty: the family is left out."""
    if family.kind == "histogram":
        parts = frozenset(HISTOGRAM_PARTS)
        return parts if names is None else frozenset(p for p in parts if family.name + p in names)
    sample = family.name + "_total" if family.kind == "counter" else family.name
    return frozenset({""}) if names is None or sample in names else frozenset()


def render(families: Iterable[Family], openmetrics: bool = False,
           names: frozenset[str] | None = None) -> Iterator[bytes]:
    """The families in the text format (or OpenMetrics, without its `# EOF`), as UTF-8 chunks to join:
    what prometheus-client's `generate_latest` (or its OpenMetrics one) would write, of the samples
    named in `names` when given (`/metrics?name[]=...`).

    A generator of chunks of about `CHUNK_PIECES` pieces each, so a scrape never holds every piece
    at once: at 20,000 series the pieces of a whole body took about twice its 14 MB.
    """
    out: list[bytes] = []
    memo: dict[Number, bytes] = {}
    formatted = memo.__getitem__
    les_memo: dict[tuple[str, ...], list[bytes]] = {}
    for family in families:
        parts = _parts(family, names)
        if not parts:
            continue
        sample = family.name + "_total" if family.kind == "counter" else family.name
        if openmetrics:  # the family's own name in the header, the samples' names as in the text format
            head = f"# HELP {family.name} {escape_value(family.doc)}\n# TYPE {family.name} {family.kind}\n"
        else:
            doc = family.doc.replace("\\", r"\\").replace("\n", r"\n")
            head = f"# HELP {sample} {doc}\n# TYPE {sample} {family.kind}\n"
        out.append(head.encode())
        name = sample.encode()
        if family.kind != "histogram":
            values = family.values
            _format(values.values(), memo)
            pairs = zip(repeat(name), values, map(formatted, values.values()))
            for batch in _batches(pairs):
                out.extend(chain.from_iterable(batch))
                yield from _drain(out)
            continue
        yield from _histogram_lines(family, name, parts, openmetrics, out, memo, les_memo)
    if out:
        yield b"".join(out)


def _histogram_lines(family: Family, name: bytes, parts: frozenset[str], openmetrics: bool, out: list[bytes],
                     memo: dict[Number, bytes], les_memo: dict[tuple[str, ...], list[bytes]]) -> Iterator[bytes]:
    """A histogram family's sample lines into `out` (its `parts`: see `_parts`), chunks yielded."""
    formatted = memo.__getitem__
    histograms = family.histograms.values()
    _format(chain.from_iterable(value.counts for value in histograms), memo)
    _format([value.sum_s for value in histograms], memo)
    count = name + b"_count" if "_count" in parts else b""
    total = name + b"_sum" if "_sum" in parts else b""
    buckets = "_bucket" in parts
    last: tuple[str, ...] = ()
    les: list[bytes] = []
    for value in histograms:
        group = value.group
        if buckets:
            if value.les is not last:  # one bounds tuple shared by every series of a file, as a rule
                last = value.les
                les = les_memo.get(last) or les_memo.setdefault(last, [f'le="{le}"'.encode() for le in last])
            if openmetrics and value.exemplars is not None:
                shown = [_with_exemplar(formatted(n), ex) for n, ex in zip(value.counts, value.exemplars)]
            else:
                shown = list(map(formatted, value.counts))
            out.extend(chain.from_iterable(zip(repeat(group.bucket_head), les, repeat(group.bucket_tail), shown)))
        if count:
            out += (count, group.key, formatted(value.counts[-1]))
        if total:
            out += (total, group.key, formatted(value.sum_s))
        yield from _drain(out)


#: pieces per chunk `render` yields (about 90 kB: under glibc's initial mmap threshold)
CHUNK_PIECES = 2048


def _batches(items: Iterable[tuple[bytes, bytes, bytes]]) -> Iterator[list[tuple[bytes, bytes, bytes]]]:
    """`items` a chunk's worth at a time (each item is three pieces)."""
    iterator = iter(items)
    while batch := list(islice(iterator, CHUNK_PIECES // 3)):
        yield batch


def _drain(out: list[bytes]) -> Iterator[bytes]:
    """One chunk of `out`'s pieces, joined, once it holds `CHUNK_PIECES`; `out` is emptied then."""
    if len(out) >= CHUNK_PIECES:
        yield b"".join(out)
        out.clear()


def _with_exemplar(value: bytes, exemplar: Exemplar | None) -> bytes:
    """` <value> # {trace_id="..."} <latency> <time>\n`, as prometheus-client's OpenMetrics writes an
    exemplar (the trace id is hex: nothing to escape)."""
    if exemplar is None:
        return value
    trace, latency_s, timestamp = exemplar
    return b"%s # {trace_id=\"%s\"} %s %s\n" % (value[:-1], trace.encode(), float_to_go(latency_s).encode(),
                                                  repr(timestamp).encode())

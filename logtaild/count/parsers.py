"""`make_parser(options)`: the parser of one followed file, for every format, and format detection.

The formats: `tsv` (formats.parse_tsv, the aggregator's fast path), `combined` (a preset of the
format strings, logformat.combined_preset), `json`, `nginx` and `apache` (a `log_format` string
compiled by logformat.py), and `auto`: no format configured, so the first lines of the file choose
among tsv, json and combined (`AutoParser`). `FormatAdvisor` checks the first lines of every file and
says, once, when most of them are malformed for the file's format and another format parses them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from logtaild.count import detect
from logtaild.count.formats import (
    LATENCY_SCALES,
    Parser,
    make_json_parser,
    parse_json,
    parse_tsv,
)
from logtaild.count.labelcap import LabelCap
from logtaild.count.logformat import combined_preset, compile_format
from logtaild.count.record import AccessRecord

FORMATS = ("auto", "tsv", "combined", "json", "nginx", "apache")
#: lines `FormatAdvisor` looks at, and the share of them that must be malformed before it speaks
CHECK_LINES = 100
CHECK_SHARE = 0.5
_CHECK_LINE_MAX = 4096  # longer lines are left out of the sample: it stays small


class FileOptions(Protocol):
    """What a parser needs from a `config.FileConfig` (count/ reads no config: any object with these)."""

    @property
    def format(self) -> str: ...
    @property
    def latency_unit(self) -> str | None: ...
    @property
    def fields(self) -> Mapping[str, str]: ...
    @property
    def log_format(self) -> str | None: ...
    @property
    def label_fields(self) -> Mapping[str, str]: ...
    @property
    def label_values_max(self) -> int: ...
    @property
    def upstream_field(self) -> str | None: ...
    @property
    def upstream_unit(self) -> str: ...
    @property
    def exemplar_field(self) -> str | None: ...


def make_combined_parser(latency_unit: str | None = None) -> Parser:
    """The `combined` format's parser (the preset of logformat.py); `latency_unit` reads the trailing
    request time."""
    return combined_preset(latency_unit)


parse_combined = make_combined_parser()

#: Parsers by format name with default options, for the formats that need no format string
#: (`make_parser` applies a file's options)
PARSERS: dict[str, Parser] = {"tsv": parse_tsv, "combined": parse_combined, "json": parse_json}


def has_upstream(parser: Parser) -> bool:
    """Whether a parser's records carry upstream times (its slots then have the upstream part)."""
    return bool(getattr(parser, "has_upstream", False))


def label_cap(parser: Parser) -> LabelCap | None:
    """The cap a parser admits `label_fields` values through (None without label fields)."""
    cap = getattr(parser, "label_cap", None)
    return cap if isinstance(cap, LabelCap) and cap.names else None


def make_known(options: FileOptions, fmt: str) -> Parser:
    """The parser of format `fmt` (not `auto`) with the file's options; ValueError when they do not fit."""
    labels = options.label_fields or None
    cap = options.label_values_max
    upstream_scale = LATENCY_SCALES[options.upstream_unit]
    if fmt == "tsv":
        if (options.latency_unit not in (None, "milliseconds") or options.fields or labels or options.upstream_field
                or options.exemplar_field):
            raise ValueError("tsv: latency is in milliseconds, and fields, label_fields, upstream_field, "
                             "exemplar_field do not apply")
        return parse_tsv
    if fmt in ("combined", "nginx", "apache") and options.fields:
        raise ValueError(f"{fmt}: fields apply to the json format only")
    if fmt == "combined":
        if options.upstream_field:
            raise ValueError("combined: upstream_field needs a log_format (format: nginx or apache)")
        return combined_preset(options.latency_unit, labels, cap, exemplar_field=options.exemplar_field)
    if fmt == "json":
        return make_json_parser(options.fields, options.latency_unit, labels, cap, options.upstream_field,
                                upstream_scale, options.exemplar_field)
    if fmt in ("nginx", "apache"):
        if not options.log_format:
            raise ValueError(f"{fmt}: log_format is required")
        return compile_format(fmt, options.log_format, upstream_field=options.upstream_field,
                              upstream_scale=upstream_scale, label_fields=labels, max_label_values=cap,
                              exemplar_field=options.exemplar_field)
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def candidates(options: FileOptions, skip: str | None = None) -> dict[str, Parser]:
    """Fresh parsers of the detectable formats that the file's options allow (all but `skip`)."""
    out: dict[str, Parser] = {}
    for name in detect.DETECTABLE:
        if name != skip:
            try:
                out[name] = make_known(options, name)
            except ValueError:
                continue  # e.g. tsv with a latency unit in seconds: not a candidate
    return out


class AutoParser:
    """A file without a configured format: the first lines choose it (`choose`, called by the aggregator
    with each batch until it is decided), so every line is counted once, with the chosen format."""

    def __init__(self, options: FileOptions, on_detect: Callable[[str, int, int], None] | None = None) -> None:
        self.options = options
        self.on_detect = on_detect
        self.chosen: str | None = None
        self._seen = 0
        self._parser: Parser | None = None

    @property
    def decided(self) -> bool:
        return self.chosen is not None

    def choose(self, lines: Sequence[bytes], final: bool = False) -> Parser:
        """The parser for this batch; it decides for good once a candidate parses a line of the first
        CHECK_LINES (else tsv, the historical default, past them)."""
        if self._parser is not None:
            return self._parser
        found = candidates(self.options)
        self._seen += len(lines)  # lines read undecided (counted as tsv, the historical default)
        lines = detect.sample(lines)
        name, good = detect.best(lines, found)
        if name is None and self._seen < CHECK_LINES and not final:
            return found.get("tsv") or next(iter(found.values()))  # undecided: this batch as tsv, try again
        self.chosen = name or ("tsv" if "tsv" in found else next(iter(found)))
        self._parser = found[self.chosen]
        if self.on_detect is not None:
            self.on_detect(self.chosen, good, len(lines) if name else self._seen)
        return self._parser

    def quiet(self) -> AutoParser:
        """An undecided copy that detects on its own and says nothing (a catch-up worker's: the file's
        own parser says what it detects, once)."""
        return AutoParser(self.options)

    def settle(self) -> None:
        """Decide now on what was seen (the end of a `--once` run): tsv when nothing parsed."""
        if self._parser is None:
            self.choose([], final=True)

    def __call__(self, line: bytes) -> AccessRecord:
        return self.choose([line])(line)


def make_parser(options: FileOptions, on_detect: Callable[[str, int, int], None] | None = None) -> Parser:
    """The parser of one followed file (a new one per call: label caps are per file).

    `tsv` is always `parse_tsv` itself, so the aggregator keeps its TSV fast path; `auto` is an
    `AutoParser`, which the aggregator asks to choose with the first batch. `on_detect(format,
    lines parsed, lines looked at)` is told the choice.
    """
    if options.format == "auto":
        for name in detect.DETECTABLE:  # a file entry that no detectable format can take fails now
            try:
                make_known(options, name)
                break
            except ValueError:
                continue
        else:
            raise ValueError("auto: no detectable format (tsv, json, combined) takes these options")
        return AutoParser(options, on_detect)
    return make_known(options, options.format)


class FormatAdvisor:
    """Looks at a file's first CHECK_LINES lines and says, once, when most are malformed for its format.

    `feed` keeps the sample and gives the verdict when it is full; `finish` gives it on what was seen
    (at the end of a `--once` run, or when the first malformed lines are logged). The verdict names
    the format that parses the lines, when one does.
    """

    def __init__(self, options: FileOptions, parser: Parser) -> None:
        self.options = options
        self.parser = parser
        self._sample: list[bytes] = []
        self._done = False

    def format_name(self) -> str:
        """The file's format: as configured, or as detected (`auto` until then)."""
        if isinstance(self.parser, AutoParser):
            return self.parser.chosen or "auto"
        return self.options.format

    def feed(self, lines: Sequence[bytes]) -> str | None:
        if self._done:
            return None
        room = CHECK_LINES - len(self._sample)
        self._sample += [line for line in lines[:room] if len(line) <= _CHECK_LINE_MAX]
        if len(self._sample) >= CHECK_LINES or len(lines) >= room:
            return self.finish()
        return None

    def finish(self, final: bool = False) -> str | None:
        """The verdict on the lines seen so far, once; `final` (the end of a `--once` run) also ends a
        detection that has found nothing yet, which then says so itself."""
        if self._done or not self._sample:
            return None
        if isinstance(self.parser, AutoParser) and not self.parser.decided:
            if final:
                self._done = True
                self.parser.settle()
            return None  # else detection goes on with the next lines: judged once it has decided
        self._done = True
        name = self.format_name()
        own = make_known(self.options, name)
        lines, self._sample = self._sample, []
        bad = len(lines) - detect.parsed(own, lines)
        if bad <= CHECK_SHARE * len(lines):
            return None
        other, good = detect.best(lines, candidates(self.options, skip=name))
        text = f"{bad} of the first {len(lines)} lines are malformed for format {name}"
        if other is not None and good > len(lines) - bad:
            return f"{text}; format {other} parses {good} of them: set `format: {other}` for this file"
        return (f"{text}, and no format detected parses them: set `format: nginx` or `apache` with the "
                "server's `log_format`")

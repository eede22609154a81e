"""Format detection: which of the known formats parses a file's lines, from a sample of them.

Pure functions over a few lines and candidate parsers; `parsers.py` decides when to call them (the
first lines of a file without a configured format, and a check of the first lines of every file).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from logtaild.count.formats import ParseError, Parser

#: the formats detection chooses among, in the order that wins a tie
DETECTABLE = ("tsv", "json", "combined")
#: how many lines decide (the first complete, non-empty ones)
SAMPLE_LINES = 20


def sample(lines: Sequence[bytes], size: int = SAMPLE_LINES) -> list[bytes]:
    """The first `size` non-empty lines of a batch."""
    out: list[bytes] = []
    for line in lines:
        if line.strip():
            out.append(line)
            if len(out) == size:
                break
    return out


def parsed(parser: Parser, lines: Sequence[bytes]) -> int:
    """How many of `lines` the parser accepts.

    The candidates are fresh parsers built for the check, so a label cap they fill is thrown away
    with them and never counts against the file's own parser.
    """
    good = 0
    for line in lines:
        try:
            parser(line)
        except ParseError:
            continue
        good += 1
    return good


def best(lines: Sequence[bytes], candidates: Mapping[str, Parser]) -> tuple[str | None, int]:
    """(the candidate that parses most of `lines`, how many it parses); (None, 0) when none parses any."""
    winner, score = None, 0
    for name, parser in candidates.items():
        good = parsed(parser, lines)
        if good > score:
            winner, score = name, good
    return winner, score

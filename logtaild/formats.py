"""Log-line parsers, one per format, and `ParseError` with the reason a line was rejected.

The pieces shared by every format (request line, status, numbers) live here too, so the TSV fast
path in `aggregate.py` rejects exactly the lines `parse_tsv` rejects.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from logtaild.record import AccessRecord

#: Reasons a line is malformed; they are the values of the `reason` label.
REASONS = ("fields", "request", "status", "bytes", "latency", "encoding")

#: Methods kept as label values; any other well-formed token becomes OTHER, so an attacker cannot
#: mint series through the method label.
KNOWN_METHODS = frozenset(
    "GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH PROPFIND PROPPATCH MKCOL COPY MOVE "
    "LOCK UNLOCK PURGE".split()
)
_MAX_METHOD = 32


class ParseError(ValueError):
    """A line no parser accepts; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def decode(raw: bytes) -> str:
    """Strict UTF-8, so label values are always valid UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError("encoding", str(exc)) from None


def parse_method(token: str) -> str:
    """The method label: a known method, or OTHER for any other well-formed token."""
    if token in KNOWN_METHODS:
        return token
    if not token or len(token) > _MAX_METHOD or not token.isascii() or not token.isalpha():
        raise ParseError("request", f"bad method {token[:40]!r}")
    return "OTHER"


def route_of(target: str) -> str:
    """The path part of a request target: no query string or fragment; absolute URIs lose scheme/host."""
    if target == "*":
        return "*"
    if not target.startswith("/"):
        scheme, sep, rest = target.partition("://")
        if not sep or not scheme.isalpha():
            raise ParseError("request", f"bad target {target[:40]!r}")
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    for cut in ("?", "#"):
        target = target.split(cut, 1)[0]
    return target or "/"


def parse_request(raw: bytes) -> tuple[str, str]:
    """`METHOD target [protocol]` -> (method label, route)."""
    parts = decode(raw).split(" ")
    if len(parts) not in (2, 3) or not parts[1]:
        raise ParseError("request", f"{len(parts)} words")
    return parse_method(parts[0]), route_of(parts[1])


def parse_status(raw: bytes | str | int) -> str:
    """A status code 100-599 as its 3-digit string."""
    text = str(raw, "ascii", "replace") if isinstance(raw, bytes) else str(raw)
    if len(text) != 3 or not text.isdigit() or not "100" <= text <= "599":
        raise ParseError("status", f"{text[:20]!r}")
    return text


def parse_bytes(raw: bytes | str | int) -> int:
    """A non-negative size; `-` (what nginx and Apache write for an empty body) is 0."""
    if raw in (b"-", "-"):
        return 0
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ParseError("bytes", f"{raw!r:.40}") from None
    if value < 0:
        raise ParseError("bytes", "negative")
    return value


def parse_latency_ms(raw: bytes | str | float, scale: float = 1.0) -> float:
    """A finite non-negative latency, converted to milliseconds by `scale`."""
    try:
        value = float(raw) * scale
    except (TypeError, ValueError):
        raise ParseError("latency", f"{raw!r:.40}") from None
    if not 0.0 <= value < math.inf:
        raise ParseError("latency", "not a finite non-negative number")
    return value


def parse_tsv(line: bytes) -> AccessRecord:
    """`ip<TAB>METHOD route<TAB>status<TAB>bytes[<TAB>latency_ms]`."""
    fields = line.split(b"\t")
    if len(fields) not in (4, 5):
        raise ParseError("fields", f"{len(fields)} fields")
    method, route = parse_request(fields[1])
    status = parse_status(fields[2])
    size = parse_bytes(fields[3])
    latency = parse_latency_ms(fields[4]) if len(fields) == 5 else None
    return AccessRecord(route, method, status, size, latency)


Parser = Callable[[bytes], AccessRecord]

#: Parsers by format name, as the config names them.
PARSERS: dict[str, Parser] = {"tsv": parse_tsv}

"""`RouteLimiter`: turns raw paths into route label values, and holds the caps on what a file exports.

Normalization runs first (the configured rules, then the built-in id patterns), so `/users/123`
and `/users/456` share one series; the value is then made safe to print (`labels.escape`) and cut
to `max_length` bytes, and the route cap bounds what is left. A route seen after the cap is full is
counted under OVERFLOW_ROUTE, so a flood of random URLs adds at most `max_routes` + 1 values however
long it runs, each at most `max_length` bytes.

The limiter also holds the series cap the aggregator applies when it creates a series
(`max_series`), and the key a request past it is counted under (`overflow_key`): route and method
OVERFLOW_ROUTE, the status kept, so totals per status stay exact (a 5xx ratio over all routes
included) while a file has at most `max_series` series plus one per status code.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

from logtaild.count.labels import cut, escape, label_value, printable
from logtaild.count.slots import ExtraLabels, SlotKey
from logtaild.regex import RuleSet

OVERFLOW_ROUTE = "__other__"
#: the method (and extra label value) of the series past the series cap; parse_method never returns
#: it (a method is one of formats.KNOWN_METHODS or OTHER), so those requests are told apart exactly
OVERFLOW_METHOD = OVERFLOW_ROUTE
ID_PLACEHOLDER = ":id"
DEFAULT_MAX_ROUTES = 1000
#: route and label values are cut to this many bytes (UTF-8, after escaping, the marker included)
DEFAULT_MAX_LENGTH = 256
#: series (route, method, status, extra labels) per file before new ones count under overflow_key
DEFAULT_MAX_SERIES = 20_000
#: how many raw routes `admit` remembers the value of, and the longest it remembers (in characters):
#: bounded, so hostile URLs cannot grow it, and long ones cost a full pass instead of memory
_ADMITTED_MAX = 8192
_ADMITTED_LONGEST = 1024

#: a whole path segment that is an id, with its leading "/": digits, a UUID, or a hex token of 16+
#: characters with a digit in it (requiring a digit keeps long words such as "deadbeefcafebabe"
#: alone). One C-level pass; starting on a literal "/" (not a lookbehind) lets the regex engine skip
#: to the next "/" instead of trying every position, about twice as fast on paths without ids.
#: It stays on Python's `re`, not RE2 like the configured rules: it is fixed, and linear (a match
#: starts only at a "/", no alternative can cross the next "/", and the lookaheads look at most one
#: segment ahead, so each character is looked at a bounded number of times). RE2 has no lookaheads,
#: and from Python it costs more per call: 100k paths took 0.33 s here and 2.1-2.7 s through RE2.
_ID_SEGMENT = re.compile(
    r"/(?:[0-9]+"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?=[a-fA-F]*[0-9])[0-9a-fA-F]{16,})(?=/|$)",
    re.ASCII,
)
_DIGIT = re.compile(r"[0-9]")
#: the same pattern over raw path bytes: ids are ASCII and "/" is never part of a multi-byte UTF-8
#: character, so replacing them before decoding gives the same route as decoding first
_ID_SEGMENT_BYTES = re.compile(_ID_SEGMENT.pattern.encode("ascii"))
_REPLACEMENT = "/" + ID_PLACEHOLDER
_REPLACEMENT_BYTES = _REPLACEMENT.encode("ascii")


def normalize_ids(route: str) -> str:
    """Replace numeric ids, UUIDs and long hex tokens in path segments with `:id`."""
    if not _DIGIT.search(route):
        return route  # every id pattern has a digit
    return _ID_SEGMENT.sub(_REPLACEMENT, route)


#: `normalize_ids` over the raw bytes of a path (`/`-prefixed, no query or fragment). A partial of
#: the compiled pattern's `sub`, not a function: it runs once per new raw request on the hot path.
normalize_id_bytes: Callable[[bytes], bytes] = functools.partial(_ID_SEGMENT_BYTES.sub, _REPLACEMENT_BYTES)


class RouteLimiter:
    """Normalizes routes, makes them label values, and admits at most `max_routes` distinct ones."""

    def __init__(
        self,
        max_routes: int = DEFAULT_MAX_ROUTES,
        rules: Sequence[tuple[str, str]] = (),
        builtin: bool = True,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_series: int = DEFAULT_MAX_SERIES,
    ) -> None:
        self.max_routes = max_routes
        self.max_length = max_length
        self.max_series = max_series
        #: RE2, linear in the route whatever the pattern (RegexError for syntax RE2 lacks; config
        #: checks the same rules at load, so a running daemon never gets one)
        self._rules = RuleSet(rules)
        self._builtin = builtin
        self._known: set[str] = set()
        #: raw route -> its admitted label value. Only admitted values are kept: a value once admitted
        #: stays admitted (the cap never frees a place), so a hit is always right, and past the cap a
        #: flood of new routes keeps nothing here.
        self._admitted: dict[str, str] = {}

    @property
    def bytes_normalizable(self) -> bool:
        """True when a path's route is `normalize_id_bytes` of its bytes (no configured rules).

        Configured rules are arbitrary regexes over the decoded route, so with any of them two
        paths that differ only in an id may still get different routes.
        """
        return self._builtin and not self._rules

    @property
    def distinct(self) -> int:
        """How many route values have been admitted (OVERFLOW_ROUTE not included)."""
        return len(self._known)

    def normalize(self, route: str) -> str:
        """Apply the first matching configured rule, then the built-in id patterns."""
        rewritten = self._rules.apply(route)
        if rewritten is not None:
            route = rewritten
        return normalize_ids(route) if self._builtin else route

    def admit(self, route: str) -> str:
        """The label value for a raw route: normalized, escaped and cut, or OVERFLOW_ROUTE past the cap.

        Remembered per raw route, so a parser that hands every line's route here normalizes and
        escapes each distinct route once, not once per line.
        """
        value = self._admitted.get(route)
        if value is None:
            value = self.admit_normalized(self.normalize(route))
            if value != OVERFLOW_ROUTE and len(route) <= _ADMITTED_LONGEST:
                if len(self._admitted) >= _ADMITTED_MAX:
                    self._admitted.clear()  # hot routes come back at once
                self._admitted[route] = value
        return value

    def admit_normalized(self, route: str) -> str:
        """The label value for an already normalized route from the log: escaped, cut, capped."""
        return self._cap(label_value(route, self.max_length))

    def admit_label(self, value: str) -> str:
        """The label value for a value that may already be one (a worker's, the state file's): capped,
        and escaped and cut only if it still needs it, so a label value is never escaped twice."""
        return self._cap(cut(printable(value), self.max_length))

    def _cap(self, value: str) -> str:
        if value in self._known:
            return value
        if len(self._known) < self.max_routes and value != OVERFLOW_ROUTE:
            self._known.add(value)
            return value
        return OVERFLOW_ROUTE

    def series_key(self, route: str, method: str, status: str, labels: ExtraLabels = (), *,
                   escaped: bool = False) -> SlotKey:
        """The key a new series is stored under: `route` as admitted, the other label values escaped
        (`printable` with `escaped`, for values that may already be label values) and cut.

        Called once per new series, never per line: parsers only hand out known methods and
        3-digit statuses, but label fields carry text from the log.
        """
        clean = printable if escaped else escape
        limit = self.max_length
        return (route, cut(clean(method), limit), cut(clean(status), limit),
                tuple((name, cut(clean(value), limit)) for name, value in labels))


def overflow_key(key: SlotKey) -> SlotKey:
    """Where a request is counted when its own series would pass the series cap.

    Route, method and every extra label value become OVERFLOW_ROUTE; the status is kept, so counts per
    status (and every total) stay exact, and a file adds at most one overflow series per status code.
    """
    _route, _method, status, labels = key
    return (OVERFLOW_ROUTE, OVERFLOW_METHOD, status, tuple((name, OVERFLOW_ROUTE) for name, _value in labels))

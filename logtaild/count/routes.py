"""`RouteLimiter`: turns raw paths into route label values and caps how many distinct ones exist.

Normalization runs first (the configured rules, then the built-in id patterns), so `/users/123`
and `/users/456` share one series; the cap then bounds what is left. A route seen after the cap
is full is counted under OVERFLOW_ROUTE, so a flood of random URLs adds at most `max_routes` + 1
values however long it runs.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

OVERFLOW_ROUTE = "__other__"
ID_PLACEHOLDER = ":id"

#: a whole path segment that is an id, with its leading "/": digits, a UUID, or a hex token of 16+
#: characters with a digit in it (requiring a digit keeps long words such as "deadbeefcafebabe"
#: alone). One C-level pass; starting on a literal "/" (not a lookbehind) lets the regex engine skip
#: to the next "/" instead of trying every position, about twice as fast on paths without ids.
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
    """Normalizes routes and admits at most `max_routes` distinct values."""

    def __init__(
        self,
        max_routes: int = 1000,
        rules: Sequence[tuple[str, str]] = (),
        builtin: bool = True,
    ) -> None:
        self.max_routes = max_routes
        self._rules = [(re.compile(match), replace) for match, replace in rules]
        self._builtin = builtin
        self._known: set[str] = set()

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
        for pattern, replace in self._rules:
            if pattern.search(route):
                route = pattern.sub(replace, route)
                break
        return normalize_ids(route) if self._builtin else route

    def admit(self, route: str) -> str:
        """The label value for a raw route: its normalized form, or OVERFLOW_ROUTE past the cap."""
        return self.admit_normalized(self.normalize(route))

    def admit_normalized(self, value: str) -> str:
        """The label value for an already normalized route (the cap only)."""
        if value in self._known:
            return value
        if len(self._known) < self.max_routes and value != OVERFLOW_ROUTE:
            self._known.add(value)
            return value
        return OVERFLOW_ROUTE

"""`LabelCap`: per-file caps on label values taken from log fields (`label_fields`).

A value taken from a line (a Host header, a build version) becomes a label on the request series;
without a cap a hostile client could mint one series per request. Each label keeps at most
`max_values` distinct values per file; any later value is counted under OVERFLOW_VALUE, which the
exporter reports as `logtaild_label_overflow_total{file,label}`.
"""
from __future__ import annotations

#: the value a label takes past its cap (the same word the route cap uses)
OVERFLOW_VALUE = "__other__"
#: distinct values per label and file when the config does not say
DEFAULT_MAX_VALUES = 100


class LabelCap:
    """Admits at most `max_values` distinct values per label name."""

    def __init__(self, max_values: int = DEFAULT_MAX_VALUES, names: frozenset[str] = frozenset()) -> None:
        self.max_values = max_values
        #: the labels this cap owns (`admit_labels` leaves any other label of a series alone)
        self.names = names
        self._seen: dict[str, set[str]] = {}

    def admit(self, label: str, value: str) -> str:
        """The label value to count under: `value` while the label has room, else OVERFLOW_VALUE."""
        seen = self._seen.get(label)
        if seen is None:
            seen = self._seen[label] = set()
        if value in seen:
            return value
        if len(seen) < self.max_values and value != OVERFLOW_VALUE:
            seen.add(value)
            return value
        return OVERFLOW_VALUE

    def admit_labels(self, labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        """A series' labels counted elsewhere (a catch-up worker, the state file) admitted through this
        cap, so the cap holds over the sum and a restart remembers the values already admitted."""
        if not self.names:
            return labels
        return tuple((name, self.admit(name, value) if name in self.names else value) for name, value in labels)

    def distinct(self, label: str) -> int:
        """How many values of `label` have been admitted."""
        return len(self._seen.get(label, ()))

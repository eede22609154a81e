"""The parsed form of one access-log line (`AccessRecord`)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """One request. `route` is the raw path (query string already dropped), before normalization.

    `latency_ms` is None when the line carries no latency. Milliseconds are the internal unit
    because the default TSV format carries them; the exporter converts to seconds.
    `labels` holds per-line label values some formats carry (the JSON format's `service`, the fields
    named by a file's `label_fields`). `upstream_ms` is the sum of the upstream times of a format that
    has them (nginx's `$upstream_response_time`), None when the line has none (`-`: no upstream asked).
    `exemplar` is the trace id of a file's `exemplar_field` when the line has a valid one (hex).
    """

    route: str
    method: str
    status: str
    bytes: int
    latency_ms: float | None = None
    labels: tuple[tuple[str, str], ...] = ()
    upstream_ms: float | None = None
    exemplar: str | None = None

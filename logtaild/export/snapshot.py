"""What the export layer reads: plain snapshot types, copied by the service under its lock.

`Snapshot` holds everything a scrape, the textfile or the status page shows; `FileSnapshot` one
followed file. The export layer never sees the tailer: a file's stream counters arrive as any
object with `FileStats`' attributes (the service passes tail's `StreamStats`, a copy).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from logtaild.count.slots import Slot, SlotKey

Labels = dict[str, str]


class FileStats(Protocol):
    """The stream counters and gauges of one followed path that /metrics and /status show.

    Read-only properties, so a plain dataclass with these fields (tail's `StreamStats`) conforms.
    """

    @property
    def bytes_read(self) -> int: ...
    @property
    def lines_cut(self) -> int: ...
    @property
    def reopens(self) -> int: ...
    @property
    def rotations(self) -> dict[str, int]: ...  # by kind: rename, truncate, delete
    @property
    def drain_timeouts(self) -> int: ...
    @property
    def read_errors(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def inode(self) -> int: ...
    @property
    def last_read(self) -> float: ...
    @property
    def last_rotation(self) -> float: ...
    @property
    def lag(self) -> int: ...  # bytes written but not read yet


@dataclass(frozen=True)
class Objective:
    """A route's service-level objective (from the config, or the defaults)."""

    latency_threshold_s: float = 0.5
    latency_objective: float = 0.99
    availability_objective: float = 0.999
    team: str = ""


DEFAULT_OBJECTIVE = Objective()


@dataclass
class FileSnapshot:
    """One followed file's numbers at scrape time."""

    path: str
    labels: Labels
    slots: list[tuple[SlotKey, Slot]]
    bounds_s: list[float]
    lines: int
    malformed: dict[str, int]
    stats: FileStats
    routes: int
    objectives: dict[str, Objective] = field(default_factory=dict)
    #: the labels taken from log fields (`label_fields`), whose overflow is exported per label
    label_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReceiverStats:
    """One remote-write receiver's push counters (run/push.py), labelled by its URL without secrets."""

    url: str
    sent: int = 0          # samples the receiver accepted
    failed: int = 0        # samples it rejected for good (a 4xx other than 429: not retried)
    dropped: int = 0       # samples never sent: the queue was full (oldest first), or at exit
    retries: int = 0       # requests sent again after a failure
    pending: int = 0       # samples waiting in the queue
    bytes_sent: int = 0    # compressed request bytes accepted
    last_success: float = 0.0  # unix time of the last accepted push


@dataclass
class Snapshot:
    """Everything the collector exports."""

    files: list[FileSnapshot]
    version: str
    checkpoint_writes: int = 0
    checkpoint_failures: int = 0
    checkpoint_last_write: float = 0.0
    checkpoint_fallbacks: int = 0
    reloads: dict[str, int] = field(default_factory=lambda: {"success": 0, "failure": 0})
    last_tick: float = 0.0
    remote_write: list[ReceiverStats] = field(default_factory=list)

"""Counting part of a large backlog in a forked worker process, so a catch-up uses a second core.

The FileStream hands out the first half of its unread backlog (`split_backlog`); a child process,
forked with the parent's parser and route rules, counts that byte range into a fresh Aggregator and
sends back its slots; the parent merges them (`merge`) and releases the stream's checkpoint hold.
The merge goes through the parent's RouteLimiter (`Aggregator.merge_slots`), so the cardinality cap
still holds over the sum.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from logtaild.count.aggregate import Aggregator
from logtaild.count.parsers import AutoParser
from logtaild.count.slots import Slot, SlotKey
from logtaild.tail.filestream import read_range

if TYPE_CHECKING:  # multiprocessing is imported when a worker starts: a one-core run never needs it
    from multiprocessing.connection import Connection


@dataclass
class RangeResult:
    """What the worker counted."""

    slots: dict[SlotKey, Slot]
    malformed: dict[str, int]
    lines: int
    lines_cut: int


def usable_cores() -> int:
    """How many CPUs this process may run on: its affinity mask (taskset, systemd's CPUAffinity=).

    On one CPU a worker would only take turns with the parent and add the fork and the merge.
    """
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API on this platform
        return os.cpu_count() or 1


def _close_inherited(keep: set[int]) -> None:
    """Close what the fork inherited (the state-file lock, sockets, files) except `keep`.

    A lock held through an inherited descriptor would outlive a SIGKILLed parent.
    """
    try:
        inherited = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for descriptor in inherited:
        if descriptor > 2 and descriptor not in keep:
            try:
                os.close(descriptor)
            except OSError:
                pass


def _count(agg: Aggregator, fd: int, start: int, end: int, max_line: int, send: Connection) -> None:
    """The child: count the byte range of `fd` into `agg` and send the result back."""
    _close_inherited({fd, send.fileno()})
    cut = 0
    for lines, dropped in read_range(fd, start, end, max_line):
        cut += dropped
        agg.feed(lines)
    send.send(RangeResult(agg.slots, agg.malformed, agg.lines, cut))
    send.close()


class RangeJob:
    """One byte range being counted in a child process."""

    def __init__(self, agg: Aggregator, fd: int, start: int, end: int, max_line: int) -> None:
        parser = agg.parser.quiet() if isinstance(agg.parser, AutoParser) else agg.parser
        fresh = Aggregator(copy.deepcopy(agg.limiter), agg.bounds_ms, parser, native=agg.native,
                           exemplars=agg.exemplars)
        import multiprocessing

        context = multiprocessing.get_context("fork")  # the child needs no pickling of the parser
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_count, args=(fresh, fd, start, end, max_line, send),
                                        name="logtaild-range", daemon=True)
        self._process.start()
        send.close()
        os.close(fd)

    def done(self) -> bool:
        """Whether the counts (or the worker's end) are there to read without waiting."""
        return self._receive.poll()

    def result(self, timeout: float | None = None) -> RangeResult | None:
        """The counts, waiting up to `timeout`; None if the worker failed or is too slow (killed)."""
        if not self._receive.poll(timeout):
            self._process.kill()
            self._process.join()
            return None
        result: RangeResult | None
        try:
            result = self._receive.recv()  # only _count sends, and only a RangeResult
        except EOFError:  # the worker died before sending
            result = None
        self._process.join()
        return result


def merge(agg: Aggregator, result: RangeResult) -> None:
    """Add a worker's counts into `agg`, admitting its routes through `agg`'s cap."""
    agg.lines += result.lines
    for reason, count in result.malformed.items():
        agg.malformed[reason] = agg.malformed.get(reason, 0) + count
    agg.merge_slots(result.slots)

"""`FakeClock`: a monotonic clock the test sets by hand, so time-driven code runs without sleeps; `utc`:
a fixture pinning the time zone (a module that imports it with `autouse` runs its tests in UTC)."""
from __future__ import annotations

import time
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """ctime() is local time: pin the zone so the golden text is the same on every machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


class FakeClock:
    """Returns `now` when called; tests move it with `advance()` or by assigning `now`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

"""The compiled counting core (`_core.c`); core.py is its one importer."""

from typing import Any

MAX_ENTRIES: int
MAX_KEY_BYTES: int
MAX_KEY: int

class Counter:
    # program: a format string's ops (kind, stop, role, literal); for "json" the keys (role, rank, name)
    def __init__(self, format: str, bounds_ms: list[float], ids: bool = ..., latency_scale: float = ...,
                 program: list[tuple[int, int, int, bytes]] | list[tuple[int, int, bytes]] | None = ...,
                 upstream_scale: float = ...,
                 upstream: bool = ..., unescape: bool = ...,
                 native: tuple[int, float, list[float]] | None = ...) -> None: ...
    def scan(self, lines: list[bytes], start: int, /) -> tuple[int, bytes | None]: ...
    def bind(self, key: bytes, slot: list[float], /) -> None: ...
    def flush(self) -> list[tuple[list[Any], bool, dict[int, int], int]] | None: ...
    def clear(self) -> None: ...
    def stats(self) -> dict[str, int]: ...

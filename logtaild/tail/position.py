"""Positions and how a file is recognized: identity, fingerprints, and the search for a checkpointed file.

A `Position` is what a checkpoint stores: the file's identity (dev, ino), a fingerprint of its first
bytes, the offset after the last whole line handed out, and a hash of the bytes just before it. It is
valid only while all of them still match (`validates`). `checkpoint_found` and `head_found` look for
the file a position names at its path and among the uncompressed siblings rotated from it
(`rotated_candidates`), by identity and content, never by name alone.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

FINGERPRINT_BYTES = 1024
TAIL_HASH_BYTES = 256
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z", ".zip", ".br")


@dataclass(frozen=True)
class FileIdentity:
    """What names a file independently of its path."""

    dev: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_dev, st.st_ino)


@dataclass(frozen=True)
class Position:
    """A checkpointed read position; valid only while every field still matches the file."""

    dev: int
    ino: int
    offset: int
    fingerprint: str
    fingerprint_len: int
    tail_hash: str

    @property
    def identity(self) -> FileIdentity:
        return FileIdentity(self.dev, self.ino)

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Position:
        """Build from a state-file entry; raises (KeyError, TypeError, ValueError) when malformed."""
        missing = [name for name in cls.__dataclass_fields__ if name not in data]
        if missing:
            raise KeyError(missing[0])
        return cls(
            dev=_count(data, "dev"), ino=_count(data, "ino"), offset=_count(data, "offset"),
            fingerprint=_text(data, "fingerprint"), fingerprint_len=_count(data, "fingerprint_len"),
            tail_hash=_text(data, "tail_hash"),
        )


def _count(data: Mapping[str, object], name: str) -> int:
    value = data[name]
    # `type() is int`, not isinstance: JSON true loads as a bool, which isinstance counts as an int
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} is not a non-negative integer")
    return value


def _text(data: Mapping[str, object], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise ValueError(f"{name} is not a string")
    return value


def digest(data: bytes) -> str:
    import hashlib  # here, not at import (start-up: OpenSSL's libcrypto): only checkpoints hash

    return hashlib.sha256(data).hexdigest()


def validates(fd: int, saved: Position) -> bool:
    """Does the open file still hold what `saved` recorded (same first bytes, same bytes before offset)?"""
    try:
        if os.fstat(fd).st_size < saved.offset:
            return False
        head = os.pread(fd, saved.fingerprint_len, 0)
        start = max(0, saved.offset - TAIL_HASH_BYTES)
        tail = os.pread(fd, saved.offset - start, start)
    except OSError:
        return False
    return (
        len(head) == saved.fingerprint_len
        and digest(head) == saved.fingerprint
        and digest(tail) == saved.tail_hash
    )


def same_head(fd: int, saved: Position) -> bool:
    """Does the open file start with the bytes `saved` fingerprinted (whatever its inode and offset)?"""
    try:
        head = os.pread(fd, saved.fingerprint_len, 0)
    except OSError:
        return False
    return len(head) == saved.fingerprint_len and digest(head) == saved.fingerprint


def rotated_candidates(path: str) -> list[str]:
    """PATH.1, PATH.<digits>, PATH-<date>...: uncompressed siblings whose name extends the path's."""
    names = [path]
    real = os.path.realpath(path)
    if real != path:
        names.append(real)
    out: list[str] = []
    for name in names:
        folder, base = os.path.split(name)
        try:
            entries = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in sorted(entries):
            if (entry != base and entry.startswith(base) and entry[len(base)] in ".-_"
                    and not entry.endswith(COMPRESSED_SUFFIXES)):
                out.append(os.path.join(folder, entry))
    return out


def checkpoint_found(path: str, saved: Position) -> bool:
    """Would `FileStream`'s start-up resume `saved` exactly (no line skipped or counted twice)?

    True when the file at `path` holds the checkpointed bytes (on its inode or another: a copy), or
    a rotated sibling on the checkpointed inode does, or the path is still on that inode and a
    sibling holds them (copytruncate while stopped).
    """
    at_path = identity_of(path)
    for name in [path, *rotated_candidates(path)]:
        identity = at_path if name == path else identity_of(name)
        if identity is None:
            continue
        if name != path and saved.identity not in (identity, at_path):
            continue
        if _passes(name, lambda fd: validates(fd, saved)):
            return True
    return False


def head_found(path: str, saved: Position) -> bool:
    """Does the file at `path`, or one rotated from it, start with the bytes `saved` fingerprinted?"""
    return any(_passes(name, lambda fd: same_head(fd, saved)) for name in [path, *rotated_candidates(path)])


def _passes(name: str, check: Callable[[int], bool]) -> bool:
    """`check(fd)` on the file `name` opened for reading; False if it cannot be opened."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return check(fd)
    finally:
        os.close(fd)


def identity_of(path: str) -> FileIdentity | None:
    try:
        return FileIdentity.of(os.stat(path))
    except OSError:
        return None

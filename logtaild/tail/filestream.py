"""`FileStream`: follows one path forever, through rotation, truncation, deletion and restarts.

The state machine (see DESIGN.md, "Following a file"): at every poll, old handles still being drained
are read to their end; then the current handle is read to its end, and only at EOF is the path
stat'ed. A different (dev, ino) at the path is a rotation: the old handle joins the drain list (a
writer may still append to it for a moment) and the new file is read from its start. The same
identity with a size below our position is a truncation (copytruncate): read again from 0. A missing
path keeps the old handle and is retried at every poll. Identity, never size, decides.

Lines come out in batches of bytes without their newlines: a `Chunk` (the read buffer and the span of
its whole lines, split into a list only if someone asks: the compiled core counts the span itself) or,
for the rare batch that must drop an over-long line or a last line left without a newline, a list. A
trailing partial line is held until its newline arrives; a line longer than `max_line` is dropped,
counted, and the stream resumes after its newline, so memory is bounded by `chunk + max_line` whatever
the input. `poll()` is a generator the consumer may abandon after any batch: each batch is yielded only
once its bookkeeping is done, so the next poll neither repeats nor skips anything.

Positions (`Position`, position.py) are what checkpoints store: identity, a fingerprint of the first
bytes, the offset after the last whole line handed out, and a hash of the bytes just before it.

One search finds the files rotated past us: the start-up one for "rotated more than once while
stopped" (`_read_newer`: uncompressed siblings written after the last file we read, by identity
not yet seen). The running stream uses it too, when the path could not be opened for a while
(out of descriptors, permission denied) and then opens as another file (`_catch_up`): the files
rotated in between would otherwise never be read. A start-up that cannot open the path for a
reason other than its absence waits to apply the checkpoint until it opens (`_pending`).
"""
from __future__ import annotations

import errno
import logging
import os
import stat as stat_mod
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

from logtaild.tail.position import (
    FINGERPRINT_BYTES,
    TAIL_HASH_BYTES,
    FileIdentity,
    Position,
    digest,
    rotated_candidates,
    same_head,
    validates,
)

log = logging.getLogger("logtaild.filestream")

TAIL_CHECK_BYTES = 64
WARN_EVERY = 60.0


class Chunk(Sequence[bytes]):
    """The whole lines of one read: `data[start:end]`, each line ending with its newline, as a sequence of
    the lines without their newlines; `head`, when not None, is one more line before them (the line the
    previous read left open, completed by this one: joined on its own, so the read is not copied).

    `span` is what a consumer that scans buffers takes (the compiled core: no bytes object per line),
    after `head`; anything else (iteration, indexing, `len`, `==` with a list) sees the lines, split once
    on first use. `len` counts the newlines, without splitting. The span never holds a line longer than
    the stream's max_line (split_lines hands such a read out as a list, the long lines dropped).
    """

    __slots__ = ("data", "start", "end", "head", "_count", "_lines")

    def __init__(self, data: bytes, start: int, end: int, head: bytes | None = None) -> None:
        self.data, self.start, self.end, self.head = data, start, end, head
        self._count = -1
        self._lines: list[bytes] | None = None

    @property
    def span(self) -> tuple[bytes, int, int]:
        """(buffer, start, end): the lines' bytes after `head`, newlines included."""
        return self.data, self.start, self.end

    def lines(self) -> list[bytes]:
        """The lines as a list (made once)."""
        if self._lines is None:
            lines = self.data[self.start:self.end].split(b"\n")
            lines.pop()  # the span ends with a newline: the split's last item is empty
            if self.head is not None:
                lines.insert(0, self.head)
            self._lines = lines
        return self._lines

    def __bool__(self) -> bool:  # without counting: a span is never empty of lines unless it is empty
        return self.head is not None or self.end > self.start

    def __len__(self) -> int:
        if self._count < 0:
            self._count = self.data.count(b"\n", self.start, self.end) + (self.head is not None)
        return self._count

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        return self.lines()[index]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.lines())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Chunk):
            return self.lines() == other.lines()
        return isinstance(other, list) and self.lines() == other

    __hash__ = None  # type: ignore[assignment]  # equal to lists, so unhashable like them

    def __add__(self, other: Sequence[bytes]) -> list[bytes]:
        return [*self.lines(), *other]

    def __radd__(self, other: Sequence[bytes]) -> list[bytes]:
        return [*other, *self.lines()]

    def __repr__(self) -> str:
        return f"Chunk({self.lines()!r})"


#: a batch of whole lines: a Chunk, or a list (see the module's docstring)
Batch = Sequence[bytes]


@dataclass
class StreamStats:
    """Counters and gauges about one followed path (exported as logtaild_* self-metrics)."""

    bytes_read: int = 0
    lines_cut: int = 0
    reopens: int = 0
    rotations: dict[str, int] = field(
        default_factory=lambda: {"rename": 0, "truncate": 0, "delete": 0}
    )
    drain_timeouts: int = 0
    read_errors: int = 0
    size: int = 0
    offset: int = 0
    inode: int = 0
    last_read: float = 0.0
    last_rotation: float = 0.0

    @property
    def lag(self) -> int:
        return max(0, self.size - self.offset)


class _Handle:
    """One open file and where we are in it."""

    __slots__ = (
        "fd", "identity", "pos", "consumed", "partial", "skipping", "last_data", "drain_since",
        "fingerprint", "tail",
    )

    def __init__(self, fd: int, identity: FileIdentity, now: float) -> None:
        self.fd = fd
        self.identity = identity
        self.pos = 0  # where the next read starts
        self.consumed = 0  # offset just after the last whole line handed out (or dropped)
        self.partial = b""
        self.skipping = False  # inside a line we drop up to its newline
        self.last_data = now
        self.drain_since = now
        self.fingerprint: tuple[str, int] | None = None
        self.tail = b""  # the last bytes read, to notice a truncation the file has since outgrown

    def seek(self, offset: int) -> None:
        os.lseek(self.fd, offset, os.SEEK_SET)
        self.pos = self.consumed = offset
        self.partial = b""
        self.skipping = False
        keep = min(TAIL_CHECK_BYTES, offset)
        self.tail = os.pread(self.fd, keep, offset - keep) if keep else b""

    def rewritten(self) -> bool:
        """Do the bytes before our position differ from what we read there? (truncated and regrown)"""
        if not self.tail:
            return False
        return os.pread(self.fd, len(self.tail), self.pos - len(self.tail)) != self.tail

    def position(self, offset: int | None = None) -> Position:
        """A checkpoint at `offset` (default: after the last whole line handed out)."""
        offset = self.consumed if offset is None else offset
        if self.fingerprint is None or self.fingerprint[1] < FINGERPRINT_BYTES:
            head = os.pread(self.fd, FINGERPRINT_BYTES, 0)
            self.fingerprint = (digest(head), len(head))
        start = max(0, offset - TAIL_HASH_BYTES)
        tail = os.pread(self.fd, offset - start, start)
        return Position(
            self.identity.dev, self.identity.ino, offset,
            self.fingerprint[0], self.fingerprint[1], digest(tail),
        )

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _describe(read: list[tuple[str, int | None]]) -> str:
    """'a.log.2 (120 bytes), a.log.1 (cannot be opened: not counted)' for a log line."""
    return ", ".join(f"{os.path.basename(name)} ({size} bytes)" if size is not None
                     else f"{os.path.basename(name)} (cannot be opened: not counted)"
                     for name, size in read)


class FileStream:
    """Follows `path` forever. Drive it with `poll()`; no threads, no sleeps, an injectable clock."""

    def __init__(
        self,
        path: str,
        *,
        from_start: bool = False,
        max_line: int = 65536,
        chunk: int = 1 << 20,  # a catch-up's batch: the compiled core's per-batch flush costs per series, not per line
        drain_grace: float = 2.0,
        drain_max: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        resume: list[Position] | None = None,
    ) -> None:
        self.path = path
        self.max_line = max_line
        self.chunk = chunk
        self.drain_grace = drain_grace
        self.drain_max = drain_max
        self.stats = StreamStats()
        self._clock = clock
        self._cur: _Handle | None = None
        self._draining: list[_Handle] = []
        self._missing = False
        self._warned: dict[str, float] = {}
        self._held: tuple[_Handle, int] | None = None  # a range handed out: checkpoint no further
        self._finished: Position | None = None  # where the last drained file ended (path empty since)
        self._finished_mtime: int | None = None  # the latest last write of the files we closed
        self._open_errno: int | None = None  # why the last _open() failed (None: it did not)
        self._blocked = False  # the path could not be opened since it last was: see _catch_up
        self._pending: list[Position] | None = None  # a checkpoint not applied yet: see _start
        self._start(from_start, resume or [])

    # ---- start-up -------------------------------------------------------------------------------

    def _start(self, from_start: bool, saved: list[Position]) -> None:
        """Apply the start-up rules: validated checkpoints first, else from the end (or start)."""
        handle = self._open(self.path)
        if handle is None and saved and self._open_errno != errno.ENOENT:
            # the path exists but cannot be opened (EACCES, EMFILE): it may well be the checkpointed
            # file, and deciding now would read it again from the start; decide once it opens
            if self._pending is None:
                log.warning("%s: cannot open it; its checkpoint (inode %d, offset %d) is applied once "
                            "it opens", self.path, saved[-1].ino, saved[-1].offset)
            self._pending = saved
            return
        self._pending = None
        self._blocked = False
        if not saved:
            if handle is not None:
                self._cur = handle
                if not from_start:
                    self._seek_end(handle)
            return
        *old, current = saved
        for position in old:
            if self._resume_rotated(position) is None:
                log.warning("%s: a file still being drained at the checkpoint (inode %d) is gone: the "
                            "lines written to it after offset %d are not counted", self.path,
                            position.ino, position.offset)
        self._resume_current(current, handle)

    def _seek_end(self, handle: _Handle) -> None:
        """Start at the end; if the file ends mid-line, skip to the next newline (that line began before us)."""
        size = os.fstat(handle.fd).st_size
        handle.seek(size)
        if size and os.pread(handle.fd, 1, size - 1) != b"\n":
            handle.skipping = True

    def _resume_current(self, saved: Position, handle: _Handle | None) -> None:
        """Resume the checkpointed file of the path; `handle` is the path opened now (None: missing)."""
        if handle is not None and handle.identity == saved.identity:
            self._cur = handle
            if validates(handle.fd, saved):
                handle.seek(saved.offset)
                log.info("%s: resuming at offset %d", self.path, saved.offset)
                return
            self.stats.rotations["truncate"] += 1
            if not self._resume_copy(saved):
                self._log_from_start(saved, handle)
            return
        # the path now holds a file created after we stopped: finish the old one first
        found = self._resume_rotated(saved)
        if found is not None:
            self._resume_newer(found, handle)
        elif handle is not None and validates(handle.fd, saved):
            # not found by inode, but this file holds the checkpointed bytes: its lines up to the
            # offset were counted, whatever the inode says (a copy, or a damaged checkpoint)
            handle.seek(saved.offset)
            log.warning("%s: the checkpoint names inode %d, the file is inode %d, but it holds the "
                        "checkpointed bytes up to offset %d (a copy of the file, or a damaged "
                        "checkpoint): resuming there", self.path, saved.ino, handle.identity.ino,
                        saved.offset)
        else:
            self._log_gone(saved, handle)
        self._cur = handle  # None while the path is missing: it will be read from its start

    def _log_from_start(self, saved: Position, handle: _Handle) -> None:
        """Say what reading the checkpointed inode from its start means for the count."""
        if same_head(handle.fd, saved):
            log.warning("%s: the checkpoint (offset %d) does not match the file although its first %d "
                        "bytes do (a damaged checkpoint, or truncated and rewritten alike while "
                        "stopped): reading it from the start, so the lines before its true position "
                        "are counted twice", self.path, saved.offset, saved.fingerprint_len)
        else:
            log.warning("%s: truncated, or replaced by a new file on the same inode, while stopped: "
                        "its first bytes are not the checkpointed ones, so it is new content, read "
                        "from the start", self.path)

    def _log_gone(self, saved: Position, handle: _Handle | None) -> None:
        """Say what happens when the checkpointed file is found nowhere (by inode or content)."""
        if handle is not None and same_head(handle.fd, saved):
            log.warning("%s: the checkpointed file (inode %d) is gone, but the file now at the path "
                        "(inode %d) starts with the same %d bytes: most likely the same file with a "
                        "damaged checkpoint; reading it from the start, so the lines before its true "
                        "position are counted twice", self.path, saved.ino, handle.identity.ino,
                        saved.fingerprint_len)
            return
        log.warning("%s: the checkpointed file (inode %d) is gone (deleted or compressed while "
                    "stopped): the lines written to it after offset %d are skipped; the %s is read "
                    "from its start", self.path, saved.ino, saved.offset,
                    "file now at the path" if handle is not None else "path, once it appears,")

    def _resume_copy(self, saved: Position) -> bool:
        """copytruncate while stopped: the lines after the checkpoint are in the copy; finish it first.

        The copy is a rotated sibling (another inode) that validates against the checkpoint: the same
        first bytes and the same bytes before the offset.
        """
        for candidate in self._rotated_candidates():
            copy = self._open(candidate)
            if copy is None:
                continue
            if copy.identity != saved.identity and validates(copy.fd, saved):
                copy.seek(saved.offset)
                self._draining.append(copy)
                log.info("%s: truncated while stopped; finishing its copy %s from offset %d, then "
                         "reading it from the start", self.path, candidate, saved.offset)
                return True
            copy.close()
        return False

    def _resume_newer(self, found: _Handle, current: _Handle | None) -> None:
        """Rotated more than once while stopped: read whole the files rotated after the checkpointed one."""
        known = {found.identity, *(h.identity for h in self._draining)}
        if current is not None:
            known.add(current.identity)
        read = self._read_newer(os.fstat(found.fd).st_mtime_ns, known)
        if read:
            log.info("%s: also reading %s, rotated after the checkpointed file while stopped",
                     self.path, _describe(read))

    def _read_newer(self, since: int, known: set[FileIdentity]) -> list[tuple[str, int | None]]:
        """Drain whole the rotated siblings last written after `since` whose identity is not `known`.

        The one search for files rotated past us (start-up and `_catch_up`): they were written after
        the last file we read, so none of their lines has been counted. Compressed files are not
        read. Returns (name, bytes to read, None when it cannot be opened) in the order they are read.
        """
        newer: list[tuple[int, str]] = []
        for candidate in self._rotated_candidates():
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if st.st_mtime_ns > since and FileIdentity.of(st) not in known:
                newer.append((st.st_mtime_ns, candidate))
        read: list[tuple[str, int | None]] = []
        for _mtime, candidate in sorted(newer):
            handle = self._open(candidate)
            if handle is None:
                read.append((candidate, None))
                continue
            if handle.identity in known:
                handle.close()
                continue
            known.add(handle.identity)
            self._draining.append(handle)
            self.stats.rotations["rename"] += 1
            read.append((candidate, os.fstat(handle.fd).st_size))
        return read

    def _resume_rotated(self, saved: Position) -> _Handle | None:
        """Find a checkpointed file under a rotated name (matched by dev/ino) and drain it."""
        for candidate in self._rotated_candidates():
            try:
                st = os.stat(candidate)
            except OSError:
                continue
            if FileIdentity.of(st) != saved.identity:
                continue
            handle = self._open(candidate)
            if handle is not None and handle.identity == saved.identity and validates(handle.fd, saved):
                handle.seek(saved.offset)
                self._draining.append(handle)
                self.stats.rotations["rename"] += 1
                log.info("%s: finishing %s (rotated while stopped) from offset %d",
                         self.path, candidate, saved.offset)
                return handle
            if handle is not None:
                handle.close()
        return None

    def _rotated_candidates(self) -> list[str]:
        return rotated_candidates(self.path)

    # ---- polling --------------------------------------------------------------------------------

    def poll(self) -> Iterator[Batch]:
        """Read everything there is now; yield batches of whole lines.

        A consumer may stop taking batches at any point (the service does, when a report is due)
        and simply call poll() again later: every batch is yielded only after all the state it
        implies has been recorded (positions advanced, a drained file closed, the gauges set), and
        the code after a yield only starts the next step. So an abandoned poll hands out nothing
        twice and loses nothing. A generator, not a list: a backlog of gigabytes stays on disk
        until it is wanted, a chunk at a time.
        """
        for batch in self._batches():
            self._update_gauges()
            yield batch
        self._update_gauges()  # a poll that found nothing still refreshes size and lag

    def _batches(self) -> Iterator[Batch]:
        if self._pending is not None:
            self._start(False, self._pending)  # the checkpoint decides, not from_start
        elif self._cur is None:
            self._cur = self._open_path()
            if self._cur is not None:
                self.stats.reopens += 1
                if self._blocked:
                    self._catch_up(self._cur, None)
        while self._cur is not None:
            yield from self._read(self._cur)
            if not self._check_path():
                break
        # after the current file, so a handle it just handed over (rotation, copy) is read at once
        for handle in list(self._draining):
            yield from self._read(handle)
            if self._truncated(handle, os.fstat(handle.fd).st_size):
                yield from self._read(handle)
            last = self._finish_drain(handle)
            if last:
                yield last

    def _read(self, handle: _Handle) -> Iterator[Batch]:
        try:
            if handle.rewritten():
                self._truncated(handle, -1)
        except OSError:
            pass  # the read below reports it
        while True:
            try:
                data = os.read(handle.fd, self.chunk)
            except OSError as exc:
                self.stats.read_errors += 1
                self._warn("read", f"{self.path}: read error: {exc.strerror}; retrying")
                return
            if not data:
                return
            handle.pos += len(data)
            handle.tail = (handle.tail + data)[-TAIL_CHECK_BYTES:] if len(data) < TAIL_CHECK_BYTES \
                else data[-TAIL_CHECK_BYTES:]
            handle.last_data = self._clock()
            self.stats.bytes_read += len(data)
            self.stats.last_read = time.time()
            lines = self._split(handle, data)
            if lines:
                yield lines

    def _split(self, handle: _Handle, data: bytes) -> Batch:
        lines, cut = split_lines(handle, data, self.max_line)
        self.stats.lines_cut += cut
        return lines

    def _finish_drain(self, handle: _Handle) -> Batch:
        """Close a drained handle once it has been quiet for the grace period (or past the bound).

        Returns its last line if the writer left it without a newline (else []): the caller yields
        it, with the handle already closed, so a consumer that stops there never gets it again.
        """
        if not self._drained(handle):
            return []
        last: Batch = []
        if handle.partial and not handle.skipping:
            # the writer left it without a final newline: the line is complete as far as anyone will know
            last = [handle.partial]
            handle.partial = b""
            handle.consumed = handle.pos
        if self._cur is None and len(self._draining) == 1:
            # nothing else is open for the path: remember where this file ended, or a checkpoint taken
            # before the path reappears would fall back to an older position and count lines again
            try:
                self._finished = handle.position()
            except OSError:
                pass
        self._note_finished(handle)
        handle.close()
        self._draining.remove(handle)
        return last

    def _note_finished(self, handle: _Handle) -> None:
        """Remember when a file we close was last written: a catch-up reads only files newer than all."""
        try:
            mtime = os.fstat(handle.fd).st_mtime_ns
        except OSError:
            return
        self._finished_mtime = max(mtime, self._finished_mtime or mtime)

    def _drained(self, handle: _Handle) -> bool:
        """Is a draining handle done: quiet for the grace period, or still written past `drain_max`?"""
        if self._held is not None and self._held[0] is handle:
            return False  # its first half is still being counted elsewhere; keep it for the checkpoint
        now = self._clock()
        if now - handle.last_data >= self.drain_grace:
            return True
        if now - handle.drain_since < self.drain_max:
            return False
        self.stats.drain_timeouts += 1
        log.warning("%s: old file still growing after %.0fs; closing it", self.path, self.drain_max)
        return True

    def _check_path(self) -> bool:
        """At EOF: has the path rotated or been truncated? True when there is more to read now."""
        cur = self._cur
        assert cur is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._path_missing(cur)
        except OSError as exc:
            self.stats.read_errors += 1
            self._warn("stat", f"{self.path}: cannot stat: {exc.strerror}; retrying")
            return False
        self._missing = False
        if FileIdentity.of(st) == cur.identity:
            return self._truncated(cur, st.st_size)
        if self._truncated(cur, os.fstat(cur.fd).st_size):
            return True  # truncated, written again and rotated away: read its new content first
        return self._rotate(cur)

    def _truncated(self, handle: _Handle, size: int) -> bool:
        """Same file, now shorter than our position: copytruncate. Read it again from 0."""
        if size >= handle.pos:
            return False
        size = max(size, 0)
        self.stats.rotations["truncate"] += 1
        self.stats.last_rotation = time.time()
        log.info("%s: truncated (size %d, offset %d); reading from the start",
                 self.path, size, handle.pos)
        self._recover_copy(handle)
        handle.seek(0)
        handle.fingerprint = None
        return True

    def _recover_copy(self, handle: _Handle) -> None:
        """copytruncate: the lines written after our last read are in the copy; drain it from there.

        The copy is a rotated sibling holding, just before our position, the bytes we read there
        last. Only what was written between logrotate's copy and its truncate stays lost.
        """
        if not handle.tail or handle is not self._cur:
            return
        for candidate in self._rotated_candidates():
            copy = self._open(candidate)
            if copy is None:
                continue
            try:
                matches = copy.identity != handle.identity and os.pread(
                    copy.fd, len(handle.tail), handle.pos - len(handle.tail)) == handle.tail
                if matches:
                    copy.seek(handle.consumed)
            except OSError:
                matches = False
            if matches:
                self._draining.append(copy)
                log.info("%s: reading the rest of the copy %s from offset %d",
                         self.path, candidate, handle.consumed)
                return
            copy.close()

    def _path_missing(self, cur: _Handle) -> bool:
        if not self._missing:
            self._missing = True
            log.info("%s: path is gone; still reading the open file until a new one appears", self.path)
        deleted = self._nlink(cur) == 0
        if deleted and self._clock() - cur.last_data >= self.drain_grace:
            # deleted and quiet: holding it open would only pin its disk space
            self.stats.rotations["delete"] += 1
            self._cur = None
            self._draining.append(cur)
            cur.drain_since = cur.last_data = self._clock() - self.drain_grace
        return False

    def _rotate(self, cur: _Handle) -> bool:
        new = self._open_path()
        if new is None:
            return False  # `cur` stays current: it is still read to its end at every poll
        kind = "delete" if self._nlink(cur) == 0 else "rename"
        self.stats.rotations[kind] += 1
        self.stats.reopens += 1
        self.stats.last_rotation = time.time()
        log.info("%s: rotated (%s); draining the old file, reading the new one from its start",
                 self.path, kind)
        cur.drain_since = cur.last_data = self._clock()  # the grace starts now, not at its last data
        self._draining.append(cur)
        self._cur = new
        if self._blocked:
            self._catch_up(new, cur)
        return True

    def _open_path(self) -> _Handle | None:
        """Open the followed path; a failure (any errno) means files may rotate past us unseen."""
        handle = self._open(self.path)
        if handle is None:
            self._blocked = True
        return handle

    def _catch_up(self, new: _Handle, was_reading: _Handle | None) -> None:
        """The path could not be opened for a while and now opens as `new`: read what rotated past us.

        Meanwhile the file we were reading went on being read through its descriptor (`was_reading`,
        finished from where we were, as a drained file); files created and rotated away in between
        were never opened. They are found by the start-up search (`_read_newer`): siblings written
        after the newest file we hold or last finished, on an inode we never read, read whole.
        """
        self._blocked = False
        since = self._last_read_mtime()
        if since is None:
            return  # nothing read from this path yet: no file to be newer than
        # open files only: the inode of a file we finished and closed may since have been reused
        # (unlink, create); that file itself is left out by its mtime, which is `since`
        known = {new.identity, *(h.identity for h in self._draining)}
        read = self._read_newer(since, known)
        if not read:
            return
        finishing = "" if was_reading is None else \
            f"; the file it was reading (inode {was_reading.identity.ino}) is finished from offset " \
            f"{was_reading.pos}"
        log.warning("%s: could not be opened for a while and was rotated meanwhile; reading the files "
                    "rotated in between: %s%s", self.path, _describe(read), finishing)

    def _last_read_mtime(self) -> int | None:
        """When the newest file we hold or last finished was last written (None: there is none)."""
        times = [] if self._finished_mtime is None else [self._finished_mtime]
        for handle in self._draining:
            try:
                times.append(os.fstat(handle.fd).st_mtime_ns)
            except OSError:
                pass
        return max(times, default=None)

    @staticmethod
    def _nlink(handle: _Handle) -> int:
        try:
            return os.fstat(handle.fd).st_nlink
        except OSError:
            return 0

    def _open(self, path: str) -> _Handle | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._open_errno = errno.ENOENT
            self._warn("missing", f"{path}: waiting for the file to appear")
            return None
        except OSError as exc:
            self._open_errno = exc.errno
            self.stats.read_errors += 1
            self._warn("open", f"{path}: cannot open: {exc.strerror} (running as user "
                               f"{_user()}); retrying")
            return None
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            os.close(fd)
            self._open_errno = errno.EINVAL
            self._warn("type", f"{path}: not a regular file; retrying")
            return None
        self._open_errno = None
        self._warned.clear()
        return _Handle(fd, FileIdentity.of(st), self._clock())

    def _update_gauges(self) -> None:
        cur = self._cur
        if cur is None:
            return
        try:
            self.stats.size = os.fstat(cur.fd).st_size
        except OSError:
            return
        self.stats.offset = cur.pos
        self.stats.inode = cur.identity.ino

    def _warn(self, key: str, message: str) -> None:
        """Log a recurring problem once, then again at most every WARN_EVERY seconds."""
        now = self._clock()
        last = self._warned.get(key)
        if last is None or now - last >= WARN_EVERY:
            self._warned[key] = now
            log.warning("%s", message)

    # ---- checkpoints and shutdown --------------------------------------------------------------

    def split_backlog(self, min_bytes: int) -> tuple[int, int, int] | None:
        """Hand the first half of a large unread backlog of the current file to another counter.

        Returns (fd, start, end), a duplicated descriptor (the caller closes it) and a range of
        whole lines to count elsewhere; this stream goes on from `end`. Checkpoints stay at
        `start` until `release()`, so a crash re-counts rather than skips the range.
        """
        cur = self._cur
        if cur is None or cur.partial or cur.skipping or self._held is not None:
            return None
        size = os.fstat(cur.fd).st_size
        if size - cur.pos < min_bytes:
            return None
        middle = cur.pos + (size - cur.pos) // 2
        newline = os.pread(cur.fd, self.max_line + 1, middle).find(b"\n")
        if newline < 0:
            return None
        start, end = cur.pos, middle + newline + 1
        self._held = (cur, start)
        cur.seek(end)
        self.stats.bytes_read += end - start
        return os.dup(cur.fd), start, end

    def release(self, lines_cut: int = 0) -> None:
        """The range from `split_backlog` has been counted."""
        self._held = None
        self.stats.lines_cut += lines_cut

    def positions(self) -> list[Position]:
        """Where to resume: the files being drained, then the current file (last)."""
        out: list[Position] = []
        held, held_at = self._held or (None, 0)
        for handle in [*self._draining, self._cur]:
            if handle is None:
                continue
            try:
                out.append(handle.position(held_at if handle is held else None))
            except OSError as exc:
                self._warn("position", f"{self.path}: cannot checkpoint: {exc.strerror}")
        if not out and self._cur is None and self._finished is not None:
            out.append(self._finished)  # resumes as "rotated while stopped", at its end
        return out

    @property
    def draining(self) -> int:
        """How many old files are still being drained."""
        return len(self._draining)

    def close(self) -> None:
        for handle in [*self._draining, self._cur]:
            if handle is not None:
                handle.close()
        self._draining.clear()
        self._cur = None


def _may_hold_a_long_line(data: bytes, max_line: int, start: int, end: int) -> bool:
    """False when no line of `data[start:end]` can be longer than `max_line`: every aligned window of half
    that size holds a newline (a longer line would contain a whole window). A few finds, not a pass over
    every line's length, for the common chunk of short lines."""
    window = max(1, max_line // 2)
    return any(data.find(b"\n", at, at + window) < 0 for at in range(start, end - window + 1, window))


def split_lines(handle: _Handle, data: bytes, max_line: int) -> tuple[Batch, int]:
    """Whole lines out of newly read `data`, and how many over-long lines were dropped.

    Keeps the partial tail in `handle.partial`; advances `handle.consumed` past the whole lines. The
    lines come as a Chunk of the buffer (no copy, no split), or as a list when the read may hold a line
    longer than `max_line`, which is dropped. A partial line the previous read left, which this read
    ends, becomes the Chunk's `head`: joining it to the whole read would copy a megabyte each read.
    """
    cut = 0
    head: bytes | None = None
    base = handle.pos - len(data) - len(handle.partial)
    start = 0
    if handle.partial:
        newline = data.find(b"\n")
        if 0 <= newline and len(handle.partial) + newline <= max_line:
            head = handle.partial + data[:newline]
            base += len(handle.partial)
            handle.partial = b""
            start = newline + 1
            handle.consumed = base + start
        else:  # no newline yet, or a line too long: read as one with the rest (split below drops it)
            data = handle.partial + data
    if handle.skipping:
        newline = data.find(b"\n")
        if newline < 0:
            handle.partial = b""
            return [], 0
        handle.skipping = False
        start = newline + 1
        handle.consumed = base + start
    end = max(start, data.rfind(b"\n", start) + 1)  # just after the last newline (start: none)
    if end > start:
        handle.consumed = base + end
    if len(data) - end > max_line:  # the partial line is already too long: dropped without a copy
        cut += 1
        handle.partial = b""
        handle.skipping = True
    else:
        handle.partial = data[end:] if end else data
    first = [] if head is None else [head]
    if end == start:
        return first, cut
    if end - start > max_line and _may_hold_a_long_line(data, max_line, start, end):
        lines = data[start:end - 1].split(b"\n")
        kept = [line for line in lines if len(line) <= max_line]
        if len(kept) < len(lines):
            return first + kept, cut + len(lines) - len(kept)
    if 2 * (end - start) < len(data):  # a few lines and a long rest: the chunk keeps a copy, not the buffer
        return Chunk(data[start:end], 0, end - start, head), cut
    return Chunk(data, start, end, head), cut


def read_range(fd: int, start: int, end: int, max_line: int,
               chunk: int = 1 << 20) -> Iterator[tuple[Batch, int]]:
    """(lines, lines cut) batches of the whole lines in [start, end) of an open file (pread only)."""
    handle = _Handle(fd, FileIdentity(0, 0), 0.0)
    handle.pos = handle.consumed = start
    while handle.pos < end:
        data = os.pread(fd, min(chunk, end - handle.pos), handle.pos)
        if not data:
            return
        handle.pos += len(data)
        lines, cut = split_lines(handle, data, max_line)
        if lines or cut:
            yield lines, cut


def _user() -> str:
    import getpass  # here, not at import (start-up): named only in a permission error's message

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"



#!/usr/bin/env python3
"""webserver_sim: a stand-in web server that writes a rotating access log for logtaild to follow.

It reproduces the generator of the original assignment: one line per request,

    ip<TAB>METHOD route<TAB>status<TAB>bytes[<TAB>latency_ms]

with routes ``/``, ``/library``, ``/blog``, ``/questions`` weighted 50/20/20/5, GET/POST 95/5,
statuses 200/404/500 weighted 90/5/1, a body size uniform in 64..1024 and a random client IP (from a pool of 10,000).
Rotation renames PATH to ``PATH.<unix time>`` (``.1``, ``.2``... if that name is taken) and then
opens a new PATH, so the path is briefly missing, as with logrotate's ``create`` mode.

Pacing: by default a random 10-100 ms pause between lines; ``--rate`` and ``--ramp`` give a
fixed schedule instead, written in batches that each cover at most ~10 ms of schedule (one write
and one flush per batch), so 100,000 lines/s fit on one core.

Every line has a time on the schedule, counted in seconds from the start; incidents
(``--incident``) and ``--duration`` are judged on it. With ``--seed`` the lines, and for
``--rate``/``--ramp`` their schedule times too, are the same on every run; only the wall clock
at which they reach the file varies.

On exit (``--lines``/``--duration`` reached, SIGTERM or SIGINT) the last line on stderr is
exactly ``webserver_sim: wrote N lines``, N counting every file written to, rotated ones too.

Importable: ``main(argv)`` runs the CLI; ``generate_lines()`` yields ``(time, line)`` pairs and
``sample_lines()`` gives a plain list, for tests and benchmarks.
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any, Protocol, TypeVar

T = TypeVar("T")
SignalHandler = Callable[[int, FrameType | None], Any] | int | None

BASE_ROUTES: tuple[tuple[str, int], ...] = (("/", 50), ("/library", 20), ("/blog", 20), ("/questions", 5))
EXTRA_ROUTE_WEIGHT = 1
METHODS: tuple[tuple[str, int], ...] = (("GET", 95), ("POST", 5))
STATUSES: tuple[tuple[str, int], ...] = (("200", 90), ("404", 5), ("500", 1))
BYTES_MIN, BYTES_MAX = 64, 1024
PAUSE_MIN, PAUSE_MAX = 0.010, 0.100
#: Schedule seconds one batch may cover: the longest a due line waits before it is flushed.
BATCH_WINDOW = 0.010
#: Longest single sleep, so SIGTERM and rotation are handled promptly during long pauses.
MAX_NAP = 0.050
#: Client IPs are picked from a pool drawn at start (clients come back, as in real logs).
IP_POOL_SIZE = 10_000
#: Latencies are drawn once into a pool (formatted once too) and picked from it per line: ~0.1 us
#: instead of ~1.5 us for a lognormal draw and its formatting, same distribution up to ~10 s.
LATENCY_POOL_SIZE = 65_536
#: Unicast, not private 10/8 nor loopback.
_FIRST_OCTETS = tuple(n for n in range(1, 224) if n not in (10, 127))
#: Latency mixture (ms): most requests fast, a few slow with a tail to several seconds.
FAST_MEDIAN_MS, FAST_SIGMA = 15.0, 0.9
SLOW_MEDIAN_MS, SLOW_SIGMA, SLOW_SHARE = 300.0, 1.0, 0.03
MAX_LATENCY_MS = 60_000.0
_FAST_MU, _SLOW_MU = math.log(FAST_MEDIAN_MS), math.log(SLOW_MEDIAN_MS)
INCIDENT_KINDS = ("errors", "latency", "drop")
ERRORS_SHARE = 0.5
LATENCY_FACTOR = 10.0
ALL_ROUTES = "*"


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Incident:
    """A window [start, start + duration) of the schedule; `route` None means every route."""

    kind: str
    start: float
    duration: float
    route: str | None = None

    @property
    def end(self) -> float:
        return round(self.start + self.duration, 9)  # 0.1 + 0.2 ends at 0.3, not 0.30000000000000004

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True)
class Ramp:
    """Rate rising (or falling) linearly from `start_rate` to `end_rate` over `seconds`, then held."""

    start_rate: float
    end_rate: float
    seconds: float


def parse_incident(text: str) -> Incident:
    """`KIND[@/route]:START:DURATION` -> Incident (the route may itself contain ':' or '@')."""
    head, start, duration = _split_fields(text, 3, "KIND[@/route]:START:DURATION")
    kind, _, route = head.partition("@")
    if kind not in INCIDENT_KINDS:
        raise ValueError(f"unknown incident kind {kind!r} (one of {', '.join(INCIDENT_KINDS)})")
    if route:
        check_route(route)
    begin, length = _non_negative(start, "START"), _non_negative(duration, "DURATION")
    return Incident(kind, begin, length, route or None)


def parse_ramp(text: str) -> Ramp:
    """`FROM:TO:SECONDS` -> Ramp."""
    low, high, seconds = _split_fields(text, 3, "FROM:TO:SECONDS")
    ramp = Ramp(_non_negative(low, "FROM"), _non_negative(high, "TO"), _non_negative(seconds, "SECONDS"))
    if ramp.end_rate <= 0 or ramp.seconds <= 0:
        raise ValueError("TO and SECONDS must be > 0")
    return ramp


def check_route(route: str) -> str:
    """A route must start with '/' and hold no whitespace or control character (it is one word)."""
    if not route.startswith("/") or any(ch.isspace() or not ch.isprintable() for ch in route):
        raise ValueError(f"bad route {route!r}: must start with '/', no spaces or control characters")
    return route


def _split_fields(text: str, count: int, shape: str) -> list[str]:
    parts = text.rsplit(":", count - 1)
    if len(parts) != count:
        raise ValueError(f"{text!r} is not {shape}")
    return parts


def _non_negative(text: str, name: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a finite number >= 0, not {text!r}")
    return value


# --------------------------------------------------------------------------- schedules


class Schedule(Protocol):
    """An iterator of line times (seconds from start) that can jump over a span."""

    def __iter__(self) -> Iterator[float]: ...

    def __next__(self) -> float: ...

    def skip_until(self, t: float) -> None:
        """Make the next time returned the first one >= t."""


class RateSchedule:
    """Line i at the time when the integral of the rate reaches i: a fixed `rate`, or a `ramp`."""

    def __init__(self, rate: float | None = None, ramp: Ramp | None = None) -> None:
        if (rate is None) == (ramp is None) or (rate is not None and rate <= 0):
            raise ValueError("give one of rate > 0 or ramp")
        self._ramp = ramp if ramp is not None else Ramp(rate or 0.0, rate or 0.0, 1.0)
        self._period = 1.0 / rate if rate is not None else None  # fast path for a fixed rate
        self._index = 0

    def __iter__(self) -> RateSchedule:
        return self

    def __next__(self) -> float:
        i = self._index
        self._index = i + 1
        return i * self._period if self._period is not None else self.time_of(i)

    def skip_until(self, t: float) -> None:
        self._index = max(self._index, math.ceil(self.count_before(t) - 1e-9))

    def count_before(self, t: float) -> float:
        """Lines due in [0, t): the integral of the rate."""
        r = self._ramp
        if t >= r.seconds:
            return (r.start_rate + r.end_rate) * r.seconds / 2 + r.end_rate * (t - r.seconds)
        return r.start_rate * t + (r.end_rate - r.start_rate) * t * t / (2 * r.seconds)

    def time_of(self, i: int) -> float:
        """Inverse of count_before."""
        r = self._ramp
        in_ramp = (r.start_rate + r.end_rate) * r.seconds / 2
        if i >= in_ramp:
            return r.seconds + (i - in_ramp) / r.end_rate
        a = (r.end_rate - r.start_rate) / (2 * r.seconds)
        if abs(a) < 1e-12:
            return i / r.start_rate
        return (-r.start_rate + math.sqrt(max(0.0, r.start_rate**2 + 4 * a * i))) / (2 * a)


class PauseSchedule:
    """The original pacing: a random pause of 10-100 ms after each line."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(None if seed is None else f"pause-{seed}")
        self._next = 0.0

    def __iter__(self) -> PauseSchedule:
        return self

    def __next__(self) -> float:
        t = self._next
        self._next += self._rng.uniform(PAUSE_MIN, PAUSE_MAX)
        return t

    def skip_until(self, t: float) -> None:
        while self._next < t:
            next(self)


# --------------------------------------------------------------------------- line generation


@dataclass(frozen=True)
class _Tables:
    """Weighted choices as flat lookup tables (one random() and one index per choice)."""

    requests: tuple[tuple[str, str], ...]  # (route, "METHOD route")
    statuses: tuple[str, ...]
    ips: tuple[str, ...]
    sizes: tuple[str, ...]  # "64".."1024", formatted once
    latencies: tuple[float, ...]  # empty without --latency
    latency_texts: tuple[str, ...]  # the same, formatted with 3 decimals


def _weighted(items: Iterable[tuple[T, int]]) -> tuple[T, ...]:
    """Each item repeated `weight` times, so a uniform index is a weighted choice."""
    return tuple(item for item, weight in items for _ in range(weight))


def _build_tables(rng: random.Random, extra_routes: Sequence[str], latency: bool) -> _Tables:
    routes = list(BASE_ROUTES) + [(check_route(r), EXTRA_ROUTE_WEIGHT) for r in extra_routes]
    pairs = [((route, f"{method} {route}"), rw * mw) for route, rw in routes for method, mw in METHODS]
    ips = tuple(_random_ip(rng) for _ in range(IP_POOL_SIZE))
    sizes = tuple(str(n) for n in range(BYTES_MIN, BYTES_MAX + 1))
    latencies = tuple(_latency_ms(rng) for _ in range(LATENCY_POOL_SIZE if latency else 0))
    texts = tuple(f"{ms:.3f}" for ms in latencies)
    return _Tables(_weighted(pairs), _weighted(STATUSES), ips, sizes, latencies, texts)


def _random_ip(rng: random.Random) -> str:
    first = rng.choice(_FIRST_OCTETS)
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _latency_ms(rng: random.Random) -> float:
    """Lognormal mixture: median 15 ms for most requests, 300 ms (tail to seconds) for a few."""
    if rng.random() < SLOW_SHARE:
        return min(math.exp(rng.gauss(_SLOW_MU, SLOW_SIGMA)), MAX_LATENCY_MS)
    return min(math.exp(rng.gauss(_FAST_MU, FAST_SIGMA)), MAX_LATENCY_MS)


@dataclass(frozen=True)
class _Active:
    """Routes (or ALL_ROUTES) each incident kind applies to, valid until schedule time `until`."""

    errors: frozenset[str]
    latency: frozenset[str]
    drop: frozenset[str]
    until: float
    quiet: bool  # no incident at all: the fast path


def _active_at(incidents: Sequence[Incident], t: float) -> _Active:
    sets: dict[str, set[str]] = {kind: set() for kind in INCIDENT_KINDS}
    for incident in incidents:
        if incident.covers(t):
            sets[incident.kind].add(incident.route or ALL_ROUTES)
    edges = [e for i in incidents for e in (i.start, i.end) if e > t]
    frozen = {kind: frozenset(routes) for kind, routes in sets.items()}
    quiet = not any(frozen.values())
    return _Active(until=min(edges, default=math.inf), quiet=quiet, **frozen)


def _hits(routes: frozenset[str], route: str) -> bool:
    return bool(routes) and (ALL_ROUTES in routes or route in routes)


def generate_lines(
    seed: int | None = None,
    *,
    latency: bool = False,
    extra_routes: Sequence[str] = (),
    incidents: Sequence[Incident] = (),
    schedule: Schedule | None = None,
) -> Iterator[tuple[float, str]]:
    """Endless `(schedule time, line)` pairs, each line ending in '\\n'; deterministic for a seed.

    Without a schedule, the original random 10-100 ms pauses are used. Lines falling in a
    `drop` incident are not produced (a global drop jumps the schedule over it).
    """
    rng = random.Random(seed)
    make_line = _line_maker(rng, _build_tables(rng, extra_routes, latency))
    times = schedule if schedule is not None else PauseSchedule(seed)
    active, until = _active_at(incidents, 0.0), -math.inf
    for t in times:
        if t >= until:
            active = _active_at(incidents, t)
            until = active.until
            if ALL_ROUTES in active.drop:
                times.skip_until(until)
                continue
        line = make_line(active)
        if line is not None:
            yield t, line


def _line_maker(rng: random.Random, tables: _Tables) -> Callable[[_Active], str | None]:
    """The per-line function, with everything it needs bound locally (this is the hot path)."""
    rand = rng.random
    requests, statuses, ips, sizes = tables.requests, tables.statuses, tables.ips, tables.sizes
    n_requests, n_statuses, n_ips, n_sizes = len(requests), len(statuses), len(ips), len(sizes)
    latency_texts, n_latencies = tables.latency_texts, len(tables.latency_texts)

    def make_line(active: _Active) -> str | None:
        route, request = requests[int(rand() * n_requests)]
        status = statuses[int(rand() * n_statuses)]
        ip = ips[int(rand() * n_ips)]
        size = sizes[int(rand() * n_sizes)]
        if not active.quiet:
            return _incident_line(rng, tables, active, route, f"{ip}\t{request}", (status, size))
        if n_latencies:
            return f"{ip}\t{request}\t{status}\t{size}\t{latency_texts[int(rand() * n_latencies)]}\n"
        return f"{ip}\t{request}\t{status}\t{size}\n"

    return make_line


def _incident_line(
    rng: random.Random, tables: _Tables, active: _Active, route: str, head: str, tail: tuple[str, str]
) -> str | None:
    """The slow path, while some incident is on: drop the line, force a 500, multiply the latency.

    `head` is "ip<TAB>METHOD route", `tail` (status, bytes) as drawn without the incident.
    """
    if _hits(active.drop, route):
        return None
    status, size = tail
    if _hits(active.errors, route) and rng.random() < ERRORS_SHARE:
        status = "500"
    if not tables.latencies:
        return f"{head}\t{status}\t{size}\n"
    ms = tables.latencies[int(rng.random() * len(tables.latencies))]
    factor = LATENCY_FACTOR if _hits(active.latency, route) else 1.0
    return f"{head}\t{status}\t{size}\t{ms * factor:.3f}\n"


def sample_lines(count: int, seed: int | None = None, *, latency: bool = False) -> list[str]:
    """The first `count` lines `generate_lines` would give (for benchmarks and tests)."""
    lines = generate_lines(seed, latency=latency, schedule=RateSchedule(rate=1e9))
    return [line for _, line in itertools.islice(lines, count)]


# --------------------------------------------------------------------------- output


def rotated_name(path: str, when: float) -> str:
    """`PATH.<unix time>`, or the first of `.1`, `.2`... after it that does not exist yet."""
    base = f"{path}.{int(when)}"
    candidate, n = base, 0
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{base}.{n}"
    return candidate


class RotatingWriter:
    """Appends batches to PATH, flushing each; renames PATH away every `interval` seconds."""

    def __init__(self, path: str, append: bool = True, interval: float = 0.0) -> None:
        self.path, self.count = path, 0
        self._mode, self._interval = ("a" if append else "w"), interval
        self._file: IO[str] = self._open(self._mode)
        self.reopen_requested = False  # set by SIGHUP, as a web server reopens its logs
        self._next_rotation = time.monotonic() + interval if interval > 0 else math.inf

    def _open(self, mode: str) -> IO[str]:
        return open(self.path, mode, encoding="utf-8", newline="\n")

    def write(self, lines: list[str]) -> None:
        if self.reopen_requested:
            self.reopen_requested = False
            self._file.close()
            self._file = self._open("a")
        if lines:
            self._file.write("".join(lines))
            self._file.flush()
            self.count += len(lines)

    def maybe_rotate(self, now: float) -> None:
        if now < self._next_rotation:
            return
        self._file.close()
        os.rename(self.path, rotated_name(self.path, time.time()))
        self._file = self._open("a")
        self._next_rotation = max(self._next_rotation + self._interval, now)

    def close(self) -> None:
        self._file.close()


# --------------------------------------------------------------------------- running


class StopFlag:
    """Set by SIGTERM/SIGINT; the writing loop checks it between batches and during sleeps."""

    def __init__(self) -> None:
        self.is_set = False

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.is_set = True


@dataclass(frozen=True)
class Limits:
    lines: float = math.inf
    duration: float = math.inf


def _wait_until(deadline: float, writer: RotatingWriter, stop: StopFlag) -> bool:
    """Sleep until `deadline` (monotonic), rotating on time; False if asked to stop."""
    while not stop.is_set:
        now = time.monotonic()
        writer.maybe_rotate(now)
        if now >= deadline:
            return True
        time.sleep(min(deadline - now, MAX_NAP))
    return False


def write_lines(
    lines: Iterator[tuple[float, str]], writer: RotatingWriter, limits: Limits, stop: StopFlag
) -> None:
    """Write each line once its schedule time is due, batching lines less than BATCH_WINDOW apart."""
    start = time.monotonic()
    pending: list[str] = []
    window_end, room = -math.inf, limits.lines
    for t, line in lines:
        if t >= window_end:
            writer.write(pending)
            pending = []
            if t >= limits.duration:
                _wait_until(start + limits.duration, writer, stop)
                return
            if not _wait_until(start + t, writer, stop):
                return
            window_end = min(t + BATCH_WINDOW, limits.duration)
            room = limits.lines - writer.count
        if len(pending) >= room:
            break
        pending.append(line)
    writer.write(pending)


# --------------------------------------------------------------------------- CLI


def _arg(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Turn a parse_* ValueError into an argparse error message."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise ValueError(f"must be > 0, not {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="webserver_sim", description=__doc__.split("\n")[0])
    p.add_argument("--output-file", required=True, metavar="PATH", help="access log to write")
    p.add_argument("--log-rotation-interval", type=float, default=0.0, metavar="SECONDS",
                   help="rename PATH to PATH.<unix time> this often (0: never)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=_arg(_positive_float), metavar="N", help="lines per second")
    pace.add_argument("--ramp", type=_arg(parse_ramp), metavar="FROM:TO:SECONDS",
                      help="rate rising linearly from FROM to TO lines/s over SECONDS, then TO")
    p.add_argument("--latency", action="store_true", help="add a 5th field: latency in ms")
    p.add_argument("--seed", type=int, help="make the content deterministic")
    p.add_argument("--lines", type=int, metavar="N", help="stop after N lines")
    p.add_argument("--duration", type=_arg(_positive_float), metavar="S", help="stop after S seconds")
    p.add_argument("--incident", type=_arg(parse_incident), action="append", default=[],
                   metavar="KIND[@/route]:START:DURATION",
                   help="errors (50%% become 500), latency (x10) or drop (no lines); repeatable")
    p.add_argument("--routes", type=_arg(_parse_routes), default=[], metavar="R1,R2",
                   help="extra routes, each with a small weight")
    p.add_argument("--pid-file", metavar="PATH",
                   help="write the process id here (for a logrotate postrotate: kill -HUP reopens PATH)")
    p.add_argument("--append", action=argparse.BooleanOptionalAction, default=True,
                   help="open PATH in append mode (default) or truncate it")
    return p


def _parse_routes(text: str) -> list[str]:
    return [check_route(r) for r in text.split(",") if r]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.lines is not None and args.lines < 0:
        parser.error("--lines must be >= 0")
    if any(i.kind == "latency" for i in args.incident) and not args.latency:
        parser.error("a latency incident needs --latency")
    known = {r for r, _ in BASE_ROUTES} | set(args.routes)
    for incident in args.incident:
        if incident.route is not None and incident.route not in known:
            parser.error(f"incident route {incident.route!r} is not one of the routes written")
    return args


def _schedule(args: argparse.Namespace) -> Schedule:
    if args.rate is not None or args.ramp is not None:
        return RateSchedule(rate=args.rate, ramp=args.ramp)
    return PauseSchedule(args.seed)


def _install_reopen(writer: RotatingWriter) -> None:
    """SIGHUP: reopen the output file (what logrotate's postrotate asks of a web server)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        writer.reopen_requested = True

    try:
        signal.signal(signal.SIGHUP, handle)
    except ValueError:  # not the main thread
        pass


def _install_handlers(stop: StopFlag) -> dict[signal.Signals, SignalHandler]:
    previous: dict[signal.Signals, SignalHandler] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[signum] = signal.signal(signum, stop.handle)
        except ValueError:  # not the main thread: leave signals alone
            pass
    return previous


def _restore_handlers(previous: dict[signal.Signals, SignalHandler]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def run(args: argparse.Namespace, stop: StopFlag) -> int:
    """Write lines as `args` say, then report the count on stderr; the exit status."""
    lines = generate_lines(args.seed, latency=args.latency, extra_routes=args.routes,
                           incidents=args.incident, schedule=_schedule(args))
    limits = Limits(math.inf if args.lines is None else args.lines,
                    math.inf if args.duration is None else args.duration)
    writer: RotatingWriter | None = None
    status = 0
    try:
        writer = RotatingWriter(args.output_file, args.append, args.log_rotation_interval)
        _install_reopen(writer)
        if args.pid_file:
            with open(args.pid_file, "w", encoding="ascii") as handle:
                handle.write(f"{os.getpid()}\n")
        write_lines(lines, writer, limits, stop)
        writer.close()
    except OSError as exc:
        print(f"webserver_sim: error: {exc}", file=sys.stderr)
        status = 1
    count = writer.count if writer is not None else 0
    print(f"webserver_sim: wrote {count} lines", file=sys.stderr, flush=True)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator: 0 when it stopped as asked (limit reached or signal), 1 on an I/O error."""
    args = parse_args(argv)
    stop = StopFlag()
    previous = _install_handlers(stop)
    try:
        return run(args, stop)
    finally:
        _restore_handlers(previous)


if __name__ == "__main__":
    sys.exit(main())

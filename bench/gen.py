"""Deterministic benchmark logs, and the totals they must produce, computed while writing them.

The main log mixes about 50 route templates (static pages, query strings, id-bearing API paths),
methods, statuses, body sizes and a latency field, in the TSV format logtaild reads:

    ip<TAB>METHOD target<TAB>status<TAB>bytes<TAB>latency_ms

Ids are skewed as in real traffic: 80% come from a hot set of 1,000 values, 20% from 1..1,000,000,
so the raw request strings have a long tail (logtaild's raw-key cache misses on those) while the
normalized routes stay few. About 1% of lines carry no latency field (4 fields). Two id segments are
never adjacent (the mtail program cannot normalize `/1/2`; logtaild can).

`Expected` holds, per normalized (route, method, status), the request count and byte total, and per
(route, method) the histogram's per-bucket counts over the logtaild bounds (`le` semantics: a value
equal to a bound falls in that bound's bucket). Files are cached under the output directory keyed
by their parameters and GEN_VERSION, so repeated runs reuse them.
"""
from __future__ import annotations

import json
import math
import os
import random
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

GEN_VERSION = 3

#: logtaild's default histogram bounds in seconds (Prometheus defaults, plus the 0.5 s SLO threshold
#: that config.bucket_bounds() adds; 0.5 is already one of them).
BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
BOUNDS_MS = tuple(round(b * 1000, 9) for b in BOUNDS_S)

#: (template, weight). `{id}` is a numeric id (normalized to `:id`), `{q}` a query value (stripped).
ROUTES: tuple[tuple[str, int], ...] = (
    ("/", 300), ("/login", 20), ("/logout", 5), ("/favicon.ico", 40), ("/robots.txt", 5),
    ("/healthz", 30), ("/static/app.js", 60), ("/static/app.css", 60), ("/static/logo.png", 40),
    ("/blog", 40), ("/blog/feed.xml", 10), ("/library", 40), ("/questions", 20),
    ("/docs/getting-started", 10), ("/docs/api", 10), ("/about", 5), ("/contact", 3),
    ("/pricing", 8), ("/api/v1/items", 40), ("/api/v1/users", 15), ("/api/v1/orders", 15),
    ("/api/v1/search", 15), ("/api/v2/items", 10), ("/api/v2/events", 10), ("/sitemap.xml", 3),
    ("/admin", 2), ("/admin/settings", 1), ("/account", 10), ("/cart", 15), ("/checkout", 5),
    ("/search?q={q}", 30), ("/api/v1/items?page={q}", 20), ("/library?sort={q}", 5),
    ("/docs/api#{q}", 2),
    ("/api/v1/items/{id}", 80), ("/api/v1/users/{id}", 40), ("/api/v1/users/{id}/orders", 20),
    ("/api/v1/users/{id}/orders/{id}", 15), ("/api/v1/orders/{id}", 25),
    ("/api/v2/items/{id}/reviews", 10), ("/blog/posts/{id}", 30), ("/blog/posts/{id}/comments", 8),
    ("/questions/{id}", 25), ("/questions/{id}/answers/{id}", 8), ("/library/books/{id}", 20),
    ("/library/books/{id}/chapters/{id}", 8), ("/cart/items/{id}", 8), ("/download/{id}", 5),
    ("/api/v1/items/{id}?fields={q}", 10), ("/api/v2/events/{id}", 6),
)
METHODS: tuple[tuple[str, int], ...] = (("GET", 85), ("POST", 10), ("PUT", 2), ("DELETE", 2), ("HEAD", 1))
STATUSES: tuple[tuple[str, int], ...] = (("200", 85), ("304", 5), ("404", 5), ("201", 2), ("301", 2),
                                         ("500", 1))
HOT_IDS, ID_SPACE, HOT_SHARE = 1000, 1_000_000, 0.8
NO_LATENCY_SHARE = 0.01
POOL = 65536


def normalize(template: str) -> str:
    """The route logtaild must report for a template: ids -> :id, query string and fragment cut."""
    for cut in ("?", "#"):
        template = template.split(cut, 1)[0]
    return template.replace("{id}", ":id")


@dataclass
class Expected:
    """What a correct aggregator must report for a file."""

    lines: int = 0
    requests: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)  # [count, bytes]
    hist: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # per-bucket counts, +Inf last
    bounds_ms: tuple[float, ...] = BOUNDS_MS

    @property
    def total_bytes(self) -> int:
        return sum(v[1] for v in self.requests.values())

    def to_json(self) -> dict:
        return {
            "lines": self.lines, "bounds_ms": list(self.bounds_ms),
            "requests": [[*k, *v] for k, v in sorted(self.requests.items())],
            "hist": [[*k, v] for k, v in sorted(self.hist.items())],
        }

    @classmethod
    def from_json(cls, data: dict) -> Expected:
        return cls(
            data["lines"],
            {(r, m, s): [c, b] for r, m, s, c, b in data["requests"]},
            {(r, m): list(v) for r, m, v in data["hist"]},
            tuple(data["bounds_ms"]),
        )

    def scaled(self, factor: int) -> Expected:
        return Expected(self.lines * factor,
                        {k: [c * factor, b * factor] for k, (c, b) in self.requests.items()},
                        {k: [n * factor for n in v] for k, v in self.hist.items()}, self.bounds_ms)


def _weighted(items, size: int = 1000) -> list:
    """A lookup table: a uniform index into it is a weighted choice."""
    total = sum(w for _, w in items)
    table: list = []
    for item, w in items:
        table += [item] * max(1, round(w * size / total))
    return table


def _ips(rng: random.Random, n: int) -> list[str]:
    return [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            for _ in range(n)]


def _latencies(rng: random.Random) -> list[str]:
    """Lognormal mixture (median 15 ms; 3% slow with median 300 ms), 3 decimals, as the simulator."""
    out = []
    for _ in range(POOL):
        mu, sigma = (math.log(300.0), 1.0) if rng.random() < 0.03 else (math.log(15.0), 0.9)
        out.append(f"{min(math.exp(rng.gauss(mu, sigma)), 60000.0):.3f}")
    return out


def generate(path: Path, lines: int, seed: int = 1) -> Expected:
    """Write `lines` lines to `path`; return their expected totals."""
    rng = random.Random(seed)
    rand = rng.random
    templates = [t for t, _ in ROUTES]
    norm = [normalize(t) for t in templates]
    # a template as a str.format pattern, with how many ids and query values it takes
    shapes = []
    for t in templates:
        shapes.append((t.replace("{id}", "{}").replace("{q}", "{}"), t.count("{id}"), t.count("{q}")))
    route_table = _weighted([(i, w) for i, (_, w) in enumerate(ROUTES)], 4000)
    method_table = _weighted([(m, w) for m, w in METHODS])
    status_table = _weighted([(s, w) for s, w in STATUSES])
    ips = _ips(rng, 10_000)
    sizes = [int(min(rng.lognormvariate(math.log(3000), 1.2), 2_000_000)) for _ in range(POOL)]
    size_texts = [str(s) for s in sizes]
    lat_texts = _latencies(rng)
    lat_bucket = [bisect_left(BOUNDS_MS, float(t)) for t in lat_texts]
    terms = [f"t{n}" for n in range(1000)]
    n_routes, n_methods, n_statuses = len(route_table), len(method_table), len(status_table)

    counts: dict[tuple[int, str, str], list[int]] = {}
    buckets: dict[tuple[int, str], list[int]] = {}
    nb = len(BOUNDS_MS) + 1
    with open(path, "wb") as out:
        remaining = lines
        while remaining:
            n = min(remaining, 50_000)
            remaining -= n
            chunk = []
            for _ in range(n):
                ri = route_table[int(rand() * n_routes)]
                fmt, n_id, n_q = shapes[ri]
                if n_id or n_q:
                    args = []
                    for _i in range(n_id):
                        args.append(int(rand() * HOT_IDS) + 1 if rand() < HOT_SHARE
                                    else int(rand() * ID_SPACE) + 1)
                    for _q in range(n_q):
                        args.append(terms[int(rand() * 1000)])
                    target = fmt.format(*args)
                else:
                    target = fmt
                method = method_table[int(rand() * n_methods)]
                status = status_table[int(rand() * n_statuses)]
                si = int(rand() * POOL)
                key = (ri, method, status)
                slot = counts.get(key)
                if slot is None:
                    slot = counts[key] = [0, 0]
                slot[0] += 1
                slot[1] += sizes[si]
                head = f"{ips[int(rand() * 10_000)]}\t{method} {target}\t{status}\t{size_texts[si]}"
                if rand() < NO_LATENCY_SHARE:
                    chunk.append(head + "\n")
                    continue
                li = int(rand() * POOL)
                hkey = (ri, method)
                h = buckets.get(hkey)
                if h is None:
                    h = buckets[hkey] = [0] * nb
                h[lat_bucket[li]] += 1
                chunk.append(f"{head}\t{lat_texts[li]}\n")
            out.write("".join(chunk).encode("ascii"))

    expected = Expected(lines)
    for (ri, method, status), (c, b) in counts.items():
        slot = expected.requests.setdefault((norm[ri], method, status), [0, 0])
        slot[0] += c
        slot[1] += b
    for (ri, method), h in buckets.items():
        acc = expected.hist.setdefault((norm[ri], method), [0] * nb)
        for i, v in enumerate(h):
            acc[i] += v
    return expected


def cached(data_dir: Path, lines: int, seed: int = 1) -> tuple[Path, Expected, bool]:
    """The main log for (lines, seed), generated once; returns (path, expected, reused)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"access-{lines}-s{seed}-v{GEN_VERSION}.tsv"
    meta = path.with_suffix(".expected.json")
    if path.exists() and meta.exists():
        try:
            expected = Expected.from_json(json.loads(meta.read_text()))
            if expected.lines == lines:
                return path, expected, True
        except (ValueError, KeyError, TypeError):
            pass
    tmp = path.with_suffix(".tmp")
    expected = generate(tmp, lines, seed)
    os.replace(tmp, path)
    meta.write_text(json.dumps(expected.to_json()))
    return path, expected, False


# ---- special files ------------------------------------------------------------------------------

def series_file(path: Path, combos: int, repeat: int = 3, latency: bool = True) -> int:
    """A log with `combos` distinct (route, status) pairs (combos/5 routes x 5 statuses, GET, with
    or without latency), each `repeat` times; returns the line count."""
    statuses = ("200", "301", "404", "500", "503")
    routes = max(1, combos // len(statuses))
    rows = []
    for r in range(routes):
        lat = f"\t{(r % 400) * 2.5 + 0.125:.3f}" if latency else ""
        for s in statuses:
            rows.append(f"10.1.2.3\tGET /svc/r{r}\t{s}\t{100 + r % 900}{lat}\n")
    text = "".join(rows) * repeat
    path.write_text(text, encoding="ascii")
    return len(rows) * repeat


def distinct_routes_file(path: Path, distinct: int, lines: int) -> int:
    """A log with `distinct` raw paths: half id-bearing (`/api/items/<n>`, normalizing to one
    route), half distinct names (`/page/p<n>`, which the default cap of 1000 turns into `__other__`
    beyond the first 1000); cycled to `lines` lines; returns the line count."""
    raw = [f"/api/items/{i}" if i % 2 == 0 else f"/page/p{i}" for i in range(distinct)]
    statuses = ("200", "404", "500")
    with open(path, "w", encoding="ascii") as out:
        chunk = []
        for n in range(lines):
            chunk.append(f"10.0.0.1\tGET {raw[n % distinct]}\t{statuses[n % 3]}\t512\t{(n % 997) * 0.7:.3f}\n")
            if len(chunk) == 50_000:
                out.write("".join(chunk))
                chunk = []
        out.write("".join(chunk))
    return lines


def big_file(data_dir: Path, base: Path, gigabytes: float) -> tuple[Path, int]:
    """`base` concatenated until the file reaches `gigabytes` (cached); returns (path, copies)."""
    size = base.stat().st_size
    copies = max(1, math.ceil(gigabytes * 1e9 / size))
    path = data_dir / f"big-{base.stem}-x{copies}.tsv"
    if path.exists() and path.stat().st_size == size * copies:
        return path, copies
    for old in data_dir.glob("big-*.tsv"):  # one big file at a time: they are large
        old.unlink()
    tmp = path.with_suffix(".tmp")
    with open(base, "rb") as src, open(tmp, "wb") as dst:
        for _ in range(copies):
            offset = 0
            while offset < size:
                sent = os.copy_file_range(src.fileno(), dst.fileno(), size - offset, offset)
                if sent == 0:
                    break
                offset += sent
    os.replace(tmp, path)
    return path, copies

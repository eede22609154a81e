"""Which counting core runs: the compiled one (`_core.c`, built by `pip install` where a C compiler is
found) or the pure-Python path; the one importer of `_core`.

The compiled core counts the lines whose raw key it has been told (a `Counter` per aggregator, for the
formats it has a scanner for: tsv, the combined preset, the nginx and Apache format strings whose
fields it reads exactly as their regex does, and JSON objects (`_json.h`: plainly valid lines, keys
without dots), all without label fields); every other line, and every decision, stays in Python
(aggregate.py). The Python path is the reference the compiled core
is tested against, and the fallback: where the extension was not built, logtaild says so in one warning
line at start (`warn_if_fallback`) and `logtaild --version` names the core that runs.

`LOGTAILD_CORE=python` forces the Python path; `LOGTAILD_CORE=compiled` makes a missing extension an
error instead of a fallback (`PROBLEM`, which the CLI reports as a usage error; CI sets it for the
suite that tests the compiled core).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the extension's interface, from its stub (_core.pyi); at run time it is loaded by _load
    from logtaild.count._core import Counter as Counter  # re-exported: aggregate.py annotates with it

ENV = "LOGTAILD_CORE"
CHOICES = ("auto", "compiled", "python")
#: the formats the compiled core has a scanner for ("program": an nginx or Apache format string, compiled
#: by logformat.py into the scanner's ops)
FORMATS = ("tsv", "combined", "program", "json")


def _load() -> tuple[ModuleType | None, str, str]:
    """(the extension or None, which core runs and why, a problem with LOGTAILD_CORE or "")."""
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        return None, "python", f"{ENV}={choice}: must be one of {', '.join(CHOICES)}"
    if choice == "python":
        return None, f"python (forced by {ENV}=python)", ""
    try:
        from logtaild.count import _core
    except ImportError as exc:
        if choice == "compiled":
            return None, "python", f"{ENV}=compiled, but the compiled core is not built: {exc}"
        return None, f"python (the compiled core was not built: {exc})", ""
    return _core, "compiled (C)", ""


_CORE, DESCRIPTION, PROBLEM = _load()
#: the core this process counts with: "compiled" or "python"
NAME = "compiled" if _CORE is not None else "python"
_warned = False


def available() -> bool:
    """Whether the compiled core runs in this process."""
    return _CORE is not None


def counter(fmt: str, bounds_ms: Sequence[float], ids: bool, latency_scale: float | None = None,
            compiled: bool | None = None, program: Mapping[str, Any] | None = None,
            upstream: bool = False, native: tuple[int, float, list[float]] | None = None) -> Counter | None:
    """A compiled counter for one aggregator of format `fmt`, or None for the Python path (no compiled
    core, `compiled=False`, or a format it has no scanner for). `ids`: the built-in id patterns alone
    decide the route of a path (no configured rules), so paths that differ only in ids share a key."""
    if _CORE is None or compiled is False or fmt not in FORMATS:
        return None
    if fmt == "json":
        if program is None:
            return None
        made_json: Counter = _CORE.Counter(fmt, [float(b) for b in bounds_ms], ids, float(program["latency_scale"]),
                                           program["keys"], native=native)
        return made_json
    if fmt == "program":
        if program is None:
            return None
        made: Counter = _CORE.Counter(fmt, [float(b) for b in bounds_ms], ids, float(program["latency_scale"]),
                                      program["ops"], float(program["upstream_scale"]), upstream,
                                      bool(program["unescape"]), native)
        return made
    made = _CORE.Counter(fmt, [float(b) for b in bounds_ms], ids, -1.0 if latency_scale is None else latency_scale,
                         native=native)
    return made


def limits() -> dict[str, int]:
    """The compiled core's table bounds (entries, key bytes, longest key); empty without it."""
    if _CORE is None:
        return {}
    return {"max_entries": _CORE.MAX_ENTRIES, "max_key_bytes": _CORE.MAX_KEY_BYTES, "max_key": _CORE.MAX_KEY}


def warn_if_fallback(log: logging.Logger) -> None:
    """The one warning line at start when the compiled core is missing (not when it was turned off)."""
    global _warned
    if _CORE is None and not _warned and not DESCRIPTION.startswith("python (forced"):
        _warned = True
        log.warning("counting with the pure-Python core: %s", DESCRIPTION.removeprefix("python (").removesuffix(")"))

"""Reload plans: what a new config changes in the running daemon, decided by a pure function.

`plan_reload(running, new, sources, bounds_s)` compares the running config with a freshly loaded one
and the file config each followed path uses now, and returns a `ReloadPlan`; nothing in here touches
a stream, an aggregator or a signal (`Service.apply_reload` applies the plan, `lifecycle.py` runs the
SIGHUP sequence around it).

What a reload applies live, and what waits for a restart:

* live: `files` (paths that stay keep their FileStream, position and counts; new paths are opened as
  at start-up: resumed from the state file, else from their end unless `from_start`; removed paths
  are closed and forgotten, their series leave /metrics), a file's `format`/`log_format`/`fields`/
  `latency_unit`/`labels`/`label_fields`/upstream keys, `routes` (new rules and cap apply to lines
  read from now on; routes already counted keep their series and count towards the cap), `slo`
  objectives and teams, `interval` (a reload
  closes the current report window, its report is printed at once, the next window uses the new
  interval), `poll_interval`, `drain_grace`, `max_line`, `rescan_interval`, `from_start` (for paths
  added from now on);
* at the next restart: `listen`, `state_file`, `web_config`, `histogram` buckets (the series keep
  their bucket layout; an SLO `latency_threshold` that is not already a bucket bound is exact only
  after a restart), and any other setting not listed above. Each is logged as a warning.

A config that does not load or validate changes nothing: one error line, the old config stays, and
`logtaild_config_reloads_total{result="failure"}` counts it. So everything that can fail (a parser
that cannot be built for a changed file entry) fails here, in the plan, before anything changes.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import glob
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from logtaild.config import Config, FileConfig
from logtaild.count.parsers import make_parser

#: settings a reload applies to the running daemon; every other field waits for a restart
LIVE_FIELDS = frozenset({
    "interval", "files", "routes", "slo", "from_start", "poll_interval", "drain_grace", "max_line",
    "rescan_interval",
})


@dataclass(frozen=True)
class ReloadPlan:
    """What applying a new config does to the running daemon."""

    #: the config to run with: the new one, with every restart-only setting kept from the running one
    config: Config
    #: paths whose parser or route rules change -> their new file config (a new aggregator takes over
    #: their counts)
    rebuilt: Mapping[str, FileConfig]
    #: paths that stay with the same parser and routes -> their (equal) file config in the new config
    kept: Mapping[str, FileConfig]
    #: paths no entry of the new config names any more, in the order they were followed
    removed: tuple[str, ...]
    #: restart-only settings that differ in the new config (kept at their running values)
    restart: tuple[str, ...]
    #: what to log as warnings before the plan is applied
    warnings: tuple[str, ...]


def file_config_for(path: str, config: Config) -> FileConfig | None:
    """The first configured entry that names `path` (exactly, or as a glob match)."""
    for file_config in config.files:
        if file_config.path == path:
            return file_config
        if glob.has_magic(file_config.path) and fnmatch.fnmatchcase(path, file_config.path):
            return file_config
    return None


def plan_reload(running: Config, new: Config, sources: Mapping[str, FileConfig],
                bounds_s: Sequence[float]) -> ReloadPlan:
    """The plan for replacing `running` by `new`.

    `sources`: each followed path -> the file config it is read with now; `bounds_s`: the histogram
    bounds the running aggregators count with (fixed at start-up). Raises ValueError when a changed
    file entry cannot be read (its parser cannot be built); nothing has changed then.
    """
    restart = tuple(f.name for f in dataclasses.fields(Config)
                    if f.name not in LIVE_FIELDS and getattr(new, f.name) != getattr(running, f.name))
    kept_at_restart: dict[str, Any] = {
        f.name: getattr(running, f.name) for f in dataclasses.fields(Config) if f.name not in LIVE_FIELDS}
    effective = dataclasses.replace(new, **kept_at_restart)
    rebuilt: dict[str, FileConfig] = {}
    kept: dict[str, FileConfig] = {}
    removed: list[str] = []
    for path, current in sources.items():
        file_config = file_config_for(path, effective)
        if file_config is None:
            removed.append(path)
        elif file_config != current or effective.routes != running.routes:
            # built and dropped: a parser that cannot be built fails the reload here, not halfway.
            make_parser(file_config)
            rebuilt[path] = file_config
        else:
            kept[path] = file_config
    return ReloadPlan(effective, MappingProxyType(rebuilt), MappingProxyType(kept), tuple(removed), restart,
                      _warnings(effective, restart, bounds_s))


def _warnings(effective: Config, restart: Sequence[str], bounds_s: Sequence[float]) -> tuple[str, ...]:
    warnings = []
    new_bounds = set(effective.bucket_bounds()) - set(bounds_s)
    if new_bounds:
        warnings.append(f"reload: SLO latency thresholds {', '.join(f'{b:g}s' for b in sorted(new_bounds))} "
                        "are not histogram bucket bounds; their slow counts are exact after a restart")
    warnings.extend(f"reload: {name} changed; it applies at the next restart" for name in restart)
    return tuple(warnings)

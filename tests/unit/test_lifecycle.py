"""SIGHUP reloads applied to a Service in-process: what changes live, what is kept, what waits."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from logtaild.config import Config, ConfigError, FileConfig, RoutesConfig, RuleConfig, SloConfig
from logtaild.count import slots
from logtaild.run.service import Service

LINE = b"1.1.1.1\tGET /users/%d\t200\t10\t5\n"


def write(path: Path, n: int, start: int = 0) -> None:
    with open(path, "ab") as handle:
        for i in range(start, start + n):
            handle.write(LINE % i)


def requests(service: Service, route: str | None = None) -> int:
    return sum(slots.count(slot) for source in service.sources.values() for key, slot in source.agg.slots.items()
               if route is None or key[0] == route)


class Reloader:
    """What the CLI passes: returns the next config, or raises like a bad file does."""

    def __init__(self) -> None:
        self.next: Config | Exception | None = None
        self.calls = 0
        self.during = None  # called inside the reload, as a signal arriving then would

    def __call__(self) -> Config:
        self.calls += 1
        if self.during:
            self.during()
        if isinstance(self.next, Exception):
            raise self.next
        assert self.next is not None
        return self.next


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Service, Reloader, Path, Path]:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(b"")
    b.write_bytes(b"")
    config = Config(files=(FileConfig(str(a)),), interval=10.0, from_start=True)
    reloader = Reloader()
    service = Service(config, reloader=reloader)
    service.scan(initial=True)
    write(a, 5)
    service.poll_all()
    assert requests(service) == 5
    return service, reloader, a, b


def test_a_valid_reload_keeps_streams_counts_and_positions(setup) -> None:
    service, reloader, a, _b = setup
    source = service.sources[str(a)]
    reloader.next = dataclasses.replace(service.config, interval=2.5)
    windows = []
    assert service.lifecycle.reload(lambda: windows.append("closed"))
    assert windows == ["closed"]
    assert service.config.interval == 2.5
    assert service.sources[str(a)] is source  # the same stream, at the same position
    assert service.reloads == {"success": 1, "failure": 0}
    write(a, 3, 5)
    service.poll_all()
    assert requests(service) == 8  # nothing lost, nothing read twice


def test_files_added_and_removed(setup) -> None:
    service, reloader, a, b = setup
    write(b, 4)
    reloader.next = dataclasses.replace(service.config, files=(FileConfig(str(b)),))
    assert service.lifecycle.reload(lambda: None)
    assert list(service.sources) == [str(b)]
    service.poll_all()
    assert requests(service) == 4  # from_start: the new file is read whole
    reloader.next = dataclasses.replace(service.config, files=(FileConfig(str(a)), FileConfig(str(b))))
    assert service.lifecycle.reload(lambda: None)
    assert sorted(service.sources) == [str(a), str(b)]


def test_route_rules_apply_to_new_lines_and_counts_carry_over(setup) -> None:
    service, reloader, a, _b = setup
    old_agg = service.sources[str(a)].agg
    routes = RoutesConfig(rules=(RuleConfig("^/users/.*", "/people"),))
    reloader.next = dataclasses.replace(service.config, routes=routes)
    assert service.lifecycle.reload(lambda: None)
    source = service.sources[str(a)]
    assert source.agg is not old_agg
    assert requests(service, "/users/:id") == 5 and source.agg.lines == 5
    write(a, 2, 10)
    service.poll_all()
    assert requests(service, "/people") == 2 and requests(service, "/users/:id") == 5
    assert source.agg.limiter.distinct == 2  # the old route still counts towards the cap


def test_an_invalid_config_changes_nothing_and_is_counted(setup, caplog) -> None:
    service, reloader, a, _b = setup
    before = service.config
    reloader.next = ConfigError("files[0].format: must be one of tsv, combined, json, got 'xml'")
    closed = []
    with caplog.at_level(logging.ERROR, logger="logtaild"):
        assert not service.lifecycle.reload(lambda: closed.append(1))
    assert closed == []
    assert service.config is before
    assert service.reloads == {"success": 0, "failure": 1}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["reload failed, keeping the running configuration: files[0].format: must be one "
                      "of tsv, combined, json, got 'xml'"]
    write(a, 1, 5)
    service.poll_all()
    assert requests(service) == 6


def test_a_signal_during_a_reload_is_not_lost(setup) -> None:
    service, reloader, _a, _b = setup
    reloader.next = service.config
    reloader.during = service.lifecycle.request_reload  # SIGHUP's handler, arriving mid-reload
    service.lifecycle.request_reload()
    assert service.lifecycle.reload_requested()
    assert service.lifecycle.reload(lambda: None)
    assert service.lifecycle.reload_requested()  # so the loop reloads once more
    reloader.during = None
    assert service.lifecycle.reload(lambda: None)
    assert not service.lifecycle.reload_requested()
    assert reloader.calls == 2


def test_restart_only_settings_are_kept_and_named(setup, caplog) -> None:
    service, reloader, _a, _b = setup
    reloader.next = dataclasses.replace(service.config, listen="127.0.0.1:1", state_file="/x",
                                        slo=(SloConfig("/.*", latency_threshold=0.3),), interval=1.0)
    with caplog.at_level(logging.WARNING, logger="logtaild"):
        assert service.lifecycle.reload(lambda: None)
    assert service.config.listen == ":10181" and service.config.state_file is None
    assert service.config.interval == 1.0 and service.config.slo[0].latency_threshold == 0.3
    text = caplog.text
    assert "listen changed; it applies at the next restart" in text
    assert "state_file changed; it applies at the next restart" in text
    assert "SLO latency thresholds 0.3s are not histogram bucket bounds" in text

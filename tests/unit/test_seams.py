"""The seams between run/'s parts: Service's public API, and Lifecycle driven with no Service at all."""
from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import pytest

from logtaild.config import Config, ConfigError, FileConfig
from logtaild.run.lifecycle import Lifecycle, Progress
from logtaild.run.reload import ReloadPlan, plan_reload
from logtaild.run.service import Service

LINE = b"1.1.1.1\tGET /a\t200\t10\t5\n"


def lines(service: Service) -> int:
    return sum(source.agg.lines for source in service.sources.values())


@pytest.mark.parametrize("created_since", [True, False])
def test_from_start_for_decides_where_an_unknown_path_is_read_from(tmp_path: Path, created_since: bool) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(LINE * 3)
    asked: list[tuple[str, str]] = []

    def from_start_for(path: str, file_config: FileConfig) -> bool:
        asked.append((path, file_config.path))
        return created_since

    service = Service(Config(files=(FileConfig(str(log)),)), once=True, from_start_for=from_start_for)
    service.scan(initial=True)
    assert service.poll_all() is created_since
    assert lines(service) == (3 if created_since else 0)
    assert asked == [(str(log), str(log))]
    service.close()


def test_step_reads_everything_while_no_report_is_due(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(LINE * 4)
    service = Service(Config(files=(FileConfig(str(log)),), from_start=True), once=True)
    service.scan(initial=True)
    assert service.step() is True and lines(service) == 4
    assert service.step() is False
    assert service.progress() == Progress(4, 0, 1)
    service.close()


def test_a_once_pass_reports_and_saves_extra_with_the_positions(tmp_path: Path) -> None:
    log, state = tmp_path / "a.log", tmp_path / "state.json"
    log.write_bytes(LINE * 2)
    out = io.StringIO()
    service = Service(Config(files=(FileConfig(str(log)),), from_start=True, state_file=str(state)),
                      once=True, out=out)
    service.set_extra("note", {"kept": 1})
    assert service.run() == 0
    assert "TOTAL\tall" in out.getvalue()
    saved = json.loads(state.read_text())
    assert saved["extra"] == {"note": {"kept": 1}} and list(saved["files"]) == [str(log)]
    assert service.state.extra == {"note": {"kept": 1}}


def test_apply_reload_removes_and_adds_paths(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(LINE)
    b.write_bytes(LINE * 2)
    service = Service(Config(files=(FileConfig(str(a)),), from_start=True), once=True)
    service.scan(initial=True)
    service.poll_all()
    new = dataclasses.replace(service.config, files=(FileConfig(str(b)),))
    plan = plan_reload(service.config, new, service.file_configs(), service.bounds_s)
    service.apply_reload(plan)
    assert service.config is plan.config and list(service.sources) == [str(b)]
    service.poll_all()
    assert lines(service) == 2
    service.close()


class FakeService:
    """What Lifecycle needs (its Followed protocol), recording what was asked of it."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.bounds_s = config.bucket_bounds()
        self.events: list[str] = []
        self.sources = {f.path: f for f in config.files}

    def file_configs(self) -> Mapping[str, FileConfig]:
        return self.sources

    def progress(self) -> Progress:
        return Progress(10, 0, len(self.sources))

    def wake(self) -> None:
        self.events.append("wake")

    def apply_reload(self, plan: ReloadPlan) -> None:
        self.events.append(f"apply {sorted(plan.rebuilt)} -{list(plan.removed)}")
        self.config = plan.config


def test_lifecycle_reloads_through_the_protocol_in_order(caplog: pytest.LogCaptureFixture) -> None:
    running = Config(files=(FileConfig("/l/a.log"), FileConfig("/l/b.log")))
    service = FakeService(running)
    new = dataclasses.replace(running, files=(FileConfig("/l/a.log", format="json"),), listen="1.2.3.4:5")
    lifecycle = Lifecycle(service, lambda: new)
    with caplog.at_level(logging.INFO, logger="logtaild"):
        assert lifecycle.reload(lambda: service.events.append("close window"))
    assert service.events == ["close window", "apply ['/l/a.log'] -['/l/b.log']"]
    assert service.config.listen == running.listen and lifecycle.reloads == {"success": 1, "failure": 0}
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["SIGHUP: reloading the configuration",
                        "reload: listen changed; it applies at the next restart"]
    assert lifecycle.status_text().endswith("lag 0 B, 2 files")


def test_lifecycle_a_failed_reload_touches_nothing() -> None:
    service = FakeService(Config(files=(FileConfig("/l/a.log"),)))

    def broken() -> Config:
        raise ConfigError("interval: must be > 0")

    lifecycle = Lifecycle(service, broken)
    assert not lifecycle.reload(lambda: service.events.append("close window"))
    assert service.events == [] and lifecycle.reloads == {"success": 0, "failure": 1}

"""Reload plans, computed with no Service at all: what is rebuilt, kept, removed, and what waits."""
from __future__ import annotations

import dataclasses

import pytest

from logtaild.config import Config, FileConfig, RoutesConfig, RuleConfig, SloConfig
from logtaild.run.reload import LIVE_FIELDS, file_config_for, plan_reload

A, B = FileConfig("/logs/a.log"), FileConfig("/logs/b.log")


def plan(running: Config, new: Config, sources: dict[str, FileConfig] | None = None):
    followed = sources if sources is not None else {f.path: f for f in running.files}
    return plan_reload(running, new, followed, running.bucket_bounds())


def test_the_same_config_keeps_everything_and_warns_of_nothing() -> None:
    running = Config(files=(A, B))
    result = plan(running, dataclasses.replace(running))
    assert result.config == running
    assert dict(result.kept) == {A.path: A, B.path: B}
    assert dict(result.rebuilt) == {} and result.removed == () and result.restart == ()
    assert result.warnings == ()


def test_a_changed_format_rebuilds_that_file_only() -> None:
    running = Config(files=(A, B))
    b_json = dataclasses.replace(B, format="json")
    result = plan(running, dataclasses.replace(running, files=(A, b_json)))
    assert dict(result.rebuilt) == {B.path: b_json}
    assert dict(result.kept) == {A.path: A}


def test_new_route_rules_rebuild_every_file() -> None:
    running = Config(files=(A, B))
    routes = RoutesConfig(rules=(RuleConfig("^/x", "/y"),))
    result = plan(running, dataclasses.replace(running, routes=routes))
    assert sorted(result.rebuilt) == [A.path, B.path] and dict(result.kept) == {}
    assert result.config.routes == routes


def test_paths_no_entry_names_are_removed_in_the_order_they_were_followed() -> None:
    running = Config(files=(A, B, FileConfig("/logs/c.log")))
    result = plan(running, dataclasses.replace(running, files=(B,)))
    assert result.removed == (A.path, "/logs/c.log")
    assert dict(result.kept) == {B.path: B}


def test_a_glob_keeps_its_matches() -> None:
    pattern = FileConfig("/logs/*.log")
    running = Config(files=(pattern,))
    sources = {"/logs/a.log": pattern, "/logs/z.log": pattern}
    result = plan(running, dataclasses.replace(running, interval=5.0), sources)
    assert dict(result.kept) == sources and result.removed == ()
    assert file_config_for("/logs/a.log", running) is pattern
    assert file_config_for("/other/a.log", running) is None


def test_restart_only_settings_keep_their_running_values_and_are_named() -> None:
    running = Config(files=(A,))
    new = dataclasses.replace(running, listen="127.0.0.1:1", state_file="/x", interval=1.0)
    result = plan(running, new)
    assert result.config.listen == running.listen and result.config.state_file is None
    assert result.config.interval == 1.0
    assert result.restart == ("listen", "state_file")
    assert result.warnings == ("reload: listen changed; it applies at the next restart",
                               "reload: state_file changed; it applies at the next restart")
    assert not set(result.restart) & LIVE_FIELDS


def test_an_slo_threshold_off_the_buckets_is_warned_about_first() -> None:
    running = Config(files=(A,))
    new = dataclasses.replace(running, slo=(SloConfig("/.*", latency_threshold=0.3),), web_config="w.yml")
    warnings = plan(running, new).warnings
    assert warnings[0] == ("reload: SLO latency thresholds 0.3s are not histogram bucket bounds; their slow "
                           "counts are exact after a restart")
    assert warnings[1:] == ("reload: web_config changed; it applies at the next restart",)


def test_a_file_entry_whose_parser_cannot_be_built_fails_the_plan() -> None:
    running = Config(files=(A,))
    bad = dataclasses.replace(A, format="tsv", fields={"route": "uri"})  # tsv maps no fields
    with pytest.raises(ValueError, match="fields, label_fields, upstream_field, exemplar_field do not apply"):
        plan(running, dataclasses.replace(running, files=(bad,)))


def test_the_plan_cannot_be_changed() -> None:
    result = plan(Config(files=(A,)), Config(files=(A,)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.removed = ("x",)  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.kept["x"] = A  # type: ignore[index]

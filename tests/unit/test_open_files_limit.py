"""logtaild raises its soft RLIMIT_NOFILE to the hard limit at start; a refusal is a warning, not fatal."""
from __future__ import annotations

import errno
import logging
import platform
import resource
import subprocess
import sys

import pytest

from logtaild import heap
from logtaild.run import modes


def test_a_real_process_started_with_a_low_soft_limit_raises_it_to_the_hard_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    code = ("import logging, resource; logging.basicConfig(level=logging.DEBUG); "
            "from logtaild.run.modes import raise_open_files_limit; raise_open_files_limit(); "
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)),
    )
    expected = hard if hard != resource.RLIM_INFINITY else modes.max_open_files()
    assert int(result.stdout) == expected
    assert f"open files limit raised from 256 to {expected}" in result.stderr


def test_a_refused_raise_is_a_warning(monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    def refuse(_which: int, _limits: tuple[int, int]) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(modes.resource, "getrlimit", lambda _which: (1024, 524288))
    monkeypatch.setattr(modes.resource, "setrlimit", refuse)
    with caplog.at_level(logging.DEBUG, logger="logtaild"):
        modes.raise_open_files_limit()
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "cannot raise the open files limit from 1024 to 524288" in caplog.text


def test_a_soft_limit_already_at_the_hard_one_is_left_alone(monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(modes.resource, "getrlimit", lambda _which: (65536, 65536))
    monkeypatch.setattr(modes.resource, "setrlimit", lambda _which, limits: calls.append(limits))
    with caplog.at_level(logging.DEBUG, logger="logtaild"):
        modes.raise_open_files_limit()
    assert calls == [] and "open files limit: 65536 (hard limit 65536)" in caplog.text


def test_an_unlimited_hard_limit_raises_to_the_kernels_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(modes.resource, "getrlimit", lambda _which: (1024, resource.RLIM_INFINITY))
    monkeypatch.setattr(modes.resource, "setrlimit", lambda _which, limits: calls.append(limits))
    modes.raise_open_files_limit()
    assert calls == [(modes.max_open_files(), resource.RLIM_INFINITY)]


def test_malloc_arenas_are_capped_on_glibc() -> None:
    """On glibc mallopt(M_ARENA_MAX) is there and accepts the cap; elsewhere nothing is changed."""
    assert heap.limit_arenas() is (platform.libc_ver()[0] == "glibc")

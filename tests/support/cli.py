"""Running the `logtaild` command in-process (`cli.main`) the way the console script does, for tests."""
from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from logtaild.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr); returning normally is exit 0, as for the console script."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@contextmanager
def signal_handlers_kept() -> Iterator[None]:
    """The daemon path installs SIGTERM/SIGINT/SIGHUP handlers; give pytest its own back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)

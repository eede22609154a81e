"""sd_notify spoken over real AF_UNIX datagram sockets, a file system path and an abstract name."""
from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from logtaild.run.sdnotify import Notifier, socket_address, watchdog_interval
from tests.support.clock import FakeClock


def receive(sock: socket.socket) -> list[str]:
    """Every datagram waiting on `sock`, decoded."""
    out = []
    sock.setblocking(False)
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket systemd-style, and the $NOTIFY_SOCKET value naming it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = str(tmp_path / "notify")
        sock.bind(path)
        env_value = path
    else:
        name = f"logtaild-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        env_value = "@" + name
    yield sock, env_value
    sock.close()


def test_messages_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, value = listener
    notifier = Notifier({"NOTIFY_SOCKET": value})
    assert notifier.enabled and notifier.watchdog is None
    assert notifier.ready("1 lines/s, lag 0 B, 1 file")
    assert notifier.status("busy")
    assert notifier.reloading()
    assert notifier.stopping()
    got = receive(sock)
    assert got[0] == "READY=1\nSTATUS=1 lines/s, lag 0 B, 1 file"
    assert got[1] == "STATUS=busy"
    reloading, monotonic = got[2].split("\n")
    assert reloading == "RELOADING=1" and monotonic.startswith("MONOTONIC_USEC=")
    assert int(monotonic.split("=")[1]) > 0
    assert got[3] == "STOPPING=1"
    assert notifier.sent == 4
    notifier.close()


def test_watchdog_pings_at_half_the_period(listener: tuple[socket.socket, str]) -> None:
    sock, value = listener
    clock = FakeClock(100.0)
    notifier = Notifier({"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "2000000",
                         "WATCHDOG_PID": str(os.getpid())}, clock=clock)
    assert notifier.watchdog == 1.0
    sent_at = []
    for _step in range(20):  # 5 s of loop turns every 0.25 s (exact in binary)
        if notifier.heartbeat("ok"):
            sent_at.append(clock.now)
        clock.now += 0.25
    assert sent_at == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert receive(sock) == ["WATCHDOG=1\nSTATUS=ok"] * 5


def test_watchdog_of_another_pid_is_not_ours(listener: tuple[socket.socket, str]) -> None:
    sock, value = listener
    notifier = Notifier({"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "2000000",
                         "WATCHDOG_PID": str(os.getpid() + 1)})
    assert notifier.watchdog is None
    assert not notifier.heartbeat()
    assert receive(sock) == []


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "{pid}"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "x"}, None),
])
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    env = {k: v.format(pid=os.getpid()) for k, v in env.items()}
    assert watchdog_interval(env, os.getpid()) == expected


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog is None
    assert not notifier.ready() and not notifier.heartbeat() and not notifier.stopping()
    assert notifier.sent == 0


@pytest.mark.parametrize(("value", "address"), [
    ("/run/systemd/notify", "/run/systemd/notify"),
    ("@abstract", "\0abstract"),
    ("", None),
    ("vsock:2:1234", None),
    ("relative/path", None),
])
def test_socket_address(value: str, address: str | None) -> None:
    assert socket_address(value) == address


def test_a_missing_socket_is_logged_once_and_never_raises(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="logtaild.sdnotify"):
        assert not notifier.ready()
        assert not notifier.status("x")
    assert len([r for r in caplog.records if "cannot notify systemd" in r.getMessage()]) == 1

"""`python -m server` runs its write-behind writer child at a lower CPU priority than itself, so on a busy host the
till path runs first (POS_OFFERS_WRITER_NICE, 10 by default)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.ops.conftest import Service
from tests.support.waiting import wait_until


def writers(pid: int) -> list[int]:
    """The server's children running the writer (its embedded Redis is a child too)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return [child for child in found if b"server.writer_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def test_the_writer_child_runs_ten_steps_nicer_than_the_server(service: Service) -> None:
    server = service.child.process.pid
    (writer,) = wait_until(lambda: writers(server), message="the writer child")
    assert os.getpriority(os.PRIO_PROCESS, writer) == min(19, os.getpriority(os.PRIO_PROCESS, server) + 10)

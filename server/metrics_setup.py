"""Prometheus multiprocess mode: every process of a host (servers sharing a port, their writer children) writes
its samples under one directory, and any server's /metrics shows the whole host.

prometheus_client reads PROMETHEUS_MULTIPROC_DIR when it is first imported, so `prepare` runs before anything
imports server.metrics.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing prometheus_client for real here would fix its mode before `prepare` ran
    from prometheus_client import CollectorRegistry

_PID_IN_NAME = re.compile(r"_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare(directory: Path) -> None:
    """Creates the directory, drops the files of processes that are gone, and points prometheus_client at it."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        match = _PID_IN_NAME.search(path.name)
        if match and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory.resolve())


def registry(directory: str) -> CollectorRegistry:
    """What /metrics serves: the whole host's samples in multiprocess mode, else this process's."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    if not directory:
        return REGISTRY
    collected = CollectorRegistry()
    MultiProcessCollector(collected, path=directory)  # type: ignore[no-untyped-call]
    return collected

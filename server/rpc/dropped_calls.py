"""Calls the gRPC core drops before any of our code sees them, counted.

The core queues calls that have arrived but that grpc.aio has not yet taken (`grpc.server.max_pending_requests`,
1000, and `..._hard_limit`, 3000, by default), and cancels what is beyond the queue: the caller sees `CANCELLED`, and
neither the interceptor, the access log nor the RPC metrics ever hear of the call. Nor do they of a call whose
deadline passes in that queue. But the core's channelz node counts every call its transport starts, and the
interceptor counts every call handed to us (`ServerInterceptor.received`): once a second both are copied into
counters, `pos_offers_rpc_transport_started_total` and `pos_offers_rpc_received_total`. Their difference is the calls
the core dropped, plus those still in its queue at that second (none unless the server is saturated): exact once the
queue has drained, and never missing a drop. Both counters are exact; no estimate is latched into a counter.

Whenever the difference reaches a new high, a warning says so: the only log line a call the core dropped gets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar, cast

import grpc
from grpc_channelz.v1 import channelz_pb2
from grpc_channelz.v1._servicer import ChannelzServicer  # grpc_channelz.v1.channelz re-exports it, implicitly

from telemetry import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Refusal:
    """The servicer context ChannelzServicer reports a failure to (a server no longer there): kept, not raised."""

    def __init__(self) -> None:
        self.code: object = None

    def set_code(self, code: object) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        pass


def _context(refusal: _Refusal) -> grpc.ServicerContext:
    return cast(grpc.ServicerContext, refusal)  # the servicer only ever calls set_code and set_details on it


def _server_ids() -> set[int]:
    """The ids of this process's gRPC servers in channelz (a page at a time)."""
    ids: set[int] = set()
    start = 0
    while True:
        page = ChannelzServicer.GetServers(channelz_pb2.GetServersRequest(start_server_id=start), _context(_Refusal()))
        if page is None:
            return ids
        ids.update(server.ref.server_id for server in page.server)
        if page.end or not page.server:
            return ids
        start = max(ids) + 1


class CoreDrops:
    """The calls one server's transport started against those its interceptor received."""

    def __init__(self, received: Callable[[], int]) -> None:
        self._received = received
        self._server_id: int | None = None
        self._copied = (0, 0)  # (started, received) as last copied into the counters
        self._warned = 0  # the largest started - received warned about

    def create(self, make: Callable[[], T]) -> T:
        """Makes the server with `make`, noting which channelz server it is (the one that appeared). Servers made
        concurrently in one process cannot be told apart: then nothing is counted, and a warning says so."""
        before = _server_ids()
        server = make()
        new = _server_ids() - before
        if len(new) == 1:
            self._server_id = new.pop()
        else:
            log.warning("cannot find this server in channelz (%d new servers): core drops are not counted", len(new))
        return server

    def started(self) -> int | None:
        """Calls the server's transport has started so far; None when unknown."""
        if self._server_id is None:
            return None
        refusal = _Refusal()
        answer = ChannelzServicer.GetServer(channelz_pb2.GetServerRequest(server_id=self._server_id), _context(refusal))
        return None if answer is None or refusal.code is not None else int(answer.server.data.calls_started)

    def sample(self) -> int:
        """Copies both counts into their counters; returns started - received (dropped, or still queued)."""
        received = self._received()  # first: every call received by now was started by the next read
        started = self.started()
        if started is None:
            return 0
        last_started, last_received = self._copied
        metrics.RPC_TRANSPORT_STARTED.inc(started - last_started)
        metrics.RPC_RECEIVED.inc(received - last_received)
        self._copied = (started, received)
        gap = started - received
        if gap > self._warned:
            log.warning(
                "calls the gRPC core has not handed to the service: %d (dropped beyond its queue, or with their "
                "deadline passed in it, or still queued: the server is saturated)",
                gap,
                extra={"calls_not_received": gap},
            )
            self._warned = gap
        return gap

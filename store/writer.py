"""Write-behind: drains the partition outbox streams into the SQL profile, exactly once per record.

Consumer-group semantics give at-least-once delivery (entries are acknowledged only after the SQL commit, and
entries left pending by a dead writer are claimed after `claim_idle_ms`); the repository's event-id guard
turns that into exactly-once. Acknowledged entries are deleted so the stream length is the backlog, and taken off
their customer's unwritten count in the same script (store/lua/ack_outbox.lua), once per entry.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from store.keys import Keys, OutboxKeys
from store.records import (
    AdjustmentRecord,
    CustomerRecord,
    ExpiryRecord,
    OutboxRecord,
    PurchaseRecord,
    ReturnRecord,
    load_record,
)
from store.scripts import lua

log = logging.getLogger(__name__)

GROUP = "sql-writer"


class RecordSink(Protocol):
    def apply_records(self, records: list[OutboxRecord]) -> int: ...


@dataclass(slots=True)
class WriterStats:
    applied: int = 0
    duplicates: int = 0
    failures: int = 0
    dead_letters: int = 0


def stream_time(entry_id: bytes) -> str:
    """An outbox entry id ("<ms>-<seq>", Redis time) as an ISO time that sorts like the ids (seq as microseconds)."""
    ms, _, seq = entry_id.decode().partition("-")
    moment = datetime.fromtimestamp(int(ms) / 1000, UTC) + timedelta(microseconds=min(int(seq or 0), 999))
    return moment.isoformat()


def parse_entry(fields: dict[bytes, bytes], entry_id: bytes | None = None) -> OutboxRecord:
    record = load_record(fields[b"r"])
    if isinstance(record, PurchaseRecord | ReturnRecord) and b"receipt" in fields:
        # The script stores the receipt beside the record: it is sent to Redis once, as bytes.
        record = dataclasses.replace(record, receipt_b64=base64.b64encode(fields[b"receipt"]).decode())
    if entry_id is not None and isinstance(record, PurchaseRecord | CustomerRecord):
        # Absolute fields (display, tier) go by the order Redis applied the changes in, not the servers' clocks.
        record = dataclasses.replace(record, outbox_at=stream_time(entry_id))
    if isinstance(record, ExpiryRecord):  # the script decided how many points, atomically with taking them
        return dataclasses.replace(record, points=int(fields[b"points"]))
    if isinstance(record, AdjustmentRecord) and b"result" in fields:  # the script decided the outcome
        result = json.loads(fields[b"result"])
        return dataclasses.replace(
            record,
            balance_before=int(result["balance_before"]),
            balance_after=int(result["balance_after"]),
            debt_before=int(result["debt_before"]),
            debt_after=int(result["debt_after"]),
        )
    if isinstance(record, ReturnRecord) and b"cats_removed" in fields:  # the void script decided which
        return dataclasses.replace(record, categories_removed=json.loads(fields[b"cats_removed"]))
    if isinstance(record, CustomerRecord):
        # The upsert script computes the deltas atomically with the change and adds them beside the record.
        record = dataclasses.replace(
            record,
            lifetime_value_delta=int(fields.get(b"ltv_delta", b"0")),
            balance_delta=int(fields.get(b"balance_delta", b"0")),
        )
    return record


class OutboxWriter:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        sink: RecordSink,
        *,
        consumer: str,
        batch: int = 200,
        idle_ms: int = 100,
        claim_idle_ms: int = 30_000,
        on_batch: Callable[[WriterStats, float], None] | None = None,
        on_healthy_pass: Callable[[], None] | None = None,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._sink = sink
        self.consumer = consumer
        self._batch = batch
        self._idle_s = idle_ms / 1000
        self._claim_idle_ms = claim_idle_ms
        self._on_batch = on_batch
        self._on_healthy_pass = on_healthy_pass  # a pass over every partition without a failed batch
        self._groups_ready = False
        self._ack: AsyncScript = client.register_script(lua("ack_outbox.lua"))
        self.stats = WriterStats()

    async def ensure_groups(self) -> None:
        for stream in (o.stream for o in self._keys.writer_outboxes()):
            try:
                await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._groups_ready = True

    async def _claimable(self, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """Entries pending for this consumer (a failed batch) or idle too long at another (a dead writer)."""
        own: Any = await self._redis.xreadgroup(GROUP, self.consumer, {stream: "0"}, count=self._batch)
        entries: list[tuple[bytes, dict[bytes, bytes]]] = list(own[0][1]) if own else []
        if len(entries) < self._batch:
            claimed: Any = await self._redis.xautoclaim(
                stream, GROUP, self.consumer, self._claim_idle_ms, start_id="0-0", count=self._batch
            )
            entries.extend(e for e in claimed[1] if e and e[1])
        return entries

    async def run_once(self, stop: asyncio.Event | None = None) -> int:
        """One pass over every partition; returns how many entries were written (or found already written)."""
        if not self._groups_ready:
            await self.ensure_groups()
        done = 0
        for outbox in self._keys.writer_outboxes():
            if stop is not None and stop.is_set():
                break  # a pass can be long under backlog; stopping must not wait for it
            entries = await self._claimable(outbox.stream)
            fresh: Any = await self._redis.xreadgroup(GROUP, self.consumer, {outbox.stream: ">"}, count=self._batch)
            if fresh:
                entries.extend(fresh[0][1])
            if entries:
                done += await self._write(outbox, entries)
        return done

    async def acknowledge(
        self, outbox: OutboxKeys, written: Sequence[bytes] = (), dead: Sequence[bytes] = ()
    ) -> tuple[int, int]:
        """Removes entries from the outbox, `written` ones (in SQL now) and `dead` ones (moved to the dead letters),
        taking each off its customer's unwritten count: one script, so an entry is removed and uncounted once even
        when two writers hold it. Returns how many of each this call removed."""
        params = {"group": GROUP, "written": [i.decode() for i in written], "dead": [i.decode() for i in dead]}
        keys = [outbox.stream, outbox.unwritten, outbox.dead_letters]
        removed, parked = await self._ack(keys=keys, args=[json.dumps(params)])
        return int(removed), int(parked)

    async def _write(self, outbox: OutboxKeys, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        ids: list[bytes] = []
        unreadable: list[bytes] = []
        records: list[OutboxRecord] = []
        for entry_id, fields in entries:
            try:
                records.append(parse_entry(fields, entry_id))
                ids.append(entry_id)
            except (KeyError, ValueError, TypeError):
                # An entry no writer can parse would block nothing but would be retried forever: park it.
                log.exception("unreadable outbox entry %s on %s moved to dead letters", entry_id, outbox.stream)
                unreadable.append(entry_id)
        if unreadable:
            self.stats.dead_letters += (await self.acknowledge(outbox, dead=unreadable))[1]
        if not records:
            return 0
        started = time.perf_counter()
        try:
            applied = await asyncio.to_thread(self._sink.apply_records, records)
        except Exception:
            # SQL down or refusing: leave the entries pending; the next pass retries them.
            self.stats.failures += 1
            log.exception("writing %d outbox records to SQL failed; will retry", len(records))
            if self._on_batch:
                self._on_batch(self.stats, time.perf_counter() - started)
            return 0
        self.stats.applied += applied
        self.stats.duplicates += len(records) - applied
        await self.acknowledge(outbox, written=ids)
        if self._on_batch:
            self._on_batch(self.stats, time.perf_counter() - started)
        return len(records)

    async def backlog(self) -> int:
        """Outbox entries not yet written to SQL, across partitions (and the audit outbox)."""
        pipe = self._redis.pipeline(transaction=False)
        for outbox in self._keys.writer_outboxes():
            pipe.xlen(outbox.stream)
        return sum(int(n) for n in await pipe.execute())

    async def oldest_age_s(self) -> float:
        """Age of the oldest unwritten record (stream ids start with the append time in ms); 0 when empty."""
        pipe = self._redis.pipeline(transaction=False)
        for outbox in self._keys.writer_outboxes():
            pipe.xrange(outbox.stream, count=1)
        oldest_ms = [int(r[0][0].split(b"-")[0]) for r in await pipe.execute() if r]
        return max(0.0, time.time() - min(oldest_ms) / 1000) if oldest_ms else 0.0

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self._idle_s
        while not stop.is_set():
            try:
                failures = self.stats.failures
                written = await self.run_once(stop)
                backoff = self._idle_s
                if self._on_healthy_pass and self.stats.failures == failures:
                    self._on_healthy_pass()
            except RedisError:
                log.exception("outbox writer cannot reach Redis")
                written, backoff = 0, min(max(backoff * 2, 0.1), 5.0)
            if written == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Writes until the outbox is empty (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while await self.backlog() > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"outbox not drained within {timeout_s}s")
            if await self.run_once() == 0:
                await asyncio.sleep(self._idle_s)

"""Collecting the jobs arq runs concurrently into batches applied in one transaction each.

Every arq job hands its command to `Batcher.submit` and waits. One flusher task takes up to
`size` pending writes and, in ONE transaction, applies the source rows (`worker.apply`) and
rebuilds every read model they touched (`projections.refresh`). Only after COMMIT does it publish
the new read models to the cache Redis (`projections.cache.publish`: compare-and-set by version,
so never an older body over a newer one), then, in the durable Redis, settle the receipts, mark
new ids in the id state and announce the settled write ids, and finally resolve the jobs, which
lets arq ack them.

A batch is what has arrived, not what a timer collected: the jobs of one poll reach `submit`
within the same event-loop pass, so the flusher waits only until a pass brings nothing new (at
most `wait` seconds). When writes trickle in, a batch is the few that came together and is applied
at once; under a backlog the next batch fills to `size` while the previous transaction runs.

Failure handling, per batch:
- PostgreSQL unreachable, restarting, deadlocked, or the same write applied concurrently by
  another run: every job of the batch fails with `Transient` and arq retries it later;
- a data or constraint error caused by one bad write (it should not happen; validation is
  strict): the batch is split and each write is applied on its own, so only the culprit is
  rejected. Any other error (a bug, a read-model query failing) is retried like an outage:
  an acknowledged write is never thrown away for a fault that is not its own;
- Redis failing after COMMIT: the jobs fail with `Transient`; their re-run finds them applied and
  repeats only the publishing, which is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import asyncpg
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

import projections
from projections import idstate
from projections.affected import Affected
from worker import protocol
from worker.apply import BatchResult, Outcome, apply_batch, record_outcomes, rejected
from worker.protocol import AddToCart, Mutation, PostAnswer, PostQuestion, PostReview, Vote

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600
PUBLISHING = 2
KEEP_APPLIED = "7 days"

_TRANSIENT_PG = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.OperatorInterventionError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.InsufficientResourcesError,
)


_SETTLE = """
-- KEYS: n receipts, then one id-state bitmap per created row; ARGV: receipt ttl ms, channel,
-- message, n, then (status, resource, error) per receipt ('' = absent), then one row id per bitmap.
local n = tonumber(ARGV[4])
for i = 1, n do
  local status, resource, err = ARGV[2 + 3 * i], ARGV[3 + 3 * i], ARGV[4 + 3 * i]
  redis.call('HSET', KEYS[i], 'status', status)
  if resource ~= '' then redis.call('HSET', KEYS[i], 'resource', resource) end
  if err ~= '' then redis.call('HSET', KEYS[i], 'error', err) end
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
for i = n + 1, #KEYS do
  redis.call('SETBIT', KEYS[i], ARGV[4 + 3 * n + i - n], 1)
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return n
"""


class Transient(Exception):
    """The batch could not be applied now; the job must be retried later."""


def is_write_fault(exc: BaseException) -> bool:
    """An error a write's own data caused (a value or a constraint PostgreSQL refuses)."""
    if isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name == "applied_writes_pkey":
        return False
    return isinstance(exc, (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError))


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.UniqueViolationError):
        return exc.constraint_name == "applied_writes_pkey"
    return isinstance(exc, (*_TRANSIENT_PG, OSError, asyncio.TimeoutError, RedisError))


class Batcher:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, cache: aioredis.Redis, size: int, wait: float):
        self._pool = pool
        self._redis = redis  # the durable one: receipts, id state, the settled announcement
        self._cache = cache  # read models and their invalidations
        self._size = size
        self._wait = wait
        self._pending: dict[str, tuple[Mutation, list[asyncio.Future]]] = {}
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()  # set when the flusher waits for writes or a batch committed
        self._task: asyncio.Task | None = None
        self._slots = asyncio.Semaphore(PUBLISHING)
        self._publishing: set[asyncio.Task] = set()
        self.applied = 0
        self._pruned_at = 0.0
        self._settle_script = redis.register_script(_SETTLE)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Finish what is pending, then stop (SIGTERM: the current batch is applied, not dropped)."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._publishing, return_exceptions=True)
        while self._pending:
            await self._flush(self._take(), asyncio.Event())

    async def submit(self, write_id: str, mutation: Mutation) -> Outcome:
        future = asyncio.get_running_loop().create_future()
        entry = self._pending.setdefault(write_id, (mutation, []))
        entry[1].append(future)
        self._arrived.set()
        return await future

    def _take(self) -> dict[str, tuple[Mutation, list[asyncio.Future]]]:
        batch = {}
        for write_id in list(self._pending)[: self._size]:
            batch[write_id] = self._pending.pop(write_id)
        if not self._pending:
            self._arrived.clear()
        return batch

    async def _run(self) -> None:
        while True:
            self._room.set()
            await self._arrived.wait()
            await self._gathered()
            self._room.clear()
            # The next batch's transaction starts as soon as this one has committed; its publishing
            # (Redis) overlaps that transaction. At most PUBLISHING batches are past COMMIT at once.
            await self._slots.acquire()
            committed = asyncio.Event()
            task = asyncio.create_task(self._flush(self._take(), committed))
            self._publishing.add(task)
            task.add_done_callback(self._published)
            await committed.wait()

    async def until_room(self) -> None:
        """Return once the flusher waits for writes or a batch has committed: the moment jobs
        claimed now go into the next batch (the worker polls then, not for every new job)."""
        await self._room.wait()

    async def _gathered(self) -> None:
        """Until the batch is full, or a loop pass brings no new write, or `wait` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        while len(self._pending) < self._size and loop.time() < deadline:
            seen = len(self._pending)
            await asyncio.sleep(0)
            if len(self._pending) == seen:
                return

    def _published(self, task: asyncio.Task) -> None:
        self._publishing.discard(task)
        self._slots.release()

    async def _flush(self, batch: dict[str, tuple[Mutation, list[asyncio.Future]]], committed: asyncio.Event) -> None:
        try:
            await self._flush_batch(batch, committed)
        finally:
            committed.set()

    async def _flush_batch(self, batch, committed: asyncio.Event) -> None:
        if not batch:
            return
        writes = [(write_id, mutation) for write_id, (mutation, _) in batch.items()]
        started = time.perf_counter()
        try:
            outcomes = await self._apply(writes, committed)
        except Exception as exc:  # resolved into every job of the batch; arq decides about retries
            if not is_transient(exc):
                log.exception("batch of %d writes failed", len(writes))
            else:
                log.warning("batch of %d writes deferred: %s: %s", len(writes), type(exc).__name__, exc)
            for _, futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(Transient(f"{type(exc).__name__}: {exc}"))
            return
        self.applied += len(writes)
        await self._prune_applied_writes()
        log.debug("applied %d writes in %.1f ms", len(writes), (time.perf_counter() - started) * 1000)
        for write_id, (_, futures) in batch.items():
            for future in futures:
                if not future.done():
                    future.set_result(outcomes[write_id])

    async def _prune_applied_writes(self) -> None:
        """Forget applied write ids older than a week, at most once an hour: a job re-runs within
        minutes of its first run (its in-progress key expires), never a week later."""
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = time.monotonic()
        try:
            async with self._pool.acquire() as conn:
                await conn.execute(f"DELETE FROM applied_writes WHERE applied_at < now() - interval '{KEEP_APPLIED}'")
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("could not prune applied_writes: %s", exc)

    async def _apply(self, writes: list[tuple[str, Mutation]], committed: asyncio.Event) -> dict[str, Outcome]:
        try:
            result, rows = await self._commit(writes)
            committed.set()
        except asyncpg.PostgresError as exc:
            if not is_write_fault(exc):
                raise
            if len(writes) == 1:
                result = await self._reject(writes[0][0], exc)
                rows = []
            else:
                log.warning("batch failed (%s); applying its %d writes one by one", exc, len(writes))
                outcomes = {}
                for write in writes:
                    outcomes.update(await self._apply([write], asyncio.Event()))
                return outcomes
        await projections.cache.publish(self._cache, rows)
        await self._settle(result)
        return result.outcomes

    async def warm(self) -> None:
        """Apply a batch of writes that name no existing row, and refresh models of keys that do
        not exist, in a transaction that is rolled back: the connection prepares the statements
        and learns the array types a batch uses, so the first batches after a start do not pay
        for it (tens of ms on a new connection, while writes queue behind them)."""
        probe = [Vote(target, 0, action) for target in ("review", "question", "answer") for action in ("helpful", "report")]
        probe += [
            PostReview(0, 5, "", "", True, "", "", [], {0: 5}),
            PostQuestion(0, "", "", ""),
            PostAnswer(0, "", "", "", []),
            AddToCart("", 0),
        ]
        async with self._pool.acquire(timeout=2) as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                await apply_batch(conn, [(uuid.uuid4().hex, write) for write in probe])
                await projections.refresh(conn, Affected({0}, {0}, {0}, {0}))
            finally:
                await transaction.rollback()

    async def _commit(self, writes) -> tuple[BatchResult, list]:
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                result = await apply_batch(conn, writes)
                rows = await projections.refresh(conn, result.affected) if result.affected else []
        return result, rows

    async def _reject(self, write_id: str, exc: asyncpg.PostgresError) -> BatchResult:
        log.error("write %s rejected by PostgreSQL: %s", write_id, exc)
        outcome = rejected(f"could not be stored: {exc.__class__.__name__}")
        async with self._pool.acquire() as conn:
            await record_outcomes(conn, {write_id: outcome})
        return BatchResult(outcomes={write_id: outcome})

    async def _settle(self, result: BatchResult) -> None:
        """Receipts, id state and the settled announcement in one script (atomic, one command to
        pack instead of three per write): a client that sees its write applied can immediately
        vote on what it created."""
        keys, args = [], [protocol.RECEIPT_TTL_MS, protocol.SETTLED_CHANNEL, " ".join(result.outcomes),
                          len(result.outcomes)]
        for write_id, outcome in result.outcomes.items():
            keys.append(protocol.receipt_key(write_id))
            resource = orjson.dumps(outcome.resource) if outcome.resource else b""
            args += [outcome.status, resource, outcome.error or ""]
        for kind, ids in result.created.items():
            for row_id in ids:
                keys.append(idstate.bitmap_key(kind))
                args.append(row_id)
        await self._settle_script(keys=keys, args=args)

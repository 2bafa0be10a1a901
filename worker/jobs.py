"""The arq worker: one job per acknowledged write, applied in batches by `worker.batcher`.

Settings, and why (see `WorkerSettings`):
- `max_jobs` 1000: arq runs this many jobs at once in one process; each of them only waits in
  the batcher, so a high number is what lets batches fill (`batch_size` writes per transaction)
  instead of trickling in one by one. `queue_read_limit` 2000: a poll looks past the jobs this
  process is already running (they stay in the queue until acked) to find new ones.
- `BatchingWorker` (worker/arq_batching.py) claims and fetches a poll's jobs in one script and
  acks the jobs finishing together in one MULTI, instead of arq's five round trips per job.
- `poll_delay` 0.02 s: the longest a worker waits before it polls again. It does not sleep
  between polls: the writer leaves a token in `protocol.WAKE` with every job, an idle worker
  blocks on that list (BLPOP) and claims a new write as soon as it is queued (worker/arq_batching.py);
  the timeout finds jobs that become due without a token (retries deferred by their backoff).
- `job_timeout` (settings, default 60 s): a job waits at most this long for its batch; it then
  asks for a retry (`Retry`) rather than failing. arq's in-progress key — which stops a second
  worker from starting a job that is running — expires `job_timeout` + 2 s after the start, so a
  worker killed with SIGKILL holds its jobs that long, then any worker re-runs them (and
  `applied_writes` makes the re-run change nothing twice).
- `max_tries` 10^9: an acknowledged write is never dropped. PostgreSQL being down is retried with
  backoff (0.2 s doubling to 3 s) for as long as it takes — 10^9 tries at 3 s is ~95 years; arq's
  try counter itself expires after a day. Writes that can never apply are rejected, not retried.
- `keep_result` 0: outcomes live in our receipts, not in arq's result keys.
- `job_completion_wait` 30 s: on SIGTERM the worker stops taking jobs and lets the running ones
  (the current batches) finish before it exits.
- `health_check_interval` 10 s: arq refreshes `arq:queue:health-check` (with its counters) that
  often; `arq --check` and the stack's supervisor read it.
- jobs are written by the writer with orjson (`protocol.job_serializer`) and no expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
import redis.asyncio as aioredis
from arq import Retry
from arq.connections import RedisSettings
from arq.worker import func

from infra.observability import JsonLog, metrics_for
from infra.settings import Settings
from worker import protocol
from worker.arq_batching import BatchingWorker
from worker.batcher import Batcher, Transient

log = logging.getLogger(__name__)
MAX_TRIES = 10**9
IN_PROGRESS_GRACE_S = 1


def backoff(job_try: int) -> float:
    return min(0.2 * 2 ** (job_try - 1), 3.0)


async def apply_write(ctx: dict, wire: dict, request_id: str = "") -> str:
    batcher: Batcher = ctx["batcher"]
    try:
        outcome = await asyncio.wait_for(
            asyncio.shield(batcher.submit(ctx["job_id"], protocol.from_wire(wire))), ctx["job_timeout"]
        )
    except (Transient, asyncio.TimeoutError):  # PostgreSQL away, or a batch slower than job_timeout
        raise Retry(defer=backoff(ctx["job_try"])) from None
    if outcome.status == "rejected":
        log.warning("write %s (request %s) rejected: %s", ctx["job_id"], request_id, outcome.error)
    lag = time.time() - ctx["enqueue_time"].timestamp()
    metrics = ctx["metrics"]
    metrics.job(wire["kind"], outcome.status)
    metrics.observe_apply_lag(wire["kind"], lag)
    if ctx["events"] is not None:
        # The request id nginx gave the POST/PUT, so one id follows a write from nginx to here.
        ctx["events"].event(outcome.status, write_id=ctx["job_id"], request_id=request_id, kind=wire["kind"],
                            lag_ms=round(lag * 1000, 1), error=outcome.error)
    return outcome.status


async def _flush_events(events: JsonLog) -> None:
    while True:
        await asyncio.sleep(1)
        events.flush()


async def _report_queue_depth(ctx: dict) -> None:
    """The queue's length as a gauge, once a second (what is waiting, not what runs here)."""
    while True:
        with contextlib.suppress(Exception):
            ctx["metrics"].set_queue_depth(await ctx["redis"].zcard(protocol.QUEUE))
        await asyncio.sleep(1)


async def startup(ctx: dict) -> None:
    settings: Settings = ctx["settings"]
    ctx["metrics"] = metrics_for(settings, "worker")
    ctx["queue_depth"] = asyncio.create_task(_report_queue_depth(ctx))
    # One JSON line per applied or rejected write, under the same switch as the apps' request logs.
    ctx["events"] = JsonLog("worker", settings.log_json) if settings.access_log else None
    if ctx["events"] is not None:
        ctx["event_flush"] = asyncio.create_task(_flush_events(ctx["events"]))
    # min_size=0: the worker starts (and keeps its queue) even while PostgreSQL is down.
    ctx["pg"] = await asyncpg.create_pool(settings.database_url, min_size=0, max_size=4)
    # Timeouts so a cache server that hangs fails the publish (and the job is retried), never the worker.
    ctx["cache"] = aioredis.from_url(settings.cache_url, socket_timeout=5, socket_connect_timeout=2)
    ctx["batcher"] = Batcher(ctx["pg"], ctx["redis"], ctx["cache"], size=settings.worker_batch_size,
                             wait=settings.worker_batch_wait_ms / 1000)
    # A connection opened and its statements prepared now, not by the first batches. Best effort:
    # the worker also starts while PostgreSQL is down, and its batches are retried until it is back.
    try:
        await ctx["batcher"].warm()
    except Exception as exc:
        log.warning("could not warm up the PostgreSQL connection: %s: %s", type(exc).__name__, exc)
    ctx["batcher"].start()


async def shutdown(ctx: dict) -> None:
    for task in ("queue_depth", "event_flush"):
        if task in ctx:
            ctx[task].cancel()
    if "batcher" in ctx:
        try:
            await ctx["batcher"].stop()
        except Exception:  # the jobs stay queued and are re-run by the next worker
            log.exception("could not finish the pending batch")
    if "pg" in ctx:
        await ctx["pg"].close()
    if "cache" in ctx:
        await ctx["cache"].aclose()
    if ctx.get("events") is not None:
        ctx["events"].flush()


class WorkerSettings:
    functions = [func(apply_write, name=protocol.APPLY_FUNCTION, max_tries=MAX_TRIES)]
    on_startup = startup
    on_shutdown = shutdown
    queue_name = protocol.QUEUE
    job_serializer = protocol.job_serializer
    job_deserializer = protocol.job_deserializer
    max_jobs = 1000
    queue_read_limit = 2000
    poll_delay = 0.02
    max_tries = MAX_TRIES
    keep_result = 0
    job_completion_wait = 30
    health_check_interval = 10
    retry_jobs = True


def _settings_kwargs() -> dict:
    return {k: v for k, v in vars(WorkerSettings).items() if not k.startswith("_")}


def create_worker(settings: Settings, burst: bool = False, handle_signals: bool = True) -> BatchingWorker:
    """An arq Worker configured from `WorkerSettings` and `settings` (URLs must be resolved)."""
    worker = BatchingWorker(
        **_settings_kwargs(),
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        job_timeout=settings.worker_job_timeout + 1,
        ctx={"settings": settings, "job_timeout": settings.worker_job_timeout},
        burst=burst,
        handle_signals=handle_signals,
        wake_key=protocol.WAKE,
        until_room=lambda ctx: ctx["batcher"].until_room(),
    )
    worker.in_progress_timeout_s = settings.worker_job_timeout + 1 + IN_PROGRESS_GRACE_S
    return worker

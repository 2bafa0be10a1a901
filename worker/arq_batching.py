"""arq's Worker with its per-job Redis round trips folded into one per poll and one per tick.

Stock arq starts each job with a WATCH / EXISTS / ZSCORE / MULTI exchange, then fetches it with
another MULTI (GET job, INCR try counter, EXPIRE), re-checks every job of the queue's head on
every poll (including the hundreds already running in this process), runs it in a task of its
own under `wait_for`, and acks it with one more MULTI. At thousands of jobs a second that is most
of the worker's CPU. This subclass keeps arq's keys, formats and semantics and changes how they
are reached:
- each poll is one Lua script that walks the due part of the queue (up to `queue_read_limit`
  entries) and does, per job, exactly what arq does across its round trips: claim it when its
  in-progress key is absent (setting the key with arq's expiry), count the try
  (`arq:retry:<id>`, 88400 s) and return the job's bytes;
- `_run_claimed` is arq's `run_job` for that data: the max-tries check, `Retry` (re-score by its
  defer), cancellation (left queued, re-run), success and failure (acked and removed). The job
  function is awaited directly: ours bounds its own wait (`job_timeout`) and never needs arq's
  timeout task; results are not kept (`keep_result` 0), aborts and cron jobs are not used;
- `finish_job` queues its operations and every job finishing in the same event-loop tick is
  acked by one script doing arq's `finish_job` for each (atomic, like arq's MULTI);
- a worker does not sleep `poll_delay` between polls: it blocks on the wake-up list `wake_key`
  (BLPOP, at most `poll_delay` seconds), where whoever enqueues leaves a token, so a new job is
  claimed as soon as it is queued. While jobs of its own are running it first awaits
  `until_room(ctx)` (at most `poll_delay`): the batcher answers when a batch has committed or it
  waits for work, so a poll — a script that walks the running jobs too — happens once per batch,
  not once per arriving job. Jobs that become due later (deferred retries) are found by a poll at
  most `poll_delay` later. In burst mode, and while `max_jobs` run, it sleeps `poll_delay` as arq does.
Burst mode, signals, health checks and the poll loop are arq's own (its sleep between polls is
zero here: the waiting happens in `_poll_iteration`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Awaitable, Callable

from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import SerializationError, deserialize_job_raw
from arq.utils import ms_to_datetime, timestamp_ms
from arq.worker import Retry, Worker

log = logging.getLogger(__name__)

_CLAIM = f"""
-- KEYS[1]: queue; ARGV: now ms, in-progress expiry ms, how many to claim at most, how many queue
-- entries to look at at most. Walks the due part of the queue in score order, skipping jobs that
-- run somewhere (their in-progress key exists), and claims up to the limit.
-- Returns id, score, job bytes (false when the job key is gone), try number, per claimed job.
local claimed = {{}}
local limit, budget, offset = tonumber(ARGV[3]), tonumber(ARGV[4]), 0
while #claimed < 4 * limit and offset < budget do
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', offset, 500)
  if #due == 0 then break end
  for i = 1, #due, 2 do
    local id = due[i]
    if redis.call('SET', '{in_progress_key_prefix}' .. id, '1', 'NX', 'PX', ARGV[2]) then
      local try = redis.call('INCR', '{retry_key_prefix}' .. id)
      redis.call('EXPIRE', '{retry_key_prefix}' .. id, 88400)
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = due[i + 1]
      claimed[#claimed + 1] = redis.call('GET', '{job_key_prefix}' .. id)
      claimed[#claimed + 1] = try
      if #claimed >= 4 * limit then break end
    end
  end
  offset = offset + #due / 2
end
return claimed
"""


_FINISH = f"""
-- KEYS[1]: queue; ARGV: n, then (job id, finished 1|0, score increment) per job: arq's finish_job
-- for each (no result is kept: keep_result is 0; no cron job keeps its in-progress key).
for i = 0, tonumber(ARGV[1]) - 1 do
  local id, finished, incr = ARGV[2 + 3 * i], ARGV[3 + 3 * i], tonumber(ARGV[4 + 3 * i])
  if finished == '1' then
    redis.call('DEL', '{in_progress_key_prefix}' .. id, '{retry_key_prefix}' .. id, '{job_key_prefix}' .. id)
    redis.call('ZREM', '{abort_jobs_ss}', id)
    redis.call('ZREM', KEYS[1], id)
  else
    if incr > 0 then redis.call('ZINCRBY', KEYS[1], incr, id) end
    redis.call('DEL', '{in_progress_key_prefix}' .. id)
  end
end
return 0
"""


class BatchingWorker(Worker):
    def __init__(self, *args, wake_key: str | None = None,
                 until_room: Callable[[dict], Awaitable[None]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.wake_key = wake_key
        self.until_room = until_room
        self.idle_wait_s = self.poll_delay_s
        self.poll_delay_s = 0  # arq's loop sleeps this long after each poll; the poll waits itself
        self._claim = None
        self._finish = None
        self._finishing: list[tuple] = []
        self._finished: asyncio.Future | None = None

    async def _poll_iteration(self) -> None:
        """arq's poll, minus the ZRANGEBYSCORE whose ids `start_jobs` then checked one by one: the
        claim script walks the queue itself. (Aborts and max_burst_jobs are not used here.)"""
        if self.allow_pick_jobs and self.job_counter < self.max_jobs:
            await self.start_jobs([])
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                task.result()
        await self.heart_beat()
        await self._idle()

    async def _idle(self) -> None:
        """Wait before the next poll (see the module's docstring)."""
        if self.burst or not self.wake_key or self.job_counter >= self.max_jobs:
            await asyncio.sleep(self.idle_wait_s)
            return
        if self.job_counter and self.until_room is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.until_room(self.ctx), self.idle_wait_s)
        await self.pool.blpop([self.wake_key], timeout=self.idle_wait_s)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        room = self.max_jobs - self.job_counter
        if room <= 0:
            return
        if self._claim is None:
            self._claim = self.pool.register_script(_CLAIM)
        reply = await self._claim(
            keys=[self.queue_name],
            args=[timestamp_ms(), int(self.in_progress_timeout_s * 1000), room, self.queue_read_limit],
        )
        for i in range(0, len(reply), 4):
            await self.sem.acquire()
            self.job_counter += 1
            job_id = reply[i].decode()
            task = self.loop.create_task(
                self._run_claimed(job_id, int(float(reply[i + 1])), reply[i + 2], int(reply[i + 3]))
            )
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    async def _run_claimed(self, job_id: str, score: int, raw: bytes | None, job_try: int) -> None:
        finish, incr_score = True, None
        try:
            if not raw:
                raise SerializationError("job expired")
            function_name, args, kwargs, enqueue_job_try, enqueue_time_ms = deserialize_job_raw(
                raw, deserializer=self.job_deserializer
            )
            function = self.functions[function_name]
            job_try = max(job_try, enqueue_job_try or 0)
            max_tries = self.max_tries if function.max_tries is None else function.max_tries
            if job_try > max_tries:
                raise RuntimeError(f"max {max_tries} retries exceeded")
            ctx = {**self.ctx, "job_id": job_id, "job_try": job_try, "score": score,
                   "enqueue_time": ms_to_datetime(enqueue_time_ms)}
            await function.coroutine(ctx, *args, **kwargs)
        except Retry as exc:
            finish = False
            if exc.defer_score:
                incr_score = exc.defer_score + (timestamp_ms() - score)
            self.jobs_retried += 1
        except asyncio.CancelledError:  # shutdown: the job stays queued and is run again
            finish = False
            self.jobs_retried += 1
            await asyncio.shield(self.finish_job(job_id, finish, None, None, False, None, None))
            raise
        except Exception:
            log.exception("job %s failed and is dropped", job_id)
            self.jobs_failed += 1
        else:
            self.jobs_complete += 1
        await asyncio.shield(self.finish_job(job_id, finish, None, None, False, incr_score, None))

    async def finish_job(self, job_id, finish, result_data, result_timeout_s, keep_result_forever, incr_score,
                         keep_in_progress) -> None:
        self._finishing.append(
            (job_id, finish, result_data, result_timeout_s, keep_result_forever, incr_score, keep_in_progress)
        )
        if self._finished is None:
            self._finished = self.loop.create_future()
            self.loop.call_soon(lambda: self.loop.create_task(self._finish_all()))
        await asyncio.shield(self._finished)

    async def _finish_all(self) -> None:
        finishing, done = self._finishing, self._finished
        self._finishing, self._finished = [], None
        args = [len(finishing)]
        for job_id, finish, _, _, _, incr_score, _ in finishing:
            args += [job_id, "1" if finish else "0", incr_score or 0]
        try:
            if self._finish is None:
                self._finish = self.pool.register_script(_FINISH)
            await self._finish(keys=[self.queue_name], args=args)
        except Exception as exc:  # every job of the tick sees it, as it would have seen its own failure
            done.set_exception(exc)
        else:
            done.set_result(None)

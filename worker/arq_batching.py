"""arq's Worker with its per-job Redis round trips folded into one per poll and one per tick.

Stock arq starts each job with a WATCH / EXISTS / ZSCORE / MULTI exchange (four round trips) and
re-checks every job of the queue's head on every poll, including the hundreds already running in
this process; it finishes each job with its own MULTI. At thousands of jobs a second that is
most of the worker's CPU. This subclass keeps arq's keys and semantics and changes only how
they are written:
- `start_jobs` claims the polled ids with one Lua script: a job is claimed when its in-progress
  key is absent and its score is due, exactly arq's test, and the key is set with arq's expiry;
- `finish_job` queues its MULTI operations and every job finishing in the same event-loop tick
  shares one MULTI/EXEC.
Everything else (run_job, retries with defer, burst mode, signals, health checks) is arq's own.
"""

from __future__ import annotations

import asyncio

from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, result_key_prefix, retry_key_prefix
from arq.utils import timestamp_ms, to_ms
from arq.worker import Worker

_CLAIM = """
-- KEYS[1]: queue; ARGV: now ms, in-progress expiry ms, how many to claim at most, candidate ids
local claimed = {}
local limit = tonumber(ARGV[3])
for i = 4, #ARGV do
  if #claimed >= 2 * limit then break end
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= tonumber(ARGV[1]) then
    if redis.call('SET', '""" + in_progress_key_prefix + """' .. id, '1', 'NX', 'PX', ARGV[2]) then
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = score
    end
  end
end
return claimed
"""


class BatchingWorker(Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._claim = None
        self._finishing: list[tuple] = []
        self._finished: asyncio.Future | None = None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        room = self.max_jobs - self.job_counter
        if room <= 0 or not job_ids:
            return
        if self._claim is None:
            self._claim = self.pool.register_script(_CLAIM)
        reply = await self._claim(
            keys=[self.queue_name], args=[timestamp_ms(), int(self.in_progress_timeout_s * 1000), room, *job_ids]
        )
        for i in range(0, len(reply), 2):
            await self.sem.acquire()
            self.job_counter += 1
            job_id = reply[i].decode()
            task = self.loop.create_task(self.run_job(job_id, int(float(reply[i + 1]))))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

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
        try:
            async with self.pool.pipeline(transaction=True) as tr:
                for job in finishing:
                    _queue_finish(tr, self.queue_name, *job)
                await tr.execute()
        except Exception as exc:  # every job of the tick sees it, as it would have seen its own failure
            done.set_exception(exc)
        else:
            done.set_result(None)


def _queue_finish(tr, queue_name, job_id, finish, result_data, result_timeout_s, keep_result_forever, incr_score,
                  keep_in_progress) -> None:
    """arq's `Worker.finish_job`, as commands on a shared transaction."""
    delete_keys = []
    in_progress_key = in_progress_key_prefix + job_id
    if keep_in_progress is None:
        delete_keys.append(in_progress_key)
    else:
        tr.pexpire(in_progress_key, to_ms(keep_in_progress))
    if finish:
        if result_data:
            expire = None if keep_result_forever else result_timeout_s
            tr.set(result_key_prefix + job_id, result_data, px=to_ms(expire))
        delete_keys += [retry_key_prefix + job_id, job_key_prefix + job_id]
        tr.zrem(abort_jobs_ss, job_id)
        tr.zrem(queue_name, job_id)
    elif incr_score:
        tr.zincrby(queue_name, incr_score, job_id)
    if delete_keys:
        tr.delete(*delete_keys)

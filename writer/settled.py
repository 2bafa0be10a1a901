"""`Prefer: wait=N` (RFC 7240): let one request wait until the worker has applied its write.

One Pub/Sub subscription per writer process listens to the channel on which the worker announces
settled write ids (one message per batch); each waiting request holds a future keyed by its write
id. A waiter registers first and then reads its receipt, and reads it again every second it keeps
waiting, so a write settled before (or while) the subscription was not listening is not missed;
if Redis is down the wait simply runs out and the answer is the same `201`/`204` it would have
been without the preference.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from worker import protocol

log = logging.getLogger(__name__)
MAX_WAIT_SECONDS = 10  # stays below nginx's proxy_read_timeout


def requested_wait(prefer: str | None) -> int | None:
    """Seconds asked for by a `Prefer` header's `wait` preference, capped at MAX_WAIT_SECONDS."""
    if not prefer:
        return None
    for preference in prefer.split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            value = value.split(";")[0].strip().strip('"')
            if value.isdigit():
                return min(int(value), MAX_WAIT_SECONDS)
    return None


class SettledWaiters:
    def __init__(self, redis: aioredis.Redis):
        self._redis = redis
        self._waiters: dict[str, asyncio.Future] = {}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(protocol.SETTLED_CHANNEL)
                while True:
                    # A bounded read: an idle channel is not an error (the client's socket timeout is).
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    for write_id in message["data"].decode().split():
                        future = self._waiters.get(write_id)
                        if future and not future.done():
                            future.set_result(None)
            except (RedisError, OSError) as exc:
                log.warning("settled-writes subscription lost (%s); resubscribing", exc)
                await asyncio.sleep(1)
            finally:
                await pubsub.aclose()

    async def wait(self, write_id: str, seconds: float) -> bool:
        """True once the write is applied or rejected; False if `seconds` passed first."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiters[write_id] = future
        deadline = loop.time() + seconds
        try:
            while True:
                status = await self._redis.hget(protocol.receipt_key(write_id), "status")
                if status not in (None, b"queued"):
                    return True
                left = deadline - loop.time()
                if left <= 0:
                    return False
                try:
                    await asyncio.wait_for(asyncio.shield(future), min(left, 1.0))
                    return True
                except asyncio.TimeoutError:
                    continue
        except (RedisError, OSError):
            return False
        finally:
            self._waiters.pop(write_id, None)

"""Accepting a write: existence checks, job, receipt and idempotency record in one Redis script.

One EVALSHA per request does everything, so a write is either wholly accepted or not at all:
the script checks the ids the command names against the id state (`projections/idstate.py`),
replays the stored answer when the Idempotency-Key was seen before, and otherwise writes the arq
job (no TTL: an acknowledged write must survive a PostgreSQL outage of any length and must never
be evicted), adds it to arq's queue, leaves a wake-up token for an idle worker
(`protocol.WAKE`), creates the receipt and records the idempotency key.
If Redis is unreachable nothing is written and the caller answers 503.

The script goes through the lean pipelined client (`infra/lean_redis.py`): requests of one
event-loop tick share one write to Redis, and each script still runs on its own, atomically.

Idempotency records carry no TTL either (an evicted record would let a retry create a second
review); instead each one is indexed by its expiry time and every call of the script deletes a
few that are past it, so they go away 24 hours after they were written without any cron.
"""

from __future__ import annotations

import dataclasses
import hashlib

from projections import idstate
from worker import protocol

IDEMPOTENCY_PREFIX = "atelier:idem:"
IDEMPOTENCY_INDEX = "atelier:idem:index"

_ENQUEUE = """
-- KEYS: 1 queue, 2 job, 3 receipt, 4 idempotency record, 5 idempotency index, 6 wake-up list, 7.. check keys
-- ARGV: 1 write id, 2 job bytes, 3 now ms, 4 use idempotency (0/1), 5 fingerprint, 6 status code,
--       7 extra (cart cookie), 8 idempotency ttl ms, 9 number of checks, then 3 per check
local now = tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, 4)
for _, key in ipairs(expired) do
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[5], key)
end
if ARGV[4] == '1' then
  local seen = redis.call('HMGET', KEYS[4], 'fingerprint', 'write_id', 'status', 'extra')
  if seen[1] then
    if seen[1] ~= ARGV[5] then return {'conflict'} end
    return {'replay', seen[2], seen[3], seen[4]}
  end
end
for i = 1, tonumber(ARGV[9]) do
  local kind, a, b = ARGV[7 + 3 * i], ARGV[8 + 3 * i], ARGV[9 + 3 * i]
  local key = KEYS[6 + i]
  if kind == 'bit' then
    if redis.call('GETBIT', key, a) == 0 then return {'missing', b} end
  else
    local have = {}
    for id in string.gmatch(redis.call('HGET', key, a) or '', '[^,]+') do have[id] = true end
    for id in string.gmatch(b, '[^,]+') do
      if not have[id] then return {'foreign', id} end
    end
  end
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
if redis.call('LLEN', KEYS[6]) == 0 then redis.call('RPUSH', KEYS[6], '1') end
redis.call('HSET', KEYS[3], 'status', 'queued', 'accepted_ms', ARGV[3])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[4], 'fingerprint', ARGV[5], 'write_id', ARGV[1], 'status', ARGV[6], 'extra', ARGV[7])
  redis.call('ZADD', KEYS[5], now + tonumber(ARGV[8]), KEYS[4])
end
return {'queued'}
"""


@dataclasses.dataclass(frozen=True)
class Check:
    """One existence check: bit `id` of the `kind` bitmap, reported as `field` when unset."""

    kind: str
    row_id: int
    field: str

    def key_and_args(self) -> tuple[str, list]:
        return idstate.bitmap_key(self.kind), ["bit", self.row_id, self.field]


@dataclasses.dataclass(frozen=True)
class CharacteristicsOf:
    """Every id in `ids` must be a characteristic of product `product_id`."""

    product_id: int
    ids: tuple[int, ...]

    def key_and_args(self) -> tuple[str, list]:
        return idstate.chars_key(self.product_id), ["chars", self.product_id, ",".join(map(str, self.ids))]


@dataclasses.dataclass(frozen=True)
class Request:
    write_id: str
    job: bytes
    now_ms: int
    status: int  # the answer when accepted: 201 or 204
    checks: tuple = ()
    idempotency_key: str | None = None
    fingerprint: str = ""
    extra: str = ""  # the cart cookie this request set, replayed with the answer


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the script decided: queued, replay (of an earlier answer), conflict, missing, foreign."""

    result: str
    write_id: str = ""
    status: int = 0
    extra: str = ""
    detail: str = ""


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b"\0" + path.encode() + b"\0" + body).hexdigest()


class Queue:
    """Runs the enqueue script through a client with `execute_command` (the lean pipelined one)."""

    def __init__(self, redis):
        self._redis = redis
        self._sha = hashlib.sha1(_ENQUEUE.encode()).hexdigest()

    async def _run_script(self, keys: list, args: list):
        try:
            return await self._redis.execute_command("EVALSHA", self._sha, len(keys), *keys, *args)
        except Exception as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # Redis restarted (or its scripts were flushed): load the script once more and run it.
        await self._redis.execute_command("SCRIPT", "LOAD", _ENQUEUE)
        return await self._redis.execute_command("EVALSHA", self._sha, len(keys), *keys, *args)

    async def submit(self, request: Request) -> Outcome:
        idem_key = IDEMPOTENCY_PREFIX + (
            hashlib.sha256(request.idempotency_key.encode()).hexdigest() if request.idempotency_key else "-"
        )
        keys = [
            protocol.QUEUE,
            protocol.JOB_PREFIX + request.write_id,
            protocol.receipt_key(request.write_id),
            idem_key,
            IDEMPOTENCY_INDEX,
            protocol.WAKE,
        ]
        args = [
            request.write_id,
            request.job,
            request.now_ms,
            "1" if request.idempotency_key else "0",
            request.fingerprint,
            request.status,
            request.extra,
            protocol.IDEMPOTENCY_TTL_MS,
            len(request.checks),
        ]
        for check in request.checks:
            key, check_args = check.key_and_args()
            keys.append(key)
            args.extend(check_args)
        reply = [part.decode() if isinstance(part, bytes) else part for part in await self._run_script(keys, args)]
        result = reply[0]
        if result == "replay":
            return Outcome(result, write_id=reply[1], status=int(reply[2]), extra=reply[3] or "")
        if result in ("missing", "foreign"):
            return Outcome(result, detail=reply[1])
        return Outcome(result, write_id=request.write_id, status=request.status, extra=request.extra)

"""The writer: validates POST/PUT requests and queues them, without touching PostgreSQL.

A request is answered from two things only: the request itself and the id state in Redis. One
Redis script per request (see `queue.py`) checks the ids, honours the Idempotency-Key and
atomically writes the arq job, the receipt and the idempotency record, so the writer keeps
accepting writes while PostgreSQL is down, and a Redis outage is a clean 503 with nothing
half-written. `201`/`204` means "durably queued"; `Location: /writes/<id>` names the receipt.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid

import hiredis
import orjson
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from infra.lean_redis import LeanRedis
from infra.observability import job_context, setup_observability
from infra.settings import Settings
from worker import protocol
from writer import validation
from writer.queue import CharacteristicsOf, Check, Queue, Request, fingerprint
from writer.settled import SettledWaiters, requested_wait
from writer.validation import Invalid

MAX_BODY = 64 * 1024
CART_COOKIE = "cart"
CART_COOKIE_MAX_AGE = 365 * 24 * 3600
_WRITE_ID = re.compile(r"^[0-9a-f]{32}$")

REDIS = web.AppKey("redis", aioredis.Redis)
QUEUE = web.AppKey("queue", Queue)
WAITERS = web.AppKey("waiters", SettledWaiters)
JSON = "application/json"


def json_error(status: int, error: str, field: str | None = None, headers=None) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"error": error, "field": field}),
        content_type=JSON,
        charset="utf-8",
        headers=headers,
    )


@web.middleware
async def errors(request: web.Request, handler):
    """Every failure answers in the API's JSON error shape; a Redis outage is a 503 to retry."""
    try:
        return await handler(request)
    except Invalid as exc:
        return json_error(exc.status, exc.error, exc.field)
    except web.HTTPRequestEntityTooLarge:
        return json_error(413, "request body larger than 64 KiB")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return json_error(exc.status, exc.reason.lower(), headers=headers)
    except (RedisError, OSError, hiredis.ReplyError):
        return json_error(503, "write queue unavailable, retry shortly", headers={"Retry-After": "1"})


async def _submit(request: web.Request, raw: bytes, mutation, status: int, checks=(), cookie: str = "") -> web.Response:
    now_ms = int(time.time() * 1000)
    idempotency_key = request.headers.get("Idempotency-Key")
    outcome = await request.app[QUEUE].submit(
        Request(
            write_id=uuid.uuid4().hex,
            job=protocol.job_bytes(mutation, now_ms, job_context(request)),
            now_ms=now_ms,
            status=status,
            checks=tuple(checks),
            idempotency_key=idempotency_key,
            fingerprint=fingerprint(request.method, request.path, raw) if idempotency_key else "",
            extra=cookie,
        )
    )
    if outcome.result == "conflict":
        raise Invalid(422, "Idempotency-Key was already used with a different request", "Idempotency-Key")
    if outcome.result == "missing":
        raise Invalid(404, f"{outcome.detail.removesuffix('_id')} not found", outcome.detail)
    if outcome.result == "foreign":
        raise Invalid(422, f"characteristic {outcome.detail} is not one of this product's", "characteristics")
    headers = {"Location": f"/writes/{outcome.write_id}"}
    wait = requested_wait(request.headers.get("Prefer"))
    if wait is not None:
        await request.app[WAITERS].wait(outcome.write_id, wait)
        headers["Preference-Applied"] = f"wait={wait}"
    if outcome.status == 201:
        response = web.Response(status=201, text="Created", headers=headers)
    else:
        response = web.Response(status=204, headers=headers)
    if outcome.extra:
        response.set_cookie(
            CART_COOKIE, outcome.extra, path="/", max_age=CART_COOKIE_MAX_AGE, httponly=True, samesite="Lax"
        )
    return response


async def post_review(request: web.Request) -> web.Response:
    raw = await request.read()
    review = validation.review(validation.parse_object(raw))
    checks = [Check("products", review.product_id, "product_id")]
    if review.characteristics:
        checks.append(CharacteristicsOf(review.product_id, tuple(review.characteristics)))
    return await _submit(request, raw, review, 201, checks)


async def post_question(request: web.Request) -> web.Response:
    raw = await request.read()
    question = validation.question(validation.parse_object(raw))
    return await _submit(request, raw, question, 201, [Check("products", question.product_id, "product_id")])


async def post_answer(request: web.Request) -> web.Response:
    raw = await request.read()
    question_id = validation.path_id(request.match_info["question_id"], "question")
    answer = validation.answer(question_id, validation.parse_object(raw))
    return await _submit(request, raw, answer, 201, [Check("questions", question_id, "question_id")])


def vote_handler(target: str, action: str):
    """PUT /<target>s/:id/<action>: any body (the storefront sends an empty form) is ignored."""
    kind = f"{target}s"

    async def handler(request: web.Request) -> web.Response:
        raw = await request.read()
        target_id = validation.path_id(request.match_info["target_id"], target)
        vote = protocol.Vote(target=target, target_id=target_id, action=action)
        return await _submit(request, raw, vote, 204, [Check(kind, target_id, f"{target}_id")])

    return handler


async def post_cart(request: web.Request) -> web.Response:
    raw = await request.read()
    body = validation.parse_object(raw)
    cookie = ""
    cart_key = request.headers.get("Authorization") or request.cookies.get(CART_COOKIE, "")
    if not cart_key or len(cart_key) > 512:
        cart_key = cookie = secrets.token_urlsafe(24)
    add = validation.cart(cart_key, body)
    return await _submit(request, raw, add, 201, [Check("skus", add.sku_id, "sku_id")], cookie=cookie)


async def get_write(request: web.Request) -> web.Response:
    write_id = request.match_info["write_id"]
    receipt = await request.app[REDIS].hgetall(protocol.receipt_key(write_id)) if _WRITE_ID.match(write_id) else {}
    if not receipt:
        raise Invalid(404, "write not found", "write_id")
    answer = {"id": write_id, "status": receipt[b"status"].decode()}
    if receipt.get(b"error"):
        answer["error"] = receipt[b"error"].decode()
    if receipt.get(b"resource"):
        answer["resource"] = orjson.loads(receipt[b"resource"])
    return web.Response(body=orjson.dumps(answer), content_type=JSON, charset="utf-8")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type=JSON, charset="utf-8")


async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[REDIS].ping()
    except (RedisError, OSError, hiredis.ReplyError):
        return json_error(503, "redis unreachable", headers={"Retry-After": "1"})
    return web.Response(body=b'{"status":"ready"}', content_type=JSON, charset="utf-8")


def _routes() -> list[web.RouteDef]:
    routes = [
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/writes/{write_id}", get_write),
        web.post("/qa/questions/{question_id}/answers", post_answer),
    ]
    for path, handler in (("/reviews", post_review), ("/qa/questions", post_question), ("/cart", post_cart)):
        routes += [web.post(path, handler), web.post(path + "/", handler)]
    for prefix, target in (("/reviews", "review"), ("/qa/questions", "question"), ("/qa/answers", "answer")):
        for action in ("helpful", "report"):
            routes.append(web.put(f"{prefix}/{{target_id}}/{action}", vote_handler(target, action)))
    return routes


def redis_client(url: str, max_connections: int = 16) -> aioredis.Redis:
    """For the rare commands (receipts, readiness, the settled-writes subscription); it fails
    fast too: a dead Redis must turn into a 503, never a hung request."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=1, socket_timeout=2, socket_connect_timeout=1
    )
    return aioredis.Redis(connection_pool=pool)


def create_app(settings: Settings) -> web.Application:
    """The writer app; `settings.redis_url` must be resolved (see `infra.services.ensure_services`)."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors])
    setup_observability(app, settings, "writer")
    app.add_routes(_routes())

    async def clients(app: web.Application):
        redis = redis_client(settings.redis_url)
        lean = LeanRedis(settings.redis_url, timeout=2.0)
        app[REDIS] = redis
        app[QUEUE] = Queue(lean)
        app[WAITERS] = SettledWaiters(redis)
        app[WAITERS].start()
        yield
        await app[WAITERS].stop()
        await lean.close()
        await redis.aclose(close_connection_pool=True)

    app.cleanup_ctx.append(clients)
    return app

"""Every GET of the contract, in one table at the bottom.

Handlers parse and validate the request, name the model and the variant (sort, page, count),
and answer from the entry's cached rendering when there is one. Rules the storefront relies on:
trailing slashes and empty parameters are accepted, bad numbers are 422 naming the field, an
unknown id is 404, an existing product with nothing in a list is 200 with empty results.
"""

from __future__ import annotations

import hashlib

import orjson
from aiohttp import web

from projections.kinds import PRODUCT_LIST, Kind
from reader import render
from reader.local_cache import GZIP_MIN_BYTES, Rendered
from reader.source import ModelSource, Stats, Unavailable

JSON_TYPE = "application/json; charset=utf-8"
MAX_ID = 2**31 - 1  # ids are PostgreSQL integers; anything larger names nothing
MAX_NUMBER = 2**31 - 1  # page / count beyond this are refused rather than overflowing
DEFAULT_COUNT = 5
MAX_PRODUCTS_COUNT = 1000
RETRY_AFTER_SECONDS = "1"

SOURCE = web.AppKey("source", ModelSource)
STATS = web.AppKey("stats", Stats)
CART_SQL = "SELECT sku_id, count FROM cart_items WHERE cart_key = $1 ORDER BY sku_id"


class Problem(Exception):
    def __init__(self, status: int, error: str, field: str | None):
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field


def problem_response(status: int, error: str, field: str | None, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"error": error, "field": field}),
                        headers={"Content-Type": JSON_TYPE, **(headers or {})})


def guarded(handler):
    """Turn validation problems into 4xx JSON and dependency outages into 503 + Retry-After."""

    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Problem as problem:
            return problem_response(problem.status, problem.error, problem.field)
        except Unavailable:
            return problem_response(503, "a dependency is unavailable, retry shortly", None,
                                    {"Retry-After": RETRY_AFTER_SECONDS})

    return answer


def _positive(raw: str, name: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise Problem(422, f"{name} must be a positive integer", name)
    return int(raw)


def number(raw: str | None, name: str, default: int) -> int:
    """A positive integer parameter; empty counts as absent (the storefront sends `?&page=1`)."""
    if raw is None or raw == "":
        return default
    value = _positive(raw, name)
    if value > MAX_NUMBER:
        raise Problem(422, f"{name} must be at most {MAX_NUMBER}", name)
    return value


def identifier(raw: str | None, name: str) -> int:
    """A required id; one too large for the database names nothing (404)."""
    if raw is None or raw == "":
        raise Problem(422, f"{name} is required", name)
    value = _positive(raw, name)
    if value > MAX_ID:
        raise Problem(404, f"{name.split('_')[0]} {raw} not found", name)
    return value


def paging(query) -> tuple[int, int]:
    return number(query.get("page"), "page", 1), number(query.get("count"), "count", DEFAULT_COUNT)


def respond(request: web.Request, rendered: Rendered) -> web.Response:
    headers = request.headers
    match = headers.get("If-None-Match")
    gzip = rendered.size >= GZIP_MIN_BYTES and "gzip" in headers.get("Accept-Encoding", "")
    etag = rendered.etag[:-1] + '.gz"' if gzip else rendered.etag
    if match is not None and etag in match:
        request.app[STATS].not_modified += 1
        return web.Response(status=304, headers={"ETag": etag, "Vary": "Accept-Encoding"})
    if gzip:
        return web.Response(body=rendered.gzip, headers={
            "Content-Type": JSON_TYPE, "ETag": etag, "Vary": "Accept-Encoding", "Content-Encoding": "gzip"})
    return web.Response(body=rendered.body, headers={"Content-Type": JSON_TYPE, "ETag": etag, "Vary": "Accept-Encoding"})


async def _model(request: web.Request, kind: Kind, key: int, variant: str, build, *args) -> web.Response:
    entry = await request.app[SOURCE].entry(kind, key)
    if entry is None:
        what = "question" if kind == Kind.ANSWERS else "product"
        raise Problem(404, f"{what} {key} not found", f"{what}_id")
    rendered = entry.variants.get(variant)
    if rendered is None:
        etag = f'"{int(kind)}.{key}.{entry.model.version}.{variant}"'
        prefix, middle, suffix = (b"", None, b"") if build is None else build(entry, key, *args)
        if middle is None:
            rendered = Rendered(etag, wrapped=(prefix, entry.model, suffix))
        else:
            rendered = Rendered(etag, prefix + middle + suffix)
        entry.remember(variant, rendered)
    return respond(request, rendered)


@guarded
async def product(request: web.Request) -> web.Response:
    return await _model(request, Kind.PRODUCT, identifier(request.match_info["product_id"], "product_id"), "", None)


@guarded
async def styles(request: web.Request) -> web.Response:
    return await _model(request, Kind.STYLES, identifier(request.match_info["product_id"], "product_id"), "", None)


@guarded
async def related(request: web.Request) -> web.Response:
    return await _model(request, Kind.RELATED, identifier(request.match_info["product_id"], "product_id"), "", None)


@guarded
async def meta(request: web.Request) -> web.Response:
    return await _model(request, Kind.META, identifier(request.query.get("product_id"), "product_id"), "", None)


@guarded
async def reviews(request: web.Request) -> web.Response:
    query = request.query
    product_id = identifier(query.get("product_id"), "product_id")
    page, count = paging(query)
    sort = query.get("sort") or "relevant"
    if sort not in render.REVIEW_SORTS:
        raise Problem(422, "sort must be one of newest, helpful, relevant", "sort")
    return await _model(request, Kind.REVIEWS, product_id, f"{sort}.{page}.{count}", render.reviews, sort, page, count)


@guarded
async def questions(request: web.Request) -> web.Response:
    query = request.query
    product_id = identifier(query.get("product_id"), "product_id")
    page, count = paging(query)
    return await _model(request, Kind.QUESTIONS, product_id, f"{page}.{count}", render.questions, page, count)


@guarded
async def answers(request: web.Request) -> web.Response:
    question_id = identifier(request.match_info["question_id"], "question_id")
    page, count = paging(request.query)
    return await _model(request, Kind.ANSWERS, question_id, f"{page}.{count}", render.answers, page, count)


@guarded
async def products(request: web.Request) -> web.Response:
    """A catalogue page. Products are read-only, so each page served is kept (bounded) as is."""
    page, count = paging(request.query)
    count = min(count, MAX_PRODUCTS_COUNT)
    source = request.app[SOURCE]
    rendered = source.local.pages.get((page, count))
    if rendered is None:
        records = await source.fetch(PRODUCT_LIST, count, (page - 1) * count)
        body = records[0][0]
        rendered = Rendered('"p.%s"' % hashlib.blake2b(body, digest_size=12).hexdigest(), body)
        source.local.remember_page((page, count), rendered)
    return respond(request, rendered)


@guarded
async def cart(request: web.Request) -> web.Response:
    """The caller's cart: Authorization header value, else the `cart` cookie; no identity → []."""
    cart_key = request.headers.get("Authorization") or request.cookies.get("cart")
    rows = await request.app[SOURCE].fetch(CART_SQL, cart_key) if cart_key else []
    return web.Response(body=render.cart(rows), headers={"Content-Type": JSON_TYPE, "Cache-Control": "no-store"})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', headers={"Content-Type": JSON_TYPE})


async def readyz(request: web.Request) -> web.Response:
    """Ready when PostgreSQL answers; Redis is a cache, so its absence is reported, not fatal."""
    source = request.app[SOURCE]
    report = {"postgres": "ok", "redis": "ok", "invalidations": "subscribed" if source.local.trusted else "down"}
    try:
        await source.fetch("SELECT 1")
    except Unavailable as exc:
        report["postgres"] = f"down: {exc}"
    try:
        await source.redis.execute_command(b"PING")
    except Exception as exc:  # noqa: BLE001 - any failure means "down" here
        report["redis"] = f"down: {exc}"
    status = 200 if report["postgres"] == "ok" else 503
    return web.Response(status=status, body=orjson.dumps(report), headers={"Content-Type": JSON_TYPE})


async def stats(request: web.Request) -> web.Response:
    """Answers by cache layer, for the benchmark and the ops metrics."""
    counters = request.app[STATS].as_dict() | {"local_entries": len(request.app[SOURCE].local)}
    return web.Response(body=orjson.dumps(counters), headers={"Content-Type": JSON_TYPE})


async def unknown_path(request: web.Request) -> web.Response:
    """Anything no route above serves: the API's JSON error shape, not aiohttp's text/plain page."""
    return problem_response(404, f"no such path: {request.path}", None)


def _with_slash(path: str, handler) -> list[web.RouteDef]:
    return [web.get(path, handler), web.get(path + "/", handler)]


ROUTES = [
    *_with_slash("/products/{product_id}", product),
    *_with_slash("/products/{product_id}/styles", styles),
    *_with_slash("/products/{product_id}/related", related),
    *_with_slash("/reviews", reviews),
    *_with_slash("/reviews/meta", meta),
    *_with_slash("/qa/questions", questions),
    *_with_slash("/qa/questions/{question_id}/answers", answers),
    *_with_slash("/products", products),
    *_with_slash("/cart", cart),
    web.get("/healthz", healthz),
    web.get("/readyz", readyz),
    web.get("/_stats", stats),
    # Tried after every more specific path (aiohttp indexes routes by prefix), whatever the order here.
    web.route("*", "/{tail:.*}", unknown_path),
]

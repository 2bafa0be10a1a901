"""`atelier up --micro-cache 2`: nginx reuses GET answers briefly, never per-caller ones, and a write
still becomes visible — at most the cache lifetime (plus one refresh) after it was applied.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from infra.stack_process import start_stack
from tests.test_stack import PRODUCT, empty_servers, get_json, stack_settings, until

MICRO_CACHE_SECONDS = 2


@pytest.fixture(scope="module")
def cached_stack(settings, tmp_path_factory):
    running = start_stack(stack_settings(settings, tmp_path_factory), "--demo-scale", "tiny", "--readers", "1",
                          "--workers", "1", "--micro-cache", str(MICRO_CACHE_SECONDS))
    yield running
    assert running.stop() == 0, "\n".join(running.output)
    assert not any(Path("/dev/shm").glob(f"atelier-micro-cache-{running.settings.port}"))  # removed at stop
    asyncio.run(empty_servers(running.settings))


@pytest.fixture
async def session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


async def cache_status(session, url, **kwargs) -> str | None:
    async with session.get(url, **kwargs) as response:
        assert response.status == 200, await response.text()
        await response.read()
        return response.headers.get("X-Cache")


async def test_a_repeated_get_is_answered_from_the_micro_cache(cached_stack, session):
    url = f"{cached_stack.url}/products/{PRODUCT}/related"
    assert await cache_status(session, url) == "MISS"
    assert await cache_status(session, url) == "HIT"


async def test_per_caller_and_operational_answers_are_never_cached(cached_stack, session):
    for path in ("/cart", "/healthz", "/metrics"):
        statuses = {await cache_status(session, f"{cached_stack.url}{path}", headers={"Authorization": "a"})
                    for _ in range(2)}
        assert statuses == {"BYPASS"}, path


async def test_an_applied_write_shows_within_the_cache_lifetime(cached_stack, session):
    url = f"{cached_stack.url}/qa/questions?product_id={PRODUCT}&count=100"
    before, _ = await get_json(session, url)  # Now cached for MICRO_CACHE_SECONDS.
    body = f"Is it machine washable? ({time.time()})"
    question = {"body": body, "name": "ana", "email": "ana@example.com", "product_id": PRODUCT}
    async with session.post(f"{cached_stack.url}/qa/questions", json=question) as response:
        assert response.status == 201
        receipt = f"{cached_stack.url}{response.headers['Location']}"

    async def applied():
        return (await get_json(session, receipt))[0]["status"] == "applied"

    await until(applied)
    applied_at = time.monotonic()

    async def visible():
        answer, _ = await get_json(session, url)
        return any(q["question_body"] == body for q in answer["results"])

    await until(visible, timeout=MICRO_CACHE_SECONDS + 10)
    # The cost of the micro-cache, bounded: its lifetime plus a background refresh, with slack for a busy box.
    assert time.monotonic() - applied_at <= MICRO_CACHE_SECONDS + 5
    assert not any(q["question_body"] == body for q in before["results"])

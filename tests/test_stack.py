"""The whole stack as `atelier up` runs it: real nginx, 2 readers, the writer and a worker.

Routing, keepalive, retries when a reader dies, scaling under load, the metrics scrape and the
OpenAPI document's agreement with what is actually served are all checked through nginx.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from infra.embedded import pid_alive
from infra.embedded import free_port
from infra.stack_process import all_pids, assert_all_gone, start_stack
from tests.conftest import truncate_all
from tests.test_openapi import DOCUMENT, documented_operations, response_schema, validator_for

PRODUCT = 1  # a showcase product of every generated data set: reviews, questions, answers, styles


async def empty_servers(settings) -> None:
    """So that `up` finds no products and loads the tiny demo set, exactly as on a first start."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        await truncate_all(conn)
    finally:
        await conn.close()
    for url in {settings.redis_url, settings.cache_url}:
        client = aioredis.from_url(url)
        try:
            await client.flushdb()
        finally:
            await client.aclose()


def stack_settings(settings, tmp_path_factory):
    """The session's PostgreSQL and Redis, emptied; the stack's own data folder and port."""
    ours = settings.replace(data_dir=tmp_path_factory.mktemp("stack"), port=free_port())
    asyncio.run(empty_servers(ours))
    return ours


@pytest.fixture(scope="module")
def stack(settings, tmp_path_factory):
    running = start_stack(stack_settings(settings, tmp_path_factory), "--demo-scale", "tiny",
                          "--readers", "2", "--workers", "1")
    yield running
    pids = all_pids(running.state())
    assert running.stop() == 0, "\n".join(running.output)
    assert_all_gone(pids)
    asyncio.run(empty_servers(running.settings))  # Later test modules start from empty servers, as we did.


@pytest.fixture
async def session():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


async def get_json(session, url, status=200):
    async with session.get(url) as response:
        assert response.status == status, (url, await response.text())
        return await response.json(), response.headers


async def load(session, url: str, stop: asyncio.Event, concurrency: int = 8) -> tuple[int, list]:
    """GET url in a loop from `concurrency` clients until `stop`; return (answers, failures)."""
    answered = 0
    failures = []

    async def client():
        nonlocal answered
        while not stop.is_set():
            try:
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        failures.append(response.status)
            except aiohttp.ClientError as exc:
                failures.append(repr(exc))
            answered += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return answered, failures


async def until(predicate, timeout: float = 60):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def reader_pids(stack) -> list[int]:
    return [r["pid"] for r in stack.state()["readers"]]


# ------------------------------------------------------------------------------------ routing


async def test_gets_go_to_readers_and_writes_to_the_writer(stack, session):
    product, headers = await get_json(session, f"{stack.url}/products/{PRODUCT}")
    assert product["id"] == PRODUCT
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"])
    question = {"body": "Does it run small?", "name": "kim", "email": "kim@example.com", "product_id": PRODUCT}
    async with session.post(f"{stack.url}/qa/questions", json=question) as response:
        assert response.status == 201
        assert await response.text() == "Created"
        location = response.headers["Location"]
    receipt, _ = await get_json(session, f"{stack.url}{location}")
    assert receipt["status"] in ("queued", "applied")

    async def applied():
        return (await get_json(session, f"{stack.url}{location}"))[0]["status"] == "applied"

    await until(applied)  # The worker behind the stack applied it.


async def test_every_example_url_up_prints_answers(stack, session):
    printed = [line.strip() for line in stack.output if line.strip().startswith(stack.url)]
    assert f"{stack.url}/products/{PRODUCT}" in printed  # tiny has no 40344: the first product stands in
    assert len(printed) >= 7
    for url in printed:
        async with session.get(url) as response:
            assert response.status == 200, url


async def test_client_and_upstream_connections_are_kept_alive(stack):
    opened = 0

    async def on_create(*_):
        nonlocal opened
        opened += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_create)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), trace_configs=[trace]) as client:
        for _ in range(50):
            async with client.get(f"{stack.url}/products/{PRODUCT}/related") as response:
                assert response.status == 200
                await response.read()
    assert opened == 1
    # nginx keeps idle connections to the readers open for the next request (upstream keepalive):
    # each reader socket still has accepted connections after the client is gone.
    sockets = [r["address"] for r in stack.state()["readers"]]
    rows = [line.split() for line in Path("/proc/net/unix").read_text().splitlines()[1:]]
    connected = [row for row in rows if len(row) >= 8 and row[7] in sockets and row[5] == "03"]  # 03: connected
    assert len(connected) >= 1


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM-drain"])
async def test_a_reader_killed_under_load_surfaces_no_error(stack, session, sig):
    """SIGKILL: nginx retries what the dead reader had; SIGTERM: the reader also finishes what it has."""
    stop = asyncio.Event()
    traffic = asyncio.create_task(load(session, f"{stack.url}/products/{PRODUCT}/styles", stop))
    await asyncio.sleep(0.5)  # Let the traffic reach both readers before one dies.
    victim = reader_pids(stack)[0]
    restarts = stack.state()["readers"][0]["restarts"]
    os.kill(victim, sig)

    async def restarted():
        pids = reader_pids(stack)
        return victim not in pids and len(pids) == 2

    await until(restarted)
    await asyncio.sleep(0.5)  # Traffic keeps flowing to the restarted reader too.
    stop.set()
    answered, failures = await traffic
    assert failures == []
    assert answered > 100
    assert stack.state()["readers"][0]["restarts"] == restarts + 1


async def test_scaling_readers_and_workers_under_load_drops_nothing(stack, session):
    stop = asyncio.Event()
    traffic = asyncio.create_task(load(session, f"{stack.url}/reviews?product_id={PRODUCT}&count=20", stop))
    sizes = []
    for readers, workers in ((3, 2), (1, 1), (2, 1)):
        result = await asyncio.to_thread(stack.atelier, "scale", f"readers={readers}", f"workers={workers}")
        assert result.returncode == 0, result.stderr
        state = stack.state()
        sizes.append((len(state["readers"]), len(state["workers"])))
        removed = [pid for pid in all_pids(state) if not pid_alive(pid)]
        assert removed == []
    stop.set()
    answered, failures = await traffic
    assert sizes == [(3, 2), (1, 1), (2, 1)]
    assert failures == []
    assert answered > 100


async def test_scale_refuses_nonsense(stack):
    result = stack.atelier("scale", "readers=0")
    assert result.returncode == 1 and "at least 1" in result.stderr
    assert stack.atelier("scale", "nginx=3").returncode == 2


# ------------------------------------------------------------------------------------ metrics


def series(text: str, name: str) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if s.name == name}


async def test_metrics_through_nginx_cover_every_process_and_move(stack, session):
    async def scrape():
        async with session.get(f"{stack.url}/metrics") as response:
            assert response.status == 200
            return series(await response.text(), "atelier_http_requests_total")

    def product_reads(found):
        return sum(v for labels, v in found.items()
                   if dict(labels)["app"] == "reader" and dict(labels)["route"] == "/products/{product_id}")

    before = await scrape()
    for _ in range(20):
        await get_json(session, f"{stack.url}/products/{PRODUCT}")

    async def moved():
        after = await scrape()
        return product_reads(after) - product_reads(before) >= 20 and {
            dict(labels)["app"] for labels in after} >= {"reader", "writer"}

    # Whichever reader answers the scrape reports the requests every reader served, within a
    # second: each process folds its request counts into the shared series once a second.
    await until(moved, timeout=10)


async def test_metrics_carry_the_write_path_and_cache_series(stack, session):
    question = {"body": "Does it pill?", "name": "rae", "email": "rae@example.com", "product_id": PRODUCT}
    async with session.post(f"{stack.url}/qa/questions", json=question) as response:
        receipt = f"{stack.url}{response.headers['Location']}"

    async def applied():
        return (await get_json(session, receipt))[0]["status"] == "applied"

    await until(applied)

    async def published():
        async with session.get(f"{stack.url}/metrics") as response:
            text = await response.text()
        jobs = series(text, "atelier_jobs_total")
        lag = series(text, "atelier_apply_lag_seconds_count")
        cache = series(text, "atelier_cache_lookups_total")
        depth = series(text, "atelier_queue_depth")
        return (sum(v for k, v in jobs.items() if dict(k)["app"] == "worker") >= 1 and sum(lag.values()) >= 1
                and sum(cache.values()) >= 1 and len(depth) >= 1)

    # The reader publishes its cache counters and the worker its queue depth once a second.
    await until(published, timeout=30)


# ------------------------------------------------------------------------------------ OpenAPI agreement


async def documented_urls(session, stack) -> dict[str, str]:
    """One concrete URL per documented GET, with ids taken from the loaded data set."""
    questions, _ = await get_json(session, f"{stack.url}/qa/questions?product_id={PRODUCT}&count=100")
    question_id = next(q["question_id"] for q in questions["results"] if q["answers"])
    async with session.post(f"{stack.url}/cart", json={"sku_id": 1}, headers={"Authorization": "shopper-1"}) as response:
        assert response.status == 201
        write = response.headers["Location"].rsplit("/", 1)[1]

    async def applied():
        return (await get_json(session, f"{stack.url}/writes/{write}"))[0]["status"] == "applied"

    await until(applied)
    return {
        "/products": "/products?count=3",
        "/products/{product_id}": f"/products/{PRODUCT}",
        "/products/{product_id}/styles": f"/products/{PRODUCT}/styles",
        "/products/{product_id}/related": f"/products/{PRODUCT}/related",
        "/reviews": f"/reviews?product_id={PRODUCT}&count=50&sort=newest",
        "/reviews/meta": f"/reviews/meta?product_id={PRODUCT}",
        "/qa/questions": f"/qa/questions?product_id={PRODUCT}&count=100",
        "/qa/questions/{question_id}/answers": f"/qa/questions/{question_id}/answers?count=100",
        "/cart": "/cart",
        "/writes/{write_id}": f"/writes/{write}",
        "/healthz": "/healthz",
        "/readyz": "/readyz",
        "/metrics": "/metrics",
        "/_stats": "/_stats",
    }


async def test_every_documented_read_is_served_and_matches_its_schema(stack, session):
    urls = await documented_urls(session, stack)
    documented_gets = {path for method, path in documented_operations() if method == "GET"}
    assert set(urls) == documented_gets
    for path, url in urls.items():
        async with session.get(f"{stack.url}{url}", headers={"Authorization": "shopper-1"}) as response:
            assert response.status == 200, (url, await response.text())
            if path == "/metrics":
                assert response.headers["Content-Type"].startswith("text/plain")
                continue
            body = await response.json()
        if path not in ("/healthz", "/readyz"):
            validator_for(response_schema("GET", path)).validate(body)
            assert body, f"{url} answered empty; the test data should exercise the schema"


async def documented_post_bodies(session, stack) -> dict[str, dict]:
    meta, _ = await get_json(session, f"{stack.url}/reviews/meta?product_id={PRODUCT}")
    return {
        "/reviews": {"product_id": PRODUCT, "rating": 5, "summary": "Fits well", "recommend": True,
                     "body": "Soft fabric, true to size, and it survived the washing machine twice.",
                     "name": "sam", "email": "sam@example.com", "photos": ["https://img.example.com/s.jpg"],
                     "characteristics": {str(c["id"]): 4 for c in meta["characteristics"].values()}},
        "/qa/questions": {"body": "Is it lined?", "name": "ola", "email": "ola@example.com", "product_id": PRODUCT},
        "/qa/questions/{question_id}/answers": {"body": "Yes, fully.", "name": "bo", "email": "bo@example.com"},
        "/cart": {"sku_id": 1},
    }


async def test_every_documented_write_is_served_and_accepts_documented_bodies(stack, session):
    reviews, _ = await get_json(session, f"{stack.url}/reviews?product_id={PRODUCT}")
    questions, _ = await get_json(session, f"{stack.url}/qa/questions?product_id={PRODUCT}")
    question = next(q for q in questions["results"] if q["answers"])
    ids = {"review_id": reviews["results"][0]["review_id"], "question_id": question["question_id"],
           "answer_id": int(next(iter(question["answers"])))}
    bodies = await documented_post_bodies(session, stack)
    writes = sorted((m, p) for m, p in documented_operations() if m in ("POST", "PUT"))
    assert {p for m, p in writes if m == "POST"} == set(bodies)
    for method, path in writes:
        url = re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), path)
        body = bodies.get(path)
        if body is not None:
            operation = DOCUMENT["paths"][path]["post"]
            validator_for(operation["requestBody"]["content"]["application/json"]["schema"]).validate(body)
        async with session.request(method, f"{stack.url}{url}", json=body) as response:
            assert response.status == (201 if method == "POST" else 204), (url, await response.text())
            assert response.headers["Location"].startswith("/writes/")


async def test_unknown_paths_answer_json_404(stack, session):
    body, headers = await get_json(session, f"{stack.url}/no/such/thing", status=404)
    assert set(body) == {"error", "field"}
    assert headers["Content-Type"] == "application/json; charset=utf-8"


async def test_docs_page_and_document_are_served(stack, session):
    document, _ = await get_json(session, f"{stack.url}/openapi.json")
    assert document == DOCUMENT
    async with session.get(f"{stack.url}/docs") as response:
        assert response.status == 200 and "openapi.json" in await response.text()

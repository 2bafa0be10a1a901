"""infra/observability.py: per-route counts and latencies, one JSON log line per request with its
request id, and the multiprocess mode that lets one /metrics show every process of the stack.

Scraping /metrics through nginx from the real readers, writer and workers is in tests/test_stack.py.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from infra.observability import (
    LOG, RUNNER_OPTIONS, CounterBridge, Metrics, job_context, request_id, setup_observability,
)


def samples(text: str) -> dict[tuple, float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def recorded_client(aiohttp_client, app: web.Application):
    """A test client whose server runs with the request hook, as every app's `__main__` does."""
    server = TestServer(app)
    await server.start_server(**RUNNER_OPTIONS)
    return await aiohttp_client(server)


def small_app(settings, stream: io.BytesIO) -> web.Application:
    """An app with two routes, to watch the request hook label them by template."""
    app = web.Application()
    setup_observability(app, settings.replace(log_json=True, access_log=True), "reader")
    app[LOG].stream = stream

    async def product(request):
        return web.json_response({"id": int(request.match_info["product_id"]), "rid": request_id(request)})

    async def broken(request):
        raise web.HTTPNotFound()

    app.router.add_get("/products/{product_id}", product)
    app.router.add_get("/gone", broken)
    return app


async def test_requests_are_counted_and_timed_per_route_template(settings, aiohttp_client):
    stream = io.BytesIO()
    client = await recorded_client(aiohttp_client, small_app(settings, stream))
    for product_id in (1, 2, 3):
        assert (await client.get(f"/products/{product_id}")).status == 200
    assert (await client.get("/gone")).status == 404
    assert (await client.get("/no/such/path")).status == 404
    text = await (await client.get("/metrics")).text()
    found = samples(text)
    route = ("route", "/products/{product_id}")
    assert found[("atelier_http_requests_total", (("app", "reader"), ("method", "GET"), route, ("status", "200")))] == 3
    assert found[("atelier_http_requests_total", (("app", "reader"), ("method", "GET"), ("route", "/gone"), ("status", "404")))] == 1
    assert found[("atelier_http_requests_total", (("app", "reader"), ("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1
    assert found[("atelier_http_request_duration_seconds_count", (("app", "reader"), ("method", "GET"), route))] == 3
    assert found[("atelier_http_request_duration_seconds_sum", (("app", "reader"), ("method", "GET"), route))] > 0


async def test_one_json_log_line_per_request_with_nginx_request_id(settings, aiohttp_client):
    stream = io.BytesIO()
    app = small_app(settings, stream)
    client = await recorded_client(aiohttp_client, app)
    response = await client.get("/products/7", headers={"X-Request-Id": "abc123"})
    assert (await response.json())["rid"] == "abc123"
    await client.get("/products/8")
    app[LOG].flush()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(l["event"], l["path"], l["status"]) for l in lines] == [("request", "/products/7", 200), ("request", "/products/8", 200)]
    assert lines[0]["request_id"] == "abc123"
    assert len(lines[1]["request_id"]) == 32  # Minted when the app is reached without nginx.
    assert {"ts", "app", "pid", "route", "method", "ms"} <= set(lines[0])


async def test_job_context_carries_the_request_id(settings, aiohttp_client):
    app = web.Application()
    setup_observability(app, settings.replace(access_log=False), "writer")

    async def post(request):
        return web.json_response(job_context(request))

    app.router.add_post("/reviews", post)
    client = await aiohttp_client(app)
    response = await client.post("/reviews", headers={"X-Request-Id": "rid-9"})
    assert await response.json() == {"request_id": "rid-9"}


def test_domain_series_are_exposed(settings):
    metrics = Metrics("worker")
    metrics.cache_lookup("local", hit=True, n=3)
    metrics.cache_lookup("redis", hit=False)
    metrics.set_queue_depth(17)
    metrics.observe_apply_lag("review", 0.2)
    metrics.observe_staleness("review", 0.3)
    metrics.reject("unknown_product")
    metrics.job("review", "applied", 5)
    found = samples(metrics.exposition().decode())
    assert found[("atelier_cache_lookups_total", (("app", "worker"), ("layer", "local"), ("result", "hit")))] == 3
    assert found[("atelier_queue_depth", (("app", "worker"),))] == 17
    assert found[("atelier_apply_lag_seconds_count", (("app", "worker"), ("kind", "review")))] == 1
    assert found[("atelier_staleness_seconds_count", (("app", "worker"), ("kind", "review")))] == 1
    assert found[("atelier_rejects_total", (("app", "worker"), ("reason", "unknown_product")))] == 1
    assert found[("atelier_jobs_total", (("app", "worker"), ("kind", "review"), ("outcome", "applied")))] == 5


PROCESS = """
from infra.observability import Metrics
m = Metrics("reader", {dir!r})
for _ in range({n}):
    m.observe_request("/products/{{product_id}}", "GET", 200, 0.001)
m.publish_requests()
m.set_queue_depth({n})
"""


def test_multiprocess_mode_sums_every_process(tmp_path):
    """Two reader processes write samples; a third process's exposition reports their sum."""
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", PROCESS.format(dir=str(tmp_path), n=n)], env=env, check=True)
    scrape = subprocess.run(
        [sys.executable, "-c", f"from infra.observability import Metrics; import sys; "
                               f"sys.stdout.buffer.write(Metrics('reader', {str(tmp_path)!r}).exposition())"],
        env=env, check=True, capture_output=True,
    )
    found = samples(scrape.stdout.decode())
    key = ("atelier_http_requests_total",
           (("app", "reader"), ("method", "GET"), ("route", "/products/{product_id}"), ("status", "200")))
    assert found[key] == 7


def test_counter_bridge_publishes_deltas_of_plain_counters():
    counts = {"local_hits": 5, "redis_hits": 1}
    metrics = Metrics("reader")
    bridge = CounterBridge(metrics, lambda: dict(counts), {"local_hits": ("local", "hit"), "redis_hits": ("redis", "hit")})
    bridge.publish()
    counts["local_hits"] += 3
    bridge.publish()
    bridge.publish()
    found = samples(metrics.exposition().decode())
    assert found[("atelier_cache_lookups_total", (("app", "reader"), ("layer", "local"), ("result", "hit")))] == 8
    assert found[("atelier_cache_lookups_total", (("app", "reader"), ("layer", "redis"), ("result", "hit")))] == 1

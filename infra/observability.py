"""Metrics, request logs and request ids, the same way in every app.

`setup_observability(app, settings, "reader")` gives the app its series and serves Prometheus
text at `/metrics`; run with `RUNNER_OPTIONS`, aiohttp's per-request access hook
(`RequestRecorder`) counts and times every request per route and writes one JSON log line per
request carrying nginx's `X-Request-Id`. The app's code updates the domain series through
`app[METRICS]` (cache hits per layer, queue depth, apply lag, staleness, rejects).

Several processes, one picture: under `atelier up` every process writes its samples to files
in one folder (prometheus_client's multiprocess mode, switched on by PROMETHEUS_MULTIPROC_DIR),
so the `/metrics` of whichever reader nginx picks reports the sum over all readers, the writer
and the workers. A process that runs alone (a test, one container per pod) keeps its own
registry and is scraped directly.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import sys
import time
import uuid
from typing import Any, BinaryIO, Callable

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client import CONTENT_TYPE_LATEST

from infra.settings import Settings

REQUEST_ID_HEADER = "X-Request-Id"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
UNMATCHED_ROUTE = "unmatched"
# aiohttp ≥ 3.13 wants typed keys for per-request storage; older ones take a plain string.
_REQUEST_ID = web.RequestKey("atelier_request_id", str) if hasattr(web, "RequestKey") else "atelier_request_id"


class Metrics:
    """Every series the apps publish; one instance per app, its labels bound on first use."""

    def __init__(self, app_name: str, multiprocess_dir: str | os.PathLike | None = None):
        self.app_name = app_name
        self.multiprocess_dir = str(multiprocess_dir) if multiprocess_dir else None
        # In multiprocess mode samples go to files and the scrape reads them all, so the series belong to
        # no registry here; alone, each app gets its own so two apps in one test process never collide.
        self.registry = None if self.multiprocess_dir else CollectorRegistry()
        reg = {"registry": self.registry}
        self.requests = Counter("atelier_http_requests_total", "HTTP requests answered",
                                ["app", "route", "method", "status"], **reg)
        self.latency = Histogram("atelier_http_request_duration_seconds", "Time to answer an HTTP request",
                                 ["app", "route", "method"], buckets=LATENCY_BUCKETS, **reg)
        self.cache = Counter("atelier_cache_lookups_total", "Reads by the cache layer that answered them",
                             ["app", "layer", "result"], **reg)
        self.queue_depth = Gauge("atelier_queue_depth", "Write jobs waiting in the queue",
                                 ["app"], multiprocess_mode="livemostrecent", **reg)
        self.apply_lag = Histogram("atelier_apply_lag_seconds", "Time from a write's acknowledgement to its commit",
                                   ["app", "kind"], buckets=LAG_BUCKETS, **reg)
        self.staleness = Histogram("atelier_staleness_seconds", "Time from a write's acknowledgement until the GET shows it",
                                   ["app", "kind"], buckets=LAG_BUCKETS, **reg)
        self.rejects = Counter("atelier_rejects_total", "Writes refused or jobs rejected, by reason",
                               ["app", "reason"], **reg)
        self.jobs = Counter("atelier_jobs_total", "Write jobs by outcome (applied, rejected, retried)",
                            ["app", "kind", "outcome"], **reg)
        # (route, method, status) → [count, seconds, per-bucket counts] not yet in the series.
        self._pending_requests: dict[tuple, list] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count in plain Python on the request path; `publish_requests` folds the counts into the series.

        Every prometheus_client update takes a lock and, in multiprocess mode, checks the pid and
        writes a memory-mapped file: per request that was 13 % of a reader's CPU.
        """
        pending = self._pending_requests.get((route, method, status))
        if pending is None:
            pending = self._pending_requests[(route, method, status)] = [0, 0.0, [0] * (len(LATENCY_BUCKETS) + 1)]
        pending[0] += 1
        pending[1] += seconds
        pending[2][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def publish_requests(self) -> None:
        """Fold the counted requests into the Prometheus series (once a second, and before a scrape)."""
        pending, self._pending_requests = self._pending_requests, {}
        for (route, method, status), (count, seconds, buckets) in pending.items():
            self.requests.labels(self.app_name, route, method, str(status)).inc(count)
            histogram = self.latency.labels(self.app_name, route, method)
            # Histogram has no public bulk observe; its per-bucket counters are the same values observe() adds to.
            histogram._sum.inc(seconds)
            for index, n in enumerate(buckets):
                if n:
                    histogram._buckets[index].inc(n)

    def cache_lookup(self, layer: str, hit: bool, n: int = 1) -> None:
        self.cache.labels(self.app_name, layer, "hit" if hit else "miss").inc(n)

    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth.labels(self.app_name).set(depth)

    def observe_apply_lag(self, kind: str, seconds: float) -> None:
        self.apply_lag.labels(self.app_name, kind).observe(seconds)

    def observe_staleness(self, kind: str, seconds: float) -> None:
        self.staleness.labels(self.app_name, kind).observe(seconds)

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejects.labels(self.app_name, reason).inc(n)

    def job(self, kind: str, outcome: str, n: int = 1) -> None:
        self.jobs.labels(self.app_name, kind, outcome).inc(n)

    def exposition(self) -> bytes:
        """The Prometheus text of this process, or of every process sharing the multiprocess folder."""
        self.publish_requests()
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry)
        return generate_latest(self.registry)


def every(interval: float, action: Callable[[], None]):
    """A cleanup_ctx entry running `action` every `interval` seconds while the app runs, and once at the end."""

    async def context(app: web.Application):
        async def loop():
            while True:
                await asyncio.sleep(interval)
                action()

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        action()

    return context


class CounterBridge:
    """Copies an app's own plain-integer counters into `atelier_cache_lookups_total` once a second.

    The reader counts cache answers with `+= 1` on its hot path (nanoseconds); the Prometheus
    series is updated from the deltas in the background, so scraping costs the hot path nothing.
    `layers` maps a counter name to its (layer, result) labels.
    """

    def __init__(self, metrics: Metrics, read: Callable[[], dict[str, int]], layers: dict[str, tuple[str, str]],
                 interval: float = 1.0):
        self.metrics = metrics
        self.read = read
        self.layers = layers
        self.interval = interval
        self.published: dict[str, int] = {}

    def publish(self) -> None:
        current = self.read()
        for name, (layer, result) in self.layers.items():
            delta = current.get(name, 0) - self.published.get(name, 0)
            if delta > 0:
                self.metrics.cache.labels(self.metrics.app_name, layer, result).inc(delta)
            self.published[name] = current.get(name, 0)

    @property
    def run(self):
        return every(self.interval, self.publish)


def metrics_for(settings: Settings, app_name: str) -> Metrics:
    return Metrics(app_name, settings.prometheus_multiproc_dir)


class JsonLog:
    """One line per event on a byte stream: JSON for machines, or plain text when ATELIER_LOG_JSON=0.

    Lines are written to a buffered stream and flushed by `flush_task` once a second (and at exit),
    so a busy reader pays for a buffer append per request, not a system call.
    """

    def __init__(self, app_name: str, json_lines: bool = True, stream: BinaryIO | None = None,
                 autoflush: bool = False):
        self.app_name = app_name
        self.autoflush = autoflush  # For processes without an event loop task to flush (the worker's few lines).
        self.json_lines = json_lines
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.pid = os.getpid()

    def event(self, event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "app": self.app_name, "pid": self.pid, "event": event, **fields}
        if self.json_lines:
            line = orjson.dumps(record, default=str)
        else:
            line = " ".join(f"{k}={v}" for k, v in record.items()).encode()
        with contextlib.suppress(ValueError, OSError):  # A closed stream at exit must not fail a request.
            self.stream.write(line + b"\n")
            if self.autoflush:
                self.stream.flush()

    def flush(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.stream.flush()

    @property
    def flush_task(self):
        return every(1.0, self.flush)


def request_id(request: web.Request) -> str:
    """The id nginx put on the request (or the client sent); minted here when the app is reached directly."""
    rid = request.get(_REQUEST_ID)
    if rid is None:
        rid = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        request[_REQUEST_ID] = rid
    return rid


def job_context(request: web.Request) -> dict[str, str]:
    """What a queued job carries so the worker's log lines join the request's (writer → job → worker)."""
    return {"request_id": request_id(request)}


def route_name(request: web.Request) -> str:
    """The route template (`/products/{product_id}`), never the raw path: label values must stay few."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


METRICS = web.AppKey("atelier_metrics", Metrics)
LOG = web.AppKey("atelier_log", JsonLog)


class RequestRecorder(AbstractAccessLogger):
    """Counts, times and (when on) logs each request from aiohttp's access hook, once the response is sent.

    The hook is one call per request outside the handler chain; the same work as a middleware
    cost a reader 12% of its throughput (the chain adds frames around every handler call).
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, seconds: float) -> None:
        try:
            app = request.app
        except (AttributeError, AssertionError):  # refused before routing (malformed HTTP): no app to count in
            return
        metrics = app.get(METRICS)
        if metrics is None:
            return
        route = route_name(request)
        metrics.observe_request(route, request.method, response.status, seconds)
        log = app.get(LOG)
        if log is not None:
            log.event("request", request_id=request_id(request), method=request.method,
                      path=request.path_qs, route=route, status=response.status, ms=round(seconds * 1000, 3))


# What every app's runner (`web.AppRunner`, `web.run_app`, a test's `server_kwargs`) is given.
RUNNER_OPTIONS = {"access_log_class": RequestRecorder, "access_log": logging.getLogger("atelier.access")}


async def metrics_handler(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup_observability(app: web.Application, settings: Settings, app_name: str) -> Metrics:
    """Give the app its series (and request log) and GET /metrics; returns the series.

    Requests are counted only when the runner was given `RUNNER_OPTIONS`.
    """
    metrics = metrics_for(settings, app_name)
    log = JsonLog(app_name, settings.log_json) if settings.access_log else None
    app[METRICS] = metrics
    if log is not None:
        app[LOG] = log
        app.cleanup_ctx.append(log.flush_task)
    app.cleanup_ctx.append(every(1.0, metrics.publish_requests))
    app.router.add_get("/metrics", metrics_handler)
    return metrics

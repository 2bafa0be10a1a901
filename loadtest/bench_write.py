"""`python -m loadtest.bench_write`: how fast writes are acknowledged, applied, and become visible.

One command, three measurements on one data set (the `small` one by default), each printed and
saved to `loadtest/results/write.json` and `write.md`:

1. acknowledged writes/s and ack latency against one writer process (no worker running, so the
   queue fills), the storefront's write mix (`write_mix.py`): a closed loop at full speed (peak),
   then an open loop at `--ack-rate` requests/s (p99 at a fixed load, the verdict), both from the
   lean generator (`openloop.py`); then the same open loop from k6 (`k6_write.js`), whose CPU per
   request (~300 µs, measured and reported) takes a core the writer needs, for comparison.
2. applied mutations/s: `--workers` × `python -m worker --burst` draining the queue phase 1
   filled; the rate counts from the workers' start to their exit (start-up included).
3. staleness (`staleness.py`): ack → first GET (through a reader process) that shows the write,
   p50/p99, while `--stale-rate` writes/s go to the writer, a worker applies them, and
   `--read-rate` product-page GETs/s on 1,000 products (fetched once before, as a running shop's
   caches would hold them) go to the reader. Every tenth write is a new review that is tracked:
   its GET is polled every 10 ms from its 201 on, so the figures resolve to ~10 ms.

The generator runs in this process on uvloop; latencies of the open loops count from each
request's scheduled time, so a stall cannot hide by delaying the requests behind it.
Servers: embedded PostgreSQL (service profile) and Redis under `--work`, on free ports; the data
set is loaded once (`atelier load`) and reused by later runs; servers this run started are stopped
at the end. Processes talk directly (no nginx), on 127.0.0.1; generator, servers and apps share
the same two cores, so the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
import redis.asyncio as aioredis
import uvloop
from arq.constants import health_check_key_suffix
from redis.exceptions import BusyLoadingError

from infra.embedded import free_port
from infra.services import ensure_services
from infra.settings import Settings
from loadtest.openloop import OpenLoop
from loadtest.publish import publish
from loadtest.staleness import Staleness
from loadtest.write_mix import WriteMix
from projections import drift, idstate
from schema.migrate import migrate_url
from worker import protocol

HERE = Path(__file__).parent
RESULTS = HERE / "results"
TARGETS = {"ack_per_s": 3000, "ack_p99_ms": 10, "applied_per_s": 2000, "staleness_p99_ms": 250}
HEALTH_CHECK = protocol.QUEUE + health_check_key_suffix


def log(message: str) -> None:
    print(f"[bench_write {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- set-up


async def redis_loaded(url: str, timeout: float = 300) -> None:
    """Wait while a Redis that just started replays its append-only file (it answers LOADING)."""
    client = aioredis.from_url(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                await client.ping()
                return
            except BusyLoadingError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await client.aclose()


async def ensure_data(settings: Settings, data: Path, fresh: bool) -> None:
    await redis_loaded(settings.redis_url)
    await migrate_url(settings.database_url)
    conn = await asyncpg.connect(settings.database_url)
    try:
        loaded = await conn.fetchval("SELECT count(*) FROM products") > 0
        if fresh or not loaded:
            log(f"loading {data} (later runs reuse it unless --fresh)")
            for url in {settings.redis_url, settings.cache_url}:  # queue, receipts, caches of the old data
                stale = aioredis.from_url(url)
                await stale.flushdb()
                await stale.aclose()
            env = {**os.environ, **settings.to_env()}
            subprocess.run([sys.executable, "-m", "infra.cli", "load", str(data), "--quiet", "--replace",
                            "--rejects", str(settings.data_dir / "rejects.jsonl")], env=env, check=True)
        redis = aioredis.from_url(settings.redis_url)
        try:
            if not await redis.exists(idstate.bitmap_key("reviews")):
                log("publishing id state")
                await idstate.publish_all(conn, settings.redis_url)
        finally:
            await redis.aclose()
    finally:
        await conn.close()


async def write_targets(settings: Settings, path: Path) -> dict:
    """Ids the load draws from: random existing reviews, questions, answers, products (with their
    characteristics, so new reviews can score them)."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        sample = "ORDER BY random() LIMIT 5000"
        targets = {
            "reviews": [r[0] for r in await conn.fetch(f"SELECT id FROM reviews WHERE NOT reported {sample}")],
            "questions": [r[0] for r in await conn.fetch(f"SELECT id FROM questions WHERE NOT reported {sample}")],
            "answers": [r[0] for r in await conn.fetch(f"SELECT id FROM answers WHERE NOT reported {sample}")],
            "products": [
                {"id": r[0], "characteristics": list(r[1])}
                for r in await conn.fetch(
                    "SELECT p.id, coalesce(array_agg(c.id) FILTER (WHERE c.id IS NOT NULL), '{}') FROM "
                    f"(SELECT id FROM products {sample}) p LEFT JOIN characteristics c ON c.product_id = p.id "
                    "GROUP BY p.id"
                )
            ],
        }
    finally:
        await conn.close()
    path.write_text(json.dumps(targets))
    return targets


class App:
    """A writer, reader or worker child process with the benchmark's settings."""

    def __init__(self, settings: Settings, role: str, *args: str):
        self.port = free_port() if role in ("writer", "reader") else None
        argv = [sys.executable, "-m", role, *args] + (["--port", str(self.port)] if self.port else [])
        env = {**os.environ, **settings.to_env(), "ATELIER_LOG_JSON": "0"}
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.role = role

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(self.base + "/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.role} did not become ready:\n{self.output()}")
                await asyncio.sleep(0.1)

    def cpu_seconds(self) -> float:
        """User + system CPU this process has used so far (from /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_with_cpu(self) -> tuple[int, float]:
        """Wait for the process to exit; its exit status and the CPU seconds it used."""
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        return self.process.returncode, usage.ru_utime + usage.ru_stime

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def k6(script: str, summary: Path, **env: str) -> dict:
    command = ["k6", "run", "--quiet", "--no-color", "--summary-export", str(summary), str(HERE / script)]
    subprocess.run(command, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
    return json.loads(summary.read_text())


def k6_figures(summary: dict) -> dict:
    metrics = summary["metrics"]
    duration = metrics["http_req_duration"]
    checks = metrics.get("checks", {})
    return {
        "requests": int(metrics["http_reqs"]["count"]),
        "per_s": round(metrics["http_reqs"]["rate"], 1),
        "p50_ms": round(duration["p(50)"], 2),
        "p90_ms": round(duration["p(90)"], 2),
        "p99_ms": round(duration["p(99)"], 2),
        "max_ms": round(duration["max"], 2),
        "failed": int(checks.get("fails", 0)),
        # Iterations an open loop could not start in time (the generator or the server fell behind).
        "dropped": int(metrics.get("dropped_iterations", {}).get("count", 0)),
    }


# ---------------------------------------------------------------- phases


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """CPU so far of this process (the generator's, while a phase runs) or of its finished children (k6)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def generate(app: App, connections: int, drive) -> tuple[OpenLoop, float, float]:
    """Run `drive(generator)` against `app`: the generator, the seconds `drive` reported, its CPU seconds."""
    generator = OpenLoop("127.0.0.1", app.port, connections)
    await generator.open()
    cpu = cpu_seconds()
    try:
        seconds = await drive(generator)
    finally:
        generator.close()
    return generator, seconds, cpu_seconds() - cpu


async def measure_acks(writer: App, targets_file: Path, work: Path, seconds: int, rate: int, concurrency: int) -> dict:
    mix = WriteMix(json.loads(targets_file.read_text()), f"127.0.0.1:{writer.port}")

    async def run(connections: int, drive) -> dict:
        cpu = writer.cpu_seconds()
        generator, elapsed, generator_cpu = await generate(writer, connections, drive)
        figures = generator.tally.figures(seconds=elapsed)
        figures.update(waited_for_connection=generator.queued,
                       generator_cpu_us_per_request=round(generator_cpu / figures["requests"] * 1e6))
        # The writer's own CPU per acknowledged write: what one core can ack, whatever else runs.
        figures["writer_cpu_us_per_ack"] = round((writer.cpu_seconds() - cpu) / figures["requests"] * 1e6)
        return figures

    log(f"acks: closed loop, {concurrency} requests in flight, {seconds}s")
    peak = await run(concurrency, lambda generator: generator.run_closed(concurrency, seconds, mix))
    log(f"  peak {peak['per_s']}/s, p99 {peak['p99_ms']} ms, {peak['writer_cpu_us_per_ack']} us CPU per ack")
    log(f"acks: open loop at {rate}/s, {seconds}s")
    fixed = await run(256, lambda generator: generator.run(rate, seconds, mix))
    log(f"  {fixed['per_s']}/s, p99 {fixed['p99_ms']} ms")
    log(f"acks: open loop at {rate}/s from k6, {seconds}s")
    cpu, k6_cpu = writer.cpu_seconds(), cpu_seconds(resource.RUSAGE_CHILDREN)
    common = {"BASE": writer.base, "TARGETS": str(targets_file), "DURATION": f"{seconds}s"}
    from_k6 = await asyncio.to_thread(k6, "k6_write.js", work / "k6-rate.json", MODE="rate", RATE=str(rate), **common)
    from_k6 = k6_figures(from_k6)
    from_k6["writer_cpu_us_per_ack"] = round((writer.cpu_seconds() - cpu) / from_k6["requests"] * 1e6)
    from_k6["generator_cpu_us_per_request"] = round(
        (cpu_seconds(resource.RUSAGE_CHILDREN) - k6_cpu) / from_k6["requests"] * 1e6)
    log(f"  {from_k6['per_s']}/s, p99 {from_k6['p99_ms']} ms")
    return {"peak": peak, "at_rate": {"rate": rate, **fixed}, "k6_at_rate": {"rate": rate, **from_k6}}


async def measure_apply(settings: Settings, workers: int = 1) -> dict:
    redis = aioredis.from_url(settings.redis_url)
    try:
        queued = await redis.zcard(protocol.QUEUE)
        log(f"apply: {workers} burst worker(s) drain {queued} queued writes")
        started = time.perf_counter()
        apps = [App(settings, "worker", "--burst") for _ in range(workers)]
        ends = await asyncio.gather(*(asyncio.to_thread(app.wait_with_cpu) for app in apps))
        seconds = time.perf_counter() - started
        if any(code for code, _ in ends) or await redis.zcard(protocol.QUEUE):
            raise RuntimeError(f"workers did not drain the queue:\n{apps[0].output()}")
    finally:
        await redis.aclose()
    cpu = sum(seconds_used for _, seconds_used in ends)
    figures = {"workers": workers, "writes": queued, "seconds": round(seconds, 2),
               "per_s": round(queued / seconds, 1), "batch_size": settings.worker_batch_size,
               "worker_cpu_us_per_write": round(cpu / max(queued, 1) * 1e6)}
    log(f"  {figures['per_s']}/s")
    return figures


async def settle_database(settings: Settings) -> None:
    """Vacuum what the apply phase churned and checkpoint, so the staleness phase does not meet
    autovacuum and a checkpoint that phase 2 left behind."""
    log("vacuum and checkpoint after the apply phase")
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("VACUUM (ANALYZE) reviews, questions, answers, applied_writes, rm_reviews, rm_meta, "
                           "rm_questions, rm_answers")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def warm(reader: str, targets_file: Path, hot: int = 1000) -> None:
    """GET each page the read load will ask for once, as a running shop's caches would hold them."""
    products = json.loads(targets_file.read_text())["products"][:hot]
    paths = [p for product in products for p in (
        f"/reviews/?product_id={product['id']}&count=1000&sort=relevant",
        f"/reviews/meta?product_id={product['id']}", f"/qa/questions?product_id={product['id']}&count=100")]
    log(f"warming the reader with {len(paths)} GETs")
    async with aiohttp.ClientSession() as session:
        async def fetch(chunk):
            for path in chunk:
                async with session.get(reader + path) as response:
                    await response.read()
        await asyncio.gather(*(fetch(paths[i::16]) for i in range(16)))


async def worker_polling(settings: Settings, worker: App, timeout: float = 60) -> None:
    """Wait for the worker's first poll (arq writes its health-check key then), so the first
    writes measure a running worker, not a process still importing its modules."""
    redis = aioredis.from_url(settings.redis_url)
    deadline = time.monotonic() + timeout
    try:
        while not await redis.exists(HEALTH_CHECK):
            if worker.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start polling:\n{worker.output()}")
            await asyncio.sleep(0.1)
    finally:
        await redis.aclose()


async def measure_staleness(settings: Settings, targets_file: Path, seconds: int, rate: int, read_rate: int,
                            warmup: int) -> dict:
    redis = aioredis.from_url(settings.redis_url)
    await redis.delete(HEALTH_CHECK)  # a stopped worker's key, if it outlived its worker
    await redis.aclose()
    reader, writer, worker = App(settings, "reader"), App(settings, "writer"), App(settings, "worker")
    try:
        await asyncio.gather(reader.ready(), writer.ready(), worker_polling(settings, worker))
        await warm(reader.base, targets_file)
        log(f"staleness: {rate} writes/s for {warmup}s + {seconds}s measured, beside {read_rate} GETs/s")
        writes = OpenLoop("127.0.0.1", writer.port, 64)
        reads = OpenLoop("127.0.0.1", reader.port, 64)
        await asyncio.gather(writes.open(), reads.open())
        cpu = cpu_seconds()
        try:
            mix = WriteMix(json.loads(targets_file.read_text()), f"127.0.0.1:{writer.port}")
            figures = await Staleness(writes, reads, mix).run(rate, read_rate, seconds, warmup)
        finally:
            writes.close()
            reads.close()
        figures["generator_cpu_us_per_request"] = round((cpu_seconds() - cpu) / (writes.sent + reads.sent) * 1e6)
    finally:
        for app in (worker, writer, reader):
            app.stop()
    figures.update(write_rate=rate, seconds=seconds, warmup_seconds=warmup)
    log(f"  staleness p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms")
    return figures


# ---------------------------------------------------------------- report


def verdicts(results: dict) -> dict:
    acks, applied, stale = results["acks"]["at_rate"], results["apply"], results["staleness"]
    return {
        # The open loop sends rate × seconds requests; the rate reached divides them by the time the
        # sending took, which ends up to one scheduler tick (1 ms) after `seconds`.
        "ack_per_s": acks["per_s"] >= TARGETS["ack_per_s"] * 0.99 and acks["failed"] == 0,
        "ack_p99_ms": acks["p99_ms"] <= TARGETS["ack_p99_ms"],
        "applied_per_s": applied["per_s"] >= TARGETS["applied_per_s"],
        "staleness_p99_ms": stale["p99_ms"] <= TARGETS["staleness_p99_ms"],
    }


def markdown(results: dict) -> str:
    acks, applied, stale = results["acks"], results["apply"], results["staleness"]
    ok = results["verdicts"]
    mark = {True: "met", False: "**missed**"}
    rate, k6_rate = acks["at_rate"], acks["k6_at_rate"]

    def ack_row(label: str, run: dict, generator_cpu: str) -> str:
        return (f"| {label} | {run['requests']} | {run['per_s']} | {run['p50_ms']} | {run['p90_ms']} | {run['p99_ms']} | "
                f"{run['max_ms']} | {run['failed']} | {run['writer_cpu_us_per_ack']} µs | {generator_cpu} |")

    return f"""# Write path benchmark

`{results['command']}` — {results['finished']} — data set: `{results['data']}`, machine: {os.cpu_count()} cores,
generator, servers and apps on the same box (no nginx; every process on 127.0.0.1); load average when
the run started: {results['load_average_at_start']} (other work on the box shares the two cores).

| measure | figure | target | |
|---|---|---|---|
| acknowledged writes/s, open loop offering {rate['rate']}/s | {rate['per_s']} ({rate['failed']} failed) | ≥ {TARGETS['ack_per_s']}, none failed | {mark[ok['ack_per_s']]} |
| ack p99 at that rate | {rate['p99_ms']} ms | ≤ {TARGETS['ack_p99_ms']} ms | {mark[ok['ack_p99_ms']]} |
| applied mutations/s ({applied['workers']} worker(s) draining {applied['writes']} queued writes) | {applied['per_s']} | ≥ {TARGETS['applied_per_s']} | {mark[ok['applied_per_s']]} |
| staleness p99 at {stale['write_rate']} writes/s + {stale['reads']['per_s']} GETs/s | {stale['p99_ms']} ms | ≤ {TARGETS['staleness_p99_ms']} ms | {mark[ok['staleness_p99_ms']]} |

## Acknowledgements (one writer process; the queue fills, no worker runs)

| run | requests | per s | p50 ms | p90 ms | p99 ms | max ms | failed | writer CPU per ack | generator CPU per request |
|---|---|---|---|---|---|---|---|---|---|
{ack_row("closed loop, peak", acks['peak'], f"{acks['peak']['generator_cpu_us_per_request']} µs")}
{ack_row(f"open loop at {rate['rate']}/s", rate, f"{rate['generator_cpu_us_per_request']} µs")}
{ack_row(f"open loop at {k6_rate['rate']}/s, k6", k6_rate, f"{k6_rate['generator_cpu_us_per_request']} µs")}

Mix: 70% helpful votes (reviews 60%, questions 20%, answers 20% of them), 15% new reviews, 10% new
questions, 5% new answers (`loadtest/write_mix.py`, and `loadtest/k6_write.js` for k6). Open-loop
latencies count from each request's scheduled time; {rate['waited_for_connection']} requests of the open loop found all
256 connections busy and waited for one (k6 could not start {k6_rate['dropped']} on time). The k6 row is
there for comparison: at {k6_rate['generator_cpu_us_per_request']} µs of CPU per request k6 takes most of a core at this rate, and the
writer waits for the CPU it takes.

## Applying ({applied['workers']} × `python -m worker --burst`, batch size {applied['batch_size']})

{applied['writes']} writes in {applied['seconds']} s = **{applied['per_s']} applied/s**, from process start to exit,
each batch one transaction with its read-model refresh, Redis publish and receipts. The worker
processes used {applied['worker_cpu_us_per_write']} µs of CPU per applied write; the rest of the time is PostgreSQL's.

## Staleness (ack → first GET showing the write)

{stale['write_rate']} writes/s (votes, and every tenth write a new review, tracked in the {stale['seconds']} s measured
after {stale['warmup_seconds']} s of the same load untracked: the phase starts right after a VACUUM and a CHECKPOINT,
and the first change to each page after a checkpoint logs the whole page), one
worker, one reader, and product-page GETs beside it ({stale['reads']['per_s']}/s achieved, p50
{stale['reads']['p50_ms']} ms, p99 {stale['reads']['p99_ms']} ms, {stale['reads']['failed']} failed); the generator used
{stale['generator_cpu_us_per_request']} µs of CPU per request.

| tracked writes | p50 ms | p90 ms | p99 ms | max ms | mean ms | write errors | not visible within 30 s |
|---|---|---|---|---|---|---|---|
| {stale['tracked']} | {stale['p50_ms']} | {stale['p90_ms']} | {stale['p99_ms']} | {stale['max_ms']} | {stale['mean_ms']} | {stale['write_errors']} | {stale['never_visible']} |

After the run, `check-drift --sample {results['drift']['sample']}` found {results['drift']['mismatches']} mismatches
in {results['drift']['checked']} stored models.
"""


async def main_async(args: argparse.Namespace) -> dict:
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    work = Path(args.work).absolute()
    work.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=work, embedded_pg_port=free_port(), embedded_redis_port=free_port(),
                        embedded_cache_port=free_port(), log_json=False, access_log=args.access_log,
                        worker_batch_size=args.batch_size)
    services = ensure_services(settings)
    settings = services.settings_for(settings)
    try:
        await ensure_data(settings, Path(args.data), args.fresh)
        targets_file = work / "targets.json"
        await write_targets(settings, targets_file)
        redis = aioredis.from_url(settings.redis_url)
        if await redis.zcard(protocol.QUEUE):
            log("draining writes left queued by an earlier run")
            await measure_apply(settings)
        await redis.aclose()

        writer = App(settings, "writer")
        try:
            await writer.ready()
            acks = await measure_acks(writer, targets_file, work, args.ack_seconds, args.ack_rate, args.concurrency)
        finally:
            writer.stop()
        applied = await measure_apply(settings, args.workers)
        await settle_database(settings)
        staleness = await measure_staleness(settings, targets_file, args.stale_seconds, args.stale_rate,
                                            args.read_rate, args.stale_warmup)
        conn = await asyncpg.connect(settings.database_url)
        redis = aioredis.from_url(settings.redis_url)
        try:
            report = await drift.check(conn, redis, sample=args.drift_sample)
        finally:
            await conn.close()
            await redis.aclose()
    finally:
        services.stop_started()
    results = {
        "load_average_at_start": load_at_start,
        "command": "python -m loadtest.bench_write " + " ".join(sys.argv[1:]),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "data": str(args.data),
        "targets": TARGETS,
        "acks": acks,
        "apply": applied,
        "staleness": staleness,
        "drift": {"sample": args.drift_sample, "checked": report.checked, "mismatches": len(report.mismatches)},
    }
    results["verdicts"] = verdicts(results)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_write", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/tmp/atelier-small", help="data set folder (python -m schema.generate)")
    parser.add_argument("--work", default="/tmp/atelier-bench-write", help="servers' data folder, reused")
    parser.add_argument("--ack-seconds", type=int, default=15)
    parser.add_argument("--ack-rate", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight in the closed loop")
    parser.add_argument("--stale-seconds", type=int, default=20)
    parser.add_argument("--stale-warmup", type=int, default=10, help="seconds of the same load before the measured ones")
    parser.add_argument("--stale-rate", type=int, default=500)
    parser.add_argument("--read-rate", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=Settings.worker_batch_size)
    parser.add_argument("--workers", type=int, default=2, help="worker processes draining the queue (apply phase)")
    parser.add_argument("--drift-sample", type=int, default=300)
    parser.add_argument("--fresh", action="store_true",
                        help="reload the data set first (earlier runs' writes otherwise accumulate)")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false",
                        help="run the apps without their JSON request log")
    args = parser.parse_args(argv)
    results = uvloop.run(main_async(args))
    publish(RESULTS, "write", results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

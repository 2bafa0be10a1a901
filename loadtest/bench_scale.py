"""`python -m loadtest.bench_scale`: the whole stack through nginx with 1, 2 and 3 readers, micro-cache off and on.

One command, one run, one data set. `atelier up` starts the stack (with `--micro-cache 0`, then
again with `--micro-cache SECONDS`); between measurements `atelier scale readers=N` resizes it
while it runs, exactly as an operator would. Every measurement uses the same generator (wrk,
with loadtest/wrk_read.lua), the same connections, warm-up and duration, and the storefront's
product-page mix (six GETs per product), once with Zipf-skewed product ids over the whole
catalogue (`zipf`) and once all on the storefront's showcase product (`hot`, a flash sale: the
case the micro-cache is for).

The "answered by readers" column comes from the stack's own /metrics (summed over every reader
in multiprocess mode): with the micro-cache on, the rest were answered by nginx from its cache.
Everything — generator, nginx, readers, PostgreSQL, Redis — shares this machine's cores, so the
figures are ratios within one run more than absolute capacities.
Output: loadtest/results/scale.json and scale.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from infra.embedded import free_port
from infra.services import ensure_services
from infra.settings import Settings
from infra.stack import SHOWCASE_PRODUCT
from infra.stack_process import RunningStack, start_stack
from loadtest.bench_read import wrk
from loadtest.publish import publish

RESULTS = Path(__file__).parent / "results"
READER_COUNTS = (1, 2, 3)


def log(message: str) -> None:
    print(f"[bench_scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def product_ids(database_url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        low, high = await conn.fetchrow("SELECT min(id), max(id) FROM products")
    finally:
        await conn.close()
    return low, high


async def reader_requests(url: str) -> float:
    """Requests the readers answered so far, from the stack's /metrics (scrapes excluded)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/metrics") as response:
            text = await response.text()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "atelier_http_requests_total" and sample.labels.get("app") == "reader"
               and sample.labels.get("route") != "/metrics")


def wrk_environment(mix: str, ids: tuple[int, int]) -> dict[str, str]:
    if mix == "hot":
        showcase = SHOWCASE_PRODUCT if ids[0] <= SHOWCASE_PRODUCT <= ids[1] else ids[0]
        return {"MIX": "uniform", "ID_MIN": str(showcase), "ID_MAX": str(showcase)}
    return {"MIX": mix, "ID_MIN": str(ids[0]), "ID_MAX": str(ids[1])}


def measure(stack: RunningStack, mix: str, ids: tuple[int, int], args) -> dict:
    env = wrk_environment(mix, ids)
    if args.warmup:
        wrk(stack.url, args.warmup, args.connections, args.threads, **env)
    before = asyncio.run(reader_requests(stack.url))
    result = wrk(stack.url, args.duration, args.connections, args.threads, **env)
    answered = asyncio.run(reader_requests(stack.url)) - before - 1  # less the first scrape itself
    result["answered_by_readers"] = round(min(1.0, max(0.0, answered / max(result["requests"], 1))), 4)
    return result


def run_configuration(settings: Settings, micro_cache: int, ids_holder: list, results: list, args) -> None:
    stack = start_stack(settings, "--readers", str(READER_COUNTS[0]), "--workers", "1",
                        "--micro-cache", str(micro_cache), "--demo-scale", args.demo_scale)
    try:
        if not ids_holder:
            ids_holder.append(asyncio.run(product_ids(settings.database_url)))
        for readers in READER_COUNTS:
            scaled = stack.atelier("scale", f"readers={readers}")
            if scaled.returncode != 0:
                raise RuntimeError(f"atelier scale readers={readers} failed: {scaled.stderr}")
            for mix in args.mixes:
                log(f"{mix}, micro-cache {micro_cache}s, {readers} reader(s): warm-up {args.warmup}s, "
                    f"measuring {args.duration}s")
                got = measure(stack, mix, ids_holder[0], args)
                got.update(mix=mix, readers=readers, micro_cache_s=micro_cache)
                log(f"  {got['requests_per_s']:,} req/s, p50 {got['latency_ms']['p50']} ms, "
                    f"p99 {got['latency_ms']['p99']} ms, errors {got['errors']}, "
                    f"answered by readers {got['answered_by_readers']:.0%}")
                results.append(got)
    finally:
        code = stack.stop()
        if code != 0:
            log(f"atelier up exited with {code}:\n" + "\n".join(stack.output[-20:]))


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        "# Scale-out benchmark: readers behind nginx, micro-cache off and on",
        "",
        f"Run {report['started_at']} · {env['products']:,} products · `atelier up` with 1 worker, nginx "
        f"{env['nginx_workers']} worker · wrk {env['threads']} thread(s), {env['connections']} connections, "
        f"{env['duration_s']} s per row after {env['warmup_s']} s warm-up · six product-page GETs per product "
        f"(`zipf`: Zipf-skewed ids over the catalogue; `hot`: all on the showcase product) · {env['cpus']} cores "
        "shared by generator, nginx, readers, PostgreSQL and Redis · 1-minute load average "
        f"{env['load_average_1m']['before']} before, {env['load_average_1m']['after']} after.",
        "",
        "| mix | micro-cache | readers | req/s | vs 1 reader, cache off | p50 ms | p99 ms | errors | answered by readers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = sorted(report["rows"], key=lambda r: (r["mix"], r["micro_cache_s"], r["readers"]))
    for row in rows:
        base = next(r for r in rows if r["mix"] == row["mix"] and r["micro_cache_s"] == 0 and r["readers"] == 1)
        cache = f"{row['micro_cache_s']} s" if row["micro_cache_s"] else "off"
        lines.append(
            f"| {row['mix']} | {cache} | {row['readers']} | {row['requests_per_s']:,} | "
            f"{row['requests_per_s'] / base['requests_per_s']:.2f} | {row['latency_ms']['p50']} | "
            f"{row['latency_ms']['p99']} | {row['errors']} | {row['answered_by_readers']:.0%} |")
    lines += [
        "",
        "Readers are resized with `atelier scale readers=N` on the running stack between rows (no restart);",
        "the micro-cache rows come from a second `atelier up --micro-cache` on the same data. With the",
        "micro-cache on, a GET may be up to that many seconds (plus one refresh) staler than without it",
        "(docs/operations.md).",
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="Atelier data folder (default: ATELIER_DATA_DIR or .atelier)")
    parser.add_argument("--demo-scale", default="small", choices=("tiny", "small", "full"),
                        help="data set `atelier up` loads into an empty database (default small)")
    parser.add_argument("--mixes", default="zipf,hot", type=lambda v: v.split(","),
                        help="comma-separated product id distributions: zipf, uniform, hot (default zipf,hot)")
    parser.add_argument("--micro-cache", type=int, default=1, metavar="SECONDS", help="the 'on' setting (default 1)")
    parser.add_argument("--duration", type=int, default=20, help="measured seconds per row (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured seconds before each row (default 5)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    if args.data_dir:
        settings = settings.replace(data_dir=Path(args.data_dir).absolute())
    # Resolve the servers once here, so both `atelier up` runs reuse them (and the data) instead of
    # stopping them in between; this process stops what it started at the end.
    services = ensure_services(settings)
    settings = services.settings_for(settings).replace(port=free_port(), log_json=True)
    ids: list = []
    rows: list = []
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = os.getloadavg()[0]
    try:
        for micro_cache in (0, args.micro_cache):
            run_configuration(settings, micro_cache, ids, rows, args)
    finally:
        services.stop_started()
    report = {
        "started_at": started,
        "command": "python -m loadtest.bench_scale " + " ".join(argv if argv is not None else sys.argv[1:]),
        "environment": {
            "products": ids[0][1] - ids[0][0] + 1, "mixes": args.mixes, "connections": args.connections,
            "threads": args.threads, "duration_s": args.duration, "warmup_s": args.warmup,
            "cpus": os.cpu_count(), "generator": "wrk", "nginx_workers": 1, "workers": 1,
            # Anything else running on the machine shows here; rows are comparable only within a quiet run.
            "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        },
        "rows": rows,
    }
    publish(args.out, "scale", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

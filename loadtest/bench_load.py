"""`python -m loadtest.bench_load --scale full`: how long generating and loading a data set takes.

One command: generate the data set (timed; `--skip-generate --data DIR` reuses files already
written), then load it with `atelier load`'s code into a FRESH embedded PostgreSQL (service
profile) and Redis, each in its own folder under `--db-dir` and on its own free port, so nothing
else on the machine shares their data. Every phase of the load is timed (copy, validate/insert,
index, analyze, projections, id state), then the database size and the rows and size of each
table are read. Figures go to `loadtest/results/load-<scale>.json` and a readable
`load-<scale>.md`. The target: a full-scale load (generation excluded) within 10 minutes on this
2-core machine; the load average before and after the run is recorded, since anything else
running on the box slows the load down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from pathlib import Path

import asyncpg

from infra.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, postgres_settings
from schema.csv_sources import SOURCES
from schema.load import load
from schema.migrate import migrate_url

HERE = Path(__file__).parent
RESULTS = HERE / "results"
TARGET_SECONDS = 600


def log(message: str) -> None:
    print(f"[bench_load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def generate_data(scale: str, data: Path) -> dict:
    from schema.generate import generate

    log(f"generating the {scale} data set into {data}")
    started = time.perf_counter()
    rows = generate(data, scale, seed=1, progress=True)
    return {"seconds": round(time.perf_counter() - started, 1), "rows": rows}


async def database_figures(database_url: str) -> dict:
    conn = await asyncpg.connect(database_url)
    try:
        tables = {}
        for source in SOURCES:
            tables[source.table] = {
                "rows": await conn.fetchval(f"SELECT count(*) FROM {source.table}"),
                "bytes": await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", source.table),
            }
        models = await conn.fetch(
            "SELECT relname, pg_total_relation_size(oid) AS bytes FROM pg_class "
            "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace AND relname LIKE 'rm\\_%' ORDER BY 1")
        return {
            "database_bytes": await conn.fetchval("SELECT pg_database_size(current_database())"),
            "tables": tables,
            "read_models_bytes": {r["relname"]: r["bytes"] for r in models},
        }
    finally:
        await conn.close()


def megabytes(n: int) -> str:
    return f"{n / 1024 / 1024:,.0f} MB"


def markdown(results: dict) -> str:
    load_ = results["load"]
    phases = load_["phases_seconds"]
    ok = "met" if results["load_seconds"] <= TARGET_SECONDS else "MISSED"
    lines = [
        f"# Bulk load, `{results['scale']}` scale",
        "",
        f"`{results['command']}` — {results['finished']} — machine: {results['cpus']} cores, "
        f"load average {results['loadavg_before']} before, {results['loadavg_after']} after.",
        "",
        f"**Load: {results['load_seconds']:.0f} s** for {load_['rows_loaded']:,} rows "
        f"({load_['rows_loaded'] / max(results['load_seconds'], 1e-9):,.0f} rows/s), "
        f"target {TARGET_SECONDS} s: {ok}. Generation (not part of the load): "
        + (f"{results['generate']['seconds']:.0f} s." if results["generate"] else "skipped, files reused.")
        + f" Database size after the load: {megabytes(results['database']['database_bytes'])}.",
        "",
        "| phase | seconds | share |",
        "|---|---:|---:|",
    ]
    for phase, seconds in phases.items():
        lines.append(f"| {phase} | {seconds:.1f} | {seconds / max(results['load_seconds'], 1e-9):.0%} |")
    lines += ["", "| file | rows loaded | rejected | table size |", "|---|---:|---:|---:|"]
    for source in SOURCES:
        f = load_["files"][source.file]
        size = results["database"]["tables"][source.table]["bytes"]
        lines.append(f"| {source.file} | {f['rows_loaded']:,} | {f['rows_rejected']:,} | {megabytes(size)} |")
    lines += ["", "Rejected rows by reason:", ""]
    for source in SOURCES:
        for reason, count in load_["files"][source.file]["rejected_by_reason"].items():
            lines.append(f"- {source.file}: {count:,} × {reason}")
    if results["database"]["read_models_bytes"]:
        lines += ["", "Read models: " + ", ".join(f"{name} {megabytes(size)}" for name, size
                                                   in results["database"]["read_models_bytes"].items()) + "."]
    settings = ", ".join(f"{k}={v}" for k, v in results["postgres"].items())
    lines += ["", f"PostgreSQL: embedded, `service` profile ({settings}).", ""]
    return "\n".join(lines)


async def run_load(data: Path, db_dir: Path, jobs: int) -> tuple[dict, float]:
    postgres = EmbeddedPostgres(db_dir / "postgres", free_port(), "service")
    redis = EmbeddedRedis(db_dir / "redis", free_port())
    postgres.start()
    redis.start()
    try:
        await migrate_url(postgres.url)
        log(f"loading {data} into a fresh PostgreSQL on port {postgres.port}")
        started = time.perf_counter()
        report = await load(postgres.url, data, rejects_path=db_dir / "rejects.jsonl", progress=True, jobs=jobs,
                            redis_url=redis.url)
        seconds = time.perf_counter() - started
        print(report.summary(), file=sys.stderr)
        figures = await database_figures(postgres.url)
        return {"report": report.to_dict(), "database": figures}, seconds
    finally:
        redis.stop()
        postgres.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_load", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("tiny", "small", "full"), default="small")
    parser.add_argument("--data", type=Path, default=None, help="data set folder (default /tmp/atelier-<scale>)")
    parser.add_argument("--skip-generate", action="store_true", help="load the files already in --data")
    parser.add_argument("--db-dir", type=Path, default=Path("/tmp/atelier-bench-db"),
                        help="folder for the fresh PostgreSQL and Redis (emptied first)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    data = args.data or Path(f"/tmp/atelier-{args.scale}")
    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    generated = None if args.skip_generate else generate_data(args.scale, data)
    if args.db_dir.exists():
        shutil.rmtree(args.db_dir)
    outcome, seconds = asyncio.run(run_load(data, args.db_dir, args.jobs))
    results = {
        "command": "python -m loadtest.bench_load " + " ".join(argv if argv is not None else sys.argv[1:]),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "scale": args.scale,
        "data": str(data),
        "cpus": os.cpu_count(),
        "loadavg_before": loadavg_before,
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "generate": generated,
        "load_seconds": round(seconds, 1),
        "target_seconds": TARGET_SECONDS,
        "load": outcome["report"],
        "database": outcome["database"],
        "postgres": {k: postgres_settings("service")[k] for k in
                     ("shared_buffers", "maintenance_work_mem", "work_mem", "wal_level", "max_wal_size")},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"load-{args.scale}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"load-{args.scale}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

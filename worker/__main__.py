"""`python -m worker [--burst]`: run the arq worker that applies queued writes.

`--burst` drains the queue (including jobs deferred for a retry) and exits: tests and the write
benchmark use it. Without it the worker runs until SIGTERM, on which it finishes its batches.
"""

from __future__ import annotations

import argparse
import logging

import uvloop

from infra.services import resolve_urls
from infra.settings import Settings
from worker.jobs import create_worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(name)s: %(message)s")
    # arq logs two lines per job; at thousands of jobs a second that is most of the CPU.
    logging.getLogger("arq.worker").setLevel(logging.WARNING)
    uvloop.install()
    worker = create_worker(resolve_urls(Settings.from_env()), burst=args.burst)
    worker.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m reader --port P | --unix PATH`: run one reader process (aiohttp on uvloop).

With `--port`, the socket is opened with SO_REUSEPORT so several reader processes can share one
port and the kernel spreads connections over them. `--unix` may be given as well, to reach one
particular process (the benchmark reads each process's /_stats that way).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import uvloop
from aiohttp import web

from infra.observability import RUNNER_OPTIONS
from infra.services import resolve_urls
from infra.settings import Settings
from reader.app import create_app


async def serve(settings: Settings, port: int | None, unix: str | None) -> None:
    runner = web.AppRunner(create_app(settings), **RUNNER_OPTIONS)
    await runner.setup()
    if port is not None:
        await web.TCPSite(runner, settings.host, port, reuse_port=True, backlog=1024).start()
    if unix is not None:
        await web.UnixSite(runner, unix, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()  # stops accepting, lets in-flight requests finish, closes pools


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reader", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, help="TCP port on settings.host, shared via SO_REUSEPORT")
    parser.add_argument("--unix", help="listen on this Unix socket path (as well, or instead)")
    args = parser.parse_args(argv)
    settings = resolve_urls(Settings.from_env())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s reader %(levelname)s %(name)s: %(message)s")
    port = args.port if args.port is not None or args.unix else settings.port
    uvloop.run(serve(settings, port, args.unix))


if __name__ == "__main__":
    main()

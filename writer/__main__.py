"""`python -m writer --port P | --unix PATH`: run the writer (aiohttp on uvloop)."""

from __future__ import annotations

import argparse
import logging

import uvloop
from aiohttp import web

from infra.observability import RUNNER_OPTIONS
from infra.services import resolve_urls
from infra.settings import Settings
from writer.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m writer", description=__doc__)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, help="TCP port on settings.host (default: settings.port)")
    where.add_argument("--unix", help="listen on this Unix socket path instead")
    args = parser.parse_args(argv)
    settings = resolve_urls(Settings.from_env())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s writer %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    if args.unix:
        web.run_app(app, path=args.unix, print=None, loop=uvloop.new_event_loop(), **RUNNER_OPTIONS)
    else:
        web.run_app(app, host=settings.host, port=args.port or settings.port, print=None,
                    loop=uvloop.new_event_loop(), **RUNNER_OPTIONS)


if __name__ == "__main__":
    main()

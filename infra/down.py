"""`atelier down`: stop the embedded servers under the data folder."""

from __future__ import annotations

import argparse

from infra.services import stop_embedded
from infra.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Servers given by ATELIER_DATABASE_URL / ATELIER_REDIS_URL are never touched."


def run(args: argparse.Namespace) -> int:
    stopped = stop_embedded(Settings.from_env())
    print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    return 0

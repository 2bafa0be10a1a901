"""`atelier migrate`: apply pending migrations to the configured (or embedded) database."""

from __future__ import annotations

import argparse
import asyncio

from infra.services import ensure_services
from infra.settings import Settings
from schema.migrate import migrate_url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Uses ATELIER_DATABASE_URL, or starts the embedded PostgreSQL under ATELIER_DATA_DIR."


def run(args: argparse.Namespace) -> int:
    services = ensure_services(Settings.from_env())
    applied = asyncio.run(migrate_url(services.database_url))
    print("applied: " + ", ".join(applied) if applied else "schema is up to date")
    return 0

"""The `atelier` command: one entry point, one subcommand per operation.

Each subcommand lives in the module that owns the work and exposes `add_arguments(parser)` and
`run(args) -> int`; this file only maps names to modules, importing a module when its command
runs so that `atelier --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("infra.stack", "start the whole stack in the foreground (embedded servers, demo data on first start)"),
    "down": ("infra.down", "stop the embedded PostgreSQL and Redis left running under the data folder"),
    "scale": ("infra.scale", "change the number of reader or worker processes of a running stack"),
    "nginx": ("infra.nginx", "run nginx alone in front of readers and a writer reached by address (containers)"),
    "migrate": ("schema.migrate_command", "apply the SQL migrations not yet applied"),
    "generate": ("schema.generate", "write a synthetic Atelier CSV data set"),
    "load": ("schema.load", "bulk-load a folder of Atelier CSV files, then build the read models"),
    "check-drift": ("projections.drift", "compare stored read models with a fresh rebuild"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atelier", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        print(f"atelier {args.command}: not available in this build", file=sys.stderr)
        return 2
    return handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())

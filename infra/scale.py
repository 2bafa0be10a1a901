"""`atelier scale readers=N workers=M`: resize the stack that `atelier up` runs on this data folder.

The running `up` process listens on `<data_dir>/run/control.sock`; this command sends it one JSON
line and prints the answer once the change is complete (new readers ready and in nginx's upstream
set, removed ones drained and stopped). With no argument it prints the current processes.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys

from infra.settings import Settings
from infra.stack import control_socket

ROLES = ("readers", "workers")


def parse_assignments(items: list[str]) -> dict[str, int]:
    wanted = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in ROLES or not value.isdigit():
            raise ValueError(f"expected readers=N or workers=M, got {item!r}")
        wanted[name] = int(value)
    return wanted


def request(settings: Settings, wanted: dict[str, int], timeout: float = 300) -> dict:
    path = control_socket(settings)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError:
            raise ConnectionError(f"no running stack on {settings.data_dir} (start one with `atelier up`)") from None
        sock.sendall(json.dumps(wanted).encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return json.loads(answer)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("assignments", nargs="*", metavar="readers=N|workers=M")


def run(args: argparse.Namespace) -> int:
    try:
        answer = request(Settings.from_env(), parse_assignments(args.assignments))
    except (ValueError, ConnectionError) as exc:
        print(f"atelier scale: {exc}", file=sys.stderr)
        return 2
    if not answer.get("ok"):
        print(f"atelier scale: {answer.get('error')}", file=sys.stderr)
        return 1
    state = answer["state"]
    print(f"readers: {len(state['readers'])}  workers: {len(state['workers'])}")
    print(json.dumps(state, indent=2))
    return 0

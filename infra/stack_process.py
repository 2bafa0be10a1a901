"""`atelier up` as a child process, for the stack tests and the scale benchmark.

`start_stack` returns once `up` printed that it is ready; `RunningStack` reads its state file,
runs `atelier scale` against it and stops it with SIGTERM, as an operator would.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from infra.embedded import pid_alive
from infra.settings import Settings

READY_LINE = "Ctrl-C to stop"  # the last line `up` prints once ready


@dataclass
class RunningStack:
    process: subprocess.Popen
    settings: Settings
    output: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def run_dir(self) -> Path:
        return self.settings.data_dir / "run"

    def state(self) -> dict:
        return json.loads((self.run_dir / "stack.json").read_text())

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.to_env()}

    def atelier(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "infra.cli", *args], env=self.env(),
                              capture_output=True, text=True, timeout=300)

    def stop(self, timeout: float = 120) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        self.output.extend(self.process.stdout.read().decode(errors="replace").splitlines())
        return code


def start_stack(stack_settings: Settings, *args: str, timeout: float = 1800) -> RunningStack:
    """Start `atelier up ARGS` and return once it printed that it is ready (or fail with its output)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "up", *args],
        env={**os.environ, **stack_settings.to_env()},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    # Raw reads, not readline(): a buffered reader can hold the last lines while select() sees an empty pipe.
    received = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while READY_LINE.encode() not in received:
            if time.monotonic() > deadline:
                process.kill()
                break
            if selector.select(timeout=1):
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:  # up exited
                    break
                received += chunk
    output = received.decode(errors="replace").splitlines()
    if READY_LINE not in received.decode(errors="replace"):
        process.wait()
        raise RuntimeError("atelier up did not start:\n" + "\n".join(output))
    return RunningStack(process, stack_settings, output)


def all_pids(state: dict) -> list[int]:
    return [state["nginx_pid"], state["writer"]["pid"], *(r["pid"] for r in state["readers"]),
            *(w["pid"] for w in state["workers"])]


def assert_all_gone(pids: list[int]) -> None:
    alive = [pid for pid in pids if pid_alive(pid) and not _zombie(pid)]
    assert alive == [], f"processes still running after the stack stopped: {alive}"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False

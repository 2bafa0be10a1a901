"""Run `atelier up` as a real process for tests: real nginx, readers, writer and workers.

The stack uses the session's PostgreSQL and Redis (emptied first, then loaded with the `tiny`
demo data set by `up` itself, exactly as on a first start) and its own data folder and port.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from infra.embedded import free_port, pid_alive
from infra.settings import Settings
from tests.conftest import truncate_all

READY_LINE = "Atelier is up"


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
        self.output.extend(self.process.stdout.read().splitlines())
        return code


async def empty_servers(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await truncate_all(conn)
    finally:
        await conn.close()
    client = aioredis.from_url(settings.redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def start_stack(settings: Settings, data_dir: Path, *args: str, timeout: float = 300) -> RunningStack:
    """Start `atelier up` and return once it printed that it is ready (or fail with its output)."""
    stack_settings = settings.replace(data_dir=data_dir, port=free_port())
    asyncio.run(empty_servers(stack_settings))
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "up", "--demo-scale", "tiny", *args],
        env={**os.environ, **stack_settings.to_env()},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    )
    output: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not any(READY_LINE in line for line in output):
            if process.poll() is not None or time.monotonic() > deadline:
                output.extend(process.stdout.read().splitlines() if process.poll() is not None else [])
                process.kill()
                raise RuntimeError("atelier up did not start:\n" + "\n".join(output))
            if selector.select(timeout=1):
                line = process.stdout.readline()
                if line:
                    output.append(line.rstrip("\n"))
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

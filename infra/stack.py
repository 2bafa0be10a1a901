"""`atelier up`: the whole service in the foreground, from one command.

It resolves PostgreSQL and Redis (embedded ones are started or reused), migrates, loads the demo
data set on first start, then runs N readers, the writer, M workers and nginx in front of them,
and supervises them: a reader that dies is restarted on the same socket while nginx retries its
requests on the others. `atelier scale` talks to this process over a unix socket in the run
folder (see infra/scale.py). Ctrl-C or SIGTERM stops everything this process started, in order:
nginx first (it finishes in-flight requests), then the apps, then the embedded servers it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg

from infra.embedded import port_open
from infra.nginx import Nginx, NginxConfig
from infra.services import Services, ensure_services
from infra.settings import Settings

DEMO_SCALE = "small"
DEMO_SEED = 1
SHOWCASE_PRODUCT = 40344  # the product the storefront opens on
EXAMPLE_PATHS = (
    "/products/{id}",
    "/products/{id}/styles",
    "/reviews?product_id={id}",
    "/reviews/meta?product_id={id}",
    "/qa/questions?product_id={id}",
    "/docs",
    "/metrics",
)
_UNIX_PATH_MAX = 100  # sun_path holds 108 bytes; past that a reader listens on a loopback port instead.
RESTART_BACKOFF_MAX = 5.0
STABLE_SECONDS = 30.0  # a child that ran this long before dying is restarted without the accumulated back-off


def run_dir(settings: Settings) -> Path:
    return settings.data_dir / "run"


def control_socket(settings: Settings) -> Path:
    return run_dir(settings) / "control.sock"


@dataclasses.dataclass
class Child:
    """One supervised process: its command, where it listens, and whether its exit is expected."""

    role: str  # reader | writer | worker
    index: int
    argv: list[str]
    address: str | None = None  # a unix socket path or host:port for readers and the writer
    process: asyncio.subprocess.Process | None = None
    retiring: bool = False
    restarts: int = 0
    supervisor: asyncio.Task | None = None

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


class Stack:
    def __init__(self, settings: Settings, readers: int, workers: int, micro_cache_seconds: int,
                 demo_scale: str | None = DEMO_SCALE, nginx_workers: int = 1):
        self.settings = settings
        self.want_readers = readers
        self.want_workers = workers
        self.micro_cache_seconds = micro_cache_seconds
        self.demo_scale = demo_scale
        self.nginx_workers = nginx_workers
        self.run_dir = run_dir(settings)
        self.services: Services | None = None
        self.child_settings = settings
        self.readers: list[Child] = []
        self.workers: list[Child] = []
        self.writer: Child | None = None
        self.running: list[Child] = []  # every child started and not yet retired, whatever its role
        self.nginx: Nginx | None = None
        self.control: asyncio.AbstractServer | None = None
        self.stopping = False
        self._scale_lock = asyncio.Lock()
        self._next_index = {"reader": 1, "worker": 1}

    # ---------------------------------------------------------------- start / stop

    async def start(self) -> None:
        if control_socket(self.settings).exists() and await _control_alive(control_socket(self.settings)):
            raise RuntimeError(f"a stack already runs on {self.settings.data_dir} (atelier scale talks to it)")
        if port_open(self.settings.port, self.settings.host):
            raise RuntimeError(f"port {self.settings.port} is already in use (ATELIER_PORT or --port picks another)")
        self.services = await asyncio.to_thread(ensure_services, self.settings)
        self.child_settings = self.services.settings_for(self.settings).replace(
            prometheus_multiproc_dir=self.run_dir / "metrics")
        await self._migrate()
        if self.demo_scale:
            await self._load_demo_data()
        self._prepare_run_dir()
        self.writer = self._new_child("writer", 1)
        await self._spawn(self.writer)
        new_readers = [self._new_child("reader") for _ in range(self.want_readers)]
        await asyncio.gather(*(self._spawn(child) for child in new_readers))
        await asyncio.gather(self._wait_ready(self.writer), *(self._wait_ready(c) for c in new_readers))
        self.readers.extend(new_readers)
        for _ in range(self.want_workers):
            worker = self._new_child("worker")
            await self._spawn(worker)
            self.workers.append(worker)
        self.nginx = Nginx(self._nginx_config())
        self.nginx.start()

        def nginx_serving() -> bool:
            if self.nginx.process.poll() is not None:
                raise RuntimeError(f"nginx exited at start (port {self.settings.port} taken?); "
                                   f"see {self.nginx.config.error_log_target}")
            return bool(self.nginx.worker_pids()) and port_open(self.settings.port, self.settings.host)

        await _wait_for(nginx_serving, 30, "nginx to listen")
        self.control = await asyncio.start_unix_server(self._handle_control, path=str(control_socket(self.settings)))
        self._write_state()

    async def stop(self) -> None:
        """Stop what this process started; embedded servers it merely reused keep running."""
        self.stopping = True
        if self.control is not None:
            self.control.close()
            with contextlib.suppress(FileNotFoundError):
                control_socket(self.settings).unlink()
        if self.nginx is not None:
            await asyncio.to_thread(self.nginx.stop)
            if self.micro_cache_dir is not None:
                await asyncio.to_thread(shutil.rmtree, self.micro_cache_dir, True)
        # Readers and workers first (also any still starting), the writer last: it may be answering receipts.
        others = [c for c in self.running if c is not self.writer]
        await asyncio.gather(*(self._retire(c) for c in others))
        if self.writer is not None:
            await self._retire(self.writer)
        if self.services is not None:
            await asyncio.to_thread(self.services.stop_started)
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / "stack.json").unlink()

    # ---------------------------------------------------------------- preparing the database

    async def _migrate(self) -> None:
        from schema.migrate import migrate_url

        await migrate_url(self.child_settings.database_url)

    async def _load_demo_data(self) -> None:
        conn = await asyncpg.connect(self.child_settings.database_url)
        try:
            has_products = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM products)")
        finally:
            await conn.close()
        demo_dir = self.settings.data_dir / "demo"
        # Written before the demo load starts, removed when it finished: products next to this marker
        # are the remains of an interrupted demo load, not data someone loaded on purpose.
        loading = self.settings.data_dir / "demo-load-incomplete"
        if has_products and not loading.exists():
            return
        marker = demo_dir / ".complete"
        if not marker.exists() or marker.read_text() != self.demo_scale:
            from schema.generate import generate

            print(f"generating the {self.demo_scale} demo data set in {demo_dir} …", flush=True)
            demo_dir.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(generate, demo_dir, self.demo_scale, DEMO_SEED)
            marker.write_text(self.demo_scale)
        print(f"loading {demo_dir}{' again (the last demo load was interrupted)' if has_products else ''} …", flush=True)
        loading.touch()
        loader = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "infra.cli", "load", str(demo_dir), *(["--replace"] if has_products else []),
            "--rejects", str(self.settings.data_dir / "demo-rejects.jsonl"), env=self._child_env()
        )
        try:
            code = await loader.wait()
        except asyncio.CancelledError:
            loader.terminate()  # Ctrl-C during the first load; the next start loads again.
            await loader.wait()
            raise
        if code != 0:
            raise RuntimeError(f"atelier load {demo_dir} failed with exit code {code}")
        loading.unlink()

    async def example_product(self) -> int:
        """The storefront's product when the data has it (the small and full sets), else the first one."""
        conn = await asyncpg.connect(self.child_settings.database_url)
        try:
            found = await conn.fetchval(
                "SELECT coalesce((SELECT id FROM products WHERE id = $1), (SELECT min(id) FROM products))",
                SHOWCASE_PRODUCT)
        finally:
            await conn.close()
        return found or SHOWCASE_PRODUCT

    # ---------------------------------------------------------------- children

    def _prepare_run_dir(self) -> None:
        for sub in ("sockets", "metrics", "logs"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        # prometheus_client's multiprocess files belong to pids of an earlier run: start from zero.
        for stale in (self.run_dir / "metrics").glob("*.db"):
            stale.unlink()
        for stale in (self.run_dir / "sockets").glob("*.sock"):
            stale.unlink()

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.child_settings.to_env())
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _new_child(self, role: str, index: int | None = None) -> Child:
        if index is None:
            index = self._next_index[role]
            self._next_index[role] += 1
        child = Child(role=role, index=index, argv=[sys.executable, "-m", role])
        if role in ("reader", "writer"):
            socket_path = self.run_dir / "sockets" / f"{role}-{index}.sock"
            if len(str(socket_path)) <= _UNIX_PATH_MAX:
                child.address = str(socket_path)
                child.argv += ["--unix", child.address]
            else:
                from infra.embedded import free_port

                port = free_port()
                child.address = f"127.0.0.1:{port}"
                child.argv += ["--port", str(port)]
        return child

    async def _spawn(self, child: Child) -> None:
        if child.address and child.address.startswith("/"):
            with contextlib.suppress(FileNotFoundError):
                Path(child.address).unlink()
        log = open(self.run_dir / "logs" / f"{child.name}.log", "ab")
        try:
            child.process = await asyncio.create_subprocess_exec(
                *child.argv, env=self._child_env(), stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True,
            )
        finally:
            log.close()
        if child.supervisor is None:
            self.running.append(child)
            child.supervisor = asyncio.create_task(self._supervise(child), name=f"supervise {child.name}")

    async def _supervise(self, child: Child) -> None:
        """Restart a child that exits on its own; a retiring one is left to end."""
        backoff = 0.25
        while True:
            process = child.process
            started = time.monotonic()
            code = await process.wait()
            _mark_metrics_dead(self.run_dir / "metrics", process.pid)
            if child.retiring or self.stopping:
                return
            if time.monotonic() - started > STABLE_SECONDS:
                backoff = 0.25  # It had been running fine: this is a fresh failure, not a crash loop.
            child.restarts += 1
            print(f"{child.name} (pid {process.pid}) exited with {code}; restarting in {backoff:.2f}s", flush=True)
            await asyncio.sleep(backoff)  # Back off so a child that cannot start does not spin the CPU.
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX)
            if child.retiring or self.stopping:
                return
            await self._spawn(child)
            self._write_state()

    async def _wait_ready(self, child: Child, timeout: float = 120) -> None:
        """Poll the child's /readyz until it answers 200: it is then safe to send it traffic."""
        if child.address.startswith("/"):
            connector = aiohttp.UnixConnector(path=child.address)
            url = "http://reader/readyz"
        else:
            connector = aiohttp.TCPConnector()
            url = f"http://{child.address}/readyz"
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                if child.process.returncode is not None and child.supervisor.done():
                    raise RuntimeError(f"{child.name} exited during start-up; see {self.run_dir}/logs/{child.name}.log")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{child.name} not ready after {timeout:.0f}s; see its log")
                await asyncio.sleep(0.05)

    async def _retire(self, child: Child, timeout: float = 30) -> None:
        """SIGTERM, then wait: readers drain in-flight requests, workers finish their batch."""
        child.retiring = True
        process = child.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except asyncio.TimeoutError:
                print(f"{child.name} did not stop within {timeout:.0f}s; killing it", flush=True)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if child.supervisor is not None:
            await child.supervisor
        if child in self.running:
            self.running.remove(child)

    # ---------------------------------------------------------------- scaling

    @property
    def micro_cache_dir(self) -> Path | None:
        """In memory when the machine has /dev/shm (one folder per port, removed at stop)."""
        shm = Path("/dev/shm")
        return shm / f"atelier-micro-cache-{self.settings.port}" if shm.is_dir() else None

    def _nginx_config(self) -> NginxConfig:
        return NginxConfig(
            run_dir=self.run_dir / "nginx",
            listen=f"{self.settings.host}:{self.settings.port}",
            readers=tuple(c.address for c in self.readers),
            writer=self.writer.address,
            micro_cache_seconds=self.micro_cache_seconds,
            worker_processes=self.nginx_workers,
            cache_dir=self.micro_cache_dir,
        )

    async def scale(self, readers: int | None = None, workers: int | None = None) -> dict:
        async with self._scale_lock:
            if readers is not None:
                await self._scale_readers(readers)
            if workers is not None:
                await self._scale_workers(workers)
            self._write_state()
            return self.state()

    async def _scale_readers(self, wanted: int) -> None:
        if wanted < 1:
            raise ValueError("readers must be at least 1")
        if wanted > len(self.readers):
            new = [self._new_child("reader") for _ in range(wanted - len(self.readers))]
            await asyncio.gather(*(self._spawn(c) for c in new))
            await asyncio.gather(*(self._wait_ready(c) for c in new))
            self.readers.extend(new)
            await self._reload_nginx()
        elif wanted < len(self.readers):
            leaving = self.readers[wanted:]
            self.readers = self.readers[:wanted]
            # nginx stops routing to them first; its old workers finish what they forwarded there and exit.
            await self._reload_nginx()
            await asyncio.gather(*(self._retire(c) for c in leaving))

    async def _reload_nginx(self) -> None:
        old_workers = await asyncio.to_thread(self.nginx.reload, self._nginx_config())
        # The reload is done when the old workers are gone: nothing can reach a removed reader after that.
        await _wait_for(lambda: not (old_workers & self.nginx.worker_pids()), 60, "old nginx workers to finish")

    async def _scale_workers(self, wanted: int) -> None:
        if wanted < 0:
            raise ValueError("workers must be at least 0")
        while len(self.workers) < wanted:
            worker = self._new_child("worker")
            await self._spawn(worker)
            self.workers.append(worker)
        if wanted < len(self.workers):
            leaving = self.workers[wanted:]
            self.workers = self.workers[:wanted]
            await asyncio.gather(*(self._retire(c) for c in leaving))

    def state(self) -> dict:
        return {
            "pid": os.getpid(),
            "url": f"http://{self.settings.host}:{self.settings.port}",
            "readers": [{"name": c.name, "pid": c.process.pid, "address": c.address, "restarts": c.restarts}
                        for c in self.readers],
            "writer": {"name": self.writer.name, "pid": self.writer.process.pid, "address": self.writer.address},
            "workers": [{"name": c.name, "pid": c.process.pid, "restarts": c.restarts} for c in self.workers],
            "nginx_pid": self.nginx.process.pid if self.nginx and self.nginx.process else None,
            "micro_cache_seconds": self.micro_cache_seconds,
        }

    def _write_state(self) -> None:
        path = self.run_dir / "stack.json"
        path.with_suffix(".tmp").write_text(json.dumps(self.state(), indent=2))
        path.with_suffix(".tmp").replace(path)

    async def _handle_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One JSON request per connection: {"readers": N, "workers": M} or {} for the state."""
        try:
            request = json.loads(await reader.readline() or b"{}")
            if request.get("readers") is None and request.get("workers") is None:
                answer = {"ok": True, "state": self.state()}
            else:
                answer = {"ok": True, "state": await self.scale(request.get("readers"), request.get("workers"))}
        except (ValueError, TypeError, RuntimeError, TimeoutError) as exc:
            answer = {"ok": False, "error": str(exc)}
        writer.write(json.dumps(answer).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


async def _control_alive(path: Path) -> bool:
    try:
        _, writer = await asyncio.open_unix_connection(str(path))
    except OSError:
        return False
    writer.close()
    return True


async def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)


def _mark_metrics_dead(metrics_dir: Path, pid: int) -> None:
    """Drop a dead process's live gauges from the shared metrics folder (its counters stay summed)."""
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid, str(metrics_dir))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings = Settings.from_env()
    parser.add_argument("--readers", type=int, default=settings.readers, help="reader processes (default %(default)s)")
    parser.add_argument("--workers", type=int, default=settings.workers, help="worker processes (default %(default)s)")
    parser.add_argument("--micro-cache", type=int, default=settings.micro_cache_seconds, metavar="SECONDS",
                        help="let nginx reuse a GET answer for SECONDS (0 = off, the default); "
                             "writes can then look up to that much staler")
    parser.add_argument("--port", type=int, default=settings.port, help="port nginx listens on (default %(default)s)")
    parser.add_argument("--nginx-workers", type=int, default=1, help="nginx worker processes (default %(default)s)")
    parser.add_argument("--demo-scale", default=DEMO_SCALE, choices=("tiny", "small", "full"),
                        help="data set generated and loaded on first start, when the database has no products "
                             "(default %(default)s)")
    parser.add_argument("--no-demo", action="store_true", help="do not generate and load the demo data set")


async def serve(stack: Stack) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        # Ctrl-C must work during start-up too (the first demo load takes a while).
        starting = asyncio.create_task(stack.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            print("stopping before start-up finished …", flush=True)
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return
        stopping.cancel()
        starting.result()
        base = f"http://{stack.settings.host}:{stack.settings.port}"
        print(f"Atelier is up: {len(stack.readers)} readers, 1 writer, {len(stack.workers)} workers behind nginx at {base}")
        example = await stack.example_product()
        for path in EXAMPLE_PATHS:
            print(f"  {base}{path.format(id=example)}")
        print(f"logs in {stack.run_dir / 'logs'}; `atelier scale readers=N workers=M` to resize; Ctrl-C to stop", flush=True)
        await stop.wait()
        print("stopping …", flush=True)
    finally:
        await stack.stop()


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env().replace(port=args.port)
    stack = Stack(settings, readers=args.readers, workers=args.workers, micro_cache_seconds=args.micro_cache,
                  demo_scale=None if args.no_demo else args.demo_scale, nginx_workers=args.nginx_workers)
    try:
        import uvloop

        uvloop.run(serve(stack))
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"atelier up: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:  # An embedded server refused to start.
        print(f"atelier up: {' '.join(map(str, exc.cmd[:1]))} failed: {(exc.stderr or '').strip()}", file=sys.stderr)
        return 1
    return 0

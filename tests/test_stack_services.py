"""`atelier up` with no URLs configured: it starts the embedded PostgreSQL and both Redis servers
(durable and cache) and stops them when it stops — but servers it found already running under the data folder are left running.
"""

from __future__ import annotations

import socket

import pytest

from infra.embedded import free_port
from infra.services import embedded_cache, embedded_postgres, embedded_redis, ensure_services
from infra.settings import Settings
from infra.stack_process import start_stack


@pytest.fixture
def own_servers_settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, port=free_port(), embedded_pg_port=free_port(),
                    embedded_redis_port=free_port(), embedded_cache_port=free_port(), log_json=False)


def running(settings: Settings) -> dict[str, bool]:
    return {"postgres": embedded_postgres(settings).running_pid() is not None,
            "redis": embedded_redis(settings).running_pid() is not None,
            "cache": embedded_cache(settings).running_pid() is not None}


def test_up_stops_the_embedded_servers_it_started(own_servers_settings):
    stack = start_stack(own_servers_settings, "--no-demo", "--readers", "1", "--workers", "1", timeout=300)
    assert running(own_servers_settings) == {"postgres": True, "redis": True, "cache": True}
    assert stack.stop() == 0, "\n".join(stack.output)
    assert running(own_servers_settings) == {"postgres": False, "redis": False, "cache": False}


def test_up_leaves_running_the_embedded_servers_it_reused(own_servers_settings):
    services = ensure_services(own_servers_settings, profile="test")
    try:
        stack = start_stack(own_servers_settings, "--no-demo", "--readers", "1", "--workers", "0", timeout=300)
        assert stack.stop() == 0, "\n".join(stack.output)
        assert running(own_servers_settings) == {"postgres": True, "redis": True, "cache": True}
    finally:
        services.stop_started()
    assert running(own_servers_settings) == {"postgres": False, "redis": False, "cache": False}


def test_up_refuses_a_port_already_in_use(own_servers_settings):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", own_servers_settings.port))
        taken.listen()
        with pytest.raises(RuntimeError, match="already in use"):
            start_stack(own_servers_settings, "--no-demo", timeout=120)
    assert running(own_servers_settings) == {"postgres": False, "redis": False, "cache": False}  # Nothing was left behind.

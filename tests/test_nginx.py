"""The nginx config on its own: the real binary, the real template, and no upstream listening.

What nginx itself must answer — JSON error pages, the body limit, request ids, the static
OpenAPI document — is proved here without any app; routing and retries across real readers and
the writer are in tests/test_stack.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import aiohttp
import pytest
from aiohttp import web

from infra.embedded import free_port, port_open, wait_until
from infra.nginx import STATIC_DIR, Nginx, NginxConfig


def config(tmp_path, port: int, micro_cache: int = 0) -> NginxConfig:
    sockets = tmp_path / "sockets"
    sockets.mkdir(exist_ok=True)
    return NginxConfig(
        run_dir=tmp_path / "nginx",
        listen=f"127.0.0.1:{port}",
        readers=(str(sockets / "reader-1.sock"), str(sockets / "reader-2.sock")),
        writer=str(sockets / "writer-1.sock"),
        micro_cache_seconds=micro_cache,
    )


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    port = free_port()
    server = Nginx(config(tmp_path_factory.mktemp("nginx"), port))
    server.start()
    wait_until(lambda: port_open(port), 10, "nginx to listen")
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.mark.parametrize("micro_cache", [0, 3])
def test_rendered_config_passes_nginx_t(tmp_path, micro_cache):
    server = Nginx(config(tmp_path, free_port(), micro_cache))
    server.write_config(server.config)  # Runs `nginx -t` and raises on any error.
    text = server.conf_path.read_text()
    assert "{{" not in text
    assert ("proxy_cache atelier_micro;" in text) == bool(micro_cache)
    assert "proxy_cache_lock on;" in text if micro_cache else "proxy_cache_lock" not in text.split("upstream")[-1]


def test_a_broken_config_is_refused_before_nginx_sees_it(tmp_path):
    server = Nginx(config(tmp_path, free_port()).__class__(
        run_dir=tmp_path / "nginx", listen="127.0.0.1:not-a-port", readers=("/x.sock",), writer="/y.sock"))
    with pytest.raises(RuntimeError, match="nginx rejected"):
        server.write_config(server.config)
    assert not server.conf_path.exists()


async def test_reads_with_no_reader_up_answer_json_503_with_retry_after(nginx):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{nginx}/products/1") as response:
            assert response.status == 503
            assert response.headers["Content-Type"] == "application/json; charset=utf-8"
            assert response.headers["Retry-After"] == "1"
            assert await response.json() == {"error": "service unavailable, retry shortly", "field": None}


async def test_writes_with_no_writer_up_answer_json_503(nginx):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{nginx}/reviews", json={"product_id": 1}) as response:
            assert response.status == 503
            assert (await response.json())["field"] is None


async def test_a_body_over_64_kib_is_refused_with_json_413(nginx):
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{nginx}/reviews", data=b"x" * (64 * 1024 + 1),
                                headers={"Content-Type": "application/json"}) as response:
            assert response.status == 413
            assert response.headers["Content-Type"] == "application/json; charset=utf-8"
            assert await response.json() == {"error": "request body larger than 64 KiB", "field": None}


async def test_request_id_is_minted_or_kept_and_returned(nginx):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{nginx}/products/1") as response:
            minted = response.headers["X-Request-Id"]
        async with session.get(f"{nginx}/products/1") as response:
            assert response.headers["X-Request-Id"] != minted
        async with session.get(f"{nginx}/products/1", headers={"X-Request-Id": "shop-42.abc"}) as response:
            assert response.headers["X-Request-Id"] == "shop-42.abc"
        # Anything that could forge a log line is replaced, not passed on.
        async with session.get(f"{nginx}/products/1", headers={"X-Request-Id": "a b\"c"}) as response:
            assert response.headers["X-Request-Id"] != 'a b"c'
    assert len(minted) == 32


async def test_openapi_document_and_docs_page_are_served_statically(nginx):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{nginx}/openapi.json") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json; charset=utf-8"
            assert await response.json() == json.loads((STATIC_DIR / "openapi.json").read_text())
        async with session.get(f"{nginx}/docs") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
            assert 'fetch("/openapi.json")' in await response.text()


def test_nginx_binary_runs(tmp_path):
    server = Nginx(config(tmp_path, free_port()))
    assert subprocess.run([server.binary, "-v"], capture_output=True).returncode == 0


async def serve_status(path: str, status: int) -> web.AppRunner:
    """An upstream that answers every request with `status`, as a reader that cannot serve answers 503."""

    async def handler(request):
        return web.Response(status=status, body=b'{"error":"not ready","field":null}', content_type="application/json",
                            headers={"Retry-After": "7"} if status == 503 else None)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, path).start()
    return runner


async def test_a_reader_answering_503_is_skipped_and_only_an_all_503_answer_reaches_the_client(tmp_path):
    port = free_port()
    cfg = config(tmp_path, port)
    server = Nginx(cfg)
    server.start()
    runners = [await serve_status(cfg.readers[0], 503), await serve_status(cfg.readers[1], 200)]
    try:
        wait_until(lambda: port_open(port), 10, "nginx to listen")
        async with aiohttp.ClientSession() as session:
            for _ in range(20):
                async with session.get(f"http://127.0.0.1:{port}/products/1") as response:
                    assert response.status == 200
            await runners[1].cleanup()
            runners[1] = await serve_status(cfg.readers[1], 503)
            async with session.get(f"http://127.0.0.1:{port}/products/2") as response:
                # Every reader said 503: the app's answer passes on (or, once nginx marked both failed, its own JSON 503).
                assert response.status == 503
                assert response.headers["Retry-After"] in ("7", "1")
                assert (await response.json())["field"] is None
    finally:
        for runner in runners:
            await runner.cleanup()
        server.stop()


def test_atelier_nginx_runs_the_same_config_for_upstreams_reached_by_address(tmp_path):
    """`atelier nginx` (the containers' entry point) becomes nginx itself, in front of the given upstreams."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "nginx", "--listen", f"127.0.0.1:{port}", "--reader", "127.0.0.1:1",
         "--reader", "127.0.0.1:2", "--writer", "127.0.0.1:3", "--micro-cache", "1", "--run-dir", str(tmp_path)],
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: port_open(port), 10, "atelier nginx to listen")
        error = None

        def answered() -> bool:
            # The port can open before nginx serves on it (its config check binds it briefly), so a
            # reset connection means "not yet", not an answer.
            nonlocal error
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/products/1", timeout=10)
            except urllib.error.HTTPError as exc:
                error = exc
                return True
            except (ConnectionError, urllib.error.URLError):
                return False
            raise AssertionError("a request with no upstream up was answered with a success")

        wait_until(answered, 10, "atelier nginx to answer")
        assert error.code == 503
        assert json.loads(error.read()) == {"error": "service unavailable, retry shortly", "field": None}
        text = (tmp_path / "nginx.conf").read_text()
        assert "server 127.0.0.1:1 " in text and "server 127.0.0.1:2 " in text and "proxy_cache atelier_micro;" in text
    finally:
        process.terminate()
        process.wait(10)

"""The reader's lean Redis client against a real Redis: pipelining, errors, fail-fast when down."""

from __future__ import annotations

import asyncio
import time

import hiredis
import pytest

from infra.embedded import free_port
from infra.lean_redis import LeanRedis, pack


def test_pack_is_resp():
    assert pack((b"SET", "k", 12)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"


async def test_concurrent_commands_share_one_connection_in_order(settings):
    client = LeanRedis(settings.redis_url)
    try:
        await client.execute_command("DEL", "lean:list")
        replies = await asyncio.gather(*(client.execute_command("RPUSH", "lean:list", i) for i in range(200)))
        assert replies == list(range(1, 201))
        assert await client.execute_command("LRANGE", "lean:list", 0, 2) == [b"0", b"1", b"2"]
        assert await client.execute_command("HGETALL", "lean:missing") == []
        assert await client.execute_command("GET", "lean:missing") is None
    finally:
        await client.close()


async def test_error_replies_raise_and_the_connection_stays_usable(settings):
    client = LeanRedis(settings.redis_url)
    try:
        await client.execute_command("SET", "lean:str", "x")
        with pytest.raises(hiredis.ReplyError):
            await client.execute_command("HGETALL", "lean:str")
        assert await client.execute_command("GET", "lean:str") == b"x"
    finally:
        await client.close()


async def test_a_server_that_is_down_fails_fast():
    client = LeanRedis(f"redis://127.0.0.1:{free_port()}/0", retry_after=30)
    try:
        with pytest.raises(ConnectionError):
            await client.execute_command("PING")
        started = time.perf_counter()
        with pytest.raises(ConnectionError, match="recent failure"):
            await client.execute_command("PING")
        assert time.perf_counter() - started < 0.05
    finally:
        await client.close()


async def test_a_server_that_never_answers_is_abandoned_after_the_timeout():
    async def silent(reader, writer):
        await reader.read(1 << 16)  # take the command, never answer
        await asyncio.Event().wait()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = LeanRedis(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    try:
        started = time.perf_counter()
        with pytest.raises(ConnectionError):
            await client.execute_command("PING")
        assert time.perf_counter() - started < 2
    finally:
        await client.close()
        server.close()

"""Staleness under load: ack → the first reader GET that shows the write, with the open-loop generator.

Writes go to the writer at a fixed rate: helpful votes, and every tenth write a new review with a
unique summary that is tracked. From its 201 on, a tracked review's
`/reviews?product_id=…&sort=newest&count=20` is polled through the reader every `poll` seconds
until the summary shows (20, not 1: a later tracked review of the same product must not hide it);
its staleness is the time from the 201 to the answer that showed it. Product-page GETs go to the
reader at their own fixed rate meanwhile, on the first `hot` products of the targets (a running
shop's traffic concentrates on part of the catalogue).

The same load runs for `warmup` seconds first, untracked (new reviews without polling): the
first change to each page after a PostgreSQL checkpoint logs the whole page, so the first seconds
after one measure that burst, not the steady state the figures describe.
"""

from __future__ import annotations

import asyncio
import itertools

from loadtest.openloop import Call, OpenLoop, Tally, percentiles, request_bytes
from loadtest.write_mix import WriteMix


class Staleness:
    def __init__(self, writer: OpenLoop, reader: OpenLoop, mix: WriteMix, poll: float = 0.01,
                 give_up: float = 30.0, hot: int = 1000):
        self.writer, self.reader, self.mix = writer, reader, mix
        self.poll, self.give_up = poll, give_up
        self.reader_host = f"{reader.host}:{reader.port}"
        self.hot = [p["id"] for p in mix.targets["products"][:hot]]
        self.lags_ms: list[float] = []
        self.never_visible = 0
        self.write_errors = 0
        self._pending = 0
        self._settled = asyncio.Event()
        self._serial = itertools.count()
        self._tracking = False

    def write(self) -> Call:
        serial = next(self._serial)
        if serial % 10:
            return self._vote()
        return self._tracked(serial) if self._tracking else self.mix.review(name="warmup_review")[0]

    def _vote(self) -> Call:
        call = self.mix.vote()
        call.on_answer = self._vote_answered
        return call

    def _vote_answered(self, status: int, body: bytes, now: float) -> None:
        if status != 204:
            self.write_errors += 1

    def _tracked(self, serial: int) -> Call:
        summary = f"stale-{serial}-{self.mix.random.getrandbits(40):010x}"
        call, product_id = self.mix.review(summary=summary, name="tracked_post")
        call.on_answer = lambda status, body, acked: self._acked(status, acked, product_id, summary.encode())
        self._pending += 1
        self._settled.clear()
        return call

    def _acked(self, status: int, acked: float, product_id: int, marker: bytes) -> None:
        if status != 201:
            self.write_errors += 1
            self._settle()
            return
        loop = asyncio.get_running_loop()
        raw = request_bytes("GET", self.reader_host, f"/reviews?product_id={product_id}&sort=newest&count=20")

        def poll() -> None:
            self.reader.submit(Call(raw, "tracked_get", on_answer=check), loop.time())

        def check(status: int, body: bytes, now: float) -> None:
            if status == 200 and marker in body:
                self.lags_ms.append((now - acked) * 1000)
                self._settle()
            elif now - acked > self.give_up:
                self.never_visible += 1
                self._settle()
            else:
                loop.call_later(self.poll, poll)

        poll()

    def _settle(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._settled.set()

    def read(self) -> Call:
        product_id = self.mix.random.choice(self.hot)
        roll = self.mix.random.random()
        if roll < 0.4:
            target = f"/reviews/?product_id={product_id}&count=1000&sort=relevant"
        elif roll < 0.7:
            target = f"/reviews/meta?product_id={product_id}"
        else:
            target = f"/qa/questions?product_id={product_id}&count=100"
        return Call(request_bytes("GET", self.reader_host, target), "read")

    async def run(self, write_rate: float, read_rate: float, seconds: float, warmup: float = 0) -> dict:
        if warmup:
            await asyncio.gather(self.writer.run(write_rate, warmup, self.write),
                                 self.reader.run(read_rate, warmup, self.read))
            self.write_errors = 0
            self.writer.tally, self.reader.tally = Tally(), Tally()
        self._tracking = True
        await asyncio.gather(self.writer.run(write_rate, seconds, self.write),
                             self.reader.run(read_rate, seconds, self.read))
        if self._pending:
            await asyncio.wait_for(self._settled.wait(), self.give_up + 10)
        await self.reader.drain()
        lags = sorted(self.lags_ms)
        return {"tracked": len(lags) + self.never_visible, **percentiles(lags),
                "write_errors": self.write_errors, "never_visible": self.never_visible,
                "reads": self.reader.tally.figures(("read",), ok=(200,), seconds=seconds)}

"""Dynamic batching: one worker per model merges the requests waiting into one batched search.

Requests join a bounded queue. The worker takes the oldest, then waits up to `max_wait_ms` (from that
request's arrival) for others with the same search settings, up to `batch_tokens` source tokens x beam,
decodes them all in one `Translator.translate_batch` call in a thread (the event loop never blocks on the
model), and hands each request its own lines. Requests with other settings wait for the next round, in
order.

Right after a search the worker waits for the clients it just answered: those that send their next
request at once (a closed loop, like the load benchmark's) would otherwise miss the next batch, and the
requests split into two half-size batches that alternate, each waiting for the other's search. So when a
search ends, the worker expects the requests then waiting plus as many as the search answered, and waits
until that many have arrived, the budget is full, or a tenth of that search's time has passed (at least
`max_wait_ms`), whichever comes first.

With fp32 a sentence's translation does not depend on the batch it was decoded in: the search masks
padding (tested through the server in tests/test_serve.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from seq2seq.search import SearchOptions
from seq2seq.serve.errors import HTTPError
from seq2seq.serve.metrics import Metrics
from seq2seq.serve.options import ServeOptions
from seq2seq.translate import Translation, Translator

T = TypeVar("T")


@dataclass
class Job:
    lines: list[str]
    opts: SearchOptions
    tokens: int
    """Source tokens (EOS included) x beam: what this request costs in a batch's budget."""
    future: asyncio.Future[list[Translation]]
    enqueued: float = field(default_factory=time.monotonic)
    started: float = 0.0
    abandoned: bool = False
    """The request timed out or its client left: skip it."""


@dataclass(frozen=True)
class Result:
    translations: list[Translation]
    queue_ms: float
    decode_ms: float


class Batcher:
    """The queue and worker of one model. `start()` inside a running event loop, `stop()` at shutdown."""

    def __init__(self, name: str, translator: Translator, opts: ServeOptions, metrics: Metrics) -> None:
        self.name, self.translator, self.opts, self.metrics = name, translator, opts, metrics
        self.queue: deque[Job] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.model_lock = asyncio.Lock()
        """Held while the model runs (a batched search, an inspect trace): one use at a time."""
        self._free_since = 0.0
        """When the last search ended (monotonic seconds)."""
        self._return_s = 0.0
        """How long, after that, to wait for the requests it answered to come back."""
        self._expected = 0
        """Requests waiting when the last search ended plus the requests it answered."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def depth(self) -> int:
        return len(self.queue)

    async def submit(self, lines: list[str], opts: SearchOptions) -> Result:
        """Queue `lines`, wait for their translations (503 if the queue is full, 504 after the timeout)."""
        if len(self.queue) >= self.opts.max_queue:
            raise HTTPError(
                503,
                f"model {self.name!r}: queue full ({self.opts.max_queue} requests waiting, max_queue); retry",
                "max_queue",
                {"Retry-After": "1"},
            )
        if self._task is None or self._task.done():
            raise HTTPError(503, f"model {self.name!r}: worker not running", headers={"Retry-After": "1"})
        ids = self.translator.tokenizer.encode_src(lines)
        tokens = sum(min(len(i), self.translator.cfg.decode.max_src_len) + 1 for i in ids) * opts.beam
        job = Job(lines, opts, tokens, asyncio.get_running_loop().create_future())
        self.queue.append(job)
        self._arrived.set()
        try:
            translations = await asyncio.wait_for(asyncio.shield(job.future), self.opts.request_timeout_s)
        except TimeoutError:
            self._abandon(job)
            raise HTTPError(
                504,
                f"not translated within request_timeout_s ({self.opts.request_timeout_s:g} s)",
                "request_timeout_s",
            ) from None
        except asyncio.CancelledError:  # the client went away
            self._abandon(job)
            raise
        done = time.monotonic()
        return Result(translations, 1000 * (job.started - job.enqueued), 1000 * (done - job.started))

    async def exclusive(self, fn: Callable[[], T]) -> T:
        """`fn()` in a thread while holding `model_lock`, so it never runs beside a batched search."""
        async with self.model_lock:
            return await asyncio.to_thread(fn)

    def _abandon(self, job: Job) -> None:
        job.abandoned = True
        with contextlib.suppress(ValueError):  # already taken by the worker
            self.queue.remove(job)

    async def _run(self) -> None:
        while True:
            while not self.queue:
                self._arrived.clear()
                await self._arrived.wait()
            jobs = await self._collect()
            if jobs:
                await self._decode(jobs)

    async def _collect(self) -> list[Job]:
        """The oldest live job and those with its settings that fit the budget, once the budget is full
        or the oldest has waited `max_wait_ms`."""
        while self.queue and self.queue[0].abandoned:
            self.queue.popleft()
        if not self.queue:
            return []
        first = self.queue[0]
        if first.enqueued < self._free_since + self._return_s:  # arrived while the model was busy
            deadline, expected = self._free_since + self._return_s, self._expected
        else:  # the model was idle: wait max_wait_ms for others
            deadline, expected = first.enqueued + self.opts.max_wait_ms / 1000, self.opts.max_queue + 1
        while (wait := deadline - time.monotonic()) > 0:
            requests, tokens = self._queued(first.opts)
            if requests >= expected or tokens >= self.opts.batch_tokens:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                break
        taken: list[Job] = []
        tokens = 0
        kept: deque[Job] = deque()
        for job in self.queue:
            if job.abandoned:
                continue
            if job.opts == first.opts and (not taken or tokens + job.tokens <= self.opts.batch_tokens):
                taken.append(job)
                tokens += job.tokens
            else:
                kept.append(job)
        self.queue = kept
        return taken

    def _queued(self, opts: SearchOptions) -> tuple[int, int]:
        """(requests, tokens) waiting with these search settings."""
        live = [j.tokens for j in self.queue if j.opts == opts and not j.abandoned]
        return len(live), sum(live)

    async def _decode(self, jobs: list[Job]) -> None:
        lines = [line for job in jobs for line in job.lines]
        start = time.monotonic()
        for job in jobs:
            job.started = start
        stats = self.translator.stats
        before = (stats.src_tokens, stats.tgt_tokens)
        try:
            async with self.model_lock:
                translations = await asyncio.to_thread(self.translator.translate_batch, lines, jobs[0].opts)
        except Exception as exc:  # a model failure answers its requests (500) instead of killing the worker
            for job in jobs:
                if not job.future.done() and not job.abandoned:
                    job.future.set_exception(exc)
            return
        finally:
            self._free_since = time.monotonic()
            self._return_s = max(self.opts.max_wait_ms / 1000, (self._free_since - start) / 10)
            self._expected = sum(not j.abandoned for j in self.queue) + len(jobs)
        self.metrics.batch(
            self.name, len(jobs), len(lines), stats.src_tokens - before[0], stats.tgt_tokens - before[1]
        )
        offset = 0
        for job in jobs:
            if not job.future.done() and not job.abandoned:
                job.future.set_result(translations[offset : offset + len(job.lines)])
            offset += len(job.lines)

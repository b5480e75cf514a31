"""Dynamic batching: `decoders` workers per model merge the requests waiting into batched searches.

Requests join a bounded queue. A free worker takes the oldest, then waits up to `max_wait_ms` (from that
request's arrival) for others with the same search settings, up to `batch_tokens` source tokens x beam,
decodes them all in one `Translator.translate_batch` call in a thread of its own (the event loop never
blocks on the model), and hands each request its own lines. Requests with other settings wait for the
next round, in order.

Right after a search the worker waits for the clients it just answered: those that send their next
request at once (a closed loop, like the load benchmark's) would otherwise miss the next batch, and the
requests split into two half-size batches that alternate, each waiting for the other's search. So when a
search ends, the worker expects the requests then waiting plus as many as the search answered, and waits
until that many have arrived, the budget is full, or a tenth of that search's time has passed (at least
`max_wait_ms`), whichever comes first.

With several workers (`decoders`) a worker takes at most its share of the requests waiting or being
decoded, ceil((waiting + in flight) / decoders), so the workers decode batches of about equal size side by
side. On the CPU each worker's searches run in a process of its own with one torch thread
(`seq2seq.serve.workers`: threads of one process would wait for each other on the GIL); on a GPU they are
threads. A small batch's search is mostly short steps that one core runs about as fast as two,
so on a 2-core CPU two one-thread worker processes decode more than one two-thread worker from 8
concurrent clients on (README, `serve`).

With fp32 a sentence's translation does not depend on the batch it was decoded in: the search masks
padding (tested through the server in tests/test_serve.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from seq2seq.search import SearchOptions
from seq2seq.serve.errors import HTTPError
from seq2seq.serve.metrics import Metrics
from seq2seq.serve.options import ServeOptions
from seq2seq.serve.workers import DecoderProcesses
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


@dataclass
class Rejoin:
    """One worker's wait, after its search, for the clients it answered to send their next requests."""

    free_since: float = 0.0
    """When its last search ended (monotonic seconds)."""
    return_s: float = 0.0
    """How long, after that, to wait for them."""
    expected: int = 0
    """Requests waiting when that search ended plus the requests it answered."""


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
        self._tasks: list[asyncio.Task[None]] = []
        self.model_slots = asyncio.Semaphore(opts.decoders)
        """One per worker: a batched search or an inspect trace holds one while it runs."""
        on_cpu = translator.device.type == "cpu"
        self.processes: DecoderProcesses | None = None
        """On the CPU with several workers, the decoder processes (made by `start`; threads where the
        platform cannot fork)."""
        self._fork = opts.decoders > 1 and on_cpu and "fork" in multiprocessing.get_all_start_methods()
        self._executor: ThreadPoolExecutor | None = None
        """Runs the searches (one worker, or several on a GPU) or waits for the decoder processes."""
        self._in_flight = 0
        """Requests being decoded, all workers together."""

    def start(self) -> None:
        if self._fork and self.processes is None:
            self.processes = DecoderProcesses(self.translator, self.opts.decoders)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._run(Rejoin()), name=f"batcher-{self.name}-{i}")
            for i in range(self.opts.decoders)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self.processes is not None:
            self.processes.close()
            self.processes = None

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
        if not self._tasks or all(task.done() for task in self._tasks):
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

    def _threads(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.opts.decoders, f"decode-{self.name}")
        return self._executor

    async def exclusive(self, fn: Callable[[], T]) -> T:
        """`fn()` in a worker's thread in place of a batched search: holding one of `model_slots` when
        the searches run in decoder processes, all of them when they share this process's model."""
        slots = 1 if self.processes is not None else self.opts.decoders
        held = 0
        try:
            for _ in range(slots):
                await self.model_slots.acquire()
                held += 1
            return await asyncio.get_running_loop().run_in_executor(self._threads(), fn)
        finally:
            for _ in range(held):
                self.model_slots.release()

    def _abandon(self, job: Job) -> None:
        job.abandoned = True
        with contextlib.suppress(ValueError):  # already taken by the worker
            self.queue.remove(job)

    async def _run(self, rejoin: Rejoin) -> None:
        while True:
            while not self.queue:
                self._arrived.clear()
                await self._arrived.wait()
            jobs = await self._collect(rejoin)
            if jobs:
                await self._decode(jobs, rejoin)

    async def _collect(self, rejoin: Rejoin) -> list[Job]:
        """The oldest live job and those with its settings that fit the budget and this worker's share,
        once the budget is full or the oldest has waited `max_wait_ms`."""
        while self.queue and self.queue[0].abandoned:
            self.queue.popleft()
        if not self.queue:
            return []
        first = self.queue[0]
        if first.enqueued < rejoin.free_since + rejoin.return_s:  # arrived while this worker was busy
            deadline, expected = rejoin.free_since + rejoin.return_s, rejoin.expected
        else:  # the worker was idle: wait max_wait_ms for others
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
        live = sum(not j.abandoned for j in self.queue)
        share = math.ceil((live + self._in_flight) / self.opts.decoders)
        taken: list[Job] = []
        tokens = 0
        kept: deque[Job] = deque()
        for job in self.queue:
            if job.abandoned:
                continue
            fits = not taken or (tokens + job.tokens <= self.opts.batch_tokens and len(taken) < share)
            if job.opts == first.opts and fits:
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

    async def _decode(self, jobs: list[Job], rejoin: Rejoin) -> None:
        lines = [line for job in jobs for line in job.lines]
        start = time.monotonic()
        for job in jobs:
            job.started = start
        self._in_flight += len(jobs)
        try:
            async with self.model_slots:
                decode = (
                    self.translator.translate_batch
                    if self.processes is None
                    else self.processes.translate_batch
                )
                translations = await asyncio.get_running_loop().run_in_executor(
                    self._threads(), decode, lines, jobs[0].opts
                )
        except Exception as exc:  # a model failure answers its requests (500) instead of killing the worker
            for job in jobs:
                if not job.future.done() and not job.abandoned:
                    job.future.set_exception(exc)
            return
        finally:
            self._in_flight -= len(jobs)
            rejoin.free_since = time.monotonic()
            rejoin.return_s = max(self.opts.max_wait_ms / 1000, (rejoin.free_since - start) / 10)
            rejoin.expected = sum(not j.abandoned for j in self.queue) + len(jobs)
        src_tokens = sum(len(t.source_tokens) for t in translations if t.candidates)
        tgt_tokens = sum(len(t.candidates[0].tokens) for t in translations if t.candidates)
        self.metrics.batch(self.name, len(jobs), len(lines), src_tokens, tgt_tokens)
        offset = 0
        for job in jobs:
            if not job.future.done() and not job.abandoned:
                job.future.set_result(translations[offset : offset + len(job.lines)])
            offset += len(job.lines)

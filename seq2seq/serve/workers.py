"""Decoder processes: batched searches side by side on the CPU, each in a process of its own.

Threads of one process decode side by side only as far as the GIL lets them: between its torch ops, a
search runs Python (the beam's bookkeeping, tokenization), and two searches wait for each other there.
So on the CPU, `serve --decoders N` forks N processes once the models are loaded. Each shares the
parent's weights copy-on-write, decodes with one torch thread, and answers one batch at a time over a
pipe; the parent's event loop and batcher stay as they are.

A process that dies (killed, out of memory) fails the batch it held with one line, and a new one is
forked in its place. The processes are daemonic and read until their pipe closes, so they end with the
server, even when it is killed.

One thread each, always: torch's OpenMP runtime (GNU libgomp) cannot start a team of threads in a process
forked after its parent ran one (the child hangs), and the parent has, loading the model. A child that
never asks for more than one thread never starts a team, as torch's DataLoader workers don't. One thread a
search is also what a server's small batches want (README, `serve`); `--decoders 0` runs one process per
core.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from seq2seq.search import SearchOptions
from seq2seq.search_processes import end_processes, start_forked_child
from seq2seq.translate import Translation, Translator


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection


class DecoderProcesses:
    """`count` forked decoder processes of `translator`; `translate_batch` blocks (call it from a thread)
    until one is free and has answered."""

    def __init__(self, translator: Translator, count: int) -> None:
        self.translator = translator
        self._context = multiprocessing.get_context("fork")
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._workers = [self._fork() for _ in range(count)]
        for worker in self._workers:
            self._idle.put(worker)

    def _fork(self) -> _Worker:
        parent, child = self._context.Pipe()
        inherited = [parent, *(w.conn for w in getattr(self, "_workers", []))]
        process = self._context.Process(
            target=_decode_forever, args=(child, inherited, self.translator), daemon=True
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def translate_batch(self, lines: list[str], opts: SearchOptions) -> list[Translation]:
        worker = self._idle.get()
        try:
            worker.conn.send_bytes(pickle.dumps((lines, opts)))
            status, payload = pickle.loads(worker.conn.recv_bytes())
        except (EOFError, OSError):
            code = _reap(worker)
            worker = self._replace(worker)
            raise RuntimeError(
                f"a decoder process ended (exit code {code}; out of memory?) while translating "
                f"{len(lines)} line(s); a new one took its place"
            ) from None
        finally:
            self._idle.put(worker)
        if status == "error":
            raise RuntimeError(payload)
        return payload  # type: ignore[no-any-return]

    def _replace(self, dead: _Worker) -> _Worker:
        worker = self._fork()
        self._workers[self._workers.index(dead)] = worker
        return worker

    def pids(self) -> list[int | None]:
        return [w.process.pid for w in self._workers]

    def close(self) -> None:
        """Close the pipes (each process then ends) and wait a moment for the processes."""
        end_processes([(w.process, w.conn) for w in self._workers])


def _reap(worker: _Worker) -> int | None:
    worker.conn.close()
    worker.process.join(timeout=5)
    return worker.process.exitcode


def _decode_forever(conn: Connection, inherited: list[Connection], translator: Translator) -> None:
    """A decoder process: translate each batch the pipe brings until it closes (`inherited`: the
    server's pipe ends the fork copied, see `start_forked_child`)."""
    start_forked_child(inherited)
    while True:
        try:
            lines, opts = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        reply: tuple[str, Any]
        try:
            reply = ("ok", translator.translate_batch(lines, opts))
        except Exception as exc:  # the parent answers the batch's requests with it
            reply = ("error", f"{type(exc).__name__}: {exc}")
        conn.send_bytes(pickle.dumps(reply))

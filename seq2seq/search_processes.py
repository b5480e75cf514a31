"""Batched searches side by side in forked processes of one torch thread each (`translate --decoders`).

On the CPU, one search with both of torch's threads gets less out of two cores than two searches of
one thread each: a decoding step is many small ops (a [40, 256] x [256, ~1,000] output matmul per
column group, the cell's elementwise work, the beam's bookkeeping), and each op that torch splits over
its threads waits for the slower one, while between ops one thread runs Python and the other idles. On
the Multi30k test set (1,000 sentences, beam 5, 2 cores) the two halves took 1.70 + 2.44 s on one
thread each against 2.8 s for the whole on two threads; two processes took 2.37 s against 3.14 s for one
search of two threads (medians of 10 alternated rounds; README, `translate`).

`SearchProcesses` forks `count` processes once the model is loaded; each shares the parent's weights
copy-on-write and searches one batch at a time, of source ids sent over a pipe, returning hypotheses
with vocabulary ids. Batches go out longest first and to whichever process is free, so the processes
end together. Tokenization, detokenization and the output order stay in the parent.

One thread each, always: torch's OpenMP runtime (GNU libgomp) cannot start a team of threads in a process
forked after its parent ran one (the child hangs), and the parent has, loading the model. A child that
never asks for more than one thread never starts a team. A process that dies (killed, out of memory)
loses nothing: its batch is searched again in the parent and a new process is forked in its place.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import pickle
import signal
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np
import torch

from seq2seq.search import DecoderModel, Hypothesis, SearchOptions, search
from seq2seq.shortlist import Shortlist, restrict


@dataclass(frozen=True)
class SearchBatch:
    """One batch of a search: source ids [B, S] (EOS-terminated, PAD after) and lengths [B] (EOS included)."""

    ids: np.ndarray
    lengths: np.ndarray


def search_batch(
    model: DecoderModel,
    batch: SearchBatch,
    opts: SearchOptions,
    device: torch.device,
    shortlist: Shortlist | None = None,
) -> list[list[Hypothesis]]:
    """The hypotheses of each sentence of `batch`, with vocabulary ids. With a `shortlist` the search
    runs over the batch's shortlist columns (`seq2seq.shortlist.restrict`; `model` must then be a
    `Seq2Seq` or an `Ensemble`), and its tokens are mapped back to vocabulary ids here."""
    ids = torch.from_numpy(batch.ids).to(device)
    lengths = torch.from_numpy(batch.lengths).to(device)
    if shortlist is None:
        return search(model, ids, lengths, opts)
    restricted, columns = restrict(model, shortlist, ids, opts.beam)  # sampling never shortlists
    found = search(restricted, ids, lengths, opts)
    vocab, group = columns.vocab_ids.tolist(), columns.group.tolist()
    return [[_to_vocab(h, vocab[group[j]]) for h in row] for j, row in enumerate(found)]


def _to_vocab(hyp: Hypothesis, vocab_ids: list[int]) -> Hypothesis:
    """A hypothesis of a shortlisted search (tokens are columns) with vocabulary ids."""
    return dataclasses.replace(hyp, tokens=[vocab_ids[t] for t in hyp.tokens])


def fork_available() -> bool:
    """Whether search processes can be forked here: not on Windows (no fork), nor on macOS, where a
    forked child may crash in system libraries that started threads (Python's own default is spawn)."""
    return "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin"


def default_decoders(device: torch.device) -> int:
    """Searches side by side on `device`: one per CPU thread torch uses (one per core by default) on
    the CPU, one on a GPU (its kernels queue behind each other anyway)."""
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1


@dataclass
class _Process:
    process: BaseProcess
    conn: Connection


class SearchProcesses:
    """`count` forked search processes of one model (see the module's docstring); `run` blocks. After an
    error or an interruption in `run` they are closed (`count` is then 0)."""

    def __init__(self, model: DecoderModel, shortlist: Shortlist | None, count: int, bf16: bool) -> None:
        if count < 2:
            raise ValueError("search processes pay only from two on")
        self.model, self.shortlist, self.bf16 = model, shortlist, bf16
        self._context = multiprocessing.get_context("fork")
        self._processes: list[_Process] = []
        for _ in range(count):
            self._processes.append(self._fork())

    @property
    def count(self) -> int:
        return len(self._processes)

    def pids(self) -> list[int | None]:
        return [p.process.pid for p in self._processes]

    def _fork(self) -> _Process:
        parent, child = self._context.Pipe()
        inherited = [parent, *(p.conn for p in self._processes)]
        process = self._context.Process(
            target=_search_forever,
            args=(child, inherited, self.model, self.shortlist, self.bf16),
            daemon=True,
        )
        process.start()
        child.close()
        return _Process(process, parent)

    def run(
        self, batches: Sequence[SearchBatch], opts: SearchOptions, shortlisted: bool = True
    ) -> list[list[list[Hypothesis]]]:
        """Each batch's hypotheses, in the order of `batches`, searched over the model's shortlist (if it
        has one) unless not `shortlisted`. The longest batches go out first, each to the first process
        that is free."""
        results: list[list[list[Hypothesis]] | None] = [None] * len(batches)
        todo = sorted(range(len(batches)), key=lambda i: -batches[i].ids.size)
        busy: dict[Any, tuple[_Process, int]] = {}  # by connection

        def send(proc: _Process) -> None:
            if not todo:
                return
            i = todo.pop(0)
            message = pickle.dumps((batches[i], opts, shortlisted))
            try:
                proc.conn.send_bytes(message)
            except OSError:  # it died between batches: nothing lost, but say so
                code = self._replace(proc)
                _warn(f"a search process ended between batches (exit code {code}); a new one took its place")
                proc = self._processes[-1]
                proc.conn.send_bytes(message)
            busy[proc.conn] = (proc, i)

        try:
            for proc in list(self._processes):
                send(proc)
            while busy:
                for conn in wait(list(busy)):
                    proc, i = busy.pop(conn)
                    try:
                        status, payload = pickle.loads(proc.conn.recv_bytes())
                    except (EOFError, OSError):
                        results[i] = self._search_here(batches[i], opts, shortlisted, self._replace(proc))
                        send(self._processes[-1])
                        continue
                    if status == "error":
                        raise RuntimeError(f"a search process failed: {payload}")
                    results[i] = payload
                    send(proc)
        except BaseException:  # an error or Ctrl-C: the busy processes' answers would come to a later run
            self.close(stop=True)
            raise
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _replace(self, dead: _Process) -> int | None:
        """Fork a process in place of `dead` (last in the list); the dead one's exit code."""
        dead.conn.close()
        dead.process.join(timeout=5)
        self._processes.remove(dead)
        self._processes.append(self._fork())
        return dead.process.exitcode

    def _search_here(
        self, batch: SearchBatch, opts: SearchOptions, shortlisted: bool, code: int | None
    ) -> list[list[Hypothesis]]:
        _warn(
            f"a search process ended (exit code {code}; out of memory?): its batch of {len(batch.lengths)} "
            "sentence(s) was searched again in this process, and a new process took its place"
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            shortlist = self.shortlist if shortlisted else None
            return search_batch(self.model, batch, opts, torch.device("cpu"), shortlist)

    def close(self, stop: bool = False) -> None:
        """End the processes (see `end_processes`)."""
        end_processes([(p.process, p.conn) for p in self._processes], stop)
        self._processes = []


def end_processes(processes: Sequence[tuple[BaseProcess, Connection]], stop: bool = False) -> None:
    """Close each forked process's pipe (it then ends, after its batch if it has one; with `stop`, it is
    terminated at once) and wait a moment for it, killing one that lingers."""
    for process, conn in processes:
        if stop:
            process.terminate()
        conn.close()
    for process, _ in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join()


def start_forked_child(inherited: Sequence[Connection]) -> None:
    """What a forked decoding process does first (these search processes, and `serve`'s decoders).

    `inherited` are the parent's ends of this process's pipe and of the other processes' pipes, which
    the fork copied: closed at once, so that each pipe ends (and its process with it) when the parent's
    end does. The parent's event-loop signal plumbing is dropped; SIGTERM ends the process, SIGINT is
    ignored (Ctrl-C reaches the whole process group: the parent decides). One torch thread, before the
    first op (see the module's docstring)."""
    for other in inherited:
        other.close()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=4)


def _search_forever(
    conn: Connection,
    inherited: list[Connection],
    model: DecoderModel,
    shortlist: Shortlist | None,
    bf16: bool,
) -> None:
    """A search process: search each batch the pipe brings until it closes (`inherited`: see
    `start_forked_child`)."""
    start_forked_child(inherited)
    device = torch.device("cpu")
    while True:
        try:
            batch, opts, shortlisted = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        reply: tuple[str, Any]
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                reply = ("ok", search_batch(model, batch, opts, device, shortlist if shortlisted else None))
        except Exception as exc:  # the parent raises it
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send_bytes(pickle.dumps(reply))
        except OSError:  # the parent is gone (killed mid-batch): end quietly
            return

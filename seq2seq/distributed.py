"""Training past one process: torch.distributed plumbing for `seq2seq.train`.

`torchrun --nproc-per-node N -m seq2seq train RECIPE` (or `seq2seq train --nproc N`) starts N processes
with RANK, WORLD_SIZE and LOCAL_RANK in their environment; `Distributed.from_env()` joins them into one
process group (gloo on CPU, nccl on CUDA). Without those variables it is the single process, whose every
method is a no-op, so the training loop reads the same for one process and for many.

The rule for batches: the recipe's `train.batch_tokens` (times `train.accum_steps`) stays the *global*
budget of one update. With W processes the epoch's length-bucketed batches are built with a budget of
`batch_tokens // W` and dealt out round-robin: rank r takes batches r, r + W, r + 2W, ... and the last
`len % W` batches of an epoch (fewer than W) are left out so that every rank makes the same number of
updates. Gradients are normalised by the update's target tokens summed over all ranks, so W processes
compute what one process accumulating the same W shards computes.

Rank 0 alone validates, logs, writes metrics and checkpoints and holds the run lock; the others wait at
a barrier. Decisions that depend on time or signals (stop, validate, save) are taken together, so every
rank makes the same number of updates.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from seq2seq.errors import Seq2SeqError

T = TypeVar("T")


def is_main_process() -> bool:
    """False in the ranks of a torchrun job but the first (which alone prints and writes)."""
    return os.environ.get("RANK", "0") == "0"


class LostRank(Seq2SeqError):
    """Another process of the job stopped (killed, out of memory, machine lost) during a collective."""


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: `rank` of `world_size` (`local_rank` on its machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, device: torch.device) -> Distributed:
        """The job torchrun started this process in (joined here), or the single process."""
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return cls()
        env = cls(
            int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
        )
        if env.world_size > 1 and not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(minutes=60))
        return env

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process on a machine: cuda:LOCAL_RANK."""
        if self.active and device.type == "cuda":
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the updates run through: DistributedDataParallel across ranks, else `model`."""
        if not self.active:
            return model
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def batch_tokens(self, global_tokens: int) -> int:
        """Each rank's share of the per-update token budget."""
        return max(1, global_tokens // self.world_size)

    def shard(self, batches: Sequence[T]) -> list[T]:
        """This rank's batches of an epoch: every W-th from `rank`, the same count on every rank."""
        usable = len(batches) - len(batches) % self.world_size
        return list(batches[self.rank : usable : self.world_size])

    def barrier(self) -> None:
        if self.active:
            with self._peers():
                dist.barrier()

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks."""
        return self._reduce(values, dist.ReduceOp.SUM)

    def max(self, values: Sequence[float]) -> list[float]:
        """Element-wise maximum over ranks."""
        return self._reduce(values, dist.ReduceOp.MAX)

    def _reduce(self, values: Sequence[float], op: Any) -> list[float]:
        if not self.active:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self._comm_device())
        with self._peers():
            dist.all_reduce(tensor, op=op)
        return tensor.tolist()

    def from_main(self, values: Sequence[float]) -> list[float]:
        """Rank 0's `values` on every rank (what rank 0 decided)."""
        if not self.active:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self._comm_device())
        with self._peers():
            dist.broadcast(tensor, src=0)
        return tensor.tolist()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (picklable), in rank order, on rank 0; [] elsewhere."""
        if not self.active:
            return [value]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        with self._peers():
            dist.gather_object(value, out, dst=0)
        return out or []

    def check_resumable(self, saved_world_size: int, where: object) -> None:
        """Refuse to resume a run with another number of processes (its data shards would differ)."""
        if saved_world_size != self.world_size:
            raise Seq2SeqError(
                f"{where} was trained with {saved_world_size} process(es), this job has {self.world_size}: "
                f"resume with --nproc {saved_world_size} (torchrun --nnodes x --nproc-per-node = "
                f"{saved_world_size}), or start over with --restart"
            )

    @contextlib.contextmanager
    def _peers(self) -> Iterator[None]:
        """A collective that fails because a peer is gone is one line, not a gloo/nccl traceback."""
        try:
            yield
        except RuntimeError as exc:
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise LostRank(
                f"rank {self.rank} of {self.world_size}: another process of the job stopped ({reason}); "
                "its last checkpoint is kept: run the same command again to resume"
            ) from None

    def _comm_device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


def launch(nproc: int, argv: Sequence[str], threads: int = 1) -> int:
    """Run `python ARGV...` as `nproc` ranks on this machine with torchrun's own launcher
    (`torch.distributed.launcher.api.elastic_launch`, rendezvous on a free loopback port); what
    `seq2seq train --nproc N` does. Each rank gets `threads` threads (OMP_NUM_THREADS) unless the
    environment sets it. Returns the exit status: 0, 75 when every rank stopped resumably, else that of
    the first failed rank (a line names it)."""
    import sys
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"seq2seq-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        max_restarts=0,
        monitor_interval=0.1,
    )
    try:
        elastic_launch(config, sys.executable)(*argv)
    except SignalException as exc:  # torchrun's agent passed the signal on: the ranks saved and stopped
        print(f"stopped by {signal.Signals(exc.sigval).name}; resume with the same command", file=sys.stderr)
        return 75
    except ChildFailedError as exc:
        codes = {rank: failure.exitcode for rank, failure in exc.failures.items()}
        if set(codes.values()) == {75}:
            return 75
        rank, code = min(codes.items())
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        print(f"error: rank {rank} of {nproc} {how}; the job stopped. Run the same command again to resume "
              "from the last checkpoint", file=sys.stderr)  # fmt: skip
        return code if code > 0 else 1
    return 0

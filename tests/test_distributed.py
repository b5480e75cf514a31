"""Data-parallel training with 2 gloo processes of one thread each, started by torchrun's launcher
(`elastic_launch`, forked from this process so that they import nothing again)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from seq2seq.config import Config
from seq2seq.data import preprocess
from seq2seq.distributed import Distributed
from seq2seq.errors import Seq2SeqError
from seq2seq.train import train
from tests.conftest import tiny_config

NO_DROPOUT = {"dropout": 0.0, "emb_dropout": 0.0, "out_dropout": 0.0}


def _rank_main(cfg: Config, run_dir: Path, data_dir: Path) -> str:
    torch.set_num_threads(1)
    rank = os.environ["RANK"]
    (run_dir.parent / f"pid-{run_dir.name}-{rank}").write_text(str(os.getpid()))
    try:
        return train(cfg, run_dir, data_dir, log=lambda line: None, show_progress=False).stop_reason
    except Seq2SeqError as exc:
        (run_dir.parent / f"error-{run_dir.name}-{rank}").write_text(str(exc))
        raise


def _launch(cfg: Config, run_dir: Path, data_dir: Path, nproc: int = 2) -> dict[int, str]:
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"t{os.getpid()}", rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0", max_restarts=0, monitor_interval=0.05, start_method="fork",
    )  # fmt: skip
    return elastic_launch(config, _rank_main)(cfg, run_dir, data_dir)


def _during(run_dir: Path, step: int, action: Callable[[], None]) -> threading.Thread:
    """Run `action` once metrics.jsonl shows a validation at `step` or later."""

    def watch() -> None:
        for _ in range(6000):
            if _valid_steps(run_dir) and _valid_steps(run_dir)[-1] >= step:
                action()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _valid_steps(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    return [r["step"] for r in records if r["type"] == "valid"]


def _signal_ranks(run_dir: Path, sig: int, ranks: tuple[int, ...]) -> Callable[[], None]:
    def send() -> None:
        for rank in ranks:
            os.kill(int((run_dir.parent / f"pid-{run_dir.name}-{rank}").read_text()), sig)

    return send


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def _valid_records(run_dir: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "minutes"} for r in records if r["type"] == "valid"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "data"
    # the first optimizer of a process imports torch's compiler stack (seconds): once, before the forks
    torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)
    preprocess(tiny_config(), out, log=lambda line: None)
    return out


def test_shard_deals_batches_round_robin_and_evenly() -> None:
    batches = list(range(7))
    shards = [Distributed(rank, 3).shard(batches) for rank in range(3)]
    assert shards == [[0, 3], [1, 4], [2, 5]]
    assert Distributed().shard(batches) == batches
    assert Distributed(1, 4).batch_tokens(400) == 100


def _count_allreduces(counts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every rank (forked after this) append a line to counts/allreduce-RANK each time its DDP
    model reduces the gradients of its last bucket: one line per all-reduce of all the gradients."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    real_wrap = Distributed.wrap

    def counting_wrap(self: Distributed, model: torch.nn.Module) -> torch.nn.Module:
        ddp = real_wrap(self, model)
        if not isinstance(ddp, torch.nn.parallel.DistributedDataParallel):  # the one-process run
            return ddp

        def hook(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks the annotations, unresolved here
            if bucket.is_last():
                with open(counts / f"allreduce-{self.rank}", "a") as f:
                    f.write(f"{bucket.index()}\n")
            return allreduce_hook(state, bucket)

        ddp.register_comm_hook(None, hook)
        return ddp

    monkeypatch.setattr(Distributed, "wrap", counting_wrap)


def test_two_processes_accumulating_equal_one_and_all_reduce_once_per_update(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 ranks x 2 micro-batches of 200 tokens == 1 process x 4 micro-batches of 200 tokens, and each
    rank all-reduces its gradients once per update (the first micro-batch runs under `no_sync`)."""
    steps = {"max_steps": 6, "valid_every": 3}
    ddp = tiny_config(model=NO_DROPOUT, train={**steps, "batch_tokens": 400, "accum_steps": 2})
    one = tiny_config(model=NO_DROPOUT, train={**steps, "batch_tokens": 200, "accum_steps": 4})
    _count_allreduces(tmp_path, monkeypatch)
    assert _launch(ddp, tmp_path / "ddp", data_dir) == {0: "reached train.max_steps=6"} | {
        1: "reached train.max_steps=6"
    }
    for rank in (0, 1):
        assert len((tmp_path / f"allreduce-{rank}").read_text().splitlines()) == 6
    train(one, tmp_path / "one", data_dir, log=lambda line: None, show_progress=False)
    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "one")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    rng = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)["rng"]
    assert rng["world_size"] == 2 and len(rng["ranks"]) == 2
    with pytest.raises(
        Seq2SeqError, match=r"trained with 2 process\(es\), this job has 1: resume with --nproc 2"
    ):
        train(ddp, tmp_path / "ddp", data_dir, log=lambda line: None, show_progress=False)


def test_sigterm_and_a_dead_rank_resume_to_the_uninterrupted_run(tmp_path: Path, data_dir: Path) -> None:
    cfg = tiny_config(train={"max_steps": 20, "valid_every": 4})
    done = {0: "reached train.max_steps=20", 1: "reached train.max_steps=20"}
    assert _launch(cfg, tmp_path / "whole", data_dir) == done

    run = tmp_path / "stopped"
    # SIGTERM, as torchrun forwards it to every rank: each finishes its update and rank 0 saves
    watcher = _during(run, 4, _signal_ranks(run, signal.SIGTERM, (0, 1)))
    assert _launch(cfg, run, data_dir) == {0: "interrupted", 1: "interrupted"}
    watcher.join()
    stopped_at = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["train_state"]["step"]
    assert 4 <= stopped_at < 16

    # rank 1 killed outright: the job ends, rank 0 says why in one line
    watcher = _during(run, stopped_at + 4, _signal_ranks(run, signal.SIGKILL, (1,)))
    with pytest.raises(ChildFailedError) as died:
        _launch(cfg, run, data_dir)
    watcher.join()
    assert died.value.failures[1].exitcode == -signal.SIGKILL
    assert "another process of the job stopped" in (tmp_path / "error-stopped-0").read_text()

    assert _launch(cfg, run, data_dir) == done
    a, b = _weights(run), _weights(tmp_path / "whole")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert _valid_records(run) == _valid_records(tmp_path / "whole")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _recipe(tmp_path: Path, **train_keys: Any) -> Path:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_config(train={"max_steps": 6, **train_keys}).to_dict()))
    return recipe


@pytest.mark.slow
def test_cli_nproc_launches_torchrun_machinery(tmp_path: Path, data_dir: Path) -> None:
    """`seq2seq train --nproc 2` (fresh processes: about half a minute on 2 cores)."""
    seq2seq = Path(sys.executable).with_name("seq2seq")
    cmd = [str(seq2seq), "train", str(_recipe(tmp_path)), "--out", str(tmp_path / "run")]
    done = subprocess.run([*cmd, "--data", str(data_dir), "--nproc", "2", "--no-progress"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "x 2 processes" in done.stderr and done.stdout.count("best model:") == 1
    again = subprocess.run([*cmd, "--data", str(data_dir)], capture_output=True, text=True, timeout=300)
    assert again.returncode == 2
    assert "trained with 2 process(es), this job has 1: resume with --nproc 2" in again.stderr


@pytest.mark.slow
def test_two_nodes_on_loopback(tmp_path: Path, data_dir: Path) -> None:
    """Two torchrun 'nodes' of one process each meet at a c10d rendezvous on 127.0.0.1."""
    endpoint = f"127.0.0.1:{_free_port()}"
    recipe = _recipe(tmp_path)
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                endpoint,
                "--rdzv-id",
                "loopback",
                "--local-addr",
                "127.0.0.1",
                "-m",
                "seq2seq",
                "train",
                str(recipe),
                "--out",
                str(tmp_path / "run"),
                "--data",
                str(data_dir),
                "--no-progress",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    log = (tmp_path / "run" / "train.log").read_text()
    assert "x 2 processes" in log and "reached train.max_steps=6" in log

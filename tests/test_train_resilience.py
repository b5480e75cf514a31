"""Nothing lost: real subprocesses killed (SIGKILL, SIGTERM), locks, full disks, copied runs, resumed logs."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.config import Config
from seq2seq.data import preprocess
from seq2seq.errors import Seq2SeqError
from seq2seq.rundir import RunFiles
from seq2seq.train import EXIT_INTERRUPTED, train
from tests.conftest import tiny_config

QUIET: dict[str, Any] = {"log": lambda line: None, "show_progress": False}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    preprocess(tiny_config(), out, log=lambda line: None)
    return out


def config(**train: Any) -> Config:
    base = {"max_steps": 30, "log_every": 1, "valid_every": 5, "max_epochs": 3, "save_every_minutes": 0}
    return tiny_config(train={**base, **train})


STRAIGHT = config()
"""30 updates validated every 5."""


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The uninterrupted run that the killed and stopped runs of this module are compared with."""
    return train(STRAIGHT, tmp_path_factory.mktemp("straight") / "run", data_dir, **QUIET).run_dir


def records(run: Path, kind: str) -> list[dict[str, Any]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    out = [json.loads(line) for line in lines]
    return [
        {k: v for k, v in r.items() if k not in ("minutes", "tgt_tokens_per_s")}
        for r in out
        if r["type"] == kind
    ]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def start(cfg: Config, run: Path, data: Path, *extra: str) -> subprocess.Popen[str]:
    """`python -m seq2seq train` in a fresh process (the CLI; seconds to import everything)."""
    recipe = run.parent / f"{run.name}.yaml"
    recipe.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    cmd = [sys.executable, "-m", "seq2seq", "train", str(recipe), "--out", str(run), "--data", str(data)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen(
        [*cmd, "--no-progress", *extra], stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )


_FORKSERVER = multiprocessing.get_context("forkserver")
_FORKSERVER.set_forkserver_preload(["seq2seq.train", __name__])


def fork(cfg: Config, run: Path, data: Path) -> multiprocessing.Process:
    """`train` in a process of its own to kill, forked in milliseconds from a fork server (started once,
    with seq2seq and this module imported). Not a fork of this process: this one has run torch's OpenMP
    thread team, and a child forked after that hangs at its first parallel region (GNU libgomp): the
    likely cause of a kill test that failed once in a grouped run."""
    proc = _FORKSERVER.Process(target=_train_quietly, args=(cfg, run, data))
    proc.start()
    return proc


def _train_quietly(cfg: Config, run: Path, data: Path) -> None:
    train(cfg, run, data, **QUIET)


class Killable:
    """A training process to kill -9: a fork of this process or the CLI."""

    def __init__(self, cfg: Config, run: Path, data: Path, forked: bool) -> None:
        self.proc = fork(cfg, run, data) if forked else start(cfg, run, data)

    def running(self) -> bool:
        if isinstance(self.proc, subprocess.Popen):
            return self.proc.poll() is None
        return self.proc.is_alive()

    def kill(self) -> None:
        self.proc.kill()
        if isinstance(self.proc, subprocess.Popen):
            self.proc.communicate()
        else:
            self.proc.join()


def steps_logged(run: Path) -> int:
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return max([json.loads(line)["step"] for line in lines if line.endswith("}")], default=0)


def wait_for(condition: Callable[[], bool], running: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert running(), "train exited early"
        assert time.monotonic() < deadline, "timed out waiting for the training subprocess"
        time.sleep(0.002)


def kill_and_resume(straight: Path, run: Path, data: Path, kills: list[float | None], forked: bool) -> None:
    """kill -9 a run once per entry of `kills` (None: the moment a temporary checkpoint file appears;
    a number: that many seconds after 3 more updates are logged), resume each time: every .pt on disk
    loads, at most one validation interval is lost, and the finished run equals `straight` bit for bit."""
    ckpts = run / "checkpoints"
    for delay in kills:
        child = Killable(STRAIGHT, run, data, forked)
        resumed_at = steps_logged(run)
        wait_for(lambda: steps_logged(run) > resumed_at + 2, child.running)  # noqa: B023
        if delay is None:  # the moment a checkpoint is being written
            deadline = time.monotonic() + 30
            while not list(ckpts.glob(".*.tmp")) and time.monotonic() < deadline and child.running():
                pass
        else:
            time.sleep(delay)
        child.kill()
        done = steps_logged(run)
        for path in ckpts.glob("*.pt"):
            load_checkpoint(path)  # raises if damaged
        saved_at = load_checkpoint(ckpts / "last.pt")["train_state"]["step"]
        assert done - saved_at <= STRAIGHT.train.valid_every, (done, saved_at)
    if forked:
        lines: list[str] = []
        train(STRAIGHT, run, data, log=lines.append, show_progress=False)
        assert any(line.startswith("resuming") for line in lines)
    else:
        proc = start(STRAIGHT, run, data)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "resuming" in err
    assert not list(ckpts.glob(".*.tmp"))
    assert same_weights(straight / "checkpoints" / "last.pt", ckpts / "last.pt")
    assert same_weights(straight / "checkpoints" / "best.pt", ckpts / "best.pt")
    assert records(run, "train") == records(straight, "train")
    assert records(run, "valid") == records(straight, "valid")


def test_sigkill_during_a_checkpoint_write_and_at_a_random_moment_loses_nothing(
    tmp_path: Path, data_dir: Path, straight: Path
) -> None:
    """Two kills of forked training processes (fast): one while a checkpoint is being written."""
    kills = [None, random.Random(15).uniform(0.0, 0.5)]
    kill_and_resume(straight, tmp_path / "killed", data_dir, kills, forked=True)


@pytest.mark.slow
def test_sigkill_of_the_cli_at_random_moments_loses_nothing(
    tmp_path: Path, data_dir: Path, straight: Path
) -> None:
    """Four kills of `python -m seq2seq train` (fresh processes), three at random moments."""
    rng = random.Random(15)
    kills = [None, *(rng.uniform(0.0, 0.5) for _ in range(3))]
    kill_and_resume(straight, tmp_path / "killed", data_dir, kills, forked=False)


def test_sigterm_saves_exits_75_and_resumes_exactly(tmp_path: Path, data_dir: Path, straight: Path) -> None:
    run = tmp_path / "termed"
    proc = start(STRAIGHT, run, data_dir)
    wait_for(lambda: steps_logged(run) >= 3, lambda: proc.poll() is None)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED == 75, err
    assert "Traceback" not in err and "interrupted (SIGTERM)" in err
    assert f"interrupted, resumable: seq2seq train {tmp_path / 'termed.yaml'} --out {run}" in err
    stopped = load_checkpoint(run / "checkpoints" / "last.pt")["train_state"]
    assert stopped["stop_reason"] == "interrupted" and stopped["step"] == steps_logged(run)
    resumed = train(STRAIGHT, run, data_dir, **QUIET)
    assert resumed.steps == 30 and same_weights(straight / "checkpoints" / "last.pt", resumed.last_checkpoint)
    assert records(run, "train") == records(straight, "train")
    assert load_checkpoint(resumed.best_checkpoint)["train_state"]["stop_reason"] == ""  # not stale


def test_sigusr1_stops_like_sigterm(tmp_path: Path, data_dir: Path) -> None:
    def preempt_at_update_4(line: str) -> None:
        if line.startswith("update 4 "):
            os.kill(os.getpid(), signal.SIGUSR1)

    result = train(config(), tmp_path / "u", data_dir, log=preempt_at_update_4, show_progress=True)
    assert result.interrupted and result.steps == 4


def test_second_train_on_a_locked_run_is_refused(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "locked"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from seq2seq.rundir import RunFiles\n"
         f"with RunFiles({str(run)!r}).lock():\n print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(Seq2SeqError, match=rf"in use by another seq2seq train \(pid {holder.pid}\)"):
            train(config(max_steps=2), run, data_dir, **QUIET)
    finally:
        holder.kill()
        holder.wait()
    assert train(config(max_steps=2), run, data_dir, **QUIET).steps == 2  # the lock died with its holder


def test_progress_without_last_pt_refuses_and_restart_starts_over(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "r"
    train(config(max_steps=6), run, data_dir, **QUIET)
    (run / "checkpoints" / "last.pt").unlink()
    with pytest.raises(
        Seq2SeqError, match=r"holds a run \(metrics.jsonl\) but no checkpoints/last.pt.*--restart"
    ):
        train(config(max_steps=6), run, data_dir, **QUIET)
    train(config(max_steps=6), run, data_dir, restart=True, **QUIET)
    assert [r["step"] for r in records(run, "train")] == list(range(1, 7))  # not appended twice


def test_resuming_a_copied_run_leaves_the_original_alone(tmp_path: Path, data_dir: Path) -> None:
    cfg = config(max_steps=10, keep_last=1, keep_best=0)
    train(cfg, tmp_path / "a", data_dir, **QUIET)
    before = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    train(config(max_steps=20, keep_last=1, keep_best=0), tmp_path / "b", data_dir, **QUIET)
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == before
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == [
        "best.pt",
        "last.pt",
        "step-20.pt",
    ]
    state = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["train_state"]
    assert state["last_checkpoints"] == ["step-20.pt"]  # relative to the run


def test_resumed_run_logs_the_same_averages(tmp_path: Path, data_dir: Path) -> None:
    """Stopping in the middle of a log window: the resumed record averages the whole window."""
    train(config(max_steps=7, log_every=5), tmp_path / "b", data_dir, **QUIET)
    train(config(max_steps=12, log_every=5), tmp_path / "b", data_dir, **QUIET)
    train(config(max_steps=12, log_every=5), tmp_path / "a", data_dir, **QUIET)
    assert [r["step"] for r in records(tmp_path / "b", "train")] == [5, 10]
    assert records(tmp_path / "a", "train") == records(tmp_path / "b", "train")
    stopped_at_7 = [r for r in records(tmp_path / "b", "valid") if r["step"] != 7]  # max_steps validates
    assert records(tmp_path / "a", "valid") == stopped_at_7


def test_full_disk_while_saving_is_one_line_and_no_record(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_save = torch.save

    def full_disk_at_step_10(obj: Any, f: Any) -> None:
        if obj.get("train_state", {}).get("step") == 10:
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", full_disk_at_step_10)
    run = tmp_path / "full"
    with pytest.raises(
        Seq2SeqError, match=r"step-10.pt: could not write the checkpoint \(No space left"
    ) as info:
        train(config(max_steps=20), run, data_dir, **QUIET)
    assert "\n" not in str(info.value)
    assert not list((run / "checkpoints").glob(".*"))  # no partial file
    assert [r["step"] for r in records(run, "valid")] == [5]  # no record for the lost checkpoint
    monkeypatch.setattr(torch, "save", real_save)
    assert train(config(max_steps=20), run, data_dir, **QUIET).steps == 20
    assert [r["step"] for r in records(run, "valid")] == [5, 10, 15, 20]


def test_stale_temporary_files_are_removed(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "t"
    train(config(max_steps=4), run, data_dir, **QUIET)
    stale = [run / "checkpoints" / ".last.pt.abc123.tmp", run / "checkpoints" / ".best.pt.x.tmp"]
    for path in stale:
        path.write_bytes(b"")
    lines: list[str] = []
    train(config(max_steps=8), run, data_dir, log=lines.append, show_progress=False)
    assert not any(path.exists() for path in stale)
    assert any("left by a run killed while saving" in line for line in lines)


def test_kill_during_a_checkpoint_write_leaves_the_old_one(tmp_path: Path) -> None:
    """A real process SIGKILLed halfway through writing: the previous file loads, the temporary stays
    until the next run removes it."""
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"v": 1})
    code = (
        "import os, signal, torch\nfrom seq2seq.checkpoint import save_checkpoint\n"
        "def half(obj, f):\n f.write(b'x' * 1000); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        f"torch.save = half\nsave_checkpoint({str(path)!r}, {{'v': 2}})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False)
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(path)["v"] == 1
    assert len(list(tmp_path.glob(".last.pt.*.tmp"))) == 1
    from seq2seq.checkpoint import remove_stale_temporaries

    assert len(remove_stale_temporaries(tmp_path)) == 1 and [p.name for p in tmp_path.iterdir()] == [
        "last.pt"
    ]


def test_run_files_progress(tmp_path: Path) -> None:
    files = RunFiles(tmp_path / "new")
    assert files.progress() == ""
    files.dir.mkdir()
    files.write_metrics({"type": "train"})
    assert files.progress() == "metrics.jsonl"

import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch

from seq2seq import update
from seq2seq.checkpoint import load_checkpoint
from seq2seq.data import preprocess
from seq2seq.errors import Seq2SeqError
from seq2seq.train import TrainResult, train
from tests.conftest import tiny_config

QUIET = {"log": lambda line: None, "show_progress": False}


def train_losses(run: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if r["type"] == "train"]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    preprocess(tiny_config(), out, log=lambda line: None)
    return out


def resume_config(max_steps: int):
    return tiny_config(train={"max_steps": max_steps, "log_every": 1, "valid_every": 7, "max_epochs": 3})


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> TrainResult:
    """24 updates without a stop, to compare stopped and resumed runs with."""
    return train(resume_config(24), tmp_path_factory.mktemp("straight") / "run", data_dir, **QUIET)


def test_run_directory_contents(trained: TrainResult) -> None:
    run = trained.run_dir
    for name in ("config.yaml", "metrics.jsonl", "train.log", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["type"] for r in records} == {"train", "valid"}
    assert all(math.isfinite(r["loss"]) for r in records)
    assert trained.best_score is not None and trained.steps == 40


def test_resume_is_exact(tmp_path: Path, data_dir: Path, straight: TrainResult) -> None:
    """N updates straight == N/2 updates, stop, resume for N/2: bitwise-equal weights and equal losses."""
    train(resume_config(12), tmp_path / "b", data_dir, **QUIET)
    resumed = train(resume_config(24), tmp_path / "b", data_dir, **QUIET)
    assert resumed.steps == straight.steps == 24
    a, b = weights(straight.last_checkpoint), weights(resumed.last_checkpoint)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert train_losses(straight.run_dir) == train_losses(tmp_path / "b")


def test_ctrl_c_saves_and_resumes_exactly(tmp_path: Path, data_dir: Path, straight: TrainResult) -> None:
    """A real SIGINT mid-run: the update finishes, last.pt is saved, resuming matches a straight run."""
    lines: list[str] = []

    def interrupt_at_update_10(line: str) -> None:
        lines.append(line)
        if line.startswith("update 10 "):
            os.kill(os.getpid(), signal.SIGINT)

    cfg = resume_config(24)
    stopped = train(cfg, tmp_path / "b", data_dir, log=interrupt_at_update_10, show_progress=True)
    assert stopped.stop_reason == "interrupted" and stopped.steps == 10
    assert any("Resume with the same command" in line for line in lines)
    resumed = train(cfg, tmp_path / "b", data_dir, **QUIET)
    a, b = weights(straight.last_checkpoint), weights(resumed.last_checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_other_config_on_existing_run_is_an_error(tmp_path: Path, data_dir: Path) -> None:
    train(resume_config(4), tmp_path / "r", data_dir, **QUIET)
    changed = tiny_config(
        train={"max_steps": 4, "lr": 0.1, "log_every": 1, "valid_every": 7, "max_epochs": 3}
    )
    with pytest.raises(Seq2SeqError, match=r"another config \(train.lr: 0.005 -> 0.1\).*--restart"):
        train(changed, tmp_path / "r", data_dir, **QUIET)
    restarted = train(changed, tmp_path / "r", data_dir, restart=True, **QUIET)
    assert restarted.steps == 4


def test_run_from_an_older_version_without_a_newer_key_resumes(tmp_path: Path, data_dir: Path) -> None:
    """A last.pt whose config predates a key (decode.shortlist) resumes: the missing key is its default."""
    train(resume_config(4), tmp_path / "r", data_dir, **QUIET)
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    payload = torch.load(last, weights_only=True)
    del payload["config"]["decode"]["shortlist"]
    torch.save(payload, last)
    resumed = train(resume_config(6), tmp_path / "r", data_dir, **QUIET)
    assert resumed.steps == 6


def test_non_finite_losses_are_skipped_then_stop_the_run(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_loss = update.compute_loss
    calls = {"n": 0}

    def sometimes_nan(model, batch, label_smoothing, sampling=0.0):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        loss = real_loss(model, batch, label_smoothing, sampling)
        return loss * float("nan") if calls["n"] == 2 or calls["n"] > 4 else loss

    monkeypatch.setattr(update, "compute_loss", sometimes_nan)
    messages: list[str] = []
    cfg = tiny_config(train={"max_bad_steps": 3, "max_steps": 30})
    with pytest.raises(Seq2SeqError, match="3 non-finite losses in a row at update 3"):
        train(cfg, tmp_path / "nan", data_dir, log=messages.append, show_progress=True)
    assert any("non-finite loss at update 2; skipped" in m for m in messages)


@pytest.mark.parametrize(("keep_best", "keep_last", "most"), [(1, 0, 1), (0, 2, 2), (0, 0, 0), (2, 2, 4)])
def test_keep_best_and_last(
    tmp_path: Path, data_dir: Path, keep_best: int, keep_last: int, most: int
) -> None:
    cfg = tiny_config(
        train={"max_steps": 12, "valid_every": 2, "keep_best": keep_best, "keep_last": keep_last}
    )
    train(cfg, tmp_path / "k", data_dir, **QUIET)
    kept = sorted((tmp_path / "k" / "checkpoints").glob("step-*.pt"))
    assert len(kept) <= most and (len(kept) >= 1 or most == 0)
    if keep_last:
        assert tmp_path / "k" / "checkpoints" / "step-12.pt" in kept


def test_checkpoints_kept(tmp_path: Path, data_dir: Path) -> None:
    cfg = tiny_config(train={"max_steps": 20, "valid_every": 4, "keep_best": 2, "keep_last": 1})
    train(cfg, tmp_path / "k", data_dir, **QUIET)
    steps = sorted((tmp_path / "k" / "checkpoints").glob("step-*.pt"))
    assert 1 <= len(steps) <= 3
    assert "optimizer" not in load_checkpoint(tmp_path / "k" / "checkpoints" / "best.pt")
    assert "optimizer" in load_checkpoint(tmp_path / "k" / "checkpoints" / "last.pt")


def test_clipping_logs_pre_clip_norm(tmp_path: Path, data_dir: Path) -> None:
    cfg = tiny_config(train={"max_steps": 6, "log_every": 1, "clip_norm": 1e-3, "valid_every": 100})
    train(cfg, tmp_path / "c", data_dir, **QUIET)
    records = [json.loads(line) for line in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    norms = [r["grad_norm"] for r in records if r["type"] == "train"]
    assert norms and all(n > 1e-3 for n in norms)  # the logged norm is before clipping


@pytest.mark.parametrize("schedule", ["constant", "inverse_sqrt", "plateau"])
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_optimizers_and_schedules_run(tmp_path: Path, data_dir: Path, schedule: str, optimizer: str) -> None:
    cfg = tiny_config(
        train={
            "max_steps": 3,
            "schedule": schedule,
            "optimizer": optimizer,
            "warmup_steps": 2,
            "valid_every": 2,
            "log_every": 1,
        }
    )
    assert train(cfg, tmp_path / "s", data_dir, **QUIET).steps == 3
    records = [json.loads(line) for line in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r["lr"] for r in records if r["type"] == "train"}
    assert sorted(logged) == [1, 2, 3]
    lr = cfg.train.lr
    if schedule == "inverse_sqrt":  # the lr logged after update s is the one update s + 1 uses
        expected = {s: lr * min((s + 1) / 2, math.sqrt(2 / (s + 1))) for s in logged}
    elif schedule == "constant":
        expected = {s: lr * min(1.0, (s + 1) / 2) for s in logged}
    else:  # plateau: no warmup, the lr changes only after validations that do not improve
        expected = {s: logged[s] for s in logged}
        assert logged[1] == lr and all(logged[s + 1] <= logged[s] for s in (1, 2))
    assert logged == pytest.approx(expected)


@pytest.mark.parametrize(
    ("schedule", "k", "floor", "step", "expected"),
    [
        ("constant", 10.0, 0.8, 500, 0.8),
        ("linear", 100.0, 0.0, 25, 0.75),
        ("linear", 100.0, 0.5, 90, 0.5),
        ("exponential", 0.5, 0.0, 3, 0.125),
        ("inverse_sigmoid", 10.0, 0.0, 0, 10 / 11),
        ("inverse_sigmoid", 10.0, 0.0, 10**6, 0.0),
    ],
)
def test_teacher_forcing_schedules(schedule: str, k: float, floor: float, step: int, expected: float) -> None:
    cfg = tiny_config(train={"sampling_schedule": schedule, "sampling_k": k, "teacher_forcing": floor})
    assert update.teacher_forcing_ratio(cfg, step) == pytest.approx(expected)


def test_scheduled_sampling_trains(tmp_path: Path, data_dir: Path) -> None:
    cfg = tiny_config(train={"max_steps": 6, "log_every": 1, "teacher_forcing": 0.5,
                             "sampling_schedule": "linear", "sampling_k": 4})  # fmt: skip
    train(cfg, tmp_path / "ss", data_dir, **QUIET)
    records = [json.loads(line) for line in (tmp_path / "ss" / "metrics.jsonl").read_text().splitlines()]
    ratios = [r["teacher_forcing"] for r in records if r["type"] == "train"]
    assert ratios[0] == 1.0 and ratios[-1] == 0.5 and ratios == sorted(ratios, reverse=True)


def test_sampling_feeds_the_models_own_predictions() -> None:
    from seq2seq.model import build_model

    torch.manual_seed(0)
    model = build_model(tiny_config().model, 20, 20).eval()
    src = torch.randint(4, 20, (3, 5))
    lengths = torch.tensor([5, 4, 2])
    tgt_in = torch.randint(4, 20, (3, 6))
    tgt_in[:, 0] = 2
    forced = model(src, lengths, tgt_in)
    assert torch.allclose(model(src, lengths, tgt_in, sampling=1e-9), forced, atol=1e-5)
    free = model(src, lengths, tgt_in, sampling=1.0)  # every input after BOS is the model's own argmax
    assert torch.allclose(free[:, 0], forced[:, 0], atol=1e-5)
    assert free.shape == forced.shape and not torch.allclose(free, forced)

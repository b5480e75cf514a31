"""One training update: precision follows the hardware, optimizers are fused, a step learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seq2seq.data.batching import Batch
from seq2seq.model import build_model
from seq2seq.runtime import native_bf16
from seq2seq.update import (
    accumulate_gradients,
    autocast_for,
    clip_and_step,
    make_optimizer,
    make_scheduler,
)
from tests.conftest import tiny_config

CPU = torch.device("cpu")


@pytest.mark.parametrize("bf16", [False, True])
def test_autocast_only_where_bf16_is_native(bf16: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    for native in (False, True):
        monkeypatch.setattr("seq2seq.update.native_bf16", lambda device, native=native: native)
        with autocast_for(CPU, bf16):
            assert torch.is_autocast_enabled("cpu") == (bf16 and native)
            out = torch.mm(torch.randn(4, 4), torch.randn(4, 4))
            assert out.dtype == (torch.bfloat16 if bf16 and native else torch.float32)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_optimizers_are_fused(optimizer: str) -> None:
    cfg = tiny_config(train={"optimizer": optimizer})
    model = build_model(cfg.model, 20, 20)
    opt = make_optimizer(cfg, model)
    assert opt.defaults.get("fused") is True


def _batch(vocab: int = 20) -> Batch:
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(4, vocab, (3, 5), generator=gen)
    tgt = torch.randint(4, vocab, (3, 6), generator=gen)
    tgt[2, 4:] = 0  # padding
    return Batch(src, torch.tensor([5, 4, 3]), tgt[:, :-1], tgt[:, 1:], np.arange(3))


@pytest.mark.parametrize("bf16", [False, True] if native_bf16(CPU) else [False])
def test_updates_lower_the_loss_on_one_batch(bf16: bool) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(train={"lr": 0.01, "label_smoothing": 0.1})
    model = build_model(cfg.model, 20, 20).train()
    opt = make_optimizer(cfg, model)
    batch = _batch()
    first, tokens = accumulate_gradients(model, [batch], 0.1, 0.0, CPU, bf16)
    assert tokens == int((batch.tgt_out != 0).sum())
    for _ in range(30):
        clip_and_step(model, opt, cfg)
        last, _ = accumulate_gradients(model, [batch], 0.1, 0.0, CPU, bf16)
    assert last < 0.5 * first


@pytest.mark.parametrize(
    ("schedule", "warmup", "factor"),
    [
        ("inverse_sqrt", 4, lambda n: min(n / 4, math.sqrt(4 / n))),
        ("inverse_sqrt", 0, lambda n: 1 / math.sqrt(n)),
        ("constant", 4, lambda n: min(1.0, n / 4)),
        ("constant", 0, lambda n: 1.0),
    ],
)
def test_learning_rate_schedules(schedule: str, warmup: int, factor: object) -> None:
    """Update n (1-based) runs at lr * factor(n): a linear warmup to the peak at n = warmup, then
    1 / sqrt(n) decay (inverse_sqrt) or flat (constant)."""
    cfg = tiny_config(train={"schedule": schedule, "warmup_steps": warmup, "lr": 0.01, "optimizer": "sgd"})
    optimizer = make_optimizer(cfg, torch.nn.Linear(1, 1))
    scheduler = make_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.01 * factor(n) for n in range(1, 13)])  # type: ignore[operator]
    if warmup:
        assert max(lrs) == pytest.approx(0.01) and lrs.index(max(lrs)) == warmup - 1

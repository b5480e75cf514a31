"""One training update, shared by `train` and `bench`: the optimizer and lr schedule, the teacher-forcing
schedule, the loss, bf16 autocast, gradient accumulation, clipping and the optimizer step.

Training's hot path: the output layer and the loss run once over all B x T target positions, the loss is
the fused label-smoothed cross-entropy of `seq2seq.loss`, and the optimizers are torch's fused ones.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch

from seq2seq.config import Config
from seq2seq.data.batching import Batch
from seq2seq.loss import smoothed_cross_entropy
from seq2seq.model import Seq2Seq
from seq2seq.runtime import native_bf16
from seq2seq.special import PAD


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel over all parameters per step instead of a handful of ops per parameter
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)
    return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, fused=True)


def make_scheduler(cfg: Config, optimizer: torch.optim.Optimizer) -> Any:
    """Per-update `LambdaLR` (constant / inverse-sqrt with warmup) or per-validation plateau."""
    t = cfg.train
    if t.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max" if t.valid_metric == "bleu" else "min",
            factor=t.plateau_factor,
            patience=t.plateau_patience,
            min_lr=t.min_lr,
        )
    warmup = t.warmup_steps

    def factor(step: int) -> float:
        step = step + 1
        if t.schedule == "inverse_sqrt":
            return min(step / warmup, math.sqrt(warmup / step)) if warmup else 1.0 / math.sqrt(step)
        return min(1.0, step / warmup) if warmup else 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def teacher_forcing_ratio(cfg: Config, step: int) -> float:
    """Probability of feeding the gold token at update `step` under the scheduled-sampling schedule."""
    t = cfg.train
    k = t.sampling_k
    if t.sampling_schedule == "linear":
        ratio = 1.0 - step / k
    elif t.sampling_schedule == "exponential":
        ratio = k**step
    elif t.sampling_schedule == "inverse_sigmoid":
        ratio = k / (k + math.exp(min(step / k, 700.0)))
    else:
        return t.teacher_forcing
    return max(t.teacher_forcing, ratio)


def compute_loss(
    model: torch.nn.Module, batch: Batch, label_smoothing: float, sampling: float = 0.0
) -> torch.Tensor:
    """Summed token cross-entropy; the output layer and softmax run once over all B x T positions."""
    logits = model(batch.src_ids, batch.src_lengths, batch.tgt_in, sampling)  # [B, T, V]
    return smoothed_cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), batch.tgt_out.reshape(-1), label_smoothing, PAD
    )


def autocast_for(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast when asked for and the device has native bf16 (CUDA, or a CPU with AVX512-BF16 or
    AMX); fp32 everywhere else, where emulated bf16 would be slower.

    fp32 runs inside a *disabled* autocast rather than no context at all: on CPU that measured ~5% faster
    training (seq2seq bench: 4,400 -> 4,600 target tokens/s), as ops skip the autocast dispatch layer.
    """
    if bf16 and native_bf16(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def accumulate_gradients(
    model: torch.nn.Module,
    batches: list[Batch],
    label_smoothing: float,
    sampling: float,
    device: torch.device,
    bf16: bool,
    normaliser: float | None = None,
) -> tuple[float, int]:
    """Zero the gradients, then forward and backward every micro-batch of one update, normalised by
    `normaliser` (default: the update's target tokens; under DDP, which averages the ranks' gradients,
    all ranks' target tokens / world size). Returns (summed loss, target tokens); the loss may be
    non-finite.

    `model` may be a DistributedDataParallel wrapping a `Seq2Seq`: then every micro-batch but the last
    runs under `no_sync()`, so the gradients accumulate locally and are all-reduced once per update, by
    the last backward, instead of once per micro-batch."""
    n_tokens = sum(b.n_tgt_tokens for b in batches)
    divisor = n_tokens if normaliser is None else normaliser
    model.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for i, batch in enumerate(batches):
        with _sync_if(model, i == len(batches) - 1):
            with autocast_for(device, bf16):
                loss = compute_loss(model, batch, label_smoothing, sampling)
            (loss / divisor).backward()
        loss_sum += float(loss.detach())
    return loss_sum, n_tokens


def _sync_if(model: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager[Any]:
    """DDP's `no_sync()` unless `sync`: the forward and backward run in it skip the gradient all-reduce."""
    if sync or not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def clip_and_step(model: Seq2Seq, optimizer: torch.optim.Optimizer, cfg: Config) -> float:
    """Clip by value or by norm as configured, take the optimizer step; returns the pre-clip norm."""
    t = cfg.train
    if t.clip_value > 0:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")))
        torch.nn.utils.clip_grad_value_(model.parameters(), t.clip_value)
    else:
        max_norm = t.clip_norm if t.clip_norm > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    optimizer.step()
    return grad_norm

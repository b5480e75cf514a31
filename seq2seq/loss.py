"""Label-smoothed cross-entropy over the output layer's logits, fused into one autograd function.

`F.cross_entropy(..., label_smoothing=eps)` builds its gradient from several full [N, V] tensors (the
log-softmax, a zero-filled NLL gradient, the smoothing gradient, their sum, then the log-softmax
backward). Here the forward keeps the log-softmax and the backward turns it, in place, into the gradient
in three passes: softmax, minus the smoothed target, times the incoming gradient. The [N, V] output layer
is the largest tensor of training, so this is one of its hot paths.

Same definition as torch: the target distribution is (1 - eps) on the gold token plus eps / V on every
token, and positions whose target is `ignore_index` contribute nothing. Notation: N positions, V vocab.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable


class _SmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, logits: torch.Tensor, target: torch.Tensor, smoothing: float, ignore_index: int
    ) -> torch.Tensor:
        log_probs = torch.log_softmax(logits, dim=-1)  # [N, V]
        keep = target != ignore_index  # [N]
        gold = target.masked_fill(~keep, 0).unsqueeze(1)  # [N, 1], a valid index on ignored rows
        nll = -log_probs.gather(1, gold).squeeze(1)
        loss = nll if smoothing == 0.0 else (1.0 - smoothing) * nll - smoothing * log_probs.mean(dim=-1)
        ctx.save_for_backward(log_probs, gold, keep)
        ctx.smoothing = smoothing
        return (loss * keep).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        log_probs, gold, keep = ctx.saved_tensors
        smoothing = ctx.smoothing
        scale = (grad_loss * keep).unsqueeze(1).to(log_probs.dtype)  # [N, 1]
        grad = log_probs.exp_()  # the saved log-probabilities are not needed again: reuse their memory
        if smoothing != 0.0:
            grad.sub_(smoothing / grad.size(1))
        grad.scatter_add_(1, gold, torch.full_like(scale, smoothing - 1.0))
        return grad.mul_(scale), None, None, None


def smoothed_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0, ignore_index: int = -100
) -> torch.Tensor:
    """Summed label-smoothed cross-entropy of logits [N, V] against target ids [N].

    Equals `F.cross_entropy(logits, target, ignore_index=..., label_smoothing=smoothing, reduction="sum")`
    in value and gradient; backward may run once (the graph is not retained).
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    return _SmoothedCrossEntropy.apply(logits, target, smoothing, ignore_index)  # type: ignore[no-any-return]

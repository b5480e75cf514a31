"""The fused label-smoothed cross-entropy equals torch's in value and gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seq2seq.loss import smoothed_cross_entropy

PAD = 0


def _inputs(n: int = 37, v: int = 53, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, v, generator=gen, dtype=torch.float64) * 3
    target = torch.randint(0, v, (n,), generator=gen)
    target[::5] = PAD  # ignored positions
    return logits, target


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("grad_scale", [1.0, 0.01, -2.0])
def test_value_and_gradient_equal_torch(smoothing: float, grad_scale: float) -> None:
    logits, target = _inputs()
    ours_in = logits.clone().requires_grad_()
    ref_in = logits.clone().requires_grad_()
    ours = smoothed_cross_entropy(ours_in, target, smoothing, PAD)
    ref = F.cross_entropy(ref_in, target, ignore_index=PAD, label_smoothing=smoothing, reduction="sum")
    torch.testing.assert_close(ours, ref)
    (ours * grad_scale).backward()
    (ref * grad_scale).backward()
    assert ours_in.grad is not None and ref_in.grad is not None
    torch.testing.assert_close(ours_in.grad, ref_in.grad)
    assert ours_in.grad[::5].abs().max() == 0  # ignored rows get no gradient


def test_second_backward_is_an_error_not_a_wrong_gradient() -> None:
    """The backward reuses the saved log-probabilities' memory; autograd notices a retained graph."""
    logits, target = _inputs()
    logits.requires_grad_()
    loss = smoothed_cross_entropy(logits, target, 0.1, PAD)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace"):
        loss.backward()


def test_no_ignore_index_and_float32() -> None:
    logits, target = _inputs(seed=1)
    logits = logits.float().requires_grad_()
    ours = smoothed_cross_entropy(logits, target, 0.1)
    ref = F.cross_entropy(logits, target, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(ours, ref)


def test_inference_mode_and_all_ignored() -> None:
    logits, target = _inputs()
    with torch.inference_mode():
        value = smoothed_cross_entropy(logits, target, 0.1, PAD)
    torch.testing.assert_close(
        value, F.cross_entropy(logits, target, ignore_index=PAD, label_smoothing=0.1, reduction="sum")
    )
    assert float(smoothed_cross_entropy(logits, torch.zeros_like(target), 0.1, PAD)) == 0.0


def test_rejects_bad_smoothing() -> None:
    logits, target = _inputs()
    with pytest.raises(ValueError, match="label smoothing"):
        smoothed_cross_entropy(logits, target, 1.0)

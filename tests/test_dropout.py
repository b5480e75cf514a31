"""seq2seq's Dropout behaves as nn.Dropout: rate, scaling, eval identity, gradient, dtype, seeding."""

from __future__ import annotations

import pytest
import torch

from seq2seq.model.dropout import Dropout


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_drops_at_rate_p_and_rescales_the_rest(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(200, 500)
    y = Dropout(p).train()(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - p) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))


def test_eval_mode_and_zero_rate_pass_the_input_through() -> None:
    x = torch.randn(3, 4)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.0).train()(x) is x


def test_gradient_is_the_mask() -> None:
    torch.manual_seed(1)
    x = torch.randn(50, 40, requires_grad=True)
    y = Dropout(0.3).train()(x)
    y.sum().backward()
    assert x.grad is not None
    expected = torch.where(y != 0, torch.tensor(1 / 0.7), torch.tensor(0.0))
    torch.testing.assert_close(x.grad, expected)


def test_keeps_dtype_and_follows_the_seed() -> None:
    x = torch.randn(30, 30).bfloat16()
    drop = Dropout(0.4).train()
    torch.manual_seed(7)
    first = drop(x)
    torch.manual_seed(7)
    assert first.dtype == torch.bfloat16 and torch.equal(first, drop(x))


def test_rejects_a_bad_rate() -> None:
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)

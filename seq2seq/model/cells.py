"""Reference recurrent cells written from their equations, on the weights of a trained torch RNN.

torch's fused `nn.LSTM`/`nn.GRU`/`nn.RNN` return only h (and the final c); these steps return every gate, so
a trained model's memory cell can be watched token by token (`seq2seq.inspect.trace`). They read the
weights as torch stores them (gate order i, f, g, o for the LSTM; r, z, n for the GRU), so no checkpoint
changes. With z = [h_{t-1}, x_t] and W = [W_hh, W_ih], b = b_ih + b_hh:

    LSTM: f = σ(W_f z + b_f), i = σ(W_i z + b_i), C̃ = g = tanh(W_g z + b_g), o = σ(W_o z + b_o),
          C_t = f ⊙ C_{t-1} + i ⊙ C̃,  h_t = o ⊙ tanh(C_t)
    GRU:  r = σ(W_r z + b_r), u = σ(W_z z + b_z), n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),
          h_t = (1 - u) ⊙ n + u ⊙ h_{t-1}
    RNN:  h_t = tanh(W z + b)

Shapes: x [B, In], h and c [B, H].
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

GATES: dict[str, tuple[str, ...]] = {"lstm": ("f", "i", "g", "o"), "gru": ("r", "z", "n"), "rnn": ()}
"""Gate names per cell (g is the LSTM candidate C̃)."""
STATES: dict[str, tuple[str, ...]] = {"lstm": ("c", "h"), "gru": ("h",), "rnn": ("h",)}
"""Recurrent state names per cell."""


class CellWeights(NamedTuple):
    """One layer and direction of a torch RNN as stored: w_ih [G * H, In], w_hh [G * H, H], biases [G * H]."""

    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b_ih: torch.Tensor
    b_hh: torch.Tensor
    weight: torch.Tensor
    """[G * H, H + In] = [W_hh, W_ih], acting on [h_{t-1}, x_t] (joined once, not at every step)."""
    bias: torch.Tensor
    """[G * H] = b_ih + b_hh"""


def cell_kind(rnn: nn.Module) -> str:
    """'lstm', 'gru' or 'rnn' (tanh) for a torch RNN module."""
    if isinstance(rnn, nn.LSTM):
        return "lstm"
    if isinstance(rnn, nn.GRU):
        return "gru"
    if isinstance(rnn, nn.RNN) and rnn.nonlinearity == "tanh":
        return "rnn"
    raise ValueError(f"no reference cell for {type(rnn).__name__}")


def cell_weights(rnn: nn.LSTM | nn.GRU | nn.RNN, layer: int, reverse: bool = False) -> CellWeights:
    """The weights of `layer` (0 = bottom), backward direction if `reverse`."""
    suffix = f"l{layer}{'_reverse' if reverse else ''}"
    w_ih = getattr(rnn, f"weight_ih_{suffix}", None)
    w_hh = getattr(rnn, f"weight_hh_{suffix}", None)
    if w_ih is None or w_hh is None:
        raise ValueError(f"{type(rnn).__name__} has no layer {layer}{' (reverse)' if reverse else ''}")
    zeros = w_ih.new_zeros(w_ih.size(0))
    b_ih = getattr(rnn, f"bias_ih_{suffix}", None)
    b_hh = getattr(rnn, f"bias_hh_{suffix}", None)
    b_ih = zeros if b_ih is None else b_ih
    b_hh = zeros if b_hh is None else b_hh
    return CellWeights(w_ih, w_hh, b_ih, b_hh, torch.cat([w_hh, w_ih], dim=1), b_ih + b_hh)


def lstm_step(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w: CellWeights) -> dict[str, torch.Tensor]:
    """One LSTM step -> {f, i, g (= C̃), o, c (= C_t), h}, each [B, H]."""
    pre = torch.cat([h, x], dim=-1) @ w.weight.T + w.bias  # [B, 4H] in torch's order i, f, g, o
    i_pre, f_pre, g_pre, o_pre = pre.chunk(4, dim=-1)
    f, i, g, o = torch.sigmoid(f_pre), torch.sigmoid(i_pre), torch.tanh(g_pre), torch.sigmoid(o_pre)
    c_new = f * c + i * g
    return {"f": f, "i": i, "g": g, "o": o, "c": c_new, "h": o * torch.tanh(c_new)}


def gru_step(x: torch.Tensor, h: torch.Tensor, w: CellWeights) -> dict[str, torch.Tensor]:
    """One GRU step -> {r, z, n, h}, each [B, H]. The reset gate scales W_hn h + b_hn (torch's form), so
    n cannot use the joint [h, x] product; r and z do."""
    hidden = h.size(-1)
    rz = torch.sigmoid(torch.cat([h, x], dim=-1) @ w.weight[: 2 * hidden].T + w.bias[: 2 * hidden])
    r, z = rz.chunk(2, dim=-1)
    n_x = x @ w.w_ih[2 * hidden :].T + w.b_ih[2 * hidden :]
    n_h = h @ w.w_hh[2 * hidden :].T + w.b_hh[2 * hidden :]
    n = torch.tanh(n_x + r * n_h)
    return {"r": r, "z": z, "n": n, "h": (1 - z) * n + z * h}


def rnn_step(x: torch.Tensor, h: torch.Tensor, w: CellWeights) -> dict[str, torch.Tensor]:
    """One tanh RNN step -> {h} [B, H]."""
    return {"h": torch.tanh(torch.cat([h, x], dim=-1) @ w.weight.T + w.bias)}


def step(
    kind: str, x: torch.Tensor, state: dict[str, torch.Tensor], w: CellWeights
) -> dict[str, torch.Tensor]:
    """One step of cell `kind` from state {h} (and {c} for the LSTM) -> gates and new state."""
    if kind == "lstm":
        return lstm_step(x, state["h"], state["c"], w)
    if kind == "gru":
        return gru_step(x, state["h"], w)
    if kind == "rnn":
        return rnn_step(x, state["h"], w)
    raise ValueError(f"unknown cell {kind!r}")

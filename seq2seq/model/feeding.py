"""Teacher-forced input feeding as one autograd Function over the whole target: the LSTM recurrence, Luong
(dot or general) attention and the attentional vector fed to the next step, with a hand-written backward.

With input feeding, each step's LSTM input holds the previous step's attentional vector, so the target
cannot run through one fused `nn.LSTM` call. Stepping `nn.LSTM` and `Attention` under autograd records
some thirty small ops a step and replays them one by one in backward, each computing its own slice of the
weight gradients. Here:
- the embedding part of the LSTM's input projection and both biases are one [T x B, E] x [E, 4H] matmul,
  done by the caller under autograd (`Decoder._forward_fused`);
- a forward step is one [B, 2H] x [2H, 4H] matmul over [feed; h], the cell, the two batched matmuls of
  attention and the combine matmul, with no graph recorded;
- backward runs the recurrence in reverse with only the work that carries gradient to the previous step;
  the derivative factors of the gates are computed for all steps at once before that loop, and every
  weight, key and value gradient is one matmul over all B x T positions after it.

The arithmetic is that of `nn.LSTM` (gates input, forget, cell, output), `Attention` (dot or general:
the keys are projected once per sentence by the caller) and `Decoder._attend`, so values and gradients
equal stepping `Decoder._step` up to floating-point rounding (tests/test_feeding.py, in float64). The
attention weights are returned without gradient.

Notation: B batch, T target length, S source length, E embedding, H decoder hidden, He encoder output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable


class LstmFeedingAttention(torch.autograd.Function):
    """pre [T, B, 4H] (x_t W_ih[:, :E]^T + b_ih + b_hh, time-major), h0, c0, feed0 [B, H],
    w_rec [4H, 2H] (W_ih's feed columns, then W_hh), keys [B, S, H], values [B, S, He], mask [B, S]
    (True = real token), w_combine [H, He + H] -> attentional vectors [B, T, H], weights [B, T, S]."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        pre: torch.Tensor,
        h0: torch.Tensor,
        c0: torch.Tensor,
        feed0: torch.Tensor,
        w_rec: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        w_combine: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        steps, batch, four_h = pre.shape
        hid, enc_size, src_len = four_h // 4, values.size(2), values.size(1)
        x = pre.new_empty(steps + 1, batch, 2 * hid)  # step inputs [feed_{t-1}; h_{t-1}]
        x[0, :, :hid] = feed0
        x[0, :, hid:] = h0
        gates = torch.empty_like(pre)  # activated: i, f, g, o
        cells = pre.new_empty(steps, batch, hid)
        tanh_cells = pre.new_empty(steps, batch, hid)
        combined = pre.new_empty(steps, batch, enc_size + hid)  # [context; h]
        att = pre.new_empty(steps, batch, hid)
        weights = pre.new_empty(steps, batch, src_len)
        w_rec_t, w_combine_t = w_rec.t(), w_combine.t()
        padding = ~mask
        fill = torch.finfo(pre.dtype).min
        cell = c0
        for t in range(steps):
            torch.addmm(pre[t], x[t], w_rec_t, out=gates[t])  # [B, 4H]
            i, f, g, o = gates[t].chunk(4, dim=1)
            gates[t, :, : 2 * hid].sigmoid_()  # i and f
            g.tanh_()
            o.sigmoid_()
            cell = torch.mul(f, cell, out=cells[t]).addcmul_(i, g)
            h = torch.mul(o, torch.tanh(cell, out=tanh_cells[t]), out=x[t + 1, :, hid:])
            scores = torch.bmm(keys, h.unsqueeze(2)).squeeze(2).masked_fill_(padding, fill)  # [B, S]
            a = torch.softmax(scores, dim=1, out=weights[t])
            torch.cat([torch.bmm(a.unsqueeze(1), values).squeeze(1), h], dim=1, out=combined[t])
            torch.mm(combined[t], w_combine_t, out=att[t]).tanh_()
            x[t + 1, :, :hid] = att[t]
        ctx.save_for_backward(gates, cells, tanh_cells, c0, x, combined, att, weights, keys, values, w_rec,
                              w_combine)  # fmt: skip
        out_weights = weights.transpose(0, 1).contiguous()
        ctx.mark_non_differentiable(out_weights)
        return att.transpose(0, 1).contiguous(), out_weights

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_att: torch.Tensor, _grad_weights: torch.Tensor | None) -> tuple[Any, ...]:
        gates, cells, tanh_cells, c0, x, combined, att, weights, keys, values, w_rec, w_combine = (
            ctx.saved_tensors
        )
        steps, batch, four_h = gates.shape
        hid, enc_size = four_h // 4, values.size(2)
        grad_att = grad_att.transpose(0, 1)  # [T, B, H]
        i, f, g, o = gates.chunk(4, dim=2)
        c_prev = torch.cat([c0.unsqueeze(0), cells[:-1]])
        # d(pre-activation gates) = [dc * cell_factors, dh * out_factor]; dc gets dh * o * (1 - tanh(c)^2)
        cell_factors = torch.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], dim=2)
        out_factor = tanh_cells * o * (1 - o)
        dh_to_dc = o * (1 - tanh_cells * tanh_cells)
        tanh_factor = 1 - att * att
        d_gates = torch.empty_like(gates)  # [T, B, 4H]
        d_pre_combine = torch.empty_like(att)  # [T, B, H]
        d_combined = torch.empty_like(combined)  # [T, B, He + H]
        d_scores = torch.empty_like(weights)  # [T, B, S]
        d_x = d_cell = None
        for t in reversed(range(steps)):
            d_att = grad_att[t] if d_x is None else grad_att[t] + d_x[:, :hid]
            torch.mm(torch.mul(d_att, tanh_factor[t], out=d_pre_combine[t]), w_combine, out=d_combined[t])
            d_weights = torch.bmm(values, d_combined[t, :, :enc_size].unsqueeze(2)).squeeze(2)  # [B, S]
            a = weights[t]
            p = a * d_weights
            ds = torch.addcmul(p, a, p.sum(1, keepdim=True), value=-1, out=d_scores[t])
            dh = torch.baddbmm(d_combined[t, :, enc_size:].unsqueeze(1), ds.unsqueeze(1), keys).squeeze(1)
            if d_x is not None:
                dh += d_x[:, hid:]
            d_cell = dh * dh_to_dc[t] if d_cell is None else torch.addcmul(d_cell, dh, dh_to_dc[t])
            dg = d_gates[t]
            torch.mul(cell_factors[t], d_cell.unsqueeze(1), out=dg[:, : 3 * hid].view(batch, 3, hid))
            torch.mul(dh, out_factor[t], out=dg[:, 3 * hid :])
            d_cell = d_cell * f[t]
            d_x = torch.mm(dg, w_rec)  # [B, 2H]: gradients of feed_{t-1} and h_{t-1}
        assert d_x is not None and d_cell is not None
        rows = steps * batch
        d_w_rec = d_gates.view(rows, four_h).t().mm(x[:steps].reshape(rows, 2 * hid))
        d_w_combine = d_pre_combine.view(rows, hid).t().mm(combined.view(rows, -1))
        hiddens = combined[:, :, enc_size:].transpose(0, 1)  # [B, T, H]
        d_keys = torch.bmm(d_scores.permute(1, 2, 0), hiddens)  # [B, S, H]
        d_values = torch.bmm(weights.permute(1, 2, 0), d_combined[:, :, :enc_size].transpose(0, 1))
        return d_gates, d_x[:, hid:], d_cell, d_x[:, :hid], d_w_rec, d_keys, d_values, None, d_w_combine

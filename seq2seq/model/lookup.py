"""A decoding step of a one-layer LSTM decoder with less work: the embedding's input projection looked up.

In `nn.LSTM`, a step's gates are x W_ih^T + b_ih + h W_hh^T + b_hh, where the input x of the decoder is
[embedding(prev); feed] (with input feeding). The embedding part depends only on the previous token, so
for inference it is precomputed once for the whole vocabulary: table = E W_ih[:, :E]^T + b_ih + b_hh
([V, 4H]), and a step is one row lookup plus one [N, 2H] x [2H, 4H] matmul over [feed; h] (H wide
without feeding) instead of [N, E + 2H] x [E + 2H, 4H]. For the Multi30k recipe (E = H = 256) that is a
third less arithmetic in the decoder's LSTM. The cell is then `nn.LSTM`'s (gates i, f, g, o).

The table is for weights that hold still (`Decoder.enable_lookup`: `Translator` enables it for good,
validation during training for its decoding, with a table built anew each time). It is rebuilt when a
weight it depends on is replaced or changed in place by an op autograd counts (the tensors' version
counters; torch's fused optimizers do not count), and only built where it stays small
(`MAX_TABLE_ELEMENTS`). Values equal `nn.LSTM`'s up to floating-point rounding (tests/test_lookup.py).

Notation: N rows, V vocabulary, E embedding, H hidden.
"""

from __future__ import annotations

import torch
from torch import nn

MAX_TABLE_ELEMENTS = 1 << 25
"""At most 32M entries (128 MB in fp32): a 8k vocabulary with H = 1024 fits, a 32k one with H = 256."""


class LookupLstmStep:
    """The step of `rnn` (one-layer, unidirectional `nn.LSTM`) whose input starts with `embed(prev)`."""

    def __init__(self, embed: nn.Embedding, rnn: nn.LSTM) -> None:
        self.embed, self.rnn = embed, rnn
        self._key: tuple[int, ...] = ()
        self._usable = False
        self._table = torch.empty(0)
        self._w_rec_t = torch.empty(0)

    @staticmethod
    def applies(embed: nn.Embedding, rnn: nn.Module) -> bool:
        """A plain one-layer LSTM in fp32/fp64 whose table would stay small."""
        if (
            type(rnn) is not nn.LSTM
            or rnn.num_layers != 1
            or rnn.bidirectional
            or rnn.proj_size
            or not rnn.bias
        ):
            return False
        weight = rnn.all_weights[0][0]
        return (
            weight.dtype in (torch.float32, torch.float64)
            and embed.weight.dtype == weight.dtype
            and embed.num_embeddings * weight.size(0) <= MAX_TABLE_ELEMENTS
        )

    def ready(self) -> bool:
        """Whether the lookup applies to the weights as they are now (`applies`), (re)building the table
        and the recurrent weight first when a weight changed since the last call. Once a step: one cheap
        key of the weights' storages and versions, the rest only when it changes."""
        tensors = (self.embed.weight, *self.rnn._flat_weights)
        # a new dtype or device is new storage: pointers and versions tell every change
        key = tuple(v for t in tensors if t is not None for v in (t.data_ptr(), t._version))
        if key != self._key:
            self._key = key
            self._usable = self.applies(self.embed, self.rnn)
            if self._usable:
                self._build()
        return self._usable

    def _build(self) -> None:
        emb_weight = self.embed.weight
        w_ih, w_hh, b_ih, b_hh = self.rnn.all_weights[0]
        emb = emb_weight.size(1)
        with torch.no_grad():
            self._table = torch.addmm(b_ih + b_hh, emb_weight, w_ih[:, :emb].t())  # [V, 4H]
            self._w_rec_t = torch.cat([w_ih[:, emb:], w_hh], dim=1).t().contiguous()  # [F + H, 4H]

    def __call__(
        self, prev: torch.Tensor, feed: torch.Tensor | None, hidden: torch.Tensor, cell: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """prev [N] token ids, feed [N, F] or None, hidden and cell [N, H] -> new (hidden, cell) [N, H]
        (after `ready()` said True)."""
        x = hidden if feed is None else torch.cat([feed.to(hidden.dtype), hidden], dim=1)
        gates = torch.addmm(self._table.index_select(0, prev), x, self._w_rec_t)  # [N, 4H]: i, f, g, o
        hid = hidden.size(1)
        gates[:, : 2 * hid].sigmoid_()
        gates[:, 3 * hid :].sigmoid_()
        i, f, g, o = gates.chunk(4, dim=1)
        new_cell = torch.addcmul(f * cell, i, g.tanh_())
        return o * torch.tanh(new_cell), new_cell

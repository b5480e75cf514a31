"""Recurrent encoder: embeddings -> (bi)LSTM/GRU, exact for padded batches.

A padded batch must not let padding reach the states: the backward direction would start from it, and the
final states would be taken after it. torch's packed sequences avoid that but run a per-time-step loop on
CPU, about 2x slower than its fused (oneDNN) kernel on a plain tensor. So the encoder runs the fused RNN
once per distinct source length in the batch (token-budget batches are bucketed by length, so there are
few) and puts the rows back in order; with many distinct lengths it falls back to packing.

Notation: B batch, S source length, E embedding size, H hidden size per direction, D directions,
L layers, He = D * H encoder output size.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.model.dropout import Dropout


class EncoderOutput(NamedTuple):
    """Everything the decoder and search need from the source, reorderable along the batch."""

    states: torch.Tensor
    """[B, S, He] top-layer outputs; zero at padded positions."""
    mask: torch.Tensor
    """[B, S] bool, True at real tokens."""
    keys: torch.Tensor
    """[B, S, Hk] attention keys, projected once per sentence (not once per step)."""
    hidden: torch.Tensor
    """[L, B, He] final hidden state of every layer, directions concatenated."""
    cell: torch.Tensor | None
    """[L, B, He] final LSTM memory cell of every layer; None for GRU."""

    def index_select(self, index: torch.Tensor) -> EncoderOutput:
        """Rows `index` of the batch (for beam expansion and reordering)."""
        return EncoderOutput(
            self.states.index_select(0, index),
            self.mask.index_select(0, index),
            self.keys.index_select(0, index),
            self.hidden.index_select(1, index),
            None if self.cell is None else self.cell.index_select(1, index),
        )


def make_rnn(
    cell: str,
    input_size: int,
    hidden: int,
    layers: int,
    dropout: float,
    bidirectional: bool = False,
) -> nn.LSTM | nn.GRU:
    rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
    return rnn_cls(
        input_size,
        hidden,
        num_layers=layers,
        batch_first=True,
        dropout=dropout if layers > 1 else 0.0,
        bidirectional=bidirectional,
    )


def init_forget_bias(rnn: nn.Module, value: float) -> None:
    """Set every LSTM forget gate's bias to `value` (gates are ordered input, forget, cell, output).

    b_ih + b_hh is the effective bias, so the forget chunk of b_ih gets `value` and of b_hh gets 0. A
    forget bias of 1 keeps the memory cell open at the start of training, so gradients reach early tokens.
    """
    if not isinstance(rnn, nn.LSTM):
        return
    h = rnn.hidden_size
    with torch.no_grad():
        for name, param in rnn.named_parameters():
            if name.startswith("bias_ih"):
                param[h : 2 * h].fill_(value)
            elif name.startswith("bias_hh"):
                param[h : 2 * h].zero_()


MAX_LENGTH_GROUPS = 8
"""Above this many distinct source lengths in a batch, packing is faster than one call per length."""


class Encoder(nn.Module):
    def __init__(
        self,
        embed: nn.Embedding,
        cell: str,
        hidden: int,
        layers: int,
        bidirectional: bool,
        dropout: float,
        emb_dropout: float,
    ) -> None:
        super().__init__()
        self.embed = embed
        self.emb_dropout = Dropout(emb_dropout)
        self.rnn = make_rnn(cell, embed.embedding_dim, hidden, layers, dropout, bidirectional)
        self.layers = layers
        self.directions = 2 if bidirectional else 1
        self.output_size = hidden * self.directions

    def forward(
        self, src_ids: torch.Tensor, src_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """src_ids [B, S], src_lengths [B] -> states [B, S, He], hidden [L, B, He], cell or None."""
        emb = self.emb_dropout(self.embed(src_ids))  # [B, S, E]
        lengths = src_lengths.cpu()
        distinct = torch.unique(lengths)
        if len(distinct) <= MAX_LENGTH_GROUPS:
            states, final = self._by_length(emb, lengths, distinct)
        else:
            packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
            out, final = self.rnn(packed)
            states, _ = pad_packed_sequence(out, batch_first=True, total_length=src_ids.size(1))
        if isinstance(final, tuple):
            hidden, cell = self._join_directions(final[0]), self._join_directions(final[1])
        else:
            hidden, cell = self._join_directions(final), None
        return states, hidden, cell

    def _by_length(
        self, emb: torch.Tensor, lengths: torch.Tensor, distinct: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
        """One fused RNN call per distinct length -> states [B, S, He] (zero at padding), final states
        [L * D, B, H] (a tuple for LSTM), rows in the input order."""
        width = emb.size(1)
        if len(distinct) == 1 and int(distinct[0]) == width:  # no padding at all
            out, final = self.rnn(emb)
            return out, final
        outs, finals, order = [], [], []
        for length in distinct.tolist():
            rows = (lengths == length).nonzero().squeeze(1).to(emb.device)
            out, final = self.rnn(emb.index_select(0, rows)[:, :length])
            outs.append(nn.functional.pad(out, (0, 0, 0, width - length)))  # [b, S, He], zero padding
            finals.append(final if isinstance(final, tuple) else (final,))
            order.append(rows)
        perm = torch.cat(order)  # row i of the concatenated groups is input row perm[i]
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(len(perm), device=perm.device)
        states = torch.cat(outs).index_select(0, inverse)
        joined = [torch.cat(parts, dim=1).index_select(1, inverse) for parts in zip(*finals, strict=True)]
        return states, ((joined[0], joined[1]) if len(joined) == 2 else joined[0])

    def _join_directions(self, state: torch.Tensor) -> torch.Tensor:
        """[L * D, B, H] -> [L, B, D * H]."""
        _, batch, hidden = state.shape
        state = state.view(self.layers, self.directions, batch, hidden)
        return state.transpose(1, 2).reshape(self.layers, batch, self.directions * hidden)

"""Recurrent encoder: embeddings -> (bi)LSTM/GRU/tanh RNN over packed sequences.

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
    """[L, B, He] final LSTM memory cell of every layer; None for GRU and RNN."""

    def index_select(self, index: torch.Tensor) -> EncoderOutput:
        """Rows `index` of the batch (for beam expansion and reordering)."""
        return EncoderOutput(
            self.states.index_select(0, index),
            self.mask.index_select(0, index),
            self.keys.index_select(0, index),
            self.hidden.index_select(1, index),
            None if self.cell is None else self.cell.index_select(1, index),
        )


RNN_CLASSES: dict[str, type[nn.LSTM] | type[nn.GRU] | type[nn.RNN]] = {
    "lstm": nn.LSTM,
    "gru": nn.GRU,
    "rnn": nn.RNN,
}
"""`model.cell` -> torch module; `rnn` is the plain tanh RNN (no gates, no memory cell)."""


def make_rnn(
    cell: str,
    input_size: int,
    hidden: int,
    layers: int,
    dropout: float,
    bidirectional: bool = False,
) -> nn.LSTM | nn.GRU | nn.RNN:
    return RNN_CLASSES[cell](
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
        packed = pack_padded_sequence(emb, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, final = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=src_ids.size(1))
        if isinstance(final, tuple):
            hidden, cell = self._join_directions(final[0]), self._join_directions(final[1])
        else:
            hidden, cell = self._join_directions(final), None
        return states, hidden, cell

    def _join_directions(self, state: torch.Tensor) -> torch.Tensor:
        """[L * D, B, H] -> [L, B, D * H]."""
        _, batch, hidden = state.shape
        state = state.view(self.layers, self.directions, batch, hidden)
        return state.transpose(1, 2).reshape(self.layers, batch, self.directions * hidden)

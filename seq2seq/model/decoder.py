"""Attentional recurrent decoder (Luong-style output: tanh(W [context; h]) -> output layer).

With input feeding, the previous step's attentional vector is concatenated to the input embedding, so
the teacher-forced pass has to step through the target: for one LSTM layer with dot or general attention
(the recipes' decoder) it runs as one autograd Function with a hand-written backward
(`seq2seq.model.feeding`), other modes step `_step` under autograd. Without input feeding, the whole
target runs through one fused `nn.LSTM` call and attention is one batched matmul over all positions.
Either way the output layer and the loss are applied once to all positions by the caller.

Notation: B batch, T target length, S source length, E embedding, H decoder hidden, L layers, V vocab.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn

from seq2seq.model.attention import Attention
from seq2seq.model.dropout import Dropout
from seq2seq.model.encoder import EncoderOutput, make_rnn
from seq2seq.model.feeding import LstmFeedingAttention
from seq2seq.model.lookup import LookupLstmStep


class DecoderState(NamedTuple):
    """Recurrent state between steps, reorderable along the batch for beam search."""

    hidden: torch.Tensor
    """[L, B, H]"""
    cell: torch.Tensor | None
    """[L, B, H] LSTM memory cell; None for GRU and RNN."""
    feed: torch.Tensor
    """[B, H] previous attentional vector (input feeding; zeros at the start or when unused)."""

    def index_select(self, index: torch.Tensor) -> DecoderState:
        return DecoderState(
            self.hidden.index_select(1, index),
            None if self.cell is None else self.cell.index_select(1, index),
            self.feed.index_select(0, index),
        )


class Decoder(nn.Module):
    def __init__(
        self,
        embed: nn.Embedding,
        cell: str,
        hidden: int,
        layers: int,
        enc_size: int,
        attention: str,
        input_feeding: bool,
        dropout: float,
        emb_dropout: float,
        out_dropout: float,
    ) -> None:
        super().__init__()
        self.embed = embed
        self.input_feeding = input_feeding
        self.hidden_size = hidden
        self.emb_dropout = Dropout(emb_dropout)
        in_size = embed.embedding_dim + (hidden if input_feeding else 0)
        self.rnn = make_rnn(cell, in_size, hidden, layers, dropout)
        self.attention = Attention(attention, hidden, enc_size)
        self.combine = nn.Linear(enc_size + hidden, hidden, bias=False)
        self.out_dropout = Dropout(out_dropout)
        self._lookup: LookupLstmStep | None = None
        self.lookup_enabled = False
        """Look the embedding's input projection up in inference (`enable_lookup`)."""

    def _rnn_state(self, state: DecoderState) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return state.hidden if state.cell is None else (state.hidden, state.cell)

    def _attend(self, h: torch.Tensor, enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """h [B, T, H] -> attentional vectors [B, T, H], weights [B, T, S]."""
        context, weights = self.attention(h, enc.keys, enc.states, enc.mask)
        return torch.tanh(self.combine(torch.cat([context, h], dim=-1))), weights

    def step(
        self, prev: torch.Tensor, state: DecoderState, enc: EncoderOutput
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """prev [N] token ids -> attentional vector [N, H], new state, attention weights [N, S] (N = B x G
        rows against the B sentences of `enc`, see `Attention`).

        After `enable_lookup`, in inference (eval mode, no gradient, no autocast) a one-layer LSTM looks
        its embedding input projection up (`seq2seq.model.lookup`); otherwise the step runs `nn.LSTM`."""
        lookup = self._lookup_step(prev)
        if lookup is None:
            return self._step(self.emb_dropout(self.embed(prev)), state, enc)
        assert state.cell is not None
        feed = state.feed if self.input_feeding else None
        hidden, cell = lookup(prev, feed, state.hidden[0], state.cell[0])
        att, weights = self._attend(hidden.unsqueeze(1), enc)
        att = att.squeeze(1)
        return att, DecoderState(hidden.unsqueeze(0), cell.unsqueeze(0), att), weights.squeeze(1)

    def enable_lookup(self) -> None:
        """Let inference steps use a lookup table of the embedding's input projection, built at the first
        step. For weights that hold still until `disable_lookup` (`Translator` enables it for good,
        validation during training for its decoding): the table follows in-place updates that autograd
        counts, but fused optimizers change weights without a trace."""
        self.lookup_enabled, self._lookup = True, None

    def disable_lookup(self) -> None:
        """Step `nn.LSTM` again and free the table."""
        self.lookup_enabled, self._lookup = False, None

    @contextlib.contextmanager
    def looked_up(self) -> Iterator[None]:
        """The lookup with a table of the weights as they are now, for a stretch in which they hold still
        (a validation between two optimizer steps); off and freed afterwards."""
        self.enable_lookup()
        try:
            yield
        finally:
            self.disable_lookup()

    def _lookup_step(self, prev: torch.Tensor) -> LookupLstmStep | None:
        """The lookup step when it applies now, made (again) for the current embedding and LSTM."""
        if (
            not self.lookup_enabled
            or self.training
            or torch.is_grad_enabled()
            or torch.is_autocast_enabled(prev.device.type)
            or type(self.rnn) is not nn.LSTM  # a GRU, a quantized LSTM
        ):
            return None
        if self._lookup is None or self._lookup.rnn is not self.rnn or self._lookup.embed is not self.embed:
            self._lookup = LookupLstmStep(self.embed, self.rnn)
        return self._lookup if self._lookup.ready() else None

    def _step(
        self, emb: torch.Tensor, state: DecoderState, enc: EncoderOutput
    ) -> tuple[torch.Tensor, DecoderState, torch.Tensor]:
        """One step from the embedded (and dropped-out) input emb [B, E]."""
        x = emb.unsqueeze(1)  # [B, 1, E]
        if self.input_feeding:
            x = torch.cat([x, state.feed.unsqueeze(1).to(x.dtype)], dim=-1)
        out, rnn_state = self.rnn(x, self._rnn_state(state))
        att, weights = self._attend(out, enc)
        att = att.squeeze(1)
        hidden, cell = rnn_state if isinstance(rnn_state, tuple) else (rnn_state, None)
        return att, DecoderState(hidden, cell, att), weights.squeeze(1)

    def forward(
        self, tgt_in: torch.Tensor, state: DecoderState, enc: EncoderOutput
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: tgt_in [B, T] -> attentional vectors [B, T, H], weights [B, T, S].

        The whole target is embedded (and dropped out) once: per-step embedding calls would each
        backpropagate into a dense [V, E] gradient."""
        emb = self.emb_dropout(self.embed(tgt_in))  # [B, T, E]
        if not self.input_feeding:
            out, _ = self.rnn(emb, self._rnn_state(state))  # one fused call over all T
            return self._attend(out, enc)
        if self._fusable(emb):
            return self._forward_fused(emb, state, enc)
        return self._forward_stepped(emb, state, enc)

    def _forward_stepped(
        self, emb: torch.Tensor, state: DecoderState, enc: EncoderOutput
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`_step` over the embedded target [B, T, E] under autograd: any mode, the fused path's reference."""
        atts, weights = [], []
        for t in range(emb.size(1)):
            att, state, w = self._step(emb[:, t], state, enc)
            atts.append(att)
            weights.append(w)
        return torch.stack(atts, dim=1), torch.stack(weights, dim=1)

    def _fusable(self, emb: torch.Tensor) -> bool:
        """`LstmFeedingAttention` covers one LSTM layer with dot or general attention, in fp32 or fp64
        outside autocast (under bf16 autocast the decoder steps as before)."""
        return (
            isinstance(self.rnn, nn.LSTM)
            and self.rnn.num_layers == 1
            and self.attention.kind in ("dot", "general")
            and emb.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled(emb.device.type)
        )

    def _forward_fused(
        self, emb: torch.Tensor, state: DecoderState, enc: EncoderOutput
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """emb [B, T, E] -> attentional vectors [B, T, H], weights [B, T, S] (without gradient).

        The embedding part of the LSTM's input projection, with both biases, is one matmul over all
        T x B positions (time-major [T, B, 4H] for the recurrence)."""
        w_ih, w_hh, b_ih, b_hh = self.rnn.all_weights[0]  # w_ih [4H, E + H]: embedding, then feed columns
        emb_size = emb.size(-1)
        pre = nn.functional.linear(emb.transpose(0, 1), w_ih[:, :emb_size], b_ih + b_hh)
        w_rec = torch.cat([w_ih[:, emb_size:], w_hh], dim=1)  # [4H, 2H]
        assert state.cell is not None
        att, weights = LstmFeedingAttention.apply(
            pre.contiguous(),
            state.hidden[0],
            state.cell[0],
            state.feed.to(emb.dtype),
            w_rec,
            enc.keys,
            enc.states,
            enc.mask,
            self.combine.weight,
        )
        return att, weights

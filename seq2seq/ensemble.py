"""Ensembles: several models that share a vocabulary, searched as one.

An `Ensemble` speaks the search protocol (`encode`, `init_state`, `decode_step`), so greedy and beam
search, translation and validation use it unchanged. At every step each member scores the same prefix and
the ensemble's next-token distribution is the mean of the members' probabilities, computed in log space
as logsumexp_m(log p_m) - log M (as fairseq does): a proper distribution, and a model that is sure
cannot veto the others with a -inf. Attention is the members' mean. The encoder output and decoder state
are tuples with one entry per member, reordered together.

Notation: M members, N rows (B sentences, or B x K hypotheses), V vocabulary, S source length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from seq2seq.search import DecoderModel


class EnsembleEncoding(NamedTuple):
    parts: tuple[Any, ...]
    """One encoder output per member."""

    def index_select(self, index: torch.Tensor) -> EnsembleEncoding:
        return EnsembleEncoding(tuple(p.index_select(index) for p in self.parts))


class EnsembleState(NamedTuple):
    parts: tuple[Any, ...]
    """One decoder state per member."""

    def index_select(self, index: torch.Tensor) -> EnsembleState:
        return EnsembleState(tuple(p.index_select(index) for p in self.parts))


class EnsembleStep(NamedTuple):
    log_probs: torch.Tensor
    """[N, V] log of the members' mean probability (a fresh tensor: search may modify it)."""
    state: EnsembleState
    attention: torch.Tensor
    """[N, S] the members' mean attention."""


class Ensemble:
    """Models searched together; each must score the same vocabulary ([N, V] with the same V)."""

    def __init__(self, models: Sequence[DecoderModel]) -> None:
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.models = list(models)

    def eval(self) -> Ensemble:
        for m in self.models:
            if isinstance(m, torch.nn.Module):
                m.eval()
        return self

    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor) -> EnsembleEncoding:
        return EnsembleEncoding(tuple(m.encode(src_ids, src_lengths) for m in self.models))

    def init_state(self, enc: EnsembleEncoding) -> EnsembleState:
        return EnsembleState(tuple(m.init_state(e) for m, e in zip(self.models, enc.parts, strict=True)))

    def decode_step(self, prev: torch.Tensor, state: EnsembleState, enc: EnsembleEncoding) -> EnsembleStep:
        outs = [
            m.decode_step(prev, s, e) for m, s, e in zip(self.models, state.parts, enc.parts, strict=True)
        ]
        stacked = torch.stack([o.log_probs.float() for o in outs])  # [M, N, V]
        log_probs = torch.logsumexp(stacked, dim=0) - math.log(len(outs))  # one member: its own
        attention = torch.stack([o.attention.float() for o in outs]).mean(dim=0)  # [N, S]
        return EnsembleStep(log_probs, EnsembleState(tuple(o.state for o in outs)), attention)

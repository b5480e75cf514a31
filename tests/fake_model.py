"""A scripted fake model for search tests: every beam and score can be worked out by hand.

A `Script` maps a decoded prefix (output token ids so far, BOS excluded) to the probabilities of the next
token; tokens it does not list have probability 0 (log-probability -inf), and a prefix it does not list
gets `default` (EOS with probability 1 unless said otherwise). `FakeModel` speaks the search protocol
(`encode`, `init_state`, `decode_step`): the first source token of each sentence picks its script
(`A + i` picks `scripts[i]`), so one batch can mix scripts. Its state is the prefix decoded so far, so a
beam that is reordered wrongly is fed the wrong distribution. Its attention is a fixed function of the
prefix and the source length (`attention_row`), so the attention history of any hypothesis can be
recomputed. `calls` counts `decode_step` calls.

Vocabulary: PAD=0 UNK=1 BOS=2 EOS=3 and the words A=4, B=5, C=6, D=7 (V = 8).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from seq2seq.special import BOS, EOS, PAD

A, B, C, D = 4, 5, 6, 7
VOCAB = 8

Prefix = tuple[int, ...]


@dataclass(frozen=True)
class Script:
    """Next-token probabilities by prefix; unlisted tokens have probability 0."""

    table: Mapping[Prefix, Mapping[int, float]]
    default: Mapping[int, float] = field(default_factory=lambda: {EOS: 1.0})

    def probs(self, prefix: Prefix) -> Mapping[int, float]:
        return self.table.get(prefix, self.default)

    def log_probs(self, prefix: Prefix) -> torch.Tensor:
        """[V] log-probabilities of the token after `prefix`."""
        row = torch.full((VOCAB,), float("-inf"))
        for tok, p in self.probs(prefix).items():
            row[tok] = math.log(p)
        return row

    def path_log_prob(self, tokens: Sequence[int]) -> float:
        """Sum of the log-probabilities of `tokens` (EOS included) decoded from the empty prefix."""
        total = 0.0
        for t, tok in enumerate(tokens):
            p = self.probs(tuple(tokens[:t])).get(tok, 0.0)
            total += math.log(p) if p > 0 else float("-inf")
        return total


def attention_row(prefix: Prefix, src_len: int, width: int) -> torch.Tensor:
    """[width] attention after `prefix`: positive on the first `src_len` positions, summing to 1.

    Prefixes whose position-weighted token sums differ modulo 7 get different rows (for src_len >= 2).
    """
    key = len(prefix) + sum((i + 1) * tok for i, tok in enumerate(prefix))
    weights = 1.0 + ((torch.arange(src_len) + key) % 7).float()
    row = torch.zeros(width)
    row[:src_len] = weights / weights.sum()
    return row


class FakeEncoderOutput(NamedTuple):
    script_ids: torch.Tensor
    """[B] which script each row follows."""
    src_lengths: torch.Tensor
    """[B]"""
    width: int
    """S, the padded source length."""

    def index_select(self, index: torch.Tensor) -> FakeEncoderOutput:
        return FakeEncoderOutput(
            self.script_ids.index_select(0, index), self.src_lengths.index_select(0, index), self.width
        )


class FakeState(NamedTuple):
    prefix: torch.Tensor
    """[B, t] tokens fed so far, BOS first."""

    def index_select(self, index: torch.Tensor) -> FakeState:
        return FakeState(self.prefix.index_select(0, index))


class FakeStep(NamedTuple):
    log_probs: torch.Tensor
    """[B, V]"""
    state: FakeState
    attention: torch.Tensor
    """[B, S]"""


class FakeModel:
    def __init__(self, scripts: Sequence[Script]) -> None:
        self.scripts = list(scripts)
        self.calls = 0

    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor) -> FakeEncoderOutput:
        return FakeEncoderOutput(src_ids[:, 0] - A, src_lengths, src_ids.size(1))

    def init_state(self, enc: FakeEncoderOutput) -> FakeState:
        return FakeState(torch.empty(enc.script_ids.size(0), 0, dtype=torch.long))

    def decode_step(self, prev: torch.Tensor, state: FakeState, enc: FakeEncoderOutput) -> FakeStep:
        self.calls += 1
        prefix = torch.cat([state.prefix, prev.unsqueeze(1)], dim=1)  # [N, t + 1]
        rows, sentences = prefix.size(0), enc.script_ids.size(0)
        assert rows % sentences == 0, "each sentence has the same number of consecutive rows"
        group = rows // sentences  # hypotheses per sentence (search keeps `enc` one row per sentence)
        log_probs, attention = [], []
        for row, script_id, src_len in zip(
            prefix.tolist(),
            enc.script_ids.repeat_interleave(group).tolist(),
            enc.src_lengths.repeat_interleave(group).tolist(),
            strict=True,
        ):
            assert row[0] == BOS, "every hypothesis starts from BOS"
            decoded = tuple(row[1:])
            log_probs.append(self.scripts[script_id].log_probs(decoded))
            attention.append(attention_row(decoded, src_len, enc.width))
        return FakeStep(torch.stack(log_probs), FakeState(prefix), torch.stack(attention))


def fake_batch(script_ids: Sequence[int], src_lengths: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids [B, S] (EOS-terminated, PAD after) whose first token picks a script, and lengths [B].

    Every length counts the source EOS and must be at least 2.
    """
    width = max(src_lengths)
    src_ids = torch.full((len(script_ids), width), PAD, dtype=torch.long)
    for b, (script_id, length) in enumerate(zip(script_ids, src_lengths, strict=True)):
        assert length >= 2, "a fake source needs its script token and EOS"
        src_ids[b, : length - 1] = A + script_id
        src_ids[b, length - 1] = EOS
    return src_ids, torch.tensor(list(src_lengths))

"""Attention over encoder states: Bahdanau (additive) or Luong (dot, general) scores, padding masked.

Keys are projected once per sentence (`project_keys`), so a decoding step costs one batched matmul (or
one broadcast add for additive scores). The same call serves one step (T = 1) and a whole teacher-forced
target (T > 1). Shapes: query [N, T, Hq], keys [B, S, Hk], values [B, S, He], mask [B, S], where N = B x G:
beam search asks with the G = K consecutive hypotheses of each sentence at once, so the encoder states
are stored and read once per sentence rather than once per hypothesis.
"""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    def __init__(self, kind: str, query_size: int, value_size: int) -> None:
        super().__init__()
        self.kind = kind
        self.key_proj: nn.Linear | None = None
        self.query_proj: nn.Linear | None = None
        self.energy: nn.Linear | None = None
        if kind == "general":
            self.key_proj = nn.Linear(value_size, query_size, bias=False)
        elif kind == "bahdanau":
            self.key_proj = nn.Linear(value_size, query_size, bias=False)
            self.query_proj = nn.Linear(query_size, query_size, bias=True)
            self.energy = nn.Linear(query_size, 1, bias=False)
        elif kind == "dot":
            if query_size != value_size:
                raise ValueError(f"dot attention needs query size {query_size} == value size {value_size}")
        else:
            raise ValueError(f"unknown attention {kind!r}")

    def project_keys(self, values: torch.Tensor) -> torch.Tensor:
        """values [B, S, He] -> keys [B, S, Hk] (the values themselves for dot attention)."""
        return values if self.key_proj is None else self.key_proj(values)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> context [N, T, He], weights [N, T, S] (zero at padded source positions)."""
        rows, steps = query.shape[:2]
        batch = keys.size(0)
        if rows != batch:  # the G = N / B queries of each sentence share its keys: [B, G * T, Hq]
            query = query.reshape(batch, -1, query.size(-1))
        if self.energy is not None:
            assert self.query_proj is not None
            q = self.query_proj(query).unsqueeze(2)  # [B, T', 1, Hk]
            scores = self.energy(torch.tanh(q + keys.unsqueeze(1))).squeeze(3)  # [B, T', S]
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))  # [B, T', S]
        scores = scores.masked_fill(~mask.unsqueeze(1), torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights, values)  # [B, T', He]
        if rows != batch:
            return context.reshape(rows, steps, -1), weights.reshape(rows, steps, -1)
        return context, weights

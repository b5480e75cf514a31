"""Attention properties for every kind: shapes, weights sum to 1, padding masked, one step (T = 1) equals the
matching row of a whole target (T > 1), a padded row equals the sentence alone."""

from __future__ import annotations

import pytest
import torch

from seq2seq.model import Attention

KINDS = ["bahdanau", "dot", "general"]
BATCH, TGT_LEN, QUERY_SIZE = 3, 4, 6
SRC_LENGTHS = [5, 2, 3]


def value_size(kind: str) -> int:
    """Dot attention needs value size == query size; the others get a different one to catch mix-ups."""
    return QUERY_SIZE if kind == "dot" else 10


def setup(kind: str) -> tuple[Attention, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> attention, query [B, T, Hq], values [B, S, He] (zero at padding), mask [B, S]."""
    torch.manual_seed(0)
    attention = Attention(kind, QUERY_SIZE, value_size(kind)).eval()
    query = torch.randn(BATCH, TGT_LEN, QUERY_SIZE)
    width = max(SRC_LENGTHS)
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(SRC_LENGTHS).unsqueeze(1)
    values = torch.randn(BATCH, width, value_size(kind)) * mask.unsqueeze(2)
    return attention, query, values, mask


def attend(
    attention: Attention, query: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return attention(query, attention.project_keys(values), values, mask)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tgt_len", [1, TGT_LEN])
def test_shapes_and_weights_sum_to_one(kind: str, tgt_len: int) -> None:
    attention, query, values, mask = setup(kind)
    context, weights = attend(attention, query[:, :tgt_len], values, mask)
    assert context.shape == (BATCH, tgt_len, value_size(kind))
    assert weights.shape == (BATCH, tgt_len, max(SRC_LENGTHS))
    torch.testing.assert_close(weights.sum(-1), torch.ones(BATCH, tgt_len))
    assert bool((weights >= 0).all())


@pytest.mark.parametrize("kind", KINDS)
def test_padding_is_masked(kind: str) -> None:
    """Zero weight at padded positions; whatever the padded keys and values hold changes nothing."""
    attention, query, values, mask = setup(kind)
    context, weights = attend(attention, query, values, mask)
    for b, n in enumerate(SRC_LENGTHS):
        assert bool((weights[b, :, n:] == 0).all())
        assert bool((weights[b, :, :n] > 0).all())
    noisy = torch.where(mask.unsqueeze(2), values, 100.0 * torch.randn_like(values))
    noisy_context, noisy_weights = attend(attention, query, noisy, mask)
    torch.testing.assert_close(noisy_weights, weights)
    torch.testing.assert_close(noisy_context, context)


@pytest.mark.parametrize("kind", KINDS)
def test_one_step_equals_row_of_whole_target(kind: str) -> None:
    attention, query, values, mask = setup(kind)
    context, weights = attend(attention, query, values, mask)
    for t in range(TGT_LEN):
        step_context, step_weights = attend(attention, query[:, t : t + 1], values, mask)
        torch.testing.assert_close(step_context, context[:, t : t + 1])
        torch.testing.assert_close(step_weights, weights[:, t : t + 1])


@pytest.mark.parametrize("kind", KINDS)
def test_padded_row_equals_sentence_alone(kind: str) -> None:
    attention, query, values, mask = setup(kind)
    context, weights = attend(attention, query, values, mask)
    for b, n in enumerate(SRC_LENGTHS):
        alone_context, alone_weights = attend(
            attention, query[b : b + 1], values[b : b + 1, :n], mask[b : b + 1, :n]
        )
        torch.testing.assert_close(alone_context, context[b : b + 1])
        torch.testing.assert_close(alone_weights, weights[b : b + 1, :, :n])


def test_dot_attends_to_the_matching_key() -> None:
    """Dot scores are query . value: with unit values, a query along one of them scores it highest, and
    scaled up, puts (almost) all weight there."""
    attention, _, values, mask = setup("dot")
    values = torch.nn.functional.normalize(values, dim=-1)  # padding stays zero
    assert attention.project_keys(values) is values
    query = 200.0 * values[:, 1:2]  # [B, 1, He]: every sentence has at least 2 tokens
    context, weights = attend(attention, query, values, mask)
    assert weights[:, 0].argmax(-1).tolist() == [1] * BATCH
    torch.testing.assert_close(context, values[:, 1:2], atol=1e-3, rtol=1e-3)


def test_bad_kind_or_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown attention"):
        Attention("luong", QUERY_SIZE, QUERY_SIZE)
    with pytest.raises(ValueError, match="dot attention needs"):
        Attention("dot", QUERY_SIZE, QUERY_SIZE + 1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("steps", [1, TGT_LEN])
def test_grouped_queries_equal_expanded_keys(kind: str, steps: int) -> None:
    """G consecutive queries per sentence against one copy of its keys (how beam search asks) equal
    the same queries against keys copied G times."""
    attention, _, values, mask = setup(kind)
    group = 4
    query = torch.randn(BATCH * group, steps, QUERY_SIZE)
    keys = attention.project_keys(values)
    with torch.no_grad():
        context, weights = attention(query, keys, values, mask)
        expand = torch.arange(BATCH).repeat_interleave(group)
        ref_context, ref_weights = attention(query, keys[expand], values[expand], mask[expand])
    assert context.shape == ref_context.shape == (BATCH * group, steps, value_size(kind))
    torch.testing.assert_close(context, ref_context)
    torch.testing.assert_close(weights, ref_weights)

"""Sampling: top-k 1 is greedy, a seed reproduces the samples, top-p keeps the smallest nucleus."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from seq2seq import Seq2SeqError, Translator
from seq2seq.cli import app
from seq2seq.search import SearchOptions, sample_search, sampling_distribution, search
from seq2seq.special import EOS
from tests.fake_model import A, B, C, D, FakeModel, Script, fake_batch

# Every step: A, B, C, D or EOS, all equally likely, for up to 5 tokens: 5^5+ distinct paths.
UNIFORM = Script({}, default={A: 0.2, B: 0.2, C: 0.2, D: 0.2, EOS: 0.2})
LIMITS = {"length_penalty": 0.0, "max_len_a": 0.0, "max_len_b": 5}


def sample(o: SearchOptions, sentences: int = 3) -> list[list[list[int]]]:
    src_ids, lengths = fake_batch([0] * sentences, [3] * sentences)
    hyps = search(FakeModel([UNIFORM]), src_ids, lengths, o)
    return [[h.tokens for h in sentence] for sentence in hyps]


def test_samples_are_reproducible_with_a_seed_and_differ_across_seeds() -> None:
    o = SearchOptions(sample=True, n_best=8, seed=7, **LIMITS)  # type: ignore[arg-type]
    first = sample(o)
    assert first == sample(o)
    assert first != sample(SearchOptions(sample=True, n_best=8, seed=8, **LIMITS))  # type: ignore[arg-type]
    assert all(len(s) == 8 for s in first)
    assert len({tuple(t) for s in first for t in s}) > 5  # they really are draws


def test_samples_respect_the_length_limits_and_score_with_the_model() -> None:
    o = SearchOptions(sample=True, n_best=20, temperature=3.0, min_len=2, **LIMITS)  # type: ignore[arg-type]
    src_ids, lengths = fake_batch([0], [3])
    (hyps,) = search(FakeModel([UNIFORM]), src_ids, lengths, o)
    for h in hyps:
        assert 2 <= len(h.tokens) <= 5 and EOS not in h.tokens
        # the model's log-probability of every token (EOS included), not the tempered one
        assert h.log_prob == pytest.approx((len(h.tokens) + 1) * math.log(0.2), abs=1e-5)


def test_top_k_1_is_greedy_on_a_real_model(checkpoint: Path) -> None:
    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    sentences = ["4721", "", "12", "300000", "99"]
    greedy = translator.translate(sentences, beam=1)
    for seed, temperature in ((0, 1.0), (5, 2.0)):
        assert (
            translator.translate(sentences, sample=True, top_k=1, seed=seed, temperature=temperature)
            == greedy
        )
    opts = translator.options(sample=True, top_k=1, n_best=3)
    for t in translator.translate_batch(sentences, opts):
        assert len({c.text for c in t.candidates}) <= 1 and len(t.candidates) == (3 if t.source else 0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.01, 1.0), min_size=2, max_size=12),
    st.floats(0.05, 1.0),
    st.integers(0, 12),
    st.floats(0.3, 3.0),
)
def test_sampling_distribution_keeps_the_smallest_nucleus(
    weights: list[float], top_p: float, top_k: int, temperature: float
) -> None:
    log_probs = torch.tensor(weights).log_softmax(-1).unsqueeze(0)
    probs = sampling_distribution(log_probs, temperature, top_k, top_p)[0]
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)
    scaled = (log_probs[0] / temperature).softmax(-1)
    order = scaled.argsort(descending=True).tolist()
    if 0 < top_k < len(weights):
        allowed = order[:top_k]  # ties at the k-th value may keep a few more: compare by value
        kth = float(scaled[order[top_k - 1]])
        allowed = [i for i in order if float(scaled[i]) >= kth]
    else:
        allowed = order
    kept = [i for i in range(len(weights)) if float(probs[i]) > 0]
    assert set(kept) <= set(allowed)
    mass = scaled[allowed].sum()
    kept_mass = float(scaled[kept].sum()) / float(mass)
    assert kept_mass >= min(top_p, 1.0) - 1e-5  # the nucleus reaches top_p of the top-k mass ...
    least = min(kept, key=lambda i: float(scaled[i]))
    without = kept_mass - float(scaled[least]) / float(mass)
    assert without < top_p + 1e-5 or top_p >= 1.0  # ... and is the smallest set that does
    renormalised = scaled[kept] / scaled[kept].sum()
    assert torch.allclose(probs[kept], renormalised, atol=1e-5)


def test_sampling_options_are_validated() -> None:
    for bad in ({"temperature": 0.0}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": -1}, {"n_best": 0}):
        with pytest.raises(Seq2SeqError):
            SearchOptions(sample=True, **bad)  # type: ignore[arg-type]
    assert SearchOptions(sample=True, beam=1, n_best=10).n_best == 10  # samples are not bound by the beam


def test_an_explicit_generator_is_used() -> None:
    o = SearchOptions(sample=True, n_best=4, **LIMITS)  # type: ignore[arg-type]
    src_ids, lengths = fake_batch([0], [3])
    a = sample_search(FakeModel([UNIFORM]), src_ids, lengths, o, torch.Generator().manual_seed(3))
    b = sample_search(FakeModel([UNIFORM]), src_ids, lengths, o, torch.Generator().manual_seed(3))
    assert [h.tokens for h in a[0]] == [h.tokens for h in b[0]]


def test_cli_sampling_is_line_exact_and_reproducible(checkpoint: Path) -> None:
    runner = CliRunner()
    args = ["translate", "-m", str(checkpoint), "--sample", "--seed", "3", "--temperature", "1.5"]
    lines = "4721\n\n12\n99\n"
    one = runner.invoke(app, args, input=lines)
    assert one.exit_code == 0, one.output
    assert len(one.stdout.splitlines()) == 4 and one.stdout.splitlines()[1] == ""
    assert runner.invoke(app, args, input=lines).stdout == one.stdout
    many = runner.invoke(app, [*args, "--n-samples", "3", "--format", "jsonl"], input=lines)
    rows = [json.loads(line) for line in many.stdout.splitlines()]
    assert [len(r["n_best"]) for r in rows] == [3, 0, 3, 3]
    plain = runner.invoke(app, [*args, "--n-samples", "3"], input=lines)
    assert plain.exit_code == 2 and "--n-samples > 1 needs --format jsonl" in plain.stderr

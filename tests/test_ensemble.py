"""Ensembles: the mean of the members' probabilities at every step, in greedy and beam search."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seq2seq import Seq2SeqError, Translator
from seq2seq.checkpoint import load_checkpoint, load_model, save_checkpoint
from seq2seq.cli import app
from seq2seq.ensemble import Ensemble
from seq2seq.search import SearchOptions, search
from seq2seq.special import EOS
from tests.fake_model import A, B, C, FakeModel, Script, fake_batch

OPTS = {"length_penalty": 0.0, "max_len_a": 0.0, "max_len_b": 5}

# Two members that disagree: alone, the first picks A and the second B.
FIRST = Script({(): {A: 0.6, B: 0.4}, (B,): {C: 0.5, EOS: 0.5}})
SECOND = Script({(): {A: 0.2, B: 0.8}, (B,): {C: 1.0}})
# Averaged: A 0.4, B 0.6; after B: C 0.75, EOS 0.25; after A (both default to EOS): EOS 1.


@pytest.mark.parametrize("beam", [1, 2, 3])
def test_fake_ensemble_averages_probabilities_by_hand(beam: int) -> None:
    src_ids, lengths = fake_batch([0], [3])
    model = Ensemble([FakeModel([FIRST]), FakeModel([SECOND])])
    n_best = min(beam, 3)
    (hyps,) = search(model, src_ids, lengths, SearchOptions(beam=beam, n_best=n_best, **OPTS))  # type: ignore[arg-type]
    expected = [([B, C], 0.6 * 0.75), ([A], 0.4), ([B], 0.6 * 0.25)]
    if beam == 1:
        expected = expected[:1]  # greedy: B (0.6), then C (0.75), then EOS
    assert [h.tokens for h in hyps] == [tokens for tokens, _ in expected[:n_best]]
    for h, (_, p) in zip(hyps, expected, strict=False):
        assert h.log_prob == pytest.approx(math.log(p), abs=1e-6)


def test_a_member_that_rules_a_token_out_does_not_veto_it() -> None:
    src_ids, lengths = fake_batch([0], [3])
    sure, open_ = Script({(): {A: 1.0}}), Script({(): {A: 0.5, B: 0.5}})
    model = Ensemble([FakeModel([sure]), FakeModel([open_])])
    (hyps,) = search(model, src_ids, lengths, SearchOptions(beam=2, n_best=2, **OPTS))  # type: ignore[arg-type]
    assert [(h.tokens, round(math.exp(h.log_prob), 6)) for h in hyps] == [([A], 0.75), ([B], 0.25)]


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("members", [1, 2, 3])
def test_ensemble_of_copies_equals_the_model(checkpoint: Path, beam: int, members: int) -> None:
    model, tokenizer, _ = load_model(checkpoint)
    src = tokenizer.encode_src(["4721", "12", "300000"])
    lengths = torch.tensor([len(s) + 1 for s in src])
    ids = torch.zeros(len(src), int(lengths.max()), dtype=torch.long)
    for i, s in enumerate(src):
        ids[i, : len(s) + 1] = torch.tensor([*s, EOS])
    opts = SearchOptions(beam=beam, n_best=beam)
    single = search(model, ids, lengths, opts)
    ensemble = search(Ensemble([model] * members), ids, lengths, opts)
    for one, many in zip(single, ensemble, strict=True):
        assert [h.tokens for h in one] == [h.tokens for h in many]
        assert [h.score for h in one] == pytest.approx([h.score for h in many], abs=1e-4)


def test_translator_ensemble_of_one_and_of_two_copies(checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.pt"
    copy.write_bytes(checkpoint.read_bytes())
    sentences = ["4721", "", "12", "99"]
    single = Translator.from_checkpoint(checkpoint, device="cpu")
    assert Translator.from_checkpoint([checkpoint], device="cpu").translate(sentences) == (
        single.translate(sentences)
    )
    pair = Translator.from_checkpoint([checkpoint, copy], device="cpu")
    assert isinstance(pair.model, Ensemble) and len(pair.model.models) == 2
    for beam in (1, 3):
        assert pair.translate(sentences, beam=beam) == single.translate(sentences, beam=beam)


def test_members_must_share_the_vocabulary(checkpoint: Path, tmp_path: Path) -> None:
    payload = load_checkpoint(checkpoint)
    payload["tokenizer"] = {"src": payload["tokenizer"]["src"], "tgt": payload["tokenizer"]["src"]}
    other = tmp_path / "other.pt"
    save_checkpoint(other, payload)
    with pytest.raises(Seq2SeqError, match="other.pt: its SentencePiece models differ"):
        Translator.from_checkpoint([checkpoint, other], device="cpu")


def test_cli_ensemble(checkpoint: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    one = runner.invoke(app, ["translate", "-m", str(checkpoint), "--beam", "2"], input="4721\n\n12\n")
    two = runner.invoke(
        app, ["translate", "-m", str(checkpoint), "-m", str(checkpoint), "--beam", "2"], input="4721\n\n12\n"
    )
    assert one.exit_code == two.exit_code == 0, two.output
    assert two.stdout == one.stdout and len(two.stdout.splitlines()) == 3

"""Vocabulary shortlists: built from a corpus, stored in checkpoints, and decoding over them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from seq2seq import Seq2SeqError, Translator
from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.cli import app
from seq2seq.config import ModelConfig
from seq2seq.data.batching import FlatSequences
from seq2seq.ensemble import Ensemble
from seq2seq.model import Seq2Seq, build_model
from seq2seq.search import Hypothesis, SearchOptions
from seq2seq.shortlist import (
    COLUMN_MULTIPLE,
    SPECIAL_IDS,
    Shortlist,
    ShortlistModel,
    _blocks,
    _model1,
    _sample,
    build_shortlist,
    coverage,
    load_shortlist,
    restrict,
)
from seq2seq.special import EOS, PAD
from seq2seq.train import TrainResult
from seq2seq.translate import decode_ids

runner = CliRunner()

# A hand-made corpus: source word s translates as target word s + 4 (4->8, 5->9, 6->10, 7->11); word
# order and sentence mates vary, and target 8 is the most frequent.
PAIRS = [
    ([4, 5], [8, 9]),
    ([6, 4], [8, 10]),
    ([5, 6], [10, 9]),
    ([4], [8]),
    ([7, 4], [8, 11]),
    ([7], [11]),
    ([4, 5, 6], [9, 8, 10]),
]
V = 12


def flat(rows: list[list[int]]) -> FlatSequences:
    return FlatSequences.from_lists(rows)


def corpus_shortlist(per_source: int = 1, frequent: int = 0, **kwargs: Any) -> Shortlist:
    src, tgt = flat([s for s, _ in PAIRS]), flat([t for _, t in PAIRS])
    return build_shortlist(src, tgt, V, V, per_source, frequent, **kwargs)


@pytest.mark.parametrize("iterations", [1, 5])
def test_each_source_word_keeps_its_translation(iterations: int) -> None:
    shortlist = corpus_shortlist(iterations=iterations)
    for s in (4, 5, 6, 7):
        assert shortlist.candidates[s].tolist() == [s + 4]


def test_the_shortlist_holds_every_reference_token_of_its_corpus() -> None:
    shortlist = corpus_shortlist(per_source=1, frequent=0)
    found = coverage(shortlist, flat([s for s, _ in PAIRS]), flat([t for _, t in PAIRS]))
    assert found.tokens == 1.0


def test_frequent_targets_and_special_ids_are_always_in() -> None:
    shortlist = corpus_shortlist(frequent=1)
    assert shortlist.frequent.tolist() == [*range(SPECIAL_IDS), 8]
    assert corpus_shortlist(frequent=0).frequent.tolist() == list(range(SPECIAL_IDS))


def test_unseen_source_words_keep_only_eos_and_per_source_is_capped_by_the_vocabulary() -> None:
    shortlist = corpus_shortlist(per_source=100)
    assert shortlist.per_source == V
    assert set(shortlist.candidates[9].tolist()) == {EOS}
    assert set(shortlist.candidates[4].tolist()) == {8, 9, 10, 11, EOS}


def test_building_is_deterministic() -> None:
    one, two = corpus_shortlist(per_source=3, frequent=2), corpus_shortlist(per_source=3, frequent=2)
    assert torch.equal(one.candidates, two.candidates) and torch.equal(one.frequent, two.frequent)


def test_a_large_corpus_is_read_from_an_evenly_spaced_sample_of_sentences() -> None:
    pairs = np.array([4, 1, 9, 4, 4, 6, 2, 4])  # 34 pairs in all
    assert _sample(pairs, 100).tolist() == list(range(8))
    sample = _sample(pairs, 17)
    assert sample.tolist() == [0, 2, 4, 6]
    assert corpus_shortlist(per_source=2, max_pairs=4).candidates.shape == (V, 2)


def _reference_model1(pairs: list[tuple[list[int], list[int]]], vocab: int, iterations: int) -> np.ndarray:
    """IBM Model 1 (no NULL word) by the textbook, one position at a time: p(t | s) as [V, V]."""
    prob = np.zeros((vocab, vocab))
    for src, tgt in pairs:
        prob[np.ix_(src, tgt)] = 1.0  # uniform start over co-occurring pairs
    for _ in range(iterations):
        counts = np.zeros((vocab, vocab))
        for src, tgt in pairs:
            for t in tgt:
                norm = sum(prob[s, t] for s in src)
                for s in src:
                    counts[s, t] += prob[s, t] / norm
        totals = counts.sum(1, keepdims=True)
        prob = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return prob


@pytest.mark.parametrize("block_pairs", [1, 7, 40, 10**9])
def test_model1_streamed_in_blocks_equals_the_textbook_em(block_pairs: int) -> None:
    """Blocks of sentences (one sentence each, several, or all at once) give the same table as EM over
    the whole corpus at once, held as a dense [V, V] array; only co-occurring pairs are in the support."""
    rng = np.random.default_rng(3)
    vocab = 20
    sides = [rng.integers(4, vocab, rng.integers(1, 6)).tolist() for _ in range(80)]
    pairs = list(zip(sides[::2], sides[1::2], strict=True))
    src, tgt = flat([s for s, _ in pairs]), flat([t for _, t in pairs])
    keys, prob = _model1(src, tgt, vocab, vocab, iterations=3, max_pairs=10**9, block_pairs=block_pairs)
    expected = _reference_model1(pairs, vocab, 3)
    assert np.array_equal(keys, np.flatnonzero(expected.ravel() > 0))
    np.testing.assert_allclose(prob, expected.ravel()[keys], rtol=1e-12)


@pytest.mark.parametrize(
    ("pairs", "block_pairs", "expected"),
    [
        ([4, 1, 9, 4], 5, [(0, 2), (2, 3), (3, 4)]),
        ([4, 1, 9, 4], 100, [(0, 4)]),
        ([4, 1, 9, 4], 1, [(0, 1), (1, 2), (2, 3), (3, 4)]),
        ([2, 2, 2, 2, 2], 4, [(0, 2), (2, 4), (4, 5)]),
        ([], 4, []),
    ],
)
def test_blocks_cut_the_sentences_into_runs_within_the_budget(
    pairs: list[int], block_pairs: int, expected: list[tuple[int, int]]
) -> None:
    assert [(b.start, b.stop) for b in _blocks(np.array(pairs, dtype=np.int64), block_pairs)] == expected


def test_the_table_is_small_ints() -> None:
    assert corpus_shortlist().candidates.dtype == torch.int16


def test_bad_sizes_are_one_line_errors() -> None:
    with pytest.raises(Seq2SeqError, match="--per-source"):
        corpus_shortlist(per_source=0)


def test_state_round_trips_and_damage_is_named() -> None:
    shortlist = corpus_shortlist(per_source=2, frequent=1)
    again = Shortlist.from_state(shortlist.state(), "x.pt")
    assert torch.equal(again.candidates, shortlist.candidates) and torch.equal(
        again.frequent, shortlist.frequent
    )
    broken = {**shortlist.state(), "candidates": torch.full((V, 2), V + 5)}
    with pytest.raises(Seq2SeqError, match=r"x\.pt: damaged vocabulary shortlist"):
        Shortlist.from_state(broken, "x.pt")
    with pytest.raises(Seq2SeqError, match="damaged"):
        Shortlist.from_state({"version": 1}, "x.pt")


def test_columns_start_with_the_special_ids_and_each_sentence_allows_its_own_shortlist() -> None:
    shortlist = corpus_shortlist(per_source=1, frequent=0)
    src_ids = torch.tensor([[4, EOS, PAD], [5, 7, EOS]])
    vocab_ids, mask, group = shortlist.columns(src_ids)
    assert vocab_ids.size(0) == 1 and group.tolist() == [0, 0]  # one group by default
    vocab_ids = vocab_ids[0]
    assert vocab_ids[:SPECIAL_IDS].tolist() == list(range(SPECIAL_IDS))
    assert vocab_ids.numel() % COLUMN_MULTIPLE == 0 or vocab_ids.numel() == V
    assert vocab_ids.tolist() == sorted(vocab_ids.tolist())
    allowed = [{vocab_ids[c].item() for c in (row == 0).nonzero().squeeze(1).tolist()} for row in mask]
    assert allowed == [{0, 1, 2, 3, 8}, {0, 1, 2, 3, 9, 11}]


def test_column_groups_hold_each_sentences_own_shortlist_and_no_more_than_their_union() -> None:
    shortlist = random_shortlist(per_source=3, frequent=2)
    src_ids = torch.from_numpy(sources(n=7).pad(np.arange(7), suffix=EOS))
    own = [set(shortlist.sentence_ids(row[None]).view(-1).tolist()) | set(range(SPECIAL_IDS + 2))
           for row in src_ids]  # fmt: skip
    vocab_ids, mask, group = shortlist.columns(src_ids, group_size=3)
    assert group.tolist() == [0, 0, 0, 1, 1, 1, 2] and vocab_ids.size(0) == 3
    assert vocab_ids.size(1) % COLUMN_MULTIPLE == 0 or vocab_ids.size(1) == VOCAB
    for g, ids in enumerate(vocab_ids.tolist()):
        union = set().union(*(own[i] for i in range(len(own)) if group[i] == g))
        assert ids[:SPECIAL_IDS] == list(range(SPECIAL_IDS))
        assert ids == sorted(ids) and union <= set(ids) and len(set(ids)) == len(ids)
    for i, row in enumerate(mask):
        allowed = {vocab_ids[group[i], c].item() for c in (row == 0).nonzero().squeeze(1).tolist()}
        assert allowed == own[i]
    assert shortlist.columns(src_ids, group_size=100).vocab_ids.size(0) == 1


def test_union_of_ensemble_shortlists_allows_what_either_allows() -> None:
    one, two = corpus_shortlist(per_source=1), corpus_shortlist(per_source=2, frequent=1)
    both = one.union([two])
    src_ids = torch.tensor([[4, EOS]])
    allowed = set(both.sentence_ids(src_ids).view(-1).tolist()) | set(both.frequent.tolist())
    expected = set()
    for s in (one, two):
        expected |= set(s.sentence_ids(src_ids).view(-1).tolist()) | set(s.frequent.tolist())
    assert allowed == expected


# Decoding with a real (tiny, random) Seq2Seq.

MODEL = ModelConfig(emb_size=8, enc_hidden=8, dec_hidden=16, dropout=0.0, emb_dropout=0.0, out_dropout=0.0)
VOCAB = 40


def tiny_model(seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    model = build_model(MODEL, VOCAB, VOCAB).eval()
    with torch.no_grad():  # a peaked output layer, so searches end and hypotheses differ clearly
        model.output.weight.mul_(8.0)
    return model


def sources(seed: int = 1, n: int = 6) -> FlatSequences:
    rng = np.random.default_rng(seed)
    return flat([rng.integers(SPECIAL_IDS, VOCAB, size=int(rng.integers(2, 7))).tolist() for _ in range(n)])


def random_shortlist(per_source: int, frequent: int, seed: int = 2) -> Shortlist:
    rng = np.random.default_rng(seed)
    candidates = torch.from_numpy(rng.integers(SPECIAL_IDS, VOCAB, size=(VOCAB, per_source)).astype(np.int16))
    candidates[:SPECIAL_IDS] = EOS  # as built: special ids are never source words
    top = torch.arange(SPECIAL_IDS + frequent, dtype=torch.int32)
    return Shortlist(candidates, top, VOCAB)


def decode(model: Any, opts: SearchOptions, shortlist: Shortlist | None, src: FlatSequences | None = None,
           batch_tokens: int = 10_000) -> list[list[Hypothesis]]:  # fmt: skip
    src = sources() if src is None else src
    return decode_ids(model, src, opts, batch_tokens, torch.device("cpu"), shortlist)


def as_tuples(rows: list[list[Hypothesis]]) -> list[list[tuple[list[int], float, float]]]:
    return [[(h.tokens, h.score, h.log_prob) for h in row] for row in rows]


@pytest.mark.parametrize("beam", [1, 4])
def test_a_shortlist_that_covers_everything_decodes_exactly_like_the_full_vocabulary(beam: int) -> None:
    model, opts = tiny_model(), SearchOptions(beam=beam, n_best=beam, max_len_b=8)
    everything = Shortlist(torch.full((VOCAB, 1), EOS, dtype=torch.int16), torch.arange(VOCAB), VOCAB)
    assert as_tuples(decode(model, opts, everything)) == as_tuples(decode(model, opts, None))


def test_the_restricted_step_equals_the_model_step_over_all_rows() -> None:
    model = tiny_model()
    src_ids, lengths = torch.tensor([[5, 6, EOS], [7, EOS, PAD]]), torch.tensor([3, 2])
    everything = Shortlist(torch.full((VOCAB, 1), EOS, dtype=torch.int16), torch.arange(VOCAB), VOCAB)
    restricted, columns = restrict(model, everything, src_ids)
    assert columns.vocab_ids.tolist() == [list(range(VOCAB))]
    with torch.inference_mode():
        enc, full_enc = restricted.encode(src_ids, lengths), model.encode(src_ids, lengths)
        prev = torch.tensor([2, 2, 9, 9])  # two hypotheses per sentence
        step = restricted.decode_step(
            prev, restricted.init_state(enc).index_select(torch.tensor([0, 0, 1, 1])), enc
        )
        full = model.decode_step(prev, model.init_state(full_enc).index_select(torch.tensor([0, 0, 1, 1])),
                                 full_enc)  # fmt: skip
    assert torch.equal(step.log_probs, full.log_probs) and torch.equal(step.attention, full.attention)


class MaskedEncoding(NamedTuple):
    enc: Any
    mask: torch.Tensor

    def index_select(self, index: torch.Tensor) -> MaskedEncoding:
        return MaskedEncoding(self.enc.index_select(index), self.mask.index_select(0, index))


class FullVocabularyMasked:
    """The reference: the full model's [N, V] distribution renormalised over each sentence's shortlist."""

    def __init__(self, model: Seq2Seq, shortlist: Shortlist) -> None:
        self.model, self.shortlist = model, shortlist

    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor) -> MaskedEncoding:
        mask = torch.full((src_ids.size(0), VOCAB), float("-inf"))
        mask.scatter_(1, self.shortlist.sentence_ids(src_ids), 0.0)
        mask[:, self.shortlist.frequent.long()] = 0.0
        return MaskedEncoding(self.model.encode(src_ids, src_lengths), mask)

    def init_state(self, enc: MaskedEncoding) -> Any:
        return self.model.init_state(enc.enc)

    def decode_step(self, prev: torch.Tensor, state: Any, enc: MaskedEncoding) -> Any:
        out = self.model.decode_step(prev, state, enc.enc)
        group = prev.size(0) // enc.mask.size(0)
        log_probs = torch.log_softmax(out.log_probs + enc.mask.repeat_interleave(group, dim=0), dim=-1)
        return out._replace(log_probs=log_probs)


@pytest.mark.parametrize("beam", [1, 3])
def test_shortlisted_search_equals_the_full_distribution_restricted_to_each_sentences_shortlist(
    beam: int,
) -> None:
    model, opts = tiny_model(), SearchOptions(beam=beam, n_best=beam, max_len_b=8)
    shortlist = random_shortlist(per_source=3, frequent=2)
    got = decode(model, opts, shortlist)
    want = decode(FullVocabularyMasked(model, shortlist), opts, None)
    assert [[h.tokens for h in row] for row in got] == [[h.tokens for h in row] for row in want]
    for got_row, want_row in zip(got, want, strict=True):
        for g, w in zip(got_row, want_row, strict=True):
            assert g.log_prob == pytest.approx(w.log_prob, abs=1e-4)
            assert g.score == pytest.approx(w.score, abs=1e-4)


def test_every_output_token_is_in_its_sentences_shortlist() -> None:
    src = sources(n=8)
    shortlist = random_shortlist(per_source=2, frequent=0)
    results = decode(tiny_model(), SearchOptions(beam=3, n_best=3, max_len_b=8), shortlist, src)
    for i, row in enumerate(results):
        allowed = set(shortlist.candidates[src.pad(np.array([i]))[0]].view(-1).tolist()) | set(
            range(SPECIAL_IDS)
        )
        assert all(set(h.tokens) <= allowed for h in row)


def test_a_sentence_translates_the_same_alone_and_in_any_batch() -> None:
    src, model = sources(n=8), tiny_model()
    shortlist = random_shortlist(per_source=2, frequent=3)
    opts = SearchOptions(beam=3, n_best=2, max_len_b=8)
    together = decode(model, opts, shortlist, src)
    rows = [src.row(i) for i in range(len(src))]
    alone = [decode(model, opts, shortlist, flat([row]))[0] for row in rows]
    assert [[h.tokens for h in row] for row in together] == [[h.tokens for h in row] for row in alone]
    for a, b in zip(together, alone, strict=True):
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


@pytest.mark.parametrize("beam", [2, 3])
def test_any_grouping_of_the_columns_decodes_like_one_union(
    beam: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, model = sources(n=9), tiny_model()
    shortlist = random_shortlist(per_source=3, frequent=2)
    opts = SearchOptions(beam=beam, n_best=beam, max_len_b=8)
    runs = []
    for rows in (10_000, beam, 2 * beam):  # one union; one sentence a group; two
        monkeypatch.setattr("seq2seq.shortlist.GROUP_ROWS", rows)
        runs.append(decode(model, opts, shortlist, src))
    assert restrict(model, shortlist, torch.tensor([[5, EOS]] * 4), beam)[1].vocab_ids.size(0) == 2
    for run in runs[1:]:
        assert [[h.tokens for h in row] for row in run] == [[h.tokens for h in row] for row in runs[0]]
        for a, b in zip(run, runs[0], strict=True):
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


def test_greedy_search_decodes_over_one_union() -> None:
    shortlist = random_shortlist(per_source=3, frequent=2)
    assert restrict(tiny_model(), shortlist, torch.tensor([[5, EOS]] * 100), 1)[1].vocab_ids.size(0) == 1
    assert restrict(tiny_model(), shortlist, torch.tensor([[5, EOS]] * 100), 5)[1].vocab_ids.size(0) == 13


def test_grouped_logits_under_bf16_autocast_equal_one_group() -> None:
    """Under autocast the groups' matmuls run in bf16 and are copied into the fp32 logits."""
    model = tiny_model()
    src_ids = torch.tensor([[5, 6, EOS], [7, EOS, PAD], [9, 11, EOS]])
    shortlist = random_shortlist(per_source=3, frequent=2)
    x = torch.randn(3, MODEL.dec_hidden)
    logits = []
    for size in (None, 1):
        model_over = ShortlistModel(model, shortlist.columns(src_ids, size))
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            step = model_over._logits(x, model_over.columns.group, 1)
        assert step.dtype == torch.float32
        vocab_ids = model_over.columns.vocab_ids[model_over.columns.group]  # [B, U]
        own = torch.where(model_over.columns.mask == 0, step, 0.0)  # each sentence's own columns
        logits.append(torch.zeros(3, VOCAB).scatter_add_(1, vocab_ids, own))
    assert torch.allclose(logits[0], logits[1], atol=0.05, rtol=0.02)
    allowed = logits[0] != 0
    with torch.no_grad():
        fp32 = torch.where(allowed, model.output(x), 0.0)
    assert torch.allclose(logits[0], fp32, atol=0.1, rtol=0.02) and not torch.equal(logits[0], fp32)  # bf16


def test_an_ensemble_of_copies_with_a_shortlist_equals_the_model_with_it() -> None:
    model, opts = tiny_model(), SearchOptions(beam=3, n_best=3, max_len_b=8)
    shortlist = random_shortlist(per_source=3, frequent=2)
    single, ensemble = decode(model, opts, shortlist), decode(Ensemble([model, model]), opts, shortlist)
    assert [[h.tokens for h in row] for row in single] == [[h.tokens for h in row] for row in ensemble]


def test_a_shortlist_model_refuses_another_batch() -> None:
    model = tiny_model()
    columns = random_shortlist(2, 0).columns(torch.tensor([[5, EOS]]))
    with pytest.raises(ValueError, match="batch it was made for"):
        ShortlistModel(model, columns).encode(torch.tensor([[5, EOS], [6, EOS]]), torch.tensor([2, 2]))


# Checkpoints, the translator and the command line.


def test_train_stores_a_shortlist_in_its_checkpoints(checkpoint: Path) -> None:
    shortlist = load_shortlist(checkpoint)
    assert shortlist is not None
    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    assert (
        translator.shortlist is not None
        and translator.shortlist.tgt_vocab == translator.tokenizer.tgt_vocab_size
    )


@pytest.fixture(scope="module")
def without_shortlist(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    payload = {
        k: v for k, v in load_checkpoint(checkpoint).items() if k not in ("format", "version", "shortlist")
    }
    path = tmp_path_factory.mktemp("old") / "old.pt"
    save_checkpoint(path, payload)
    return path


def test_a_checkpoint_without_a_shortlist_decodes_with_the_full_vocabulary(
    checkpoint: Path, without_shortlist: Path
) -> None:
    old = Translator.from_checkpoint(without_shortlist, device="cpu")
    new = Translator.from_checkpoint(checkpoint, device="cpu")
    assert old.shortlist is None
    lines = ["4721", "12", "300000", "9"]
    full = new.translate_batch(lines, new.options(shortlist=False))
    assert [t.candidates for t in old.translate_batch(lines, old.options())] == [t.candidates for t in full]
    with pytest.raises(Seq2SeqError, match="--shortlist: this model has no vocabulary shortlist"):
        old.options(shortlist=True)


def test_sampling_never_uses_the_shortlist_and_refuses_it_when_asked(checkpoint: Path) -> None:
    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    assert translator.shortlist_for(translator.options(sample=True)) is None
    with pytest.raises(Seq2SeqError, match="--shortlist: sampling draws from the full distribution"):
        translator.options(sample=True, shortlist=True)


def test_the_recipe_can_turn_the_shortlist_off(checkpoint: Path) -> None:
    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    assert (
        translator.options().shortlist is None and translator.shortlist_for(translator.options()) is not None
    )
    translator.cfg = dataclasses.replace(
        translator.cfg, decode=dataclasses.replace(translator.cfg.decode, shortlist=False)
    )
    assert translator.shortlist_for(translator.options()) is None
    assert translator.shortlist_for(translator.options(shortlist=True)) is not None


def test_shortlist_command_adds_one_to_an_old_checkpoint(
    trained: TrainResult, without_shortlist: Path, tmp_path: Path
) -> None:
    out = tmp_path / "with.pt"
    result = runner.invoke(app, ["shortlist", str(without_shortlist), "--data", str(trained.run_dir / "data"),
                                 "-o", str(out), "--per-source", "3", "--frequent", "5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 target subwords per source subword" in result.output and "validation sentence" in result.output
    shortlist = load_shortlist(out)
    assert shortlist is not None and shortlist.per_source == 3
    assert load_shortlist(without_shortlist) is None  # the input is left alone
    lines = ["4721", "12"]
    translated = runner.invoke(
        app, ["translate", "-m", str(out), "--shortlist"], input="\n".join(lines) + "\n"
    )
    assert translated.exit_code == 0, translated.output
    refused = runner.invoke(app, ["translate", "-m", str(without_shortlist), "--shortlist"], input="12\n")
    assert refused.exit_code == 2 and "--shortlist: this model has no vocabulary shortlist" in refused.output


def test_shortlist_command_needs_preprocessed_data(checkpoint: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["shortlist", str(checkpoint), "--data", str(tmp_path)])
    assert result.exit_code == 2 and "no preprocessed data here" in result.output


def test_an_int8_model_decodes_over_its_shortlist(checkpoint: Path) -> None:
    translator = Translator.from_checkpoint(checkpoint, device="cpu", quantize="int8")
    assert translator.shortlist is not None
    lines = ["4721", "12", "300000"]
    results = translator.translate_batch(lines, translator.options(beam=2, shortlist=True))
    assert len(results) == 3 and all(t.candidates for t in results)

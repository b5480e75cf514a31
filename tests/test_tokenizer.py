"""SentencePiece: fixed special ids, joint or separate, unigram or BPE, sampling, user-supplied models."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sentencepiece as spm

from seq2seq.config import TokenizerConfig
from seq2seq.errors import Seq2SeqError
from seq2seq.tokenizer import BOS, EOS, PAD, UNK, Tokenizer, train_sentencepiece

SRC = [f"the {a} sees the {b}" for a in ("cat", "dog", "bird") for b in ("house", "tree", "fish")] * 3
TGT = [s.upper() for s in SRC]


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
@pytest.mark.parametrize("joint", [True, False])
def test_trained_models_round_trip_with_fixed_ids(kind: str, joint: bool) -> None:
    tok = Tokenizer.train(
        iter(SRC), iter(TGT), TokenizerConfig(type=kind, vocab_size=40, joint=joint), threads=1
    )
    assert tok.joint is joint
    for sp in (tok.src, tok.tgt):
        assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD, UNK, BOS, EOS)
    assert tok.decode_tgt(tok.encode_tgt(TGT[:3])) == TGT[:3]
    assert Tokenizer.from_state(tok.state()).encode_src(SRC[:2]) == tok.encode_src(SRC[:2])


def test_sampling_is_deterministic() -> None:
    corpus = [f"{s} {i}" for i, s in enumerate(SRC * 6)]
    cfg = TokenizerConfig(vocab_size=30, input_sentence_size=101)
    assert train_sentencepiece(corpus, cfg, threads=1) == train_sentencepiece(corpus, cfg, threads=1)


def test_existing_model_files(tmp_path: Path) -> None:
    tok = Tokenizer.train(SRC, TGT, TokenizerConfig(vocab_size=40, joint=False), threads=1)
    (tmp_path / "s.model").write_bytes(tok.src_model)
    (tmp_path / "t.model").write_bytes(tok.tgt_model or b"")
    assert Tokenizer.from_files(tmp_path / "s.model").joint
    both = Tokenizer.from_files(tmp_path / "s.model", tmp_path / "t.model")
    assert both.encode_tgt(TGT[:1]) == tok.encode_tgt(TGT[:1])


def foreign_model() -> bytes:
    """A model trained with SentencePiece's own defaults: unk=0 bos=1 eos=2, no pad."""
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SRC), model_writer=out, vocab_size=30, hard_vocab_limit=False, minloglevel=2
    )
    return out.getvalue()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"m.model: SentencePiece model not found"),
        (b"not a model", r"m.model: not a SentencePiece model"),
        (foreign_model(), r"m.model: special ids are pad=-1 unk=0 bos=1 eos=2, seq2seq needs pad=0 unk=1"),
    ],
    ids=["missing", "garbage", "other-ids"],
)
def test_bad_model_files_are_one_line(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "m.model"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(Seq2SeqError, match=message):
        Tokenizer.from_files(path)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"src": None, "tgt": None}, "ckpt.pt: has no source SentencePiece model"),
        ({}, "ckpt.pt: has no source SentencePiece model"),
        ({"src": b"junk", "tgt": None}, "ckpt.pt: source SentencePiece model: not a SentencePiece model"),
        ({"src": foreign_model(), "tgt": None}, "ckpt.pt: source SentencePiece model: special ids are"),
        ({"src": foreign_model(), "tgt": 3}, "ckpt.pt: the target SentencePiece model is not bytes"),
    ],
)
def test_bad_saved_state_names_where_it_came_from(state: dict[str, bytes | None], message: str) -> None:
    with pytest.raises(Seq2SeqError, match=None) as info:
        Tokenizer.from_state(state, "ckpt.pt")
    assert str(info.value).startswith(message)


def test_training_failure_is_one_line_without_source_location() -> None:
    with pytest.raises(
        Seq2SeqError, match=r"training failed \(tokenizer settings\): Vocabulary size is smaller"
    ) as info:
        train_sentencepiece(SRC, TokenizerConfig(vocab_size=8), threads=1)
    assert "trainer_interface.cc" not in str(info.value)

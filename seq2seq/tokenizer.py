"""SentencePiece subwords; the SentencePiece model's ids are the model's vocabulary.

Special ids are fixed for every model this toolkit uses: pad=0, unk=1, bos=2, eos=3 (pad fills batches
and is masked; bos starts the decoder input; eos ends the source and every target). A tokenizer is one
joint model or a source and a target model, trained by `seq2seq preprocess` or supplied by the user (then
it must have these ids), and travels inside checkpoints as the models' bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

from seq2seq.config import TokenizerConfig
from seq2seq.errors import Seq2SeqError
from seq2seq.special import BOS, EOS, PAD, UNK

SAMPLING_SEED = 1
"""SentencePiece samples `input_sentence_size` sentences with this seed, so a rebuild gives the same model."""


def train_sentencepiece(sentences: Iterable[str], cfg: TokenizerConfig, threads: int = 2) -> bytes:
    """Train a SentencePiece model on `sentences` (streamed: only the sample is held); returns its bytes."""
    model = io.BytesIO()
    spm.set_random_generator_seed(SAMPLING_SEED)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=(s for s in sentences if s),
            model_writer=model,
            model_type=cfg.type,
            vocab_size=cfg.vocab_size,
            hard_vocab_limit=False,
            character_coverage=cfg.character_coverage,
            split_digits=cfg.split_digits,
            input_sentence_size=cfg.input_sentence_size,
            shuffle_input_sentence=True,
            pad_id=PAD,
            unk_id=UNK,
            bos_id=BOS,
            eos_id=EOS,
            num_threads=threads,
            minloglevel=2,
        )
    except RuntimeError as exc:
        reason = " ".join(str(exc).rsplit("] ", 1)[-1].split())  # without SentencePiece's source location
        raise Seq2SeqError(f"SentencePiece training failed (tokenizer settings): {reason}") from None
    return model.getvalue()


def _load(proto: bytes, name: str = "SentencePiece model") -> spm.SentencePieceProcessor:
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(proto)
    except RuntimeError:
        raise Seq2SeqError(f"{name}: not a SentencePiece model") from None
    ids = (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id())
    if ids != (PAD, UNK, BOS, EOS):
        raise Seq2SeqError(
            f"{name}: special ids are pad={ids[0]} unk={ids[1]} bos={ids[2]} eos={ids[3]}, seq2seq needs "
            "pad=0 unk=1 bos=2 eos=3 (train with --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3)"
        )
    return sp


def _read_model(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise Seq2SeqError(f"{path}: SentencePiece model not found (tokenizer.model)") from None
    except IsADirectoryError:
        raise Seq2SeqError(f"{path}: is a directory, expected a SentencePiece .model file") from None


class Tokenizer:
    """Source and target SentencePiece processors (the same one when joint)."""

    def __init__(
        self, src_model: bytes, tgt_model: bytes | None = None, names: tuple[str, str] | None = None
    ) -> None:
        self.src_model = src_model
        self.tgt_model = tgt_model
        src_name, tgt_name = names or ("source SentencePiece model", "target SentencePiece model")
        self.src = _load(src_model, src_name)
        self.tgt = self.src if tgt_model is None else _load(tgt_model, tgt_name)

    @classmethod
    def from_files(cls, src: Path, tgt: Path | None = None) -> Tokenizer:
        """Existing model file(s): one joint model, or a source and a target model."""
        names = (str(src), str(tgt))
        return cls(_read_model(src), None if tgt is None else _read_model(tgt), names)

    @property
    def joint(self) -> bool:
        return self.tgt_model is None

    @property
    def src_vocab_size(self) -> int:
        return int(self.src.get_piece_size())

    @property
    def tgt_vocab_size(self) -> int:
        return int(self.tgt.get_piece_size())

    @classmethod
    def train(
        cls, src: Iterable[str], tgt: Iterable[str], cfg: TokenizerConfig, threads: int = 2
    ) -> Tokenizer:
        """Train one joint model on both sides, or one per side (each iterable is read once)."""
        if cfg.joint:
            return cls(train_sentencepiece(_chain(src, tgt), cfg, threads))
        return cls(train_sentencepiece(src, cfg, threads), train_sentencepiece(tgt, cfg, threads))

    def encode_src(self, lines: list[str]) -> list[list[int]]:
        return self.src.encode(lines)  # type: ignore[no-any-return]

    def encode_tgt(self, lines: list[str]) -> list[list[int]]:
        return self.tgt.encode(lines)  # type: ignore[no-any-return]

    def decode_tgt(self, ids: list[list[int]]) -> list[str]:
        return self.tgt.decode(ids)  # type: ignore[no-any-return]

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        return [self.tgt.id_to_piece(i) for i in ids]

    def src_pieces(self, ids: list[int]) -> list[str]:
        return [self.src.id_to_piece(i) for i in ids]

    def state(self) -> dict[str, bytes | None]:
        return {"src": self.src_model, "tgt": self.tgt_model}

    @classmethod
    def from_state(cls, state: dict[str, bytes | None], where: str = "tokenizer state") -> Tokenizer:
        """The tokenizer saved by `state()`; `where` (e.g. the checkpoint) starts every error message."""
        src, tgt = state.get("src"), state.get("tgt")
        if not isinstance(src, bytes):
            raise Seq2SeqError(f"{where}: has no source SentencePiece model")
        if tgt is not None and not isinstance(tgt, bytes):
            raise Seq2SeqError(f"{where}: the target SentencePiece model is not bytes")
        names = (f"{where}: source SentencePiece model", f"{where}: target SentencePiece model")
        return cls(src, tgt, names)


def _chain(*parts: Iterable[str]) -> Iterator[str]:
    for part in parts:
        yield from part

"""Translating text: one output per input line, in order, whatever the input.

Sentences are encoded, sorted by length into token-budget batches (little padding), decoded with
greedy or beam search, and put back in input order. Empty inputs give empty outputs without touching
the model; over-long inputs are truncated for the model and counted; decoded text never contains a line
break. `Translator.translate_stream` works chunk by chunk, so files larger than memory and interactive
use both work.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from seq2seq.checkpoint import load_model
from seq2seq.config import Config
from seq2seq.data.batching import FlatSequences, token_batches
from seq2seq.errors import Seq2SeqError
from seq2seq.inspect.sentence import Trace, trace_sentence
from seq2seq.model import Seq2Seq
from seq2seq.runtime import native_bf16
from seq2seq.search import Hypothesis, SearchOptions, search
from seq2seq.textio import single_line
from seq2seq.tokenizer import EOS, Tokenizer


@dataclass(frozen=True)
class Candidate:
    """One decoded hypothesis as text."""

    text: str
    score: float
    log_prob: float
    tokens: list[str]
    """Target subword pieces (EOS not included)."""
    attention: torch.Tensor | None = None
    """[len(tokens) + 1, len(source_tokens) + 1] (EOS step and source EOS included)."""


@dataclass(frozen=True)
class Translation:
    source: str
    source_tokens: list[str]
    candidates: list[Candidate]
    """Best first; empty for an empty input."""
    seconds: float = 0.0
    """Time of the batch call this sentence was translated in, divided by its number of sentences."""

    @property
    def text(self) -> str:
        return self.candidates[0].text if self.candidates else ""


@dataclass
class TranslateStats:
    sentences: int = 0
    empty: int = 0
    truncated: int = 0
    src_tokens: int = 0
    tgt_tokens: int = 0
    seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise Seq2SeqError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise Seq2SeqError(f"--device: {name!r} is not a device (use cpu, cuda or cuda:N)") from None


def quantize_int8(model: Seq2Seq) -> Seq2Seq:
    """Dynamic int8 quantization for CPU inference: the weights of every LSTM/GRU and linear layer (the
    output layer included) are stored in int8 and activations are quantized on the fly; embeddings and
    attention arithmetic stay fp32. The model keeps its class and its search interface."""
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(
            model, {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8, inplace=False
        )
    return quantized.eval()


def decode_ids(
    model: Seq2Seq, src: FlatSequences, opts: SearchOptions, batch_tokens: int, device: torch.device
) -> list[list[Hypothesis]]:
    """Search over pre-encoded sources (ids without EOS); results in input order.

    `batch_tokens` counts source tokens x beam size (padding included): beam search decodes K rows per
    sentence, and the per-step [rows, V] scores stay in cache only while the batch is small enough.
    """
    results: list[list[Hypothesis]] = [[] for _ in range(len(src))]
    lengths = src.lengths + 1
    budget = max(batch_tokens // opts.beam, int(lengths.max(initial=1)))
    for idx in token_batches(lengths, lengths, budget, 0, 0, shuffle=False):
        ids = torch.from_numpy(src.pad(idx, suffix=EOS)).to(device)
        hyps = search(model, ids, torch.from_numpy(lengths[idx]).to(device), opts)
        for i, h in zip(idx.tolist(), hyps, strict=True):
            results[i] = h
    return results


class Translator:
    """A loaded model that translates lists of sentences or streams of lines."""

    def __init__(
        self, model: Seq2Seq, tokenizer: Tokenizer, cfg: Config, device: torch.device, bf16: bool = False
    ) -> None:
        self.model, self.tokenizer, self.cfg, self.device = model.eval(), tokenizer, cfg, device
        self.bf16 = bf16
        """Decode under bf16 autocast: matmuls and LSTMs in bf16, softmax and scores in fp32."""
        self.stats = TranslateStats()

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", quantize: str = "", bf16: bool = False
    ) -> Translator:
        """Load a checkpoint once; `quantize="int8"` quantizes it for CPU use (see `quantize_int8`);
        `bf16=True` decodes under bf16 autocast where the hardware has native bf16 (see `native_bf16`);
        elsewhere it decodes in fp32 (emulated bf16 is slower, and oneDNN has no bf16 LSTM there): check
        `translator.bf16` for what applies."""
        dev = resolve_device(device)
        if bf16 and quantize:
            raise Seq2SeqError("--bf16 and --quantize are two ways to lower precision: choose one")
        model, tokenizer, cfg = load_model(Path(path), dev)
        if quantize:
            if quantize != "int8":
                raise Seq2SeqError(f"--quantize: {quantize!r} is not supported (use int8)")
            if dev.type != "cpu":
                raise Seq2SeqError("--quantize int8 is for CPU translation; add --device cpu")
            model = quantize_int8(model)
        return cls(model, tokenizer, cfg, dev, bf16 and native_bf16(dev))

    def options(
        self,
        beam: int | None = None,
        n_best: int = 1,
        length_penalty: float | None = None,
        max_len_a: float | None = None,
        max_len_b: int | None = None,
        min_len: int | None = None,
        block_unk: bool = False,
        attention: bool = False,
        penalty: str = "gnmt",
    ) -> SearchOptions:
        """Search options: the checkpoint's `decode` settings unless given here."""
        d = self.cfg.decode
        beam = d.beam if beam is None else beam
        try:
            return SearchOptions(
                beam=beam,
                n_best=n_best,
                length_penalty=d.length_penalty if length_penalty is None else length_penalty,
                max_len_a=d.max_len_a if max_len_a is None else max_len_a,
                max_len_b=d.max_len_b if max_len_b is None else max_len_b,
                min_len=d.min_len if min_len is None else min_len,
                block_unk=block_unk,
                return_attention=attention,
                penalty=penalty,
            )
        except ValueError as exc:
            raise Seq2SeqError(f"search options: {exc}") from None

    def translate_batch(
        self, sentences: Sequence[str], opts: SearchOptions, batch_tokens: int | None = None
    ) -> list[Translation]:
        """Translate `sentences` (each a single line); results in input order."""
        start = time.perf_counter()
        max_src = self.cfg.decode.max_src_len
        encoded = self.tokenizer.encode_src([s.strip() for s in sentences])
        todo = [i for i, ids in enumerate(encoded) if ids]
        for i in todo:
            if len(encoded[i]) > max_src:
                encoded[i] = encoded[i][:max_src]
                self.stats.truncated += 1
        hyps_by_row: list[list[Hypothesis]] = []
        if todo:
            flat = FlatSequences.from_lists([encoded[i] for i in todo])
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                hyps_by_row = decode_ids(
                    self.model, flat, opts, batch_tokens or self.cfg.decode.batch_tokens, self.device
                )
        each = (time.perf_counter() - start) / max(1, len(sentences))
        out: list[Translation] = [Translation(s, [], [], each) for s in sentences]
        # one SentencePiece call for every candidate of the chunk: per-candidate calls cost ~0.1 ms each
        texts = iter(self.tokenizer.decode_tgt([h.tokens for hyps in hyps_by_row for h in hyps]))
        for row, i in enumerate(todo):
            src_pieces = self.tokenizer.src_pieces(encoded[i])
            candidates = [
                Candidate(
                    single_line(next(texts)),
                    h.score,
                    h.log_prob,
                    self.tokenizer.tgt_pieces(h.tokens),
                    None if h.attention is None else h.attention[:, : len(encoded[i]) + 1],
                )
                for h in hyps_by_row[row]
            ]
            out[i] = Translation(sentences[i], src_pieces, candidates, each)
            self.stats.src_tokens += len(encoded[i])
            self.stats.tgt_tokens += len(candidates[0].tokens) if candidates else 0
        self.stats.sentences += len(sentences)
        self.stats.empty += len(sentences) - len(todo)
        self.stats.seconds += time.perf_counter() - start
        return out

    def inspect(
        self, sentence: str, target: str | None = None, beam: int | None = None, gradients: bool = False
    ) -> Trace:
        """Every gate, memory cell, hidden state and attention weight of one sentence, as named arrays
        (see `seq2seq.inspect.sentence.Trace`): on its own translation, or forced on `target`."""
        max_src = self.cfg.decode.max_src_len
        return trace_sentence(
            self.model, self.tokenizer, sentence, target, self.options(beam), max_src, gradients
        )

    def translate(self, sentences: Sequence[str], beam: int | None = None, **options: object) -> list[str]:
        """Translate a list of sentences to a list of strings (same length, same order)."""
        opts = self.options(beam=beam, **options)  # type: ignore[arg-type]
        return [t.text for t in self.translate_batch([single_line(s) for s in sentences], opts)]

    def translate_stream(
        self,
        lines: Iterable[str],
        opts: SearchOptions,
        chunk_lines: int = 2000,
        batch_tokens: int | None = None,
    ) -> Iterator[Translation]:
        """Translate an iterable of lines chunk by chunk, yielding one result per line in order."""
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= chunk_lines:
                yield from self.translate_batch(chunk, opts, batch_tokens)
                chunk = []
        if chunk:
            yield from self.translate_batch(chunk, opts, batch_tokens)

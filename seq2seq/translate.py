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
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seq2seq.checkpoint import load_model
from seq2seq.config import Config, Penalty, Stop
from seq2seq.data.batching import FlatSequences, token_batches
from seq2seq.ensemble import Ensemble
from seq2seq.errors import Seq2SeqError
from seq2seq.export import load_pretrained
from seq2seq.inspect.sentence import Trace, trace_sentence
from seq2seq.model import Seq2Seq
from seq2seq.runtime import native_bf16, resolve_device
from seq2seq.search import DecoderModel, Hypothesis, SearchOptions
from seq2seq.search_processes import SearchBatch, SearchProcesses, fork_available, search_batch
from seq2seq.shortlist import Shortlist, check_vocab_sizes, load_shortlist
from seq2seq.special import EOS
from seq2seq.textio import single_line
from seq2seq.tokenizer import Tokenizer


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
    model: DecoderModel,
    src: FlatSequences,
    opts: SearchOptions,
    batch_tokens: int,
    device: torch.device,
    shortlist: Shortlist | None = None,
    processes: Callable[[], SearchProcesses | None] | None = None,
) -> list[list[Hypothesis]]:
    """Search over pre-encoded sources (ids without EOS); results in input order.

    `batch_tokens` counts source tokens x beam size (x samples when sampling; padding included): beam
    search decodes K rows per sentence, and the per-step [rows, V] scores stay in cache only while the
    batch is small enough. With a `shortlist`, each batch's output layer runs over its sentences'
    shortlists only (`seq2seq.shortlist.restrict`; `model` must then be a `Seq2Seq` or an `Ensemble`).
    `processes` (called only if the input makes more than one batch) gives search processes of this
    model, and of this shortlist if there is one, or None: the batches are then searched side by side
    in them, cut small enough that each process gets several (`parallel_budget`).
    """
    results: list[list[Hypothesis]] = [[] for _ in range(len(src))]
    lengths = src.lengths + 1
    budget = max(batch_tokens // (opts.n_best if opts.sample else opts.beam), int(lengths.max(initial=1)))
    one_batch = int(lengths.max(initial=1)) * len(lengths) <= budget  # token_batches' rule, all sorted
    pool = processes() if processes is not None and not one_batch else None
    if pool is not None and not opts.sample:  # samples depend on their batch: keep its batches
        budget = parallel_budget(budget, lengths, pool.count)
    batches = token_batches(lengths, lengths, budget, 0, 0, shuffle=False)
    jobs = [SearchBatch(src.pad(idx, suffix=EOS), lengths[idx]) for idx in batches]
    if pool is not None:
        found = pool.run(jobs, opts, shortlisted=shortlist is not None)
    else:
        found = [search_batch(model, job, opts, device, shortlist) for job in jobs]
    for idx, hyps in zip(batches, found, strict=True):
        for i, h in zip(idx.tolist(), hyps, strict=True):
            results[i] = h
    return results


BATCHES_PER_PROCESS = 4
"""About how many batches each search process gets of an input (`parallel_budget`)."""
MIN_PARALLEL_BUDGET = 500
"""The smallest batch budget `parallel_budget` cuts to (about 32 Multi30k sentences: smaller batches
lose more per sentence than an idle process would)."""


def parallel_budget(budget: int, lengths: np.ndarray, processes: int) -> int:
    """The batch budget for `processes` side by side: at most a quarter of each one's share of the
    tokens (but not under `MIN_PARALLEL_BUDGET`), so that the batches, handed out longest first, leave
    the processes busy until about the same time. On Multi30k's test set with 2 processes (6 rounds,
    alternated): beam 5 2.45 / 2.34 / 2.45 s with about 2 / 4 / 8 batches each, greedy 1.12 / 1.18 /
    1.14 s (within the noise)."""
    share = max(int(lengths.sum()) // (BATCHES_PER_PROCESS * processes), MIN_PARALLEL_BUDGET)
    return max(int(lengths.max(initial=1)), min(budget, share))


class Translator:
    """A loaded model (or an `Ensemble` of models) that translates lists of sentences or streams of lines."""

    def __init__(
        self,
        model: Seq2Seq | Ensemble,
        tokenizer: Tokenizer,
        cfg: Config,
        device: torch.device,
        bf16: bool = False,
        shortlist: Shortlist | None = None,
    ) -> None:
        self.model, self.tokenizer, self.cfg, self.device = model.eval(), tokenizer, cfg, device
        for member in model.models if isinstance(model, Ensemble) else [model]:
            if isinstance(member, Seq2Seq):  # the weights are done changing (seq2seq.model.lookup)
                member.decoder.enable_lookup()
        self.bf16 = bf16
        """Decode under bf16 autocast: matmuls and LSTMs in bf16, softmax and scores in fp32."""
        self.shortlist = shortlist
        """The vocabulary shortlist searches use unless told otherwise (see `SearchOptions.shortlist`)."""
        self.stats = TranslateStats()
        self.decoders = 1
        """Searches side by side on the CPU, each in a forked process of one torch thread
        (`seq2seq.search_processes`); 1 = one search in this process, with all of torch's threads. The
        processes are forked at the first input of more than one batch and end with `close`."""
        self._processes: SearchProcesses | None = None

    def _search_processes(self) -> SearchProcesses | None:
        """This translator's search processes, forked on first use, or None where they don't apply."""
        if self.decoders < 2 or self.device.type != "cpu" or not fork_available():
            return None
        if self._processes is None or self._processes.count != self.decoders:
            self.close()
            self._processes = SearchProcesses(self.model, self.shortlist, self.decoders, self.bf16)
            weakref.finalize(self, self._processes.close)
        return self._processes

    def close(self) -> None:
        """End the search processes, if any were forked (a later call forks them again)."""
        if self._processes is not None:
            self._processes.close()
            self._processes = None

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | Sequence[str | Path],
        device: str = "auto",
        quantize: str = "",
        bf16: bool = False,
    ) -> Translator:
        """Load a checkpoint (or a folder written by `seq2seq export`) once, or several as an `Ensemble`
        (they must share the tokenizer; decode defaults come from the first). `quantize="int8"` quantizes
        for CPU use (see `quantize_int8`);
        `bf16=True` decodes under bf16 autocast where the hardware has native bf16 (see `native_bf16`);
        elsewhere it decodes in fp32 (emulated bf16 is slower, and oneDNN has no bf16 LSTM there): check
        `translator.bf16` for what applies."""
        paths = [Path(path)] if isinstance(path, str | Path) else [Path(p) for p in path]
        if not paths:
            raise Seq2SeqError("--model: give at least one checkpoint")
        dev = resolve_device(device)
        if bf16 and quantize:
            raise Seq2SeqError("--bf16 and --quantize are two ways to lower precision: choose one")
        if quantize and quantize != "int8":
            raise Seq2SeqError(f"--quantize: {quantize!r} is not supported (use int8)")
        if quantize and dev.type != "cpu":
            raise Seq2SeqError("--quantize int8 is for CPU translation; add --device cpu")
        models, tokenizer, cfg, shortlists = [], None, None, []
        for p in paths:
            model, tok, model_cfg = load_pretrained(p, dev) if p.is_dir() else load_model(p, dev)
            shortlists.append(load_shortlist(p))
            if tokenizer is None or cfg is None:
                tokenizer, cfg = tok, model_cfg
            elif tok.state() != tokenizer.state():
                raise Seq2SeqError(
                    f"{p}: its SentencePiece models differ from those of {paths[0]}; an ensemble needs "
                    "models trained on the same vocabulary (the same preprocessed data)"
                )
            models.append(quantize_int8(model) if quantize else model)
        assert tokenizer is not None and cfg is not None
        member: Seq2Seq | Ensemble = models[0] if len(models) == 1 else Ensemble(models)
        shortlist = None
        if all(s is not None for s in shortlists):  # an ensemble: every member's shortlist, merged
            first, *others = [s for s in shortlists if s is not None]
            for p, s in zip(paths, shortlists, strict=True):
                assert s is not None
                check_vocab_sizes(s, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, str(p))
            shortlist = first.union(others) if others else first
        return cls(member, tokenizer, cfg, dev, bf16 and native_bf16(dev), shortlist)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str = "auto", bf16: bool = False) -> Translator:
        """Load a folder written by `seq2seq export` (safetensors, JSON, SentencePiece: no pickle)."""
        if not Path(directory).is_dir():
            raise Seq2SeqError(f"{directory}: not a directory (give a folder written by seq2seq export)")
        return cls.from_checkpoint(directory, device, bf16=bf16)

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
        penalty: Penalty | None = None,
        sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        shortlist: bool | None = None,
        stop: Stop | None = None,
    ) -> SearchOptions:
        """Search options: the checkpoint's `decode` settings unless given here (see `SearchOptions`).
        With `sample=True`, `n_best` is the number of samples per sentence. `shortlist=True` on a model
        without a shortlist is an error naming --shortlist."""
        opts = SearchOptions.from_config(
            self.cfg.decode, beam=beam, n_best=n_best, length_penalty=length_penalty, max_len_a=max_len_a,
            max_len_b=max_len_b, min_len=min_len, block_unk=block_unk, return_attention=attention,
            penalty=penalty, sample=sample, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
            shortlist=shortlist, stop=stop,
        )  # fmt: skip
        self.shortlist_for(opts)
        return opts

    def shortlist_for(self, opts: SearchOptions) -> Shortlist | None:
        """The shortlist a search with `opts` uses: the model's, unless `opts.shortlist` is False or the
        search samples; `opts.shortlist=True` without one is an error."""
        if opts.shortlist is True and self.shortlist is None:
            raise Seq2SeqError(
                "--shortlist: this model has no vocabulary shortlist (a checkpoint from before shortlists, "
                "an exported folder, or an ensemble member without one); add one with: "
                "seq2seq shortlist CKPT --data RUN_DIR/data"
            )
        return None if opts.shortlist is False or opts.sample else self.shortlist

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
                shortlist = self.shortlist_for(opts)
                hyps_by_row = decode_ids(
                    self.model, flat, opts, batch_tokens or self.cfg.decode.batch_tokens, self.device,
                    shortlist, self._search_processes,
                )  # fmt: skip
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

    def single_model(self, what: str) -> Seq2Seq:
        """The model, for `what` (a command) that needs one model, not an ensemble."""
        if not isinstance(self.model, Seq2Seq):
            raise Seq2SeqError(f"{what} takes one --model (an ensemble has no single set of states)")
        return self.model

    def inspect(
        self, sentence: str, target: str | None = None, beam: int | None = None, gradients: bool = False
    ) -> Trace:
        """Every gate, memory cell, hidden state and attention weight of one sentence, as named arrays
        (see `seq2seq.inspect.sentence.Trace`): on its own translation, or forced on `target`."""
        max_src = self.cfg.decode.max_src_len
        return trace_sentence(
            self.single_model("inspect"),
            self.tokenizer,
            sentence,
            target,
            self.options(beam),
            max_src,
            gradients,
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
        for name, value in (("--chunk-lines", chunk_lines), ("--batch-tokens", batch_tokens)):
            if value is not None and value < 1:
                raise Seq2SeqError(f"{name}: must be at least 1, got {value}")
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= chunk_lines:
                yield from self.translate_batch(chunk, opts, batch_tokens)
                chunk = []
        if chunk:
            yield from self.translate_batch(chunk, opts, batch_tokens)

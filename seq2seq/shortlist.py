"""Vocabulary shortlists: the output layer runs over the target subwords a batch's sources make likely.

As in Marian's lexical shortlists. `build_shortlist` reads the encoded training pairs once: each source
subword's `per_source` most likely target subwords under IBM Model 1 (a few EM iterations of a
word-translation table p(t | s), vectorised over all co-occurring pairs: a cheap alignment), plus the
`frequent` most frequent target subwords and the special ids. It is deterministic and small (a
[V_src, per_source] table of target ids), and is stored in the checkpoint (`Shortlist.state`).

At decoding time (`ShortlistModel`) a batch's sentences are split into groups of consecutive sentences
(`Shortlist.columns`), and each group's rows of the output layer are one [rows, H] x [H, U] matmul over
the union of that group's shortlists (rows of the output weight gathered once per batch), instead of
[H, V]. Each sentence is then restricted to its OWN shortlist (the other columns get -inf before the
softmax), so a translation does not depend on which sentences share its batch or group. Groups, not one
union per batch: a sentence's shortlist is a few hundred subwords, but the union of ~200 sentences is
thousands (3,136 columns for a beam-5 batch of Multi30k, 768 for a group of 8), and columns outside a
sentence's own shortlist are computed only to be masked. Search runs in "column space": tokens are
positions in their group's columns, mapped back to vocabulary ids by the caller (`Columns.vocab_ids`).
The special ids 0..3 are always the first columns, so PAD/UNK/BOS/EOS keep their ids there.

Scores: log-probabilities normalised over the sentence's shortlist, not over the full vocabulary. The
full normaliser needs the whole output layer, which is the work the shortlist saves; the shortlist is
chosen to hold nearly all of the probability mass, so a shortlisted log-probability is the
full-vocabulary one plus -log(mass of the shortlist), a small non-negative amount. `seq2seq score`
(forced decoding) and decoding with `--no-shortlist` give full-vocabulary log-probabilities.

Notation: B sentences, S source length, N = B x G decoder rows (G hypotheses per sentence), H decoder
output size, V target vocabulary, Q column groups of a batch, U columns of a group (the widest group's
union, padded), P co-occurring (source, target) pairs.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.config import DecodeConfig
from seq2seq.ensemble import Ensemble
from seq2seq.errors import Seq2SeqError
from seq2seq.special import EOS

SPECIAL_IDS = 4
"""PAD, UNK, BOS, EOS: ids 0..3, always in every shortlist and always its first columns."""
COLUMN_MULTIPLE = 16
"""The union is padded to a multiple of this many columns (with ids no sentence may emit), so the
search's fast top-k (`seq2seq.search.top_k`) and the matmul see aligned widths."""
GROUP_ROWS = 40
"""Decoder rows per column group in beam search (`restrict`): 8 sentences of a beam of 5. Smaller groups
have smaller unions, but each group's rows of the output weight are read once per step for only its
rows: on 2 CPU cores a beam-5 step of 200 sentences over groups of 8 (768 columns) took 7.3 ms against
15.1 ms over the batch's union of 3,136 columns, while greedy search (one row per sentence) was faster
over the union."""
STATE_VERSION = 1
BLOCK_PAIRS = 1_000_000
"""IBM Model 1 reads this many (source, target) position pairs at a time (about 100 bytes each)."""


@dataclass(frozen=True)
class Shortlist:
    """Per source subword, its likely target subwords; plus target subwords always allowed."""

    candidates: torch.Tensor
    """[V_src, per_source] target ids (int16, or int32 for V >= 2**15); EOS where a source subword
    has fewer candidates."""
    frequent: torch.Tensor
    """[F] target ids always in (the most frequent target subwords and the special ids), sorted."""
    tgt_vocab: int

    @property
    def per_source(self) -> int:
        return self.candidates.size(1)

    def state(self) -> dict[str, Any]:
        """What the checkpoint stores (tensors and ints only: loads with `weights_only=True`)."""
        return {
            "version": STATE_VERSION,
            "candidates": self.candidates,
            "frequent": self.frequent,
            "tgt_vocab": self.tgt_vocab,
        }

    @classmethod
    def from_state(cls, state: Any, where: str) -> Shortlist:
        """The shortlist stored by `state`; a damaged entry is a one-line error naming `where`."""
        try:
            if state["version"] != STATE_VERSION:
                raise Seq2SeqError(
                    f"{where}: shortlist format {state['version']} is not supported "
                    f"(this seq2seq reads version {STATE_VERSION}); rebuild it with seq2seq shortlist"
                )
            candidates, frequent, vocab = state["candidates"], state["frequent"], int(state["tgt_vocab"])
            ok = candidates.dim() == 2 and frequent.dim() == 1 and candidates.numel() > 0
            ok = ok and int(candidates.min()) >= 0 and int(candidates.max()) < vocab
            ok = ok and frequent.numel() >= SPECIAL_IDS and int(frequent.max()) < vocab
        except (KeyError, TypeError, AttributeError, RuntimeError, ValueError):
            ok = False
        if not ok:
            raise Seq2SeqError(f"{where}: damaged vocabulary shortlist; rebuild it with seq2seq shortlist")
        return cls(candidates, frequent, vocab)

    def union(self, others: Sequence[Shortlist]) -> Shortlist:
        """One shortlist allowing what any of them allows (for an ensemble of models)."""
        lists = [self, *others]
        if len({s.tgt_vocab for s in lists}) != 1 or len({s.candidates.size(0) for s in lists}) != 1:
            raise Seq2SeqError("the models' shortlists cover different vocabularies")
        wide = max(s.candidates.dtype.itemsize for s in lists)
        dtype = torch.int16 if wide == 2 else torch.int32
        return Shortlist(
            torch.cat([s.candidates.to(dtype) for s in lists], dim=1),
            torch.unique(torch.cat([s.frequent.long() for s in lists])),
            self.tgt_vocab,
        )

    def sentence_ids(self, src_ids: torch.Tensor) -> torch.Tensor:
        """[B, S * per_source] target ids each sentence's source subwords allow (frequent ones not
        included; PAD positions add EOS, which is always allowed anyway)."""
        cands = self.candidates.to(src_ids.device).long()
        return cands[src_ids].view(src_ids.size(0), -1)

    def columns(self, src_ids: torch.Tensor, group_size: int | None = None) -> Columns:
        """The output columns of a batch with source ids [B, S] (PAD-padded): its sentences in groups of
        `group_size` consecutive sentences (default: one group), each group's union of their shortlists,
        and each sentence's mask over its group's columns (see `Columns`)."""
        device = src_ids.device
        batch = src_ids.size(0)
        size = batch if group_size is None else max(1, min(group_size, batch))
        groups = -(-batch // size)
        padded = torch.zeros(groups * size, self.tgt_vocab, dtype=torch.bool, device=device)
        allowed = padded[:batch]  # [B, V]; the rows after it stay empty
        allowed.scatter_(1, self.sentence_ids(src_ids), True)
        allowed[:, self.frequent.to(device).long()] = True
        allowed[:, :SPECIAL_IDS] = True
        union = padded.view(groups, size, -1).any(dim=1)  # [Q, V]
        width = int(union.sum(dim=1).max())
        width = min(self.tgt_vocab, width + (-width) % COLUMN_MULTIPLE)
        # each group's union, then the lowest ids outside it as padding; sorted, so 0..3 come first
        picked = torch.argsort((~union).to(torch.uint8), dim=1, stable=True)[:, :width]
        vocab_ids = picked.sort(dim=1).values  # [Q, U]
        group = torch.arange(batch, device=device) // size
        mask = torch.zeros(batch, width, device=device)
        mask.masked_fill_(~allowed.gather(1, vocab_ids[group]), float("-inf"))
        return Columns(vocab_ids, mask, group)


class Columns(NamedTuple):
    """A batch's output columns (`Shortlist.columns`): Q groups of consecutive sentences, U columns each."""

    vocab_ids: torch.Tensor
    """[Q, U] the vocabulary ids of each group's columns, ascending (so 0..3 first): the group's union,
    padded with ids no sentence of the group may emit to a multiple of `COLUMN_MULTIPLE` (so the search's
    fast top-k and the matmul see aligned widths)."""
    mask: torch.Tensor
    """[B, U] 0.0 where the sentence may emit its group's column, -inf elsewhere."""
    group: torch.Tensor
    """[B] each sentence's group (non-decreasing)."""


def build_shortlist(
    src: Any,
    tgt: Any,
    src_vocab: int,
    tgt_vocab: int,
    per_source: int = 50,
    frequent: int = 100,
    iterations: int = 5,
    max_pairs: int = 20_000_000,
) -> Shortlist:
    """The shortlist of a training corpus, given its encoded sides as `FlatSequences` (values, lengths).

    p(t | s) is IBM Model 1 (no NULL word) after `iterations` EM iterations from uniform, over every
    (source position, target position) pair of every sentence; the first iteration is normalised
    co-occurrence counts. Each source subword keeps its `per_source` best targets (ties: lower id);
    source subwords never seen keep none. A corpus of more than `max_pairs` pairs is read from an evenly
    spaced sample of its sentences. The pairs are streamed in blocks of sentences (`BLOCK_PAIRS` pairs)
    and never held all at once: memory is the table's support plus one block, whatever the corpus size.
    The most frequent targets are counted on all of it, one Arrow chunk at a time
    (`FlatSequences.id_counts`).
    """
    if per_source < 1 or frequent < 0 or iterations < 1:
        raise Seq2SeqError(
            f"--per-source/--frequent (decode.shortlist_per_source/_frequent): need at least 1 and 0 "
            f"(got {per_source}, {frequent}; iterations {iterations})"
        )
    per_source = min(per_source, tgt_vocab)
    keys, prob = _model1(src, tgt, src_vocab, tgt_vocab, iterations, max_pairs, BLOCK_PAIRS)
    return Shortlist(
        _best_per_source(keys, prob, src_vocab, tgt_vocab, per_source),
        _frequent_ids(tgt.id_counts(tgt_vocab), frequent),
        tgt_vocab,
    )


def corpus_shortlist(corpus: Any, tokenizer: Any, decode: DecodeConfig) -> Shortlist:
    """The shortlist of a `ParallelCorpus` (a preprocessed training split) with the recipe's sizes
    (`decode.shortlist_per_source`, `decode.shortlist_frequent`)."""
    return build_shortlist(
        corpus.src, corpus.tgt, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size,
        decode.shortlist_per_source, decode.shortlist_frequent,
    )  # fmt: skip


def _sample(pairs: np.ndarray, max_pairs: int) -> np.ndarray:
    """Indices of the sentences to read: all, or an evenly spaced share holding about `max_pairs` pairs."""
    total = int(pairs.sum())
    if total <= max_pairs:
        return np.arange(len(pairs))
    step = total / max_pairs
    return np.unique((np.arange(int(len(pairs) / step)) * step).astype(np.int64))


def _blocks(pairs: np.ndarray, block_pairs: int) -> list[slice]:
    """Consecutive runs of sentences holding at most `block_pairs` pairs each (a longer sentence is a
    run of its own), given each sentence's pair count [N]."""
    ends = np.cumsum(pairs)
    cuts, lo = [], 0
    while lo < len(pairs):
        reach = (ends[lo - 1] if lo else 0) + block_pairs
        hi = max(lo + 1, int(np.searchsorted(ends, reach, side="right")))
        cuts.append(slice(lo, hi))
        lo = hi
    return cuts


def _model1(
    src: Any, tgt: Any, src_vocab: int, tgt_vocab: int, iterations: int, max_pairs: int, block_pairs: int
) -> tuple[np.ndarray, np.ndarray]:
    """IBM Model 1 p(t | s) over the sampled sentences: the support's keys s * V + t, sorted [K], and
    their probabilities [K]. Each pass reads the pairs again block by block (see `build_shortlist`)."""
    src_lengths, tgt_lengths = np.asarray(src.lengths), np.asarray(tgt.lengths)
    sentences = _sample(src_lengths.astype(np.int64) * tgt_lengths, max_pairs)
    blocks = _blocks(src_lengths[sentences].astype(np.int64) * tgt_lengths[sentences], block_pairs)
    keys = np.zeros(0, dtype=np.int64)
    for block in blocks:  # the support of the table, sorted: merged block by block
        keys = np.concatenate([keys, np.sort(_pair_keys(src, tgt, sentences[block], tgt_vocab)[0])])
        keys.sort(kind="stable")  # two sorted runs: a linear merge
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    key_src = keys // tgt_vocab
    prob = np.ones(len(keys))  # uniform start: the first E step counts co-occurrences
    for _ in range(iterations):
        counts = np.zeros(len(keys))
        for block in blocks:
            pair_keys, tgt_occurrence = _pair_keys(src, tgt, sentences[block], tgt_vocab)  # [P], [P]
            order = np.argsort(pair_keys)  # sorted queries search faster (cache)
            index = np.empty_like(order)
            index[order] = np.searchsorted(keys, pair_keys[order])
            p = prob[index]
            norm = np.bincount(tgt_occurrence, weights=p)  # per target position: sum over its sources
            counts += np.bincount(index, weights=p / norm[tgt_occurrence], minlength=len(keys))
        prob = counts / np.bincount(key_src, weights=counts, minlength=src_vocab)[key_src]
    return keys, prob


def _pair_keys(src: Any, tgt: Any, sentences: np.ndarray, tgt_vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """For the given sentences: the key s * V + t of every (source position, target position) pair [P],
    and the index of the pair's target position among their target positions [P]."""
    m = np.asarray(src.lengths)[sentences].astype(np.int64)
    n = np.asarray(tgt.lengths)[sentences].astype(np.int64)
    per_sentence = m * n
    first_pair = np.cumsum(per_sentence) - per_sentence
    sentence = np.repeat(np.arange(len(sentences)), per_sentence)  # [P]
    within = np.arange(int(per_sentence.sum())) - first_pair[sentence]
    i, j = within // n[sentence], within % n[sentence]  # source and target position in the sentence
    s = src.gather(sentences[sentence], i).astype(np.int64)
    t = tgt.gather(sentences[sentence], j).astype(np.int64)
    tgt_position = (np.cumsum(n) - n)[sentence] + j
    return s * tgt_vocab + t, tgt_position


def _best_per_source(
    keys: np.ndarray, prob: np.ndarray, src_vocab: int, tgt_vocab: int, per_source: int
) -> torch.Tensor:
    """[V_src, per_source] the most probable targets of each source id (EOS-padded), deterministic."""
    key_src, key_tgt = keys // tgt_vocab, keys % tgt_vocab
    order = np.lexsort((key_tgt, -prob, key_src))  # by source, then probability down, then id up
    key_src, key_tgt = key_src[order], key_tgt[order]
    first = np.searchsorted(key_src, key_src, side="left")
    rank = np.arange(len(key_src)) - first
    keep = rank < per_source
    dtype = np.int16 if tgt_vocab <= np.iinfo(np.int16).max else np.int32
    table = np.full((src_vocab, per_source), EOS, dtype=dtype)
    table[key_src[keep], rank[keep]] = key_tgt[keep]
    return torch.from_numpy(table)


def _frequent_ids(counts: np.ndarray, frequent: int) -> torch.Tensor:
    """The `frequent` most frequent target ids given each id's count [V] (ties: lower id), and the
    special ids, sorted."""
    top = np.lexsort((np.arange(len(counts)), -counts))[:frequent]
    top = top[counts[top] > 0]
    return torch.from_numpy(np.union1d(np.arange(SPECIAL_IDS), top).astype(np.int32))


class ShortlistEncoding(NamedTuple):
    """The model's encoder output plus each sentence's column group and mask over its group's columns."""

    enc: Any
    mask: torch.Tensor
    """[B, U] 0.0 where the sentence may emit the column, -inf elsewhere."""
    group: torch.Tensor
    """[B] the sentence's column group (non-decreasing, as long as `index_select`'s are, as in search)."""

    def index_select(self, index: torch.Tensor) -> ShortlistEncoding:
        return ShortlistEncoding(
            self.enc.index_select(index), self.mask.index_select(0, index), self.group.index_select(0, index)
        )


class ShortlistStep(NamedTuple):
    log_probs: torch.Tensor
    """[N, U] normalised over each row's sentence's shortlist (-inf outside it)."""
    state: Any
    attention: torch.Tensor


def output_rows(output: nn.Module, vocab_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rows `vocab_ids` of an output layer's weight [n, H] and bias [n]: an `nn.Linear`, or a dynamic
    int8 one (`--quantize int8`), whose rows are dequantized (the shortlisted layer then runs in fp32)."""
    layer: Any = output
    weight, bias = layer.weight, layer.bias
    if callable(weight):  # torch.ao.nn.quantized.dynamic.Linear keeps packed weights behind methods
        weight, bias = weight().dequantize(), layer.bias()
    rows = weight.index_select(0, vocab_ids)
    return rows, None if bias is None else bias.index_select(0, vocab_ids)


class ShortlistModel:
    """A `Seq2Seq` whose output layer runs over one batch's shortlist columns (search protocol).

    Made for one batch by `restrict`, from `Shortlist.columns` of that batch's sources, so `encode`
    must be called with them. Tokens in and out are columns of the row's group; `prev` is mapped to
    vocabulary ids here.
    """

    def __init__(self, model: Any, columns: Columns) -> None:
        self.model, self.columns = model, columns
        groups, width = columns.vocab_ids.shape
        weight, bias = output_rows(model.output, columns.vocab_ids.reshape(-1))
        self.weight = weight.view(groups, width, -1)  # [Q, U, H]
        self.bias = None if bias is None else bias.view(groups, width)

    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor) -> ShortlistEncoding:
        if src_ids.size(0) != self.columns.mask.size(0):
            raise ValueError("a ShortlistModel encodes the batch it was made for")
        enc = self.model.encode(src_ids, src_lengths)
        return ShortlistEncoding(enc, self.columns.mask, self.columns.group)

    def init_state(self, enc: ShortlistEncoding) -> Any:
        return self.model.init_state(enc.enc)

    def decode_step(self, prev: torch.Tensor, state: Any, enc: ShortlistEncoding) -> ShortlistStep:
        """prev [N] columns -> log-probabilities [N, U] (the computation of `Seq2Seq.decode_step` over
        the rows `vocab_ids` of the output layer), new state, attention [N, S]."""
        sentences = enc.mask.size(0)
        per_sentence = prev.size(0) // sentences
        row_group = enc.group if per_sentence == 1 else enc.group.repeat_interleave(per_sentence)
        prev_ids = self.columns.vocab_ids[row_group, prev]
        att, state, weights = self.model.decoder.step(prev_ids, state, enc.enc)
        logits = self._logits(self.model.decoder.out_dropout(att), enc.group, per_sentence)
        logits.view(sentences, per_sentence, -1).add_(enc.mask.unsqueeze(1))  # [B, G, U]
        return ShortlistStep(torch.log_softmax(logits, dim=-1, out=logits), state, weights)

    def _logits(self, x: torch.Tensor, group: torch.Tensor, per_sentence: int) -> torch.Tensor:
        """[N, U] fp32: each group's rows (consecutive, as its sentences are) times its own columns."""
        groups = self.weight.size(0)
        if groups == 1:
            return F.linear(x, self.weight[0], None if self.bias is None else self.bias[0]).float()
        counts = torch.bincount(group, minlength=groups).tolist()
        logits = torch.empty(x.size(0), self.weight.size(1), device=x.device)
        in_place = (
            x.dtype == self.weight.dtype == torch.float32
            and self.bias is not None
            and not torch.is_autocast_enabled(x.device.type)
        )
        start = 0
        for g, count in enumerate(counts):
            if count == 0:
                continue
            end = start + count * per_sentence
            if in_place:  # straight into the rows of `logits`, no copy
                assert self.bias is not None
                torch.addmm(self.bias[g], x[start:end], self.weight[g].t(), out=logits[start:end])
            else:
                bias = None if self.bias is None else self.bias[g]
                logits[start:end] = F.linear(x[start:end], self.weight[g], bias)
            start = end
        return logits


def restrict(
    model: Any, shortlist: Shortlist, src_ids: torch.Tensor, rows_per_sentence: int = 1
) -> tuple[Any, Columns]:
    """(the model over the batch's shortlist columns, the `Columns` to map its tokens back with), in
    groups of about `GROUP_ROWS` decoder rows when a sentence has several (`rows_per_sentence`: the
    beam); one group for greedy search, whose groups would read more output weights than they save.

    `model` is a `Seq2Seq` or an `Ensemble` of them (each member is restricted to the same columns)."""
    size = None if rows_per_sentence <= 1 else max(1, GROUP_ROWS // rows_per_sentence)
    columns = shortlist.columns(src_ids, size)
    if isinstance(model, Ensemble):
        return Ensemble([ShortlistModel(m, columns) for m in model.models]), columns
    return ShortlistModel(model, columns), columns


def load_shortlist(path: Path) -> Shortlist | None:
    """The shortlist stored in checkpoint `path` (or exported folder), or None (older ones have none).

    The file is memory-mapped, so only the shortlist's own bytes are read."""
    if Path(path).is_dir():
        from seq2seq.export import load_folder_shortlist

        folder_state = load_folder_shortlist(Path(path))
        return None if folder_state is None else Shortlist.from_state(folder_state, f"{path} (shortlist)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    state = payload.get("shortlist") if isinstance(payload, dict) else None
    return None if state is None else Shortlist.from_state(state, f"{path} (shortlist)")


def check_vocab_sizes(shortlist: Shortlist, src_vocab: int, tgt_vocab: int, where: str) -> None:
    """The shortlist was built for these vocabulary sizes."""
    if shortlist.candidates.size(0) != src_vocab or shortlist.tgt_vocab != tgt_vocab:
        raise Seq2SeqError(
            f"{where}: its shortlist is for {shortlist.candidates.size(0)} source and "
            f"{shortlist.tgt_vocab} target subwords, the model has {src_vocab} and {tgt_vocab}; "
            "rebuild it with seq2seq shortlist"
        )


@dataclass(frozen=True)
class Coverage:
    """How well a shortlist fits a held-out split."""

    tokens: float
    """Share of the reference target subwords (EOS included) in their sentence's shortlist."""
    size: float
    """Mean size of a sentence's shortlist, in target subwords."""


def coverage(shortlist: Shortlist, src: Any, tgt: Any, chunk: int = 512) -> Coverage:
    """`Coverage` of a split's encoded sides (`FlatSequences`) by `shortlist`."""
    covered = total = 0
    size = 0.0
    frequent = shortlist.frequent.long()
    for lo in range(0, len(src), chunk):
        idx = np.arange(lo, min(lo + chunk, len(src)))
        src_ids = torch.from_numpy(src.pad(idx, suffix=EOS))
        tgt_ids = torch.from_numpy(tgt.pad(idx, suffix=EOS))
        allowed = torch.zeros(len(idx), shortlist.tgt_vocab, dtype=torch.bool)
        allowed.scatter_(1, shortlist.sentence_ids(src_ids), True)
        allowed[:, frequent] = True
        real = torch.arange(tgt_ids.size(1)) < torch.from_numpy(tgt.lengths[idx] + 1).unsqueeze(1)
        covered += int(allowed.gather(1, tgt_ids)[real].sum())
        total += int(real.sum())
        size += float(allowed.sum())
    return Coverage(covered / max(1, total), size / max(1, len(src)))


@dataclass(frozen=True)
class AddedShortlist:
    shortlist: Shortlist
    coverage: Coverage | None
    """On the data's validation split, if it has one."""
    seconds: float


def add_shortlist(
    checkpoint: Path, data_dir: Path, output: Path, per_source: int | None = None, frequent: int | None = None
) -> AddedShortlist:
    """Build the shortlist of `data_dir`'s training split (the run's preprocessed data, same vocabulary
    as `checkpoint`) and write `checkpoint` with it to `output` (atomically; `output` may be
    `checkpoint`). Sizes default to the checkpoint recipe's `decode.shortlist_*`."""
    from seq2seq.checkpoint import check_model_entries, load_checkpoint, save_checkpoint
    from seq2seq.config import config_from_dict
    from seq2seq.data import ParallelCorpus, load_prepared  # imports `datasets`

    payload = load_checkpoint(checkpoint)
    check_model_entries(checkpoint, payload)
    decode = config_from_dict(payload["config"], f"{checkpoint} (config)").decode
    prepared = load_prepared(data_dir)
    if prepared.tokenizer.state() != payload["tokenizer"]:
        raise Seq2SeqError(
            f"--data: {data_dir} was preprocessed with other SentencePiece models than {checkpoint}; "
            "give the data directory of the run that trained it (RUN_DIR/data)"
        )
    if "train" not in prepared.splits:
        raise Seq2SeqError(f"--data: {data_dir} has no train split to build the shortlist from")
    start = time.perf_counter()
    train = ParallelCorpus.from_dataset(prepared.splits["train"])
    shortlist = build_shortlist(
        train.src, train.tgt, prepared.tokenizer.src_vocab_size, prepared.tokenizer.tgt_vocab_size,
        decode.shortlist_per_source if per_source is None else per_source,
        decode.shortlist_frequent if frequent is None else frequent,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    found = None
    if "valid" in prepared.splits:
        valid = ParallelCorpus.from_dataset(prepared.splits["valid"])
        found = coverage(shortlist, valid.src, valid.tgt)
    payload = {k: v for k, v in payload.items() if k not in ("format", "version")}
    save_checkpoint(output, {**payload, "shortlist": shortlist.state()})
    return AddedShortlist(shortlist, found, seconds)

"""Token-budget batches with length bucketing, built from flat id arrays.

The encoded corpus is held as flat int arrays per side plus row starts and lengths (viewed in place in
the memory-mapped Arrow list columns), so making a padded batch is a handful of vectorised numpy
operations, not a Python loop over tokens. Batches are a pure function of (lengths, budget, seed,
epoch): training can resume at batch k of epoch e and see exactly the batches it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from seq2seq.special import BOS, EOS, PAD


@dataclass(frozen=True)
class Batch:
    """A padded batch. Shapes: src_ids [B, S], src_lengths [B], tgt_in/tgt_out [B, T]."""

    src_ids: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    indices: np.ndarray
    """Row i of the batch is example indices[i] of the split."""

    @property
    def n_tgt_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.src_ids.to(device, non_blocking=True),
            self.src_lengths.to(device, non_blocking=True),
            self.tgt_in.to(device, non_blocking=True),
            self.tgt_out.to(device, non_blocking=True),
            self.indices,
        )


class FlatSequences:
    """Variable-length int sequences: row i is `lengths[i]` ids from `starts[i]` of one flat id array.

    The ids are one array (`from_lists`, a corpus built in memory) or, from a memory-mapped Arrow column
    (`from_arrow`), one array per chunk viewed in place: nothing is copied, so the ids of a corpus of
    any size stay in the file and are paged in as batches read them. Per row, only `starts` and
    `lengths` (numpy, 4 bytes each for Arrow columns) are held in memory; no Python object per row.
    """

    def __init__(self, values: np.ndarray, lengths: np.ndarray) -> None:
        lengths = lengths.astype(np.int32, copy=False)
        starts = np.concatenate([[0], np.cumsum(lengths[:-1], dtype=np.int64)]) if len(lengths) else lengths
        self._set([values], [starts], [lengths])

    def _set(self, parts: list[np.ndarray], starts: list[np.ndarray], lengths: list[np.ndarray]) -> None:
        self.parts = parts
        """The flat id arrays; rows [part_ends[k - 1], part_ends[k]) read from parts[k]."""
        self.part_ends = np.cumsum([len(n) for n in lengths], dtype=np.int64)
        self.starts = np.concatenate(starts) if len(starts) > 1 else starts[0]
        self.lengths = np.concatenate(lengths) if len(lengths) > 1 else lengths[0]

    @classmethod
    def from_arrow(cls, column: pa.ChunkedArray | pa.Array) -> FlatSequences:
        """A list<int> column, each chunk's ids viewed in place (a memory-mapped dataset stays mapped)."""
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        chunks = [c for c in chunks if len(c)] or [pa.array([], pa.list_(pa.int32()))]
        parts, starts, lengths = [], [], []
        for chunk in chunks:
            offsets = chunk.offsets.to_numpy()  # [rows + 1], into chunk.values (the chunk's slice applied)
            parts.append(chunk.values.to_numpy(zero_copy_only=False))
            starts.append(offsets[:-1])
            lengths.append(np.diff(offsets).astype(np.int32, copy=False))
        flat = cls.__new__(cls)
        flat._set(parts, starts, lengths)
        return flat

    @classmethod
    def from_lists(cls, rows: list[list[int]]) -> FlatSequences:
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        values = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(lengths.sum()))
        return cls(values, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def gather(self, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """The ids at `positions` of `rows` (two int arrays of one shape), vectorised."""
        rows = np.asarray(rows, dtype=np.int64)
        flat = (self.starts[rows].astype(np.int64) + np.asarray(positions, dtype=np.int64)).ravel()
        rows = rows.ravel()
        if len(rows) < 2 or bool(np.all(rows[1:] >= rows[:-1])):
            return self._take_sorted(rows, flat).reshape(np.shape(positions))
        order = np.argsort(rows, kind="stable")
        out = np.empty_like(flat, dtype=self.parts[0].dtype)
        out[order] = self._take_sorted(rows[order], flat[order])
        return out.reshape(np.shape(positions))

    def _take_sorted(self, rows: np.ndarray, flat: np.ndarray) -> np.ndarray:
        """The ids at `flat` (positions in the flat arrays) of `rows` ([N] each, rows non-decreasing):
        one numpy gather per part the rows read, found by a binary search of the part ends in `rows`."""
        if len(self.parts) == 1:
            return self.parts[0][flat]
        ends = np.searchsorted(rows, self.part_ends, side="left")  # part k reads [ends[k - 1], ends[k])
        begins = np.concatenate([[0], ends[:-1]])
        read = np.flatnonzero(ends > begins)
        out = np.empty(len(flat), dtype=self.parts[0].dtype)
        for part, lo, hi in zip(read.tolist(), begins[read].tolist(), ends[read].tolist(), strict=True):
            out[lo:hi] = self.parts[part][flat[lo:hi]]
        return out

    def id_counts(self, vocab_size: int) -> np.ndarray:
        """How often each id occurs over all rows [vocab_size] (int64): one `np.bincount` per part, so
        memory stays that of one part whatever the corpus size."""
        counts = np.zeros(vocab_size, dtype=np.int64)
        row_begins = np.concatenate([[0], self.part_ends[:-1]])
        for part, lo, hi in zip(self.parts, row_begins.tolist(), self.part_ends.tolist(), strict=True):
            if hi > lo:  # a part's rows are one contiguous slice of it (a sliced chunk reads no more)
                first, last = int(self.starts[lo]), int(self.starts[hi - 1]) + int(self.lengths[hi - 1])
                counts += np.bincount(part[first:last], minlength=vocab_size)  # an id >= V: shape error
        return counts

    def row(self, index: int) -> list[int]:
        """Row `index` as a list of ids."""
        return self.gather(
            np.full(int(self.lengths[index]), index), np.arange(int(self.lengths[index]))
        ).tolist()

    def pad(self, indices: np.ndarray, prefix: int | None = None, suffix: int | None = None) -> np.ndarray:
        """Rows `indices` padded with PAD into int64 [B, max_len (+1 per added token)].

        Vectorised: the rows are visited in sorted order, so each part (Arrow chunk) they read is one
        numpy gather, and the ids land in the preallocated batch through one flat scatter."""
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")  # [B] batch rows in row order
        rows = indices[order]
        lengths = self.lengths[rows].astype(np.int64)  # [B] in row order
        start = int(prefix is not None)
        width = int(lengths.max(initial=0)) + start + (suffix is not None)
        out = np.full((len(indices), width), PAD, dtype=np.int64)
        first = np.cumsum(lengths) - lengths  # [B] each row's first token among all tokens
        within = np.arange(int(lengths.sum())) - np.repeat(first, lengths)  # [tokens] column in the row
        token_rows = np.repeat(rows, lengths)  # [tokens], non-decreasing
        ids = self._take_sorted(token_rows, np.repeat(self.starts[rows].astype(np.int64), lengths) + within)
        out.reshape(-1)[np.repeat(order * width + start, lengths) + within] = ids
        if prefix is not None:
            out[:, 0] = prefix
        if suffix is not None:
            out[order, lengths + start] = suffix
        return out


class ParallelCorpus:
    """Encoded source and target sides of one split, ready to batch."""

    def __init__(self, src: FlatSequences, tgt: FlatSequences) -> None:
        self.src, self.tgt = src, tgt

    @classmethod
    def from_dataset(cls, split: object) -> ParallelCorpus:
        table = split.data.table  # type: ignore[attr-defined]
        return cls(
            FlatSequences.from_arrow(table.column("src_ids")),
            FlatSequences.from_arrow(table.column("tgt_ids")),
        )

    def __len__(self) -> int:
        return len(self.src)

    def batch(self, indices: np.ndarray) -> Batch:
        """Source gets EOS appended; the decoder reads BOS + target and predicts target + EOS."""
        src = self.src.pad(indices, suffix=EOS)
        tgt_in = self.tgt.pad(indices, prefix=BOS)
        tgt_out = self.tgt.pad(indices, suffix=EOS)
        return Batch(
            torch.from_numpy(src),
            torch.from_numpy(self.src.lengths[indices].astype(np.int64) + 1),
            torch.from_numpy(tgt_in),
            torch.from_numpy(tgt_out),
            indices,
        )

    def batches(self, batch_tokens: int, seed: int, epoch: int, shuffle: bool = True) -> list[np.ndarray]:
        """Index arrays of the epoch's batches (see `token_batches`)."""
        return token_batches(self.src.lengths + 1, self.tgt.lengths + 1, batch_tokens, seed, epoch, shuffle)

    def padding_fraction(self, batches: list[np.ndarray]) -> float:
        """Share of padded positions over both sides of the given batches."""
        real = padded = 0
        for idx in batches:
            s, t = self.src.lengths[idx] + 1, self.tgt.lengths[idx] + 1
            real += int(s.sum() + t.sum())
            padded += len(idx) * int(s.max() + t.max())
        return 1.0 - real / max(1, padded)


def token_batches(
    src_lengths: np.ndarray,
    tgt_lengths: np.ndarray,
    batch_tokens: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
) -> list[np.ndarray]:
    """Group examples of similar length so that B x max(len) stays within `batch_tokens`.

    Examples are sorted by (source, target) length with a random tie-break that changes every epoch, cut
    into batches, and the batch order is shuffled: padding stays low and batches still vary by epoch.
    Without `shuffle` the order is by length (for decoding).
    """
    n = len(src_lengths)
    if n == 0:
        return []
    rng = np.random.default_rng([seed, epoch])
    tie = rng.random(n) if shuffle else np.arange(n)
    order = np.lexsort((tie, tgt_lengths, src_lengths))
    longest = np.maximum(src_lengths, tgt_lengths)[order]
    batches: list[np.ndarray] = []
    start, widest = 0, 0
    for i in range(n):
        width = max(widest, int(longest[i]))
        if i > start and width * (i - start + 1) > batch_tokens:
            batches.append(order[start:i])
            start, width = i, int(longest[i])
        widest = width
    batches.append(order[start:])
    if shuffle:
        perm = rng.permutation(len(batches))
        batches = [batches[j] for j in perm]
    return batches

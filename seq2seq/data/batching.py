"""Token-budget batches with length bucketing, built from flat id arrays.

The encoded corpus is held as one flat int array per side plus offsets (taken zero-copy-ish from the
Arrow list columns), so making a padded batch is a handful of vectorised numpy operations, not a Python
loop over tokens. Batches are a pure function of (lengths, budget, seed, epoch): training can resume at
batch k of epoch e and see exactly the batches it would have seen.
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
    """Variable-length int sequences as one flat array plus offsets; row i is values[off[i]:off[i+1]]."""

    def __init__(self, values: np.ndarray, lengths: np.ndarray) -> None:
        self.values = values.astype(np.int64, copy=False)
        self.lengths = lengths.astype(np.int64, copy=False)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    @classmethod
    def from_arrow(cls, column: pa.ChunkedArray | pa.Array) -> FlatSequences:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        return cls(
            array.flatten().to_numpy(zero_copy_only=False),
            array.value_lengths().to_numpy(zero_copy_only=False),
        )

    @classmethod
    def from_lists(cls, rows: list[list[int]]) -> FlatSequences:
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        values = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(lengths.sum()))
        return cls(values, lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def pad(self, indices: np.ndarray, prefix: int | None = None, suffix: int | None = None) -> np.ndarray:
        """Rows `indices` padded with PAD into [B, max_len (+1 per added token)]; vectorised."""
        lengths = self.lengths[indices]
        extra = (prefix is not None) + (suffix is not None)
        width = int(lengths.max(initial=0)) + extra
        start = 1 if prefix is not None else 0
        cols = np.arange(width)[None, :] - start
        inside = (cols >= 0) & (cols < lengths[:, None])
        positions = np.where(inside, self.offsets[indices][:, None] + cols, 0)
        out = np.where(inside, self.values[positions] if len(self.values) else 0, PAD)
        if prefix is not None:
            out[:, 0] = prefix
        if suffix is not None:
            out[np.arange(len(indices)), lengths + start] = suffix
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
            torch.from_numpy(self.src.lengths[indices] + 1),
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

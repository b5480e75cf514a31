"""Token-budget batches: padding layout, budget, coverage and determinism."""

from __future__ import annotations

import datasets
import numpy as np
import pyarrow as pa
import pytest

from seq2seq.data.batching import FlatSequences, ParallelCorpus, token_batches
from seq2seq.special import BOS, EOS, PAD

ROWS = [[5, 6, 7], [8], [], [9, 10]]


def test_pad_with_prefix_and_suffix() -> None:
    flat = FlatSequences.from_lists(ROWS)
    assert flat.pad(np.array([0, 1, 2])).tolist() == [[5, 6, 7], [8, PAD, PAD], [PAD, PAD, PAD]]
    assert flat.pad(np.array([1, 3]), prefix=BOS, suffix=EOS).tolist() == [
        [BOS, 8, EOS, PAD],
        [BOS, 9, 10, EOS],
    ]


def test_from_arrow_equals_from_lists() -> None:
    ds = datasets.Dataset.from_dict({"ids": ROWS})
    flat = FlatSequences.from_arrow(ds.data.table.column("ids"))
    assert flat.pad(np.arange(4)).tolist() == FlatSequences.from_lists(ROWS).pad(np.arange(4)).tolist()


def test_from_arrow_reads_every_chunk_in_place() -> None:
    """A chunked column (a memory-mapped dataset is one chunk per record batch), one chunk sliced: rows
    from several chunks pad as from lists, and the ids are the Arrow buffers themselves, not copies."""
    rows = [list(range(1, 1 + i % 5)) for i in range(30)]
    ids = pa.list_(pa.int32())
    column = pa.chunked_array([pa.array(rows[:10], ids), pa.array(rows[7:], ids).slice(3), pa.array([], ids)])
    flat = FlatSequences.from_arrow(column)
    assert len(flat) == 30 and flat.lengths.dtype == np.int32
    everything = np.array([0, 29, 9, 10, 4, 15, 3])
    expected = FlatSequences.from_lists(rows).pad(everything, prefix=BOS, suffix=EOS)
    assert flat.pad(everything, prefix=BOS, suffix=EOS).tolist() == expected.tolist()
    for part, chunk in zip(flat.parts, column.chunks, strict=False):
        values = chunk.values
        address = values.buffers()[1].address + values.offset * values.type.byte_width
        assert part.__array_interface__["data"][0] == address  # a view, not a copy


def test_rows_and_id_counts_of_a_chunked_column_equal_the_lists() -> None:
    """row, gather and id_counts (the shortlist and TensorBoard read ids through them) see rows of every
    chunk, a sliced one included, as the lists they came from; ids outside the slice are not counted."""
    rows = [list(range(1 + i, 1 + i + i % 5)) for i in range(30)]
    ids = pa.list_(pa.int32())
    column = pa.chunked_array([pa.array(rows[:10], ids), pa.array(rows[7:], ids).slice(3)])
    flat = FlatSequences.from_arrow(column)
    assert [flat.row(i) for i in range(30)] == rows
    expected = np.bincount(np.array([t for r in rows for t in r]), minlength=40)
    assert flat.id_counts(40).tolist() == expected.tolist()
    assert FlatSequences.from_lists(rows).id_counts(40).tolist() == expected.tolist()
    assert flat.gather(np.array([29, 4, 12]), np.array([0, 3, 1])).tolist() == [30, 8, 14]


def _chunked(rows: list[list[int]], chunk_rows: list[int]) -> pa.ChunkedArray:
    """`rows` as a list<int32> column cut into chunks of the given sizes (the last chunk sliced)."""
    ids, chunks, lo = pa.list_(pa.int32()), [], 0
    for n in chunk_rows:
        chunks.append(pa.array(rows[lo : lo + n], ids))
        lo += n
    chunks.append(pa.array([[99, 98], *rows[lo:]], ids).slice(1))  # ids the slice hides stay hidden
    return pa.chunked_array(chunks)


def _reference_pad(
    rows: list[list[int]], indices: np.ndarray, prefix: int | None, suffix: int | None
) -> list:
    """Padding done one row at a time, in plain Python."""
    padded = [([prefix] if prefix is not None else []) + rows[i] + ([suffix] if suffix is not None else [])
              for i in indices]  # fmt: skip
    width = max((len(r) for r in padded), default=0)
    return [r + [PAD] * (width - len(r)) for r in padded]


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_reads_of_a_multi_chunk_column_equal_a_plain_gather(seed: int) -> None:
    """pad and gather over many chunks (empty rows, empty chunks, rows at chunk borders, repeated and
    unsorted indices) equal a row-by-row reference, and id_counts equals counting the concatenation."""
    rng = np.random.default_rng(seed)
    n = 200
    rows = [rng.integers(4, 60, rng.integers(0, 7)).tolist() for _ in range(n)]
    sizes = rng.integers(0, 30, 40)
    sizes = sizes[np.cumsum(sizes) < n].tolist()
    flat = FlatSequences.from_arrow(_chunked(rows, sizes))
    borders = np.cumsum(sizes)
    indices = np.concatenate(
        [borders[borders < n], borders[borders > 0] - 1, [0, n - 1], rng.integers(0, n, 50)]
    )
    rng.shuffle(indices)
    for prefix, suffix in ((None, None), (BOS, None), (None, EOS), (BOS, EOS)):
        got = flat.pad(indices, prefix=prefix, suffix=suffix)
        assert got.dtype == np.int64 and got.tolist() == _reference_pad(rows, indices, prefix, suffix)
    picked = rng.choice([i for i in range(n) if rows[i]], (4, 6))  # unsorted, with repeats
    at = rng.integers(0, 1000, picked.shape) % flat.lengths[picked]
    expected = [
        [rows[i][j] for i, j in zip(r, p, strict=True)]
        for r, p in zip(picked.tolist(), at.tolist(), strict=True)
    ]
    assert flat.gather(picked, at).tolist() == expected
    counts = flat.id_counts(64)
    assert counts.tolist() == np.bincount([t for r in rows for t in r], minlength=64).tolist()
    assert flat.pad(np.array([], dtype=np.int64), suffix=EOS).shape == (0, 1)


def test_batch_layout() -> None:
    corpus = ParallelCorpus(
        FlatSequences.from_lists(ROWS), FlatSequences.from_lists([[11], [12, 13], [14], []])
    )
    batch = corpus.batch(np.array([0, 3]))
    assert batch.src_ids.tolist() == [[5, 6, 7, EOS], [9, 10, EOS, PAD]]
    assert batch.src_lengths.tolist() == [4, 3]
    assert batch.tgt_in.tolist() == [[BOS, 11], [BOS, PAD]]
    assert batch.tgt_out.tolist() == [[11, EOS], [EOS, PAD]]
    assert batch.n_tgt_tokens == 3


@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cover_everything_once_within_budget(shuffle: bool) -> None:
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(1, 40, 500), rng.integers(1, 40, 500)
    batches = token_batches(src, tgt, 200, seed=1, epoch=0, shuffle=shuffle)
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    for idx in batches:
        assert len(idx) == 1 or len(idx) * max(src[idx].max(), tgt[idx].max()) <= 200
    again = token_batches(src, tgt, 200, seed=1, epoch=0, shuffle=shuffle)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))


def test_epochs_differ_and_unshuffled_is_sorted() -> None:
    src = np.arange(1, 101) % 17 + 1
    first, second = (token_batches(src, src, 64, seed=1, epoch=e) for e in (0, 1))
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=False))
    ordered = np.concatenate(token_batches(src, src, 64, seed=1, epoch=0, shuffle=False))
    assert np.all(np.diff(src[ordered]) >= 0)


def test_empty_split_has_no_batches() -> None:
    assert token_batches(np.zeros(0, int), np.zeros(0, int), 100, seed=1, epoch=0) == []

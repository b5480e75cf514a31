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


def test_rows_and_flat_ids_of_a_chunked_column_equal_the_lists() -> None:
    """row, gather and flat_ids (the shortlist and TensorBoard read ids through them) see rows of every
    chunk, a sliced one included, as the lists they came from."""
    rows = [list(range(1 + i, 1 + i + i % 5)) for i in range(30)]
    ids = pa.list_(pa.int32())
    column = pa.chunked_array([pa.array(rows[:10], ids), pa.array(rows[7:], ids).slice(3)])
    flat = FlatSequences.from_arrow(column)
    assert [flat.row(i) for i in range(30)] == rows
    assert flat.flat_ids().tolist() == [t for r in rows for t in r]
    assert flat.gather(np.array([29, 4, 12]), np.array([0, 3, 1])).tolist() == [30, 8, 14]


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

"""Corpus loading, cleaning, encoding and batching. Never imports `seq2seq.model`."""

from seq2seq.data.batching import Batch, FlatSequences, ParallelCorpus, token_batches
from seq2seq.data.preprocess import (
    Prepared,
    PrepareResult,
    load_prepared,
    preprocess,
    report_table,
)

__all__ = [
    "Batch",
    "FlatSequences",
    "ParallelCorpus",
    "PrepareResult",
    "Prepared",
    "load_prepared",
    "preprocess",
    "report_table",
    "token_batches",
]

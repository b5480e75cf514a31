"""Corpus loading, cleaning, encoding and batching. Never imports `seq2seq.model`.

`sources` reads text, TSV/CSV, JSON Lines or a `datasets` dataset; `clean` normalises and filters with a
report; `preprocess` trains SentencePiece, encodes and writes Arrow with a manifest; `batching` makes
token-budget batches from the memory-mapped result.
"""

from seq2seq.data.batching import Batch, FlatSequences, ParallelCorpus, token_batches
from seq2seq.data.clean import report_table
from seq2seq.data.preprocess import Prepared, PrepareResult, load_prepared, preprocess

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

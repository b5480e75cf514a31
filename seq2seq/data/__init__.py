"""Corpus loading, cleaning, encoding and batching. Never imports `seq2seq.model`.

`sources` reads text, TSV/CSV, JSON Lines or a `datasets` dataset; `clean` normalises and filters with a
report; `prepare` (the `preprocess` function) trains SentencePiece, encodes and writes Arrow with a
manifest; `batching` makes token-budget batches from the memory-mapped result.

Only `batching` is imported eagerly: the rest imports `datasets` (and pandas), ~0.45 s that translating
never needs, so those names load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from seq2seq.data.batching import Batch, FlatSequences, ParallelCorpus, token_batches

if TYPE_CHECKING:
    from seq2seq.data.clean import report_table
    from seq2seq.data.prepare import Prepared, PrepareResult, load_prepared, preprocess

_LAZY = {
    "report_table": "seq2seq.data.clean",
    "Prepared": "seq2seq.data.prepare",
    "PrepareResult": "seq2seq.data.prepare",
    "load_prepared": "seq2seq.data.prepare",
    "preprocess": "seq2seq.data.prepare",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


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

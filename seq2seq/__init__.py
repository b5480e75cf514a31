"""seq2seq: recurrent encoder-decoder neural machine translation.

    from seq2seq import Translator
    translator = Translator.from_checkpoint("runs/numbers-de/checkpoints/best.pt")
    translator.translate(["4721"], beam=5)

Everything the `seq2seq` command does is reachable from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seq2seq.checkpoint import load_checkpoint, load_model, save_checkpoint
from seq2seq.config import Config, load_config
from seq2seq.ensemble import Ensemble
from seq2seq.errors import Seq2SeqError
from seq2seq.evaluate import Score, score_corpus
from seq2seq.model import Seq2Seq, build_model
from seq2seq.search import Hypothesis, SearchOptions, beam_search, greedy_search, sample_search
from seq2seq.train import TrainResult, train
from seq2seq.translate import Translation, Translator, decode_ids

if TYPE_CHECKING:
    from seq2seq.data import load_prepared, preprocess


def __getattr__(name: str) -> Any:
    """`preprocess` and `load_prepared` load on first use (they import `datasets`; see seq2seq.data)."""
    if name in ("preprocess", "load_prepared"):
        from seq2seq import data

        return getattr(data, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Config",
    "Ensemble",
    "Hypothesis",
    "Score",
    "SearchOptions",
    "Seq2Seq",
    "Seq2SeqError",
    "TrainResult",
    "Translation",
    "Translator",
    "beam_search",
    "build_model",
    "decode_ids",
    "greedy_search",
    "load_checkpoint",
    "load_config",
    "load_model",
    "load_prepared",
    "preprocess",
    "sample_search",
    "save_checkpoint",
    "score_corpus",
    "train",
]

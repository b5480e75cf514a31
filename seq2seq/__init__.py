"""seq2seq: recurrent encoder-decoder neural machine translation.

    from seq2seq import Translator
    translator = Translator.from_checkpoint("runs/numbers-de/checkpoints/best.pt")
    translator.translate(["4721"], beam=5)

Everything the `seq2seq` command does is reachable from here. The names load on first use, so importing
the package (or `seq2seq --help`) does not import torch, and `preprocess` does not import `datasets`
until it is called for.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seq2seq.checkpoint import load_checkpoint, load_model, save_checkpoint
    from seq2seq.config import Config, load_config
    from seq2seq.data import load_prepared, preprocess
    from seq2seq.ensemble import Ensemble
    from seq2seq.errors import Seq2SeqError
    from seq2seq.evaluate import Score, score_corpus
    from seq2seq.model import Seq2Seq, build_model
    from seq2seq.search import Hypothesis, SearchOptions, beam_search, greedy_search, sample_search
    from seq2seq.train import TrainResult, train
    from seq2seq.translate import Translation, Translator, decode_ids

_MODULES = {
    "checkpoint": ("load_checkpoint", "load_model", "save_checkpoint"),
    "config": ("Config", "load_config"),
    "data": ("load_prepared", "preprocess"),
    "ensemble": ("Ensemble",),
    "errors": ("Seq2SeqError",),
    "evaluate": ("Score", "score_corpus"),
    "model": ("Seq2Seq", "build_model"),
    "search": ("Hypothesis", "SearchOptions", "beam_search", "greedy_search", "sample_search"),
    "train": ("TrainResult", "train"),
    "translate": ("Translation", "Translator", "decode_ids"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    """`seq2seq.NAME` imports NAME's module on first use."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"seq2seq.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        """The first import of the submodule `seq2seq.train` binds it as the package's attribute `train`;
        the package's `train` is the function (as it was when this file imported it eagerly)."""
        if name in _HOME and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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

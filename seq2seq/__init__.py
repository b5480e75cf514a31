"""seq2seq: recurrent encoder-decoder neural machine translation.

    from seq2seq import Translator
    translator = Translator.from_checkpoint("runs/numbers-de/checkpoints/best.pt")
    translator.translate(["4721"], beam=5)

Everything the `seq2seq` command does is reachable from here.
"""

from seq2seq.checkpoint import load_checkpoint, load_model, save_checkpoint
from seq2seq.config import Config, load_config
from seq2seq.data import load_prepared, preprocess
from seq2seq.errors import Seq2SeqError
from seq2seq.evaluate import Score, score_corpus
from seq2seq.model import Seq2Seq, build_model
from seq2seq.search import Hypothesis, SearchOptions, beam_search, greedy_search
from seq2seq.train import TrainResult, train
from seq2seq.translate import Translation, Translator

__version__ = "0.1.0"

__all__ = [
    "Config",
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
    "greedy_search",
    "load_checkpoint",
    "load_config",
    "load_model",
    "load_prepared",
    "preprocess",
    "save_checkpoint",
    "score_corpus",
    "train",
]

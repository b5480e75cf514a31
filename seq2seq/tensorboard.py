"""TensorBoard event files of a training run (`train.tensorboard: true`).

`Board` writes into the run directory, so `tensorboard --logdir runs` lists every run by its name. It is fed
the records that go to metrics.jsonl, each scalar at the record's update: `train/loss`, `train/lr`,
`train/grad_norm`, `train/tgt_tokens_per_s`; `valid/loss`, `valid/ppl`, `valid/bleu`. At every validation it
adds `attention/N`, the heatmap (target x source pieces) of the greedy translation of the N-th validation
sentence, for the first `ATTENTION_SENTENCES`. Only rank 0 of a torchrun job opens one (train.py).

A resumed run drops the events written after the checkpoint it resumes from, as metrics.jsonl is cut back:
its event file starts with a purge at the checkpoint's update + 1 (SummaryWriter's `purge_step`), which
TensorBoard applies to the earlier event files of the run. A fresh run (or `--restart`) removes the event
files an earlier run left in the directory. Everything recorded is flushed when a checkpoint is written, so
a kill loses only events that a resume would drop anyway.

Needs the `tensorboard` package and matplotlib: `pip install 'seq2seq[tensorboard]'`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seq2seq.config import DecodeConfig
from seq2seq.data.batching import FlatSequences
from seq2seq.errors import Seq2SeqError
from seq2seq.model import Seq2Seq
from seq2seq.search import SearchOptions
from seq2seq.tokenizer import Tokenizer
from seq2seq.translate import decode_ids

MISSING = "train.tensorboard: the tensorboard package is not installed: pip install 'seq2seq[tensorboard]'"
EVENT_FILES = "events.out.tfevents.*"
SCALARS = {
    "train": ("loss", "lr", "grad_norm", "tgt_tokens_per_s"),
    "valid": ("loss", "ppl", "bleu"),
}
"""The metrics.jsonl fields written as scalars, by record type; the tag is `TYPE/FIELD`."""
ATTENTION_SENTENCES = 3
EOS_PIECE = "</s>"


def summary_writer_class() -> Any:
    """torch's SummaryWriter; a one-line `Seq2SeqError` saying what to install when it cannot be used."""
    try:
        import matplotlib.backends.backend_agg  # noqa: F401  (draws the attention images)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise Seq2SeqError(MISSING) from None
    return SummaryWriter


def event_files(run_dir: Path) -> list[Path]:
    """The run directory's event files, oldest first (the order TensorBoard reads them in)."""
    return sorted(Path(run_dir).glob(EVENT_FILES))


def _wait_past(files: list[Path]) -> None:
    """Sleep until the clock's second is past the newest event file's (its name starts with it), so the
    new file sorts after the ones its purge applies to."""
    newest = max((int(p.name.split(".")[3]) for p in files if p.name.split(".")[3].isdigit()), default=0)
    while int(time.time()) <= newest:
        time.sleep(0.05)


class Board:
    """The TensorBoard writer of one run directory; `resumed_step` is None for a fresh run."""

    def __init__(self, run_dir: Path, resumed_step: int | None) -> None:
        writer_class = summary_writer_class()
        existing = event_files(run_dir)
        if resumed_step is None:
            for path in existing:
                path.unlink()
        else:
            _wait_past(existing)
        purge = None if resumed_step is None else resumed_step + 1
        self.writer = writer_class(log_dir=str(run_dir), purge_step=purge)

    def scalars(self, record: dict[str, Any]) -> None:
        """The scalars of one metrics.jsonl record (`type` train or valid), at its `step`."""
        kind = record.get("type")
        for name in SCALARS.get(str(kind), ()):
            if name in record:
                self.writer.add_scalar(f"{kind}/{name}", float(record[name]), int(record["step"]))

    @torch.inference_mode()
    def attention(
        self, model: Seq2Seq, tokenizer: Tokenizer, src: FlatSequences, decode: DecodeConfig, step: int
    ) -> None:
        """Heatmaps of the greedy translations of the first `ATTENTION_SENTENCES` sources (ids, no EOS)."""
        n_rows = min(ATTENTION_SENTENCES, len(src))
        rows = [src.row(i) for i in range(n_rows)]
        was_training = model.training
        model.eval()
        opts = SearchOptions.from_config(decode, beam=1, return_attention=True)
        device = next(model.parameters()).device
        hyps = decode_ids(model, FlatSequences.from_lists(rows), opts, decode.batch_tokens, device)
        model.train(was_training)
        for n, (src_ids, found) in enumerate(zip(rows, hyps, strict=True), 1):
            if not found or found[0].attention is None:
                continue
            image = attention_image(
                found[0].attention[:, : len(src_ids) + 1].float().cpu().numpy(),  # [T + 1, S + 1]
                [*tokenizer.src_pieces(src_ids), EOS_PIECE],
                [*tokenizer.tgt_pieces(found[0].tokens), EOS_PIECE],
            )
            self.writer.add_image(f"attention/{n}", image, step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def attention_image(weights: np.ndarray, src_tokens: list[str], tgt_tokens: list[str]) -> np.ndarray:
    """[height, width, 3] uint8 RGB heatmap of `weights` [T, S], target pieces down, source pieces across."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = weights.shape
    fig = Figure(figsize=(1.5 + 0.3 * cols, 1.2 + 0.28 * rows), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(weights, cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(cols), src_tokens[:cols], rotation=90, fontsize=8)
    ax.set_yticks(range(rows), tgt_tokens[:rows], fontsize=8)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()

"""Learning curves of runs as a PNG (`seq2seq plot`; `train` redraws `curves.png` at every validation).

Reads each run's `metrics.jsonl` (train records: loss, lr; valid records: loss, BLEU) and draws six
panels: training loss, validation loss and validation BLEU against updates, validation loss and BLEU
against wall-clock minutes, and the learning rate. Needs matplotlib: `pip install "seq2seq[plot]"`.
The PNG is written through `seq2seq.outputs.atomic_output`: complete or absent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seq2seq.errors import Seq2SeqError
from seq2seq.outputs import atomic_output, os_error_line

PLOT_NAME = "curves.png"
"""The file `train` writes into the run directory."""


def metrics_path(run_dir: Path) -> Path:
    """The records `plot` reads from a run directory."""
    return Path(run_dir) / "metrics.jsonl"


def read_metrics(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train records, valid records) of a run directory's metrics.jsonl."""
    path = metrics_path(run_dir)
    if not path.is_file():
        raise Seq2SeqError(f"{path}: not found; give a run directory written by seq2seq train")
    train: list[dict[str, Any]] = []
    valid: list[dict[str, Any]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise Seq2SeqError(f"{path}:{n}: not a JSON line") from None
        (train if record.get("type") == "train" else valid if record.get("type") == "valid" else []).append(
            record
        )
    return train, valid


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise Seq2SeqError('plotting needs matplotlib: pip install "seq2seq[plot]"') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


PANELS = (
    ("train", "step", "loss", "training loss", "updates"),
    ("valid", "step", "loss", "validation loss", "updates"),
    ("valid", "step", "bleu", "validation BLEU", "updates"),
    ("valid", "minutes", "loss", "validation loss", "minutes"),
    ("valid", "minutes", "bleu", "validation BLEU", "minutes"),
    ("train", "step", "lr", "learning rate", "updates"),
)
"""(records, x key, y key, title, x label) of each panel."""


def plot_runs(run_dirs: Sequence[Path], out: Path, labels: Sequence[str] | None = None) -> Path:
    """Draw the learning curves of `run_dirs` (one line per run) into the PNG `out`; returns `out`."""
    if not run_dirs:
        raise Seq2SeqError("plot: give at least one run directory")
    runs = [read_metrics(Path(d)) for d in run_dirs]
    names = list(labels) if labels else [Path(d).name for d in run_dirs]
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), squeeze=False)
    for ax, (kind, x, y, title, xlabel) in zip(axes.flat, PANELS, strict=True):
        for (train, valid), name in zip(runs, names, strict=True):
            records = [r for r in (train if kind == "train" else valid) if x in r and y in r]
            if records:
                marker = "." if kind == "valid" else ""
                ax.plot([r[x] for r in records], [r[y] for r in records], marker=marker, label=name)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    labelled = [ax for ax in axes.flat if ax.get_legend_handles_labels()[0]]
    if labelled:
        labelled[0].legend()
    fig.tight_layout()
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(out, binary=True) as sink:  # complete or absent; errors name `out`
            fig.savefig(sink, format="png", dpi=80)
    except OSError as exc:
        raise Seq2SeqError(os_error_line(exc, str(out))) from None
    finally:
        plt.close(fig)
    return out


def plot_after_validation(run_dir: Path) -> Path | None:
    """`train`'s hook: redraw `run_dir/curves.png`; None (and nothing drawn) without matplotlib."""
    try:
        _pyplot()
    except Seq2SeqError:
        return None
    return plot_runs([run_dir], Path(run_dir) / PLOT_NAME)

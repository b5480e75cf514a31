"""PNG figures of traces and corpus statistics, drawn with matplotlib's object API (no pyplot, no display).

Units of a layer and direction share one order in every heatmap: sorted by their mean memory state (C_t for
the LSTM, h_t otherwise) over the sentence, so units that stay high, stay low or switch form blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seq2seq.errors import Seq2SeqError
from seq2seq.inspect.sentence import Trace
from seq2seq.inspect.stats import HIST_BINS, CorpusStats
from seq2seq.outputs import atomic_output

LABELS = {
    "f": "forget f",
    "i": "input i",
    "g": "candidate C̃",
    "o": "output o",
    "c": "cell C_t",
    "h": "hidden h_t",
}
LABELS |= {"r": "reset r", "z": "update z", "n": "candidate n"}
DPI = 90


def _figure(
    width: float, height: float, left: float = 0.9, bottom: float = 0.9, top: float = 0.4, right: float = 0.2
) -> Any:
    """A figure with fixed margins in inches (constrained layout costs more than drawing the heatmaps)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise Seq2SeqError("seq2seq inspect draws with matplotlib: pip install 'seq2seq[inspect]'") from None
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height, wspace=0.08
    )
    return fig


def unit_order(trace: Trace, group: str) -> np.ndarray:
    """[H] unit indices sorted by mean memory state over the sentence."""
    return np.argsort(trace[f"{group}.{trace.memory}"].mean(0), kind="stable")


def group_title(group: str) -> str:
    side, layer, direction = group.split(".")
    return f"{side} layer {layer}" + (
        "" if side == "decoder" else f" {'forward' if direction == 'fwd' else 'backward'}"
    )


def tokens_of(trace: Trace, group: str) -> list[str]:
    return trace.src_tokens if group.startswith("encoder") else trace.tgt_tokens


def _save(fig: Any, path: Path) -> str:
    with atomic_output(path, binary=True) as f:
        fig.savefig(f.stream, format="png")
    return path.name


def attention_png(trace: Trace, path: Path) -> str:
    att = trace["attention"]  # [T, S]
    fig = _figure(1.3 + 0.3 * att.shape[1], 1.3 + 0.28 * att.shape[0], left=1.0, bottom=1.0)
    ax = fig.add_subplot()
    ax.imshow(att, cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(att.shape[1]), trace.src_tokens, rotation=90, fontsize=8)
    ax.set_yticks(range(att.shape[0]), trace.tgt_tokens, fontsize=8)
    ax.set_title("attention (target × source)", fontsize=9)
    return _save(fig, path)


def group_png(trace: Trace, group: str, path: Path) -> str:
    """Heatmaps tokens × units of every gate and state of one layer and direction."""
    order = unit_order(trace, group)
    tokens = tokens_of(trace, group)
    names = trace.names
    fig = _figure(1.2 + 2.4 * len(names), 1.2 + 0.22 * len(tokens), bottom=0.4, top=0.6)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        values = trace[f"{group}.{name}"][:, order]
        sigmoid = name in ("f", "i", "o", "r", "z")
        lim = 1.0 if name != "c" else max(float(np.abs(values).max()), 1e-6)
        ax.imshow(
            values,
            cmap="viridis" if sigmoid else "RdBu_r",
            vmin=0 if sigmoid else -lim,
            vmax=1 if sigmoid else lim,
            aspect="auto",
            interpolation="nearest",
        )
        ax.set_title(LABELS[name], fontsize=9)
        ax.set_xlabel("units (sorted)", fontsize=8)
        ax.set_xticks([])
        if ax is axes[0]:  # tokens label the rows once: ticks on every panel cost more than the heatmaps
            ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
        else:
            ax.set_yticks([])
    fig.suptitle(group_title(group), fontsize=10)
    return _save(fig, path)


def lines_png(trace: Trace, path: Path) -> str:
    """Per token: the mean of every gate over units, and ‖memory‖, one panel per layer and direction."""
    groups = trace.groups
    fig = _figure(9, 0.9 + 2.2 * len(groups), left=0.5, bottom=0.7, top=0.5, right=0.7)
    fig.subplots_adjust(hspace=0.9)
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, group in zip(axes, groups, strict=True):
        tokens = tokens_of(trace, group)
        for name in trace.names:
            if name not in ("c", "h"):
                ax.plot(trace[f"{group}.{name}"].mean(1), label=f"mean {name}", marker=".")
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0, color="0.85", lw=0.6)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        norm_ax = ax.twinx()
        norm_ax.plot(
            np.linalg.norm(trace[f"{group}.{trace.memory}"], axis=1), "k--", label=f"‖{trace.memory}‖"
        )
        norm_ax.set_ylabel(f"‖{'C_t' if trace.memory == 'c' else 'h_t'}‖", fontsize=8)
        ax.set_title(group_title(group), fontsize=9)
        if group == groups[0]:
            handles = ax.get_legend_handles_labels()[0] + norm_ax.get_legend_handles_labels()[0]
            fig.legend(handles=handles, fontsize=7, loc="upper center", ncols=6)
    return _save(fig, path)


def change_of(trace: Trace, group: str) -> np.ndarray:
    """[N, H] |memory_t - memory_{t-1}| per token (memory_{-1} = 0), in source/target order."""
    memory = trace[f"{group}.{trace.memory}"]
    if group.endswith("bwd"):  # read right to left: the previous state is the next position's
        previous = np.vstack([memory[1:], np.zeros_like(memory[:1])])
    else:
        previous = np.vstack([np.zeros_like(memory[:1]), memory[:-1]])
    return np.abs(memory - previous)


def change_png(trace: Trace, path: Path, k: int = 12) -> str:
    """The k units whose memory changes most (summed over the sentence), change per token."""
    groups = trace.groups
    fig = _figure(9, 0.7 + 2.0 * len(groups), left=0.5, bottom=0.7, top=0.3)
    fig.subplots_adjust(hspace=0.9)
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    for ax, group in zip(axes, groups, strict=True):
        change = change_of(trace, group)
        top = np.argsort(-change.sum(0))[:k]
        tokens = tokens_of(trace, group)
        ax.imshow(change[:, top].T, cmap="magma", aspect="auto", interpolation="nearest")
        ax.set_yticks(range(len(top)), [f"u{u}" for u in top], fontsize=6)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
        ax.set_title(f"{group_title(group)}: units whose {trace.memory} changes most (|Δ|)", fontsize=9)
    return _save(fig, path)


def gradients_png(trace: Trace, path: Path) -> str:
    """‖∂loss/∂h_t‖ (solid) and ‖∂loss/∂C_t‖ (dashed) per source position (log scale), one colour per layer
    and direction, the legend beside the plot so that no line hides behind it."""
    fig = _figure(9, 3.4, bottom=1.0, right=2.6)
    ax = fig.add_subplot()
    groups = [group for group in trace.groups if group.startswith("encoder")]
    for k, group in enumerate(groups):
        for state, style in (("h", "-"), ("c", "--")):
            name = f"{group}.grad_{state}"
            if name in trace.arrays:
                ax.semilogy(
                    np.maximum(trace[name], 1e-30), style, color=f"C{k}", marker=".",
                    label=f"{group_title(group)} {'C_t' if state == 'c' else 'h_t'}",
                )  # fmt: skip
    ax.set_xticks(range(len(trace.src_tokens)), trace.src_tokens, rotation=90, fontsize=7)
    ax.set_ylabel("‖∂loss/∂state‖", fontsize=8)
    ax.set_title("how far back the error signal reaches", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _save(fig, path)


def sentence_pngs(trace: Trace, out: Path, prefix: str, which: str = "all") -> list[tuple[str, str]]:
    """The figures of one sentence -> [(title, file name)]: `which` = 'all', 'summary' (attention, the first
    encoder layer's gates and states, gradients) or 'none'."""
    if which == "none":
        return []
    groups = trace.groups if which == "all" else trace.groups[:1]
    files = [("attention", attention_png(trace, out / f"{prefix}attention.png"))]
    for group in groups:
        files.append((group_title(group), group_png(trace, group, out / f"{prefix}{group}.png")))
    if which == "all":
        files.append(("mean gates and memory norm", lines_png(trace, out / f"{prefix}lines.png")))
        files.append(("units that change most", change_png(trace, out / f"{prefix}change.png")))
    if any(name.endswith(".grad_h") for name in trace.arrays):
        files.append(("gradients", gradients_png(trace, out / f"{prefix}gradients.png")))
    return files


def corpus_pngs(stats: CorpusStats, out: Path, which: str = "all") -> list[tuple[str, str]]:
    """Saturation scatter per gate, the forget-gate histogram, top correlated units (all three for 'all' and
    'summary', none for 'none')."""
    files: list[tuple[str, str]] = []
    if which == "none":
        return files
    gates = sorted({name.rsplit(".", 1)[1] for name in stats.low}, key="fiorz".index)
    if gates:
        fig = _figure(0.4 + 3.2 * len(gates), 3.6, left=0.6, bottom=0.5, top=0.5)
        fig.subplots_adjust(wspace=0.35)
        axes = fig.subplots(1, len(gates), squeeze=False)[0]
        for ax, gate in zip(axes, gates, strict=True):
            for name in stats.low:
                if name.endswith(f".{gate}"):
                    group = name.rsplit(".", 1)[0]
                    ax.scatter(stats.low[name], stats.high[name], s=6, alpha=0.6, label=group_title(group))
            ax.plot([0, 1], [1, 0], color="0.7", lw=0.8)
            ax.set(xlim=(0, 1), ylim=(0, 1))
            ax.set_xlabel("fraction < 0.1 (closed)", fontsize=8)
            ax.set_ylabel("fraction > 0.9 (open)", fontsize=8)
            ax.set_title(LABELS[gate], fontsize=9)
        axes[0].legend(fontsize=6)
        fig.suptitle(f"gate saturation per unit over {stats.sentences} sentences", fontsize=10)
        files.append(("gate saturation", _save(fig, out / "corpus-saturation.png")))
    if stats.forget_hist.sum() > 0:
        fig = _figure(5, 3, left=0.7, bottom=0.5)
        ax = fig.add_subplot()
        ax.bar(HIST_BINS[:-1], stats.forget_hist, width=np.diff(HIST_BINS), align="edge", color="tab:blue")
        ax.set_xlabel("forget gate value", fontsize=8)
        ax.set_title("forget-gate values, all units and tokens", fontsize=9)
        files.append(("forget-gate histogram", _save(fig, out / "corpus-forget.png")))
    groups = list(stats.position_r)
    fig = _figure(8, 1.8 * len(groups) + 0.4, left=0.5, bottom=0.3, top=0.3)
    fig.subplots_adjust(hspace=0.7, wspace=0.3)
    axes = fig.subplots(len(groups), 2, squeeze=False)
    for row, group in enumerate(groups):
        for col, feature in enumerate(("position", "end")):
            top = stats.top_units(feature, group, 8)
            ax = axes[row, col]
            ax.barh([f"u{u}" for u, _ in top][::-1], [r for _, r in top][::-1], color="tab:green")
            ax.set_xlim(-1, 1)
            ax.tick_params(labelsize=7)
            ax.set_title(f"{group_title(group)}: r with {feature}", fontsize=8)
    files.append(("units correlated with position and sentence end", _save(fig, out / "corpus-units.png")))
    return files

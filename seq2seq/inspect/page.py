"""The self-contained page of `seq2seq inspect`: page.html with the data inlined as JSON, drawn on canvas by
vanilla JS.

No CDN, no network, no external file is needed to view it (the PNGs beside it are linked, not required).
Hovering a heatmap cell names the token, the unit and the value; selectors switch sentence, layer and
direction, and gate.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

import numpy as np

from seq2seq.inspect.figures import change_of, group_title, tokens_of, unit_order
from seq2seq.inspect.sentence import Trace
from seq2seq.inspect.stats import HIST_BINS, CorpusStats


def _r(values: np.ndarray) -> Any:
    return np.round(values.astype(np.float64), 3).tolist()


def sentence_data(trace: Trace, pngs: list[tuple[str, str]]) -> dict[str, Any]:
    groups = {}
    for group in trace.groups:
        change = change_of(trace, group)
        top = np.argsort(-change, axis=1)[:, :3]
        groups[group] = {
            "title": group_title(group),
            "tokens": tokens_of(trace, group),
            "order": unit_order(trace, group).tolist(),
            "arrays": {name: _r(trace[f"{group}.{name}"]) for name in trace.names},
            "norm": _r(np.linalg.norm(trace[f"{group}.{trace.memory}"], axis=1)),
            "changes": [[[int(u), round(float(change[t, u]), 3)] for u in row] for t, row in enumerate(top)],
        }
    gradients = {
        name: _r(trace[name]) for name in trace.arrays if name.startswith("encoder") and "grad_" in name
    }
    return {
        "source": trace.source,
        "src_tokens": trace.src_tokens,
        "tgt_tokens": trace.tgt_tokens,
        "forced": trace.forced,
        "truncated": trace.truncated,
        "log_prob": round(float(trace["log_prob"].sum()), 3),
        "attention": _r(trace["attention"]),
        "groups": groups,
        "gradients": gradients,
        "pngs": pngs,
    }


def corpus_data(stats: CorpusStats, pngs: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "sentences": stats.sentences,
        "saturation": {name: [_r(stats.low[name]), _r(stats.high[name])] for name in stats.low},
        "forget_hist": stats.forget_hist.tolist(),
        "bins": _r(HIST_BINS),
        "top": {
            group: {"position": stats.top_units("position", group), "end": stats.top_units("end", group)}
            for group in stats.position_r
        },
        "pngs": pngs,
    }


def render_page(title: str, data: dict[str, Any]) -> str:
    """The whole page; `data` has 'cell', 'model', 'sentences', 'corpus' (or None) and 'notes'."""
    payload = json.dumps(data, ensure_ascii=True).replace("</", "<\\/")
    template = resources.files("seq2seq.inspect").joinpath("page.html").read_text(encoding="utf-8")
    return template.replace("__TITLE__", html.escape(title)).replace("__DATA__", payload)

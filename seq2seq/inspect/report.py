"""`seq2seq inspect`: trace sentences, write DIR/index.html, PNG figures and DIR/trace.npz.

The first `figures` sentences get their own figures and raw arrays; corpus statistics (saturation,
forget-gate histogram, correlated units) cover every non-empty line when there is more than one. Without
given targets, the model's own translations are searched in batches, then traced forced on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seq2seq.errors import Seq2SeqError
from seq2seq.inspect.figures import corpus_pngs, sentence_pngs
from seq2seq.inspect.page import corpus_data, render_page, sentence_data
from seq2seq.inspect.sentence import Trace, trace_sentences
from seq2seq.inspect.stats import CorpusAccumulator, CorpusStats
from seq2seq.outputs import atomic_output

if TYPE_CHECKING:
    from seq2seq.translate import Translator


@dataclass(frozen=True)
class InspectReport:
    index: Path
    """DIR/index.html"""
    traced: int
    """Sentences traced (corpus statistics cover them all)."""
    notes: list[str]
    """Lines skipped or changed, e.g. 'line 3: empty sentence, skipped'."""
    files: list[str]
    """Every file written, relative to DIR."""


PNG_CHOICES = ("summary", "all", "none")
"""`png`: 'summary' (per shown sentence: attention, the first encoder layer's gates and states, gradients;
and the corpus figures), 'all' (also every other layer and direction, mean gates, changing units) or 'none'.
The page draws every figure from its inlined data whichever is chosen."""


def write_inspection(
    translator: Translator,
    sentences: Sequence[str],
    out: Path,
    targets: Sequence[str] | None = None,
    beam: int | None = None,
    gradients: bool = False,
    figures: int = 10,
    title: str = "seq2seq inspect",
    png: str = "summary",
) -> InspectReport:
    """Trace `sentences` (on `targets` if given, one per sentence) and write the page, PNGs and arrays.

    Sentences are traced in padded batches; the first `figures` get their own figures and arrays (and,
    with `gradients`, gradient norms), every one counts in the corpus statistics."""
    if targets is not None and len(targets) != len(sentences):
        raise Seq2SeqError(
            f"--target/--ref: {len(targets)} target line(s) for {len(sentences)} source line(s); "
            "give exactly one target per source line"
        )
    if png not in PNG_CHOICES:
        raise Seq2SeqError(f"--png: {png!r} is not one of {', '.join(PNG_CHOICES)}")
    if not sentences:
        raise Seq2SeqError("no input sentence: give TEXT arguments or --input FILE")
    out.mkdir(parents=True, exist_ok=True)
    notes: list[tuple[int, str]] = []
    kept = []  # line numbers (from 1) of the sentences to trace
    for line, sentence in enumerate(sentences, 1):
        if sentence.strip():
            kept.append(line)
        else:
            notes.append((line, f"line {line}: empty sentence, skipped"))
    texts = [sentences[line - 1] for line in kept]
    if targets is None:
        tgt_ids = _own_translations(translator, texts, beam)
    else:
        tgt_ids = translator.tokenizer.encode_tgt([targets[line - 1].strip() for line in kept])
    model = translator.single_model("inspect")
    max_src = translator.cfg.decode.max_src_len
    shown: dict[int, Trace] = {}
    corpus = CorpusAccumulator()
    n_shown = min(figures, len(kept))
    for first, last, grads in ((0, n_shown, gradients), (n_shown, len(kept), False)):
        traces = trace_sentences(
            model, translator.tokenizer, texts[first:last], tgt_ids[first:last], max_src,
            forced=targets is not None, gradients=grads,
        )  # fmt: skip
        for k, trace in traces:
            line = kept[first + k]
            if trace.truncated:
                note = f"line {line}: longer than decode.max_src_len = {max_src} pieces, truncated"
                notes.append((line, note))
            corpus.add(trace)
            if first + k < n_shown:
                shown[first + k] = trace
    shown_pngs = [(shown[k], sentence_pngs(shown[k], out, f"s{k + 1}-", png)) for k in range(n_shown)]
    notes_text = [text for _, text in sorted(notes)]
    if not corpus.sentences:
        notes_text.append("no non-empty sentence to trace")
    stats = corpus.result() if corpus.sentences > 1 else None
    corpus_files = corpus_pngs(stats, out, png) if stats is not None else []
    cell = corpus.cell
    if cell and cell != "lstm":
        notes_text.append(f"this is a {cell.upper()} model: it has no memory cell C_t; its states are h_t")
    data: dict[str, Any] = {
        "cell": cell,
        "notes": notes_text,
        "sentences": [sentence_data(trace, pngs) for trace, pngs in shown_pngs],
        "corpus": None if stats is None else corpus_data(stats, corpus_files),
    }
    index = out / "index.html"
    with atomic_output(out / "trace.npz", binary=True) as f:  # the page last: it never names a half file
        np.savez_compressed(f.stream, allow_pickle=False, **_arrays(shown_pngs, stats))
    with atomic_output(index) as f:
        f.write(render_page(title, data))
    files = (
        ["index.html", "trace.npz"]
        + [f for _, pngs in shown_pngs for _, f in pngs]
        + [f for _, f in corpus_files]
    )
    return InspectReport(index, corpus.sentences, notes_text, files)


def _own_translations(translator: Translator, sentences: Sequence[str], beam: int | None) -> list[list[int]]:
    """The model's translations as target ids, searched in length-sorted batches (much faster than one
    search per sentence); the trace then runs forced on them (and says it is the model's own)."""
    pieces_to_id = translator.tokenizer.tgt.piece_to_id
    results = translator.translate_batch(list(sentences), translator.options(beam))
    return [[pieces_to_id(p) for p in r.candidates[0].tokens] if r.candidates else [] for r in results]


def _arrays(
    shown: list[tuple[Trace, list[tuple[str, str]]]], stats: CorpusStats | None
) -> dict[str, np.ndarray]:
    """'s1.encoder.0.fwd.f', 's1.src_tokens', ... and 'corpus.low.encoder.0.fwd.f', ... (no pickles)."""
    arrays: dict[str, np.ndarray] = {}
    for k, (trace, _) in enumerate(shown, 1):
        arrays[f"s{k}.src_tokens"] = np.array(trace.src_tokens, dtype=str)
        arrays[f"s{k}.tgt_tokens"] = np.array(trace.tgt_tokens, dtype=str)
        for name, value in trace.arrays.items():
            arrays[f"s{k}.{name}"] = value
    if stats is not None:
        for kind, values in (("low", stats.low), ("high", stats.high)):
            for name, value in values.items():
                arrays[f"corpus.{kind}.{name}"] = value
        arrays["corpus.forget_hist"] = stats.forget_hist
        for group in stats.position_r:
            arrays[f"corpus.position_r.{group}"] = stats.position_r[group]
            arrays[f"corpus.end_r.{group}"] = stats.end_r[group]
    return arrays

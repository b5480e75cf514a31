"""Corpus scores from sacrebleu's metric objects, always with their signatures.

Scores are computed on detokenized text against the raw references, exactly as the `sacrebleu`
command does, so the numbers can be compared with published ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sacrebleu.metrics import BLEU, CHRF, TER

from seq2seq.errors import Seq2SeqError
from seq2seq.textio import read_lines, require_parallel, single_line

if TYPE_CHECKING:
    from seq2seq.search import SearchOptions
    from seq2seq.translate import Translator

METRICS = ("bleu", "chrf", "ter")


@dataclass(frozen=True)
class Score:
    metric: str
    score: float
    signature: str
    text: str
    """sacrebleu's own formatted line, e.g. 'BLEU = 35.12 66.1/41.2/...'."""

    def as_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "score": round(self.score, 4),
            "signature": self.signature,
            "text": self.text,
        }


def _metric(name: str, lowercase: bool, tokenize: str | None) -> BLEU | CHRF | TER:
    if name == "bleu":
        return BLEU(lowercase=lowercase, tokenize=tokenize)
    if name == "chrf":
        return CHRF(lowercase=lowercase)
    if name == "ter":
        return TER()  # sacrebleu's default, case-insensitive TER (its signature says case:lc)
    raise Seq2SeqError(f"--metrics: unknown metric {name!r} (choose from {', '.join(METRICS)})")


def parse_metrics(text: str) -> tuple[str, ...]:
    """`"bleu, chrf"` -> `("bleu", "chrf")`; an empty list or an unknown name is an error naming --metrics."""
    names = tuple(name.strip().lower() for name in text.split(",") if name.strip())
    if not names:
        raise Seq2SeqError(f"--metrics: give at least one of {', '.join(METRICS)}, got {text!r}")
    for name in names:
        if name not in METRICS:
            raise Seq2SeqError(f"--metrics: unknown metric {name!r} (choose from {', '.join(METRICS)})")
    return names


def require_lines(lines: Sequence[str], name: str) -> None:
    """sacrebleu cannot score an empty corpus: say which file is empty."""
    if not lines:
        raise Seq2SeqError(f"{name}: no lines to score (the file is empty)")


def score_corpus(
    hypotheses: Sequence[str],
    references: Sequence[str],
    metrics: Sequence[str] = METRICS,
    lowercase: bool = False,
    tokenize: str | None = None,
    names: tuple[str, str] = ("hypotheses", "references"),
) -> list[Score]:
    """Score detokenized hypotheses against one reference per line."""
    require_parallel(hypotheses, references, names, "scores need one hypothesis per reference line")
    require_lines(references, names[1])
    if not metrics:
        raise Seq2SeqError(f"--metrics: give at least one of {', '.join(METRICS)}")
    if tokenize is not None and tokenize not in BLEU.TOKENIZERS:
        raise Seq2SeqError(f"--tokenize: {tokenize!r} is not one of {', '.join(BLEU.TOKENIZERS)}")
    scores = []
    for name in metrics:
        metric = _metric(name, lowercase, tokenize)
        result = metric.corpus_score(list(hypotheses), [list(references)])
        scores.append(Score(name, float(result.score), str(metric.get_signature()), str(result)))
    return scores


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> Score:
    """Cased sacreBLEU with the 13a tokenizer (the standard setting)."""
    return score_corpus(hypotheses, references, ("bleu",))[0]


@dataclass(frozen=True)
class ModelScores:
    """What `translate_and_score` found: the translations (one per source line), their scores and the
    seconds translation took."""

    translations: list[str]
    scores: list[Score]
    seconds: float


def translate_and_score(
    translator: Translator,
    src: Path,
    ref: Path,
    metrics: Sequence[str] = METRICS,
    opts: SearchOptions | None = None,
    lowercase: bool = False,
    tokenize: str | None = None,
) -> ModelScores:
    """Translate `src` with `translator` (its recipe's decode settings unless `opts`) and score the
    translations against `ref` (`eval --model`)."""
    refs = read_lines(ref)
    require_lines(refs, str(ref))
    sources = read_lines(src, replace_invalid=True)
    if len(sources) != len(refs):
        raise Seq2SeqError(f"{src} has {len(sources)} lines but {ref} has {len(refs)}")
    opts = opts or translator.options()
    start = time.perf_counter()
    hyps = [t.text for t in translator.translate_batch([single_line(s) for s in sources], opts)]
    seconds = time.perf_counter() - start
    scores = score_corpus(
        hyps,
        refs,
        metrics,
        lowercase=lowercase,
        tokenize=tokenize,
        names=(f"translations of {src}", str(ref)),
    )
    return ModelScores(hyps, scores, seconds)

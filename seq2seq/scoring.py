"""Forced decoding: the model's log-probability of given translations (`seq2seq score`).

For filtering a corpus or reranking n-best lists. Pairs are batched by length and each batch is one
teacher-forced `forward` (the path training uses), so a corpus scores at training speed. A target is
scored with its EOS: `tokens` counts the target subwords plus EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from seq2seq.data.batching import FlatSequences, ParallelCorpus
from seq2seq.search import length_penalty
from seq2seq.special import PAD
from seq2seq.textio import read_lines, require_parallel, single_line
from seq2seq.translate import Translator


@dataclass(frozen=True)
class PairScore:
    log_prob: float
    """Sum of the log-probabilities of the target subwords and EOS given the source."""
    tokens: int
    """Target subwords + 1 (EOS)."""
    normalized: float
    """`log_prob` divided by the recipe's length penalty (`decode.penalty`, `decode.length_penalty`),
    as beam search ranks hypotheses."""

    @property
    def per_token(self) -> float:
        return self.log_prob / self.tokens

    def as_dict(self) -> dict[str, float | int]:
        return {
            "log_prob": round(self.log_prob, 4),
            "tokens": self.tokens,
            "per_token": round(self.per_token, 4),
            "normalized": round(self.normalized, 4),
        }


@torch.inference_mode()
def score_pairs(
    translator: Translator,
    sources: Sequence[str],
    targets: Sequence[str],
    batch_tokens: int | None = None,
    names: tuple[str, str] = ("sources", "targets"),
) -> list[PairScore]:
    """Score each (source, target) pair with the translator's model; results in input order."""
    require_parallel(sources, targets, names, "score needs one target per source line")
    model, tok, d = translator.single_model("score"), translator.tokenizer, translator.cfg.decode
    src = [ids[: d.max_src_len] for ids in tok.encode_src([single_line(s).strip() for s in sources])]
    tgt = tok.encode_tgt([single_line(t).strip() for t in targets])
    corpus = ParallelCorpus(FlatSequences.from_lists(src), FlatSequences.from_lists(tgt))
    budget = batch_tokens or translator.cfg.train.batch_tokens
    results: list[PairScore | None] = [None] * len(src)
    for idx in corpus.batches(budget, 0, 0, shuffle=False):
        batch = corpus.batch(idx).to(translator.device)
        with torch.autocast(translator.device.type, dtype=torch.bfloat16, enabled=translator.bf16):
            logits = model(batch.src_ids, batch.src_lengths, batch.tgt_in)  # [B, T, V]
        log_probs = logits.float().log_softmax(dim=-1)
        gold = log_probs.gather(2, batch.tgt_out.unsqueeze(2)).squeeze(2)  # [B, T]
        keep = batch.tgt_out != PAD
        totals = gold.masked_fill(~keep, 0.0).sum(dim=1).tolist()
        counts = keep.sum(dim=1).tolist()
        for i, total, n in zip(idx.tolist(), totals, counts, strict=True):
            lp = float(length_penalty(float(n), d.length_penalty, d.penalty))
            results[i] = PairScore(total, n, total / lp)
    return [r for r in results if r is not None]


def score_files(
    translator: Translator, src: Path, tgt: Path, batch_tokens: int | None = None
) -> list[PairScore]:
    """`score_pairs` over two parallel files (one pair per line)."""
    return score_pairs(
        translator,
        read_lines(src, replace_invalid=True),
        read_lines(tgt, replace_invalid=True),
        batch_tokens,
        (str(src), str(tgt)),
    )

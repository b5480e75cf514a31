"""Server metrics in the Prometheus text exposition format (version 0.0.4), kept in memory.

Small on purpose: counters and histograms keyed by a few fixed labels (endpoint, status, model), so their
number is bounded whatever clients send (unknown paths are counted under one label).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    """(label, bucket index) -> observations in that bucket only (cumulated when rendered)."""
    sums: dict[str, float] = field(default_factory=dict)
    totals: Counter[str] = field(default_factory=Counter)

    def observe(self, label: str, value: float) -> None:
        self.counts[label, bisect.bisect_left(self.buckets, value)] += 1
        self.sums[label] = self.sums.get(label, 0.0) + value
        self.totals[label] += 1

    def render(self, name: str, label_name: str) -> list[str]:
        lines = []
        for label in sorted(self.totals):
            cumulative = 0
            for i, bound in enumerate(self.buckets):
                cumulative += self.counts[label, i]
                lines.append(f'{name}_bucket{{{label_name}="{label}",le="{bound:g}"}} {cumulative}')
            lines.append(f'{name}_bucket{{{label_name}="{label}",le="+Inf"}} {self.totals[label]}')
            lines.append(f'{name}_sum{{{label_name}="{label}"}} {self.sums[label]:.6f}')
            lines.append(f'{name}_count{{{label_name}="{label}"}} {self.totals[label]}')
        return lines


@dataclass
class Metrics:
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    """(endpoint, HTTP status) -> requests answered."""
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    batch_sentences: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    batch_requests: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))
    tokens: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(model, "src" | "tgt") -> tokens translated."""
    sentences: Counter[str] = field(default_factory=Counter)

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests[endpoint, status] += 1
        self.latency.observe(endpoint, seconds)

    def batch(self, model: str, requests: int, sentences: int, src_tokens: int, tgt_tokens: int) -> None:
        self.batch_requests.observe(model, requests)
        self.batch_sentences.observe(model, sentences)
        self.tokens[model, "src"] += src_tokens
        self.tokens[model, "tgt"] += tgt_tokens
        self.sentences[model] += sentences

    def render(self, queue_depth: Mapping[str, int], ready: Callable[[], bool]) -> str:
        out = [
            "# HELP seq2seq_requests_total HTTP requests answered, by endpoint and status.",
            "# TYPE seq2seq_requests_total counter",
            *(
                f'seq2seq_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                for (e, s), n in sorted(self.requests.items())
            ),
            "# HELP seq2seq_request_duration_seconds Time from request received to response sent.",
            "# TYPE seq2seq_request_duration_seconds histogram",
            *self.latency.render("seq2seq_request_duration_seconds", "endpoint"),
            "# HELP seq2seq_batch_sentences Sentences decoded together in one batched search.",
            "# TYPE seq2seq_batch_sentences histogram",
            *self.batch_sentences.render("seq2seq_batch_sentences", "model"),
            "# HELP seq2seq_batch_requests Requests merged into one batched search.",
            "# TYPE seq2seq_batch_requests histogram",
            *self.batch_requests.render("seq2seq_batch_requests", "model"),
            "# HELP seq2seq_queue_depth Requests waiting for a model worker.",
            "# TYPE seq2seq_queue_depth gauge",
            *(f'seq2seq_queue_depth{{model="{m}"}} {d}' for m, d in sorted(queue_depth.items())),
            "# HELP seq2seq_tokens_translated_total Subword tokens translated (source read, target written).",
            "# TYPE seq2seq_tokens_translated_total counter",
            *(
                f'seq2seq_tokens_translated_total{{model="{m}",side="{s}"}} {n}'
                for (m, s), n in sorted(self.tokens.items())
            ),
            "# HELP seq2seq_sentences_translated_total Sentences translated.",
            "# TYPE seq2seq_sentences_translated_total counter",
            *(
                f'seq2seq_sentences_translated_total{{model="{m}"}} {n}'
                for m, n in sorted(self.sentences.items())
            ),
            "# HELP seq2seq_ready 1 once every model is loaded and warmed up.",
            "# TYPE seq2seq_ready gauge",
            f"seq2seq_ready {int(ready())}",
        ]
        return "\n".join(out) + "\n"

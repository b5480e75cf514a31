"""Gate statistics over a corpus, accumulated sentence by sentence (memory does not grow with the corpus).

- Saturation per unit, as in Karpathy, Johnson and Fei-Fei, "Visualizing and Understanding Recurrent
  Networks" (2015): the fraction of tokens where a sigmoid gate is left-saturated (< 0.1) or right-saturated
  (> 0.9), per gate, layer and direction.
- A histogram of forget-gate values (LSTM).
- The units whose memory (C_t for the LSTM, h_t otherwise) correlates most with the position in the sentence
  and with being the sentence's last token (EOS): Pearson r over all tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seq2seq.inspect.sentence import Trace

SIGMOID_GATES = ("f", "i", "o", "r", "z")
LOW, HIGH = 0.1, 0.9
HIST_BINS = np.linspace(0.0, 1.0, 41)


@dataclass
class _Moments:
    """Running sums for Pearson r between every unit (x [N, H]) and one feature (y [N])."""

    n: int = 0
    sx: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sxx: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sxy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sy: float = 0.0
    syy: float = 0.0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        x, y = x.astype(np.float64), y.astype(np.float64)
        if self.n == 0:
            self.sx, self.sxx, self.sxy = (np.zeros(x.shape[1]) for _ in range(3))
        self.n += x.shape[0]
        self.sx += x.sum(0)
        self.sxx += (x * x).sum(0)
        self.sxy += (x * y[:, None]).sum(0)
        self.sy += float(y.sum())
        self.syy += float((y * y).sum())

    def r(self) -> np.ndarray:
        """[H] Pearson r (0 where a unit or the feature is constant)."""
        n = max(self.n, 1)
        cov = self.sxy / n - (self.sx / n) * (self.sy / n)
        var_x = self.sxx / n - (self.sx / n) ** 2
        var_y = self.syy / n - (self.sy / n) ** 2
        denom = np.sqrt(np.clip(var_x, 0, None) * max(var_y, 0.0))
        return np.where(denom > 1e-12, cov / np.where(denom > 1e-12, denom, 1.0), 0.0)


@dataclass(frozen=True)
class CorpusStats:
    cell: str
    sentences: int
    tokens: dict[str, int]
    """Per group ('encoder.0.fwd'), the number of tokens counted."""
    low: dict[str, np.ndarray]
    """'group.gate' -> [H] fraction of tokens with the gate < 0.1."""
    high: dict[str, np.ndarray]
    """'group.gate' -> [H] fraction of tokens with the gate > 0.9."""
    forget_hist: np.ndarray
    """[40] counts of forget-gate values over all LSTM groups, bins `HIST_BINS`."""
    position_r: dict[str, np.ndarray]
    """group -> [H] correlation of the memory state with the token position."""
    end_r: dict[str, np.ndarray]
    """group -> [H] correlation of the memory state with being the last token."""

    def top_units(self, which: str, group: str, k: int = 5) -> list[tuple[int, float]]:
        """(unit, r) with the largest |r| for 'position' or 'end'."""
        r = (self.position_r if which == "position" else self.end_r)[group]
        order = np.argsort(-np.abs(r))[:k]
        return [(int(u), float(r[u])) for u in order]


class CorpusAccumulator:
    def __init__(self) -> None:
        self.cell = ""
        self.sentences = 0
        self.tokens: dict[str, int] = {}
        self.low: dict[str, np.ndarray] = {}
        self.high: dict[str, np.ndarray] = {}
        self.hist = np.zeros(len(HIST_BINS) - 1, dtype=np.int64)
        self.position: dict[str, _Moments] = {}
        self.end: dict[str, _Moments] = {}

    def add(self, trace: Trace) -> None:
        self.cell = trace.cell
        self.sentences += 1
        for group in trace.groups:
            memory = trace[f"{group}.{trace.memory}"]  # [N, H]
            steps = memory.shape[0]
            self.tokens[group] = self.tokens.get(group, 0) + steps
            for gate in trace.names:
                if gate not in SIGMOID_GATES:
                    continue
                values = trace[f"{group}.{gate}"]
                name = f"{group}.{gate}"
                self.low[name] = self.low.get(name, 0) + (values < LOW).sum(0)
                self.high[name] = self.high.get(name, 0) + (values > HIGH).sum(0)
                if gate == "f":
                    self.hist += np.histogram(values, HIST_BINS)[0]
            position = np.arange(steps, dtype=np.float64)
            self.position.setdefault(group, _Moments()).add(memory, position)
            self.end.setdefault(group, _Moments()).add(memory, (position == steps - 1).astype(np.float64))

    def result(self) -> CorpusStats:
        def fraction(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {name: c / max(self.tokens[name.rsplit(".", 1)[0]], 1) for name, c in counts.items()}

        return CorpusStats(
            self.cell,
            self.sentences,
            dict(self.tokens),
            fraction(self.low),
            fraction(self.high),
            self.hist.copy(),
            {g: m.r() for g, m in self.position.items()},
            {g: m.r() for g, m in self.end.items()},
        )

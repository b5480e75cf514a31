"""Progress display for long jobs: a bar with loss, tokens/s, learning rate and ETA on stderr.

Progress is the largest fraction of any budget used (updates, epochs, minutes), so the ETA is honest
whichever limit ends the run. Messages printed through `message` appear above the bar. When stderr is
not a terminal (a log file, CI), the same figures are printed as a plain line every `train.log_every`
updates instead of a bar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from seq2seq.config import Config

_SCALE = 10_000


class TrainProgress:
    def __init__(
        self,
        cfg: Config,
        batches_per_epoch: int,
        enabled: bool = True,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg, self.batches_per_epoch = cfg, batches_per_epoch
        self.say = say
        self.console = Console(file=sys.stderr)
        self.live = enabled and self.console.is_terminal
        self.lines = enabled and not self.live
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.live,
            refresh_per_second=4,
        )
        self._task = self._progress.add_task("train", total=_SCALE, info="")
        self._tokens: list[tuple[float, int]] = []

    def __enter__(self) -> TrainProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def fraction(self, state: Any) -> float:
        t = self.cfg.train
        parts = [(state.epoch + state.batch_in_epoch / max(1, self.batches_per_epoch)) / t.max_epochs]
        if t.max_steps:
            parts.append(state.step / t.max_steps)
        if t.max_minutes:
            parts.append(state.wall_seconds / (60 * t.max_minutes))
        return min(1.0, max(parts))

    def update(self, state: Any, loss: float | None = None, lr: float | None = None, tokens: int = 0) -> None:
        now = time.perf_counter()
        self._tokens.append((now, tokens))
        self._tokens = [(t, n) for t, n in self._tokens if now - t < 10.0]
        span = now - self._tokens[0][0]
        rate = sum(n for _, n in self._tokens[1:]) / span if span > 0 else 0.0
        info = f"update {state.step} ep {state.epoch + 1}"
        if loss is not None:
            info += f" loss {loss:.3f}"
        if lr is not None:
            info += f" lr {lr:.2e}"
        if rate:
            info += f" {rate:,.0f} tok/s"
        fraction = self.fraction(state)
        self._progress.update(self._task, completed=int(fraction * _SCALE), info=info)
        if self.lines and self.say is not None and state.step and state.step % self.cfg.train.log_every == 0:
            eta = state.wall_seconds * (1 - fraction) / fraction if fraction > 0 else 0.0
            self.say(f"{info} | {100 * fraction:.0f}% ETA {int(eta // 60)}:{int(eta % 60):02d}")

    def message(self, line: str) -> None:
        """A line above the bar (and in the run's log, through `say`)."""
        if self.live:
            self._progress.console.print(line, highlight=False, markup=False)
        elif self.say is not None:
            self.say(line)

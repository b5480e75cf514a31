"""A run directory: its files, its lock, and its append-only records.

`config.yaml` (the resolved recipe), `metrics.jsonl`, `train.log`, `checkpoints/` (`last.pt` to resume,
`best.pt` to translate, `step-N.pt` kept by score and age) and `train.lock`. Every path recorded inside
a run is relative to the run, so a copied run directory is a run of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seq2seq.errors import Seq2SeqError


class RunFiles:
    """Paths and writers of a run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self.checkpoints = self.dir / "checkpoints"
        self.last = self.checkpoints / "last.pt"
        self.best = self.checkpoints / "best.pt"
        self.metrics = self.dir / "metrics.jsonl"
        self.log_file = self.dir / "train.log"
        self.config = self.dir / "config.yaml"
        self.lock_file = self.dir / "train.lock"

    def write_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def metrics_bytes(self) -> int:
        """Size of metrics.jsonl: saved in last.pt so a resumed run drops records written after it."""
        return self.metrics.stat().st_size if self.metrics.is_file() else 0

    def truncate_metrics(self, size: int) -> None:
        """Drop the records written after the checkpoint being resumed (they will be written again)."""
        if self.metrics.is_file() and self.metrics.stat().st_size > size:
            os.truncate(self.metrics, size)

    def write_log(self, line: str) -> None:
        with open(self.log_file, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    def progress(self) -> str:
        """What shows that training happened here ('' when nothing does)."""
        if self.metrics.is_file() and self.metrics.stat().st_size:
            return "metrics.jsonl"
        if self.checkpoints.is_dir() and any(self.checkpoints.glob("*.pt")):
            return "checkpoints"
        return ""

    def clear(self) -> None:
        """What `--restart` removes: records and checkpoints (the preprocessed data stays)."""
        for path in (self.metrics, self.log_file):
            path.unlink(missing_ok=True)
        for ckpt in self.checkpoints.glob("*.pt") if self.checkpoints.is_dir() else []:
            ckpt.unlink()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run directory for this process: an advisory lock (flock) on `train.lock`, which
        holds the holder's pid. The operating system releases it when the process dies, however."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise Seq2SeqError(
                    f"{self.dir} is in use by another seq2seq train (pid {holder}); wait for it to "
                    f"finish, stop it (kill -TERM {holder}), or choose another --out"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

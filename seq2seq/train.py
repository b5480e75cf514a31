"""The training loop: read it top to bottom.

for each update: lr -> forward -> loss -> backward -> clip -> step -> log -> validate/checkpoint -> stop?

A run directory holds `config.yaml` (the resolved recipe), `metrics.jsonl`, `train.log` and
`checkpoints/` (`last.pt` to resume, `best.pt` to translate). `train` on a run directory that has a
`last.pt` resumes exactly: weights, optimizer, scheduler, every RNG and the position inside the epoch are
restored, so a resumed run computes the same updates as one that never stopped. Ctrl-C finishes the
current update, saves and exits; a second Ctrl-C aborts at once (the last checkpoint stays loadable).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml

from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.config import Config
from seq2seq.data import ParallelCorpus
from seq2seq.errors import Seq2SeqError
from seq2seq.evaluate import bleu
from seq2seq.model import Seq2Seq, build_model, count_parameters
from seq2seq.plot import plot_after_validation
from seq2seq.progress import TrainProgress
from seq2seq.search import SearchOptions
from seq2seq.translate import decode_ids, resolve_device
from seq2seq.update import (
    accumulate_gradients,
    clip_and_step,
    compute_loss,
    make_optimizer,
    make_scheduler,
    teacher_forcing_ratio,
)

if TYPE_CHECKING:
    from seq2seq.data import Prepared

# Keys that may change between a run and its resumption: they extend or observe training, they do not
# change what an update computes.
RESUMABLE_CHANGES = frozenset(
    {
        "train.max_epochs",
        "train.max_steps",
        "train.max_minutes",
        "train.patience",
        "train.valid_every",
        "train.log_every",
        "train.threads",
        "train.keep_best",
        "train.keep_last",
        "decode.beam",
        "decode.length_penalty",
        "decode.max_len_a",
        "decode.max_len_b",
        "decode.min_len",
        "decode.batch_tokens",
        "decode.max_src_len",
    }
)


@dataclass
class TrainState:
    """Counters and early-stopping state; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    """Batches of `epoch` already consumed (the data position to resume from)."""
    train_seconds: float = 0.0
    """Time spent in updates."""
    wall_seconds: float = 0.0
    """Wall-clock time of the run so far, validation included (what train.max_minutes limits)."""
    tgt_tokens: int = 0
    best_score: float | None = None
    best_step: int = 0
    bad_validations: int = 0
    nonfinite_in_row: int = 0
    nonfinite_total: int = 0
    best_checkpoints: list[list[Any]] = field(default_factory=list)
    """[score, path] of kept best checkpoints, best first."""
    last_checkpoints: list[str] = field(default_factory=list)
    stop_reason: str = ""


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_score: float | None
    metric: str
    steps: int
    stop_reason: str


def _config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = []
    for section, values in new.items():
        for key, value in values.items():
            before = old.get(section, {}).get(key)
            if before != value and f"{section}.{key}" not in RESUMABLE_CHANGES:
                diffs.append(f"{section}.{key}: {before!r} -> {value!r}")
    return diffs


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuplify(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(value: Any) -> Any:
    return tuple(_tuplify(v) for v in value) if isinstance(value, list | tuple) else value


class _StopFlag:
    """First SIGINT asks the loop to stop after the current update; the second one interrupts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C is not ours to catch
            self._previous = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


@torch.inference_mode()
def validate(
    model: Seq2Seq, prepared: Prepared, valid: ParallelCorpus, cfg: Config, device: torch.device
) -> dict[str, float]:
    """Loss and perplexity (teacher forced, no smoothing) and BLEU of greedy/beam output."""
    model.eval()
    total, tokens = 0.0, 0
    for idx in valid.batches(cfg.train.batch_tokens, 0, 0, shuffle=False):
        batch = valid.batch(idx).to(device)
        total += float(compute_loss(model, batch, 0.0))
        tokens += batch.n_tgt_tokens
    loss = total / max(1, tokens)
    opts = SearchOptions.from_config(cfg.decode, beam=cfg.train.valid_beam)
    hyps = decode_ids(model, valid.src, opts, cfg.decode.batch_tokens, device)
    text = prepared.tokenizer.decode_tgt([h[0].tokens if h else [] for h in hyps])
    score = bleu(text, prepared.splits["valid"]["tgt"]).score
    model.train()
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "bleu": score}


class RunFiles:
    """Paths and writers of a run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.checkpoints = run_dir / "checkpoints"
        self.last = self.checkpoints / "last.pt"
        self.best = self.checkpoints / "best.pt"
        self.metrics = run_dir / "metrics.jsonl"
        self.log_file = run_dir / "train.log"
        self.config = run_dir / "config.yaml"

    def write_metrics(self, record: dict[str, Any]) -> None:
        with open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def write_log(self, line: str) -> None:
        with open(self.log_file, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def _epoch_batches(corpus: ParallelCorpus, cfg: Config, epoch: int) -> list[np.ndarray]:
    return corpus.batches(cfg.train.batch_tokens, cfg.train.seed, epoch)


def _updates(corpus: ParallelCorpus, cfg: Config, state: TrainState) -> Iterator[list[np.ndarray]]:
    """Groups of `accum_steps` batches from the current data position onwards, epoch after epoch."""
    while state.epoch < cfg.train.max_epochs:
        batches = _epoch_batches(corpus, cfg, state.epoch)
        while state.batch_in_epoch < len(batches):
            group = batches[state.batch_in_epoch : state.batch_in_epoch + cfg.train.accum_steps]
            yield group
        state.epoch += 1
        state.batch_in_epoch = 0


def train(
    cfg: Config,
    run_dir: Path,
    data_dir: Path | None = None,
    restart: bool = False,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
) -> TrainResult:
    """Train (or resume) a model in `run_dir`; preprocesses the corpus first if needed."""
    files = RunFiles(Path(run_dir))
    data_dir = Path(data_dir) if data_dir is not None else files.dir / "data"
    resume = files.last.is_file() and not restart
    if resume:
        payload = load_checkpoint(files.last)
        diffs = _config_diff(payload["config"], cfg.to_dict())
        if diffs:
            raise Seq2SeqError(
                f"{files.dir} was trained with another config ({'; '.join(diffs[:3])}); resume with the "
                "same recipe, pass --restart to start over, or choose another --out"
            )
    elif restart and files.dir.exists():
        for path in (files.metrics, files.log_file):
            path.unlink(missing_ok=True)
        for ckpt in files.checkpoints.glob("*.pt") if files.checkpoints.is_dir() else []:
            ckpt.unlink()

    def say(line: str) -> None:
        log(line)
        files.write_log(line)

    files.dir.mkdir(parents=True, exist_ok=True)
    from seq2seq.data import load_prepared, preprocess, report_table  # these import `datasets`

    result = preprocess(cfg, data_dir, log=say)
    if not result.cached:
        say("cleaning report:\n" + report_table(result.manifest))
    prepared = load_prepared(data_dir)
    if "valid" not in prepared.splits:
        raise Seq2SeqError("data.valid: training needs a validation set (a path prefix in the recipe)")
    train_data = ParallelCorpus.from_dataset(prepared.splits["train"])
    valid_data = ParallelCorpus.from_dataset(prepared.splits["valid"])

    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    device = resolve_device(t.device)
    torch.manual_seed(t.seed)
    random.seed(t.seed)
    np.random.seed(t.seed)
    tok = prepared.tokenizer
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size).to(device)
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer)
    state = TrainState()
    if resume:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        state = TrainState(**payload["train_state"])
        _set_rng_state(payload["rng"])
        say(
            f"resuming {files.dir} at update {state.step} (epoch {state.epoch + 1}, "
            f"batch {state.batch_in_epoch})"
        )
    else:
        files.config.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
        say(
            f"training {count_parameters(model):,} parameters on {device}; "
            f"{len(train_data):,} training pairs; run directory {files.dir}"
        )

    def model_payload() -> dict[str, Any]:
        """What translation needs: config, weights, tokenizer (and the counters, for information)."""
        return {
            "config": cfg.to_dict(),
            "model": model.state_dict(),
            "tokenizer": tok.state(),
            "train_state": dataclasses.asdict(state),
        }

    def checkpoint_payload() -> dict[str, Any]:
        """Everything resuming needs on top of `model_payload`."""
        return {
            **model_payload(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_at_update_start,
        }

    def keep_checkpoint(score: float) -> None:
        """best.pt is the best so far; step-N.pt files keep the best N and last N."""
        if t.keep_best + t.keep_last == 0:
            return
        path = files.checkpoints / f"step-{state.step}.pt"
        higher = t.valid_metric == "bleu"
        save_checkpoint(path, model_payload())
        state.last_checkpoints.append(str(path))
        state.best_checkpoints.append([score, str(path)])
        state.best_checkpoints.sort(key=lambda x: -x[0] if higher else x[0])
        latest = state.last_checkpoints[len(state.last_checkpoints) - t.keep_last :] if t.keep_last else []
        keep = {p for _, p in state.best_checkpoints[: t.keep_best]} | set(latest)
        for p in {p for _, p in state.best_checkpoints} | set(state.last_checkpoints):
            if p not in keep:
                Path(p).unlink(missing_ok=True)
        state.best_checkpoints = [x for x in state.best_checkpoints if x[1] in keep]
        state.last_checkpoints = [p for p in state.last_checkpoints if p in keep]

    def run_validation() -> bool:
        """Validate, keep checkpoints; True when early stopping says stop."""
        scores = validate(model, prepared, valid_data, cfg, device)
        metric = scores[t.valid_metric]
        better = state.best_score is None or (
            metric > state.best_score if t.valid_metric == "bleu" else metric < state.best_score
        )
        if better:
            state.best_score, state.best_step, state.bad_validations = metric, state.step, 0
        else:
            state.bad_validations += 1
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(metric)
        record = {
            "type": "valid",
            "step": state.step,
            "epoch": state.epoch + 1,
            "minutes": round(state.wall_seconds / 60, 3),
            **{k: round(v, 4) for k, v in scores.items()},
            "best": better,
        }
        files.write_metrics(record)
        progress.message(
            f"valid @ {state.step}: loss {scores['loss']:.3f} ppl {scores['ppl']:.2f} "
            f"BLEU {scores['bleu']:.2f}{' (best)' if better else ''}"
        )
        files.write_log(f"valid step {state.step}: {json.dumps(record)}")
        plot_after_validation(files.dir)
        keep_checkpoint(metric)
        if better:
            save_checkpoint(files.best, model_payload())
        return bool(t.patience) and state.bad_validations >= t.patience

    rng_at_update_start = _rng_state()
    first_epoch = _epoch_batches(train_data, cfg, 0)
    per_batch = sum(map(len, first_epoch)) / len(first_epoch)
    say(f"{len(first_epoch)} batches per epoch, {per_batch:.1f} sentences a batch on average, "
        f"{train_data.padding_fraction(first_epoch):.1%} padding")  # fmt: skip
    progress = TrainProgress(cfg, len(first_epoch), enabled=show_progress, say=log)
    model.train()
    window_tokens, window_start, window_loss, window_n = 0, time.perf_counter(), 0.0, 0
    with _StopFlag() as stop, progress:
        progress.update(state)
        last_tick = time.perf_counter()
        for group in _updates(train_data, cfg, state):
            now = time.perf_counter()
            state.wall_seconds += now - last_tick
            last_tick = now
            if stop.requested:
                state.stop_reason = "interrupted"
                break
            if t.max_steps and state.step >= t.max_steps:
                state.stop_reason = f"reached train.max_steps={t.max_steps}"
                break
            if t.max_minutes and state.wall_seconds >= 60 * t.max_minutes:
                state.stop_reason = f"reached train.max_minutes={t.max_minutes}"
                break
            rng_at_update_start = _rng_state()
            tick = time.perf_counter()
            batches = [train_data.batch(idx).to(device) for idx in group]
            sampling = 1.0 - teacher_forcing_ratio(cfg, state.step)
            loss_sum, n_tokens = accumulate_gradients(
                model, batches, t.label_smoothing, sampling, device, t.bf16
            )
            state.batch_in_epoch += len(group)
            if not math.isfinite(loss_sum):
                state.nonfinite_in_row += 1
                state.nonfinite_total += 1
                optimizer.zero_grad(set_to_none=True)
                progress.message(
                    f"warning: non-finite loss at update {state.step + 1}; skipped "
                    f"({state.nonfinite_in_row} in a row, {state.nonfinite_total} in all)"
                )
                if state.nonfinite_in_row >= t.max_bad_steps:
                    state.stop_reason = "non-finite loss"
                    raise Seq2SeqError(
                        f"{state.nonfinite_in_row} non-finite losses in a row at update {state.step}: "
                        "lower train.lr or train.clip_norm; the last good checkpoint is "
                        f"{files.last if files.last.exists() else 'not written yet'}"
                    )
                continue
            state.nonfinite_in_row = 0
            grad_norm = clip_and_step(model, optimizer, cfg)
            if not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step()
            state.step += 1
            state.tgt_tokens += n_tokens
            state.train_seconds += time.perf_counter() - tick
            window_tokens += n_tokens
            window_loss += loss_sum
            window_n += n_tokens
            lr = optimizer.param_groups[0]["lr"]
            if state.step % t.log_every == 0:
                elapsed = time.perf_counter() - window_start
                files.write_metrics(
                    {
                        "type": "train",
                        "step": state.step,
                        "epoch": state.epoch + 1,
                        "loss": round(window_loss / max(1, window_n), 4),
                        "lr": lr,
                        "grad_norm": round(grad_norm, 4),
                        "teacher_forcing": round(1.0 - sampling, 4),
                        "tgt_tokens_per_s": round(window_tokens / elapsed, 1),
                        "minutes": round(state.wall_seconds / 60, 3),
                    }
                )
                window_tokens, window_start, window_loss, window_n = 0, time.perf_counter(), 0.0, 0
            progress.update(state, loss=loss_sum / max(1, n_tokens), lr=lr, tokens=n_tokens)
            epoch_end = state.batch_in_epoch >= progress.batches_per_epoch
            rng_at_update_start = _rng_state()
            last_step = bool(t.max_steps) and state.step >= t.max_steps
            out_of_time = bool(t.max_minutes) and (
                state.wall_seconds + time.perf_counter() - last_tick >= 60 * t.max_minutes
            )
            if (
                state.step % t.valid_every == 0 or epoch_end or last_step or out_of_time
            ) and run_validation():
                state.stop_reason = f"no improvement in {t.patience} validations"
                break
        else:
            state.stop_reason = f"reached train.max_epochs={t.max_epochs}"
        rng_at_update_start = _rng_state()
        if state.best_score is None and state.step > 0 and state.stop_reason != "interrupted":
            run_validation()
        save_checkpoint(files.last, checkpoint_payload())

    if state.stop_reason == "interrupted":
        say(
            f"interrupted at update {state.step}; saved {files.last}. Resume with the same command "
            f"(seq2seq train ... --out {files.dir})"
        )
    best = files.best if files.best.exists() else files.last
    best_score = state.best_score if state.best_score is not None else float("nan")
    summary = (
        f"done: {state.step} updates in {state.wall_seconds / 60:.1f} min ({state.stop_reason}); "
        f"best valid {t.valid_metric} {best_score:.2f} at update {state.best_step}: {best}"
    )
    say(summary)
    return TrainResult(
        files.dir, best, files.last, state.best_score, t.valid_metric, state.step, state.stop_reason
    )

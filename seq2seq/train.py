"""The training loop: read `train` top to bottom.

for each update: stop? -> next batches -> forward/backward -> clip -> step -> log -> validate or save

A run directory (`seq2seq.rundir`) holds `config.yaml`, `metrics.jsonl`, `train.log` and `checkpoints/`.
`last.pt` holds everything needed to resume exactly (weights, optimizer, scheduler, every RNG, the data
position, the running loss, the length of `metrics.jsonl`); it is written atomically before the first
update, at every validation, every `train.save_every_minutes` and at the end. `train` on a run directory
with a `last.pt` resumes from it, and computes and logs the same as a run that never stopped: a kill
(even -9) loses at most the updates since the last save. SIGTERM, SIGUSR1 and the first Ctrl-C finish
the current update, save and stop with `stop_reason == "interrupted"` (the CLI exits with
`EXIT_INTERRUPTED`); a second Ctrl-C aborts at once (the last checkpoint stays loadable).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml

from seq2seq.checkpoint import Checkpoint, remove_stale_temporaries, rotate_checkpoints, save_checkpoint
from seq2seq.config import Config
from seq2seq.data import ParallelCorpus
from seq2seq.distributed import Distributed
from seq2seq.errors import Seq2SeqError
from seq2seq.evaluate import bleu
from seq2seq.model import Seq2Seq, build_model, count_parameters
from seq2seq.plot import plot_after_validation
from seq2seq.progress import TrainProgress
from seq2seq.rundir import RunFiles
from seq2seq.search import SearchOptions
from seq2seq.shortlist import corpus_shortlist
from seq2seq.tensorboard import Board, summary_writer_class
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

EXIT_INTERRUPTED = 75
"""Exit status of `seq2seq train` stopped by a signal or Ctrl-C after saving: resumable (EX_TEMPFAIL)."""

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
        "train.tensorboard",
        "train.threads",
        "train.keep_best",
        "train.keep_last",
        "train.save_every_minutes",
        "decode.beam",
        "decode.length_penalty",
        "decode.stop",
        "decode.max_len_a",
        "decode.max_len_b",
        "decode.min_len",
        "decode.batch_tokens",
        "decode.max_src_len",
    }
)


@dataclass
class TrainState:
    """Counters, data position, running loss and early-stopping state; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    """Batches of `epoch` already consumed (the data position to resume from; owned by `DataPosition`)."""
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
    """[score, file name in checkpoints/] of kept best checkpoints, best first."""
    last_checkpoints: list[str] = field(default_factory=list)
    """File names in checkpoints/ of the latest kept checkpoints, oldest first."""
    window_loss: float = 0.0
    """Summed loss since the last `train` record (so a resumed run logs the same averages)."""
    window_tokens: int = 0
    metrics_bytes: int | None = None
    """Length of metrics.jsonl when this state was saved; None in checkpoints older than this field."""
    stop_reason: str = ""

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainState:
        known = {f.name for f in dataclasses.fields(cls)}
        state = cls(**{k: v for k, v in values.items() if k in known})
        # runs written before paths became relative stored absolute paths: keep the names only
        state.best_checkpoints = [[score, Path(name).name] for score, name in state.best_checkpoints]
        state.last_checkpoints = [Path(name).name for name in state.last_checkpoints]
        state.stop_reason = ""
        return state


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_score: float | None
    metric: str
    steps: int
    stop_reason: str

    @property
    def interrupted(self) -> bool:
        return self.stop_reason == "interrupted"


def _config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose values differ. A key that `old` lacks (a run started by an older seq2seq, before the
    key existed) counts as its default, so upgrading seq2seq mid-run does not block the resume."""
    defaults = Config().to_dict()
    diffs = []
    for section, values in new.items():
        for key, value in values.items():
            before = old.get(section, {}).get(key, defaults.get(section, {}).get(key))
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
    with model.decoder.looked_up():  # a table of this update's weights (seq2seq.model.lookup)
        hyps = decode_ids(model, valid.src, opts, cfg.decode.batch_tokens, device)
    text = prepared.tokenizer.decode_tgt([h[0].tokens if h else [] for h in hyps])
    score = bleu(text, prepared.splits["valid"]["tgt"]).score
    model.train()
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "bleu": score}


class StopSignals:
    """SIGTERM, SIGUSR1 (sent by clusters before preemption) and the first SIGINT ask the loop to stop
    after the current update; a second SIGINT interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.requested = ""
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = self.requested or signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: signals are not ours to catch
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


class DataPosition:
    """The one owner of where training is in the data (`state.epoch`, `state.batch_in_epoch`): hands
    out groups of `accum_steps` length-bucketed batches, epoch after epoch, from that position on."""

    def __init__(
        self, corpus: ParallelCorpus, cfg: Config, state: TrainState, dist: Distributed | None = None
    ) -> None:
        self.corpus, self.cfg, self.state = corpus, cfg, state
        self.dist = dist or Distributed()
        self._epoch: tuple[int, list[np.ndarray]] = (-1, [])

    def batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches (arrays of example indices) of `epoch`; the same for a given seed, epoch
        and world size (see `seq2seq.distributed` for how ranks share them)."""
        if self._epoch[0] != epoch:
            budget = self.dist.batch_tokens(self.cfg.train.batch_tokens)
            self._epoch = (epoch, self.dist.shard(self.corpus.batches(budget, self.cfg.train.seed, epoch)))
        return self._epoch[1]

    @property
    def epoch_done(self) -> bool:
        return self.state.batch_in_epoch >= len(self.batches(self.state.epoch))

    @property
    def finished(self) -> bool:
        return self.state.epoch + int(self.epoch_done) >= self.cfg.train.max_epochs

    def next_group(self) -> list[np.ndarray]:
        s = self.state
        if self.epoch_done:
            s.epoch, s.batch_in_epoch = s.epoch + 1, 0
        group = self.batches(s.epoch)[s.batch_in_epoch : s.batch_in_epoch + self.cfg.train.accum_steps]
        s.batch_in_epoch += len(group)
        return group


@dataclass
class Run:
    """What the loop works on; `checkpoint` turns it into the file contents."""

    cfg: Config
    files: RunFiles
    model: Seq2Seq
    optimizer: torch.optim.Optimizer
    scheduler: Any
    tokenizer_state: dict[str, Any]
    state: TrainState
    dist: Distributed = field(default_factory=Distributed)
    board: Board | None = None
    """TensorBoard writer (`train.tensorboard`, rank 0 only)."""
    shortlist: dict[str, Any] | None = None
    """The training corpus's vocabulary shortlist (`seq2seq.shortlist`), stored in every checkpoint."""

    def record(self, values: dict[str, Any]) -> None:
        """One metrics.jsonl record, also to TensorBoard when it is on."""
        self.files.write_metrics(values)
        if self.board is not None:
            self.board.scalars(values)

    def checkpoint(self, resumable: bool, rng: dict[str, Any] | None = None) -> Checkpoint:
        self.state.metrics_bytes = self.files.metrics_bytes()
        if self.board is not None:
            self.board.flush()
        common = Checkpoint(
            config=self.cfg.to_dict(),
            model=self.model.state_dict(),
            tokenizer=self.tokenizer_state,
            train_state=dataclasses.asdict(self.state),
            shortlist=self.shortlist,
        )
        if not resumable:
            return common
        return dataclasses.replace(
            common,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            rng=rng or _rng_state(),
        )

    def save_last(self) -> None:
        """last.pt: call between updates only (the RNG state saved is that of the next update). Under
        torchrun every rank calls it: rank 0 writes every rank's RNG state into the one file."""
        ranks = self.dist.gather(_rng_state())
        if not self.dist.is_main:
            return
        rng = ranks[0]
        if self.dist.active:
            rng = {**ranks[0], "world_size": self.dist.world_size, "ranks": ranks}
        save_checkpoint(self.files.last, self.checkpoint(resumable=True, rng=rng))


def _stop_rule(run: Run, data: DataPosition, stop: StopSignals) -> str:
    """Why training stops before the next update ('' to go on)."""
    t, s = run.cfg.train, run.state
    if stop.requested:
        return "interrupted"
    if t.max_steps and s.step >= t.max_steps:
        return f"reached train.max_steps={t.max_steps}"
    if t.max_minutes and s.wall_seconds >= 60 * t.max_minutes:
        return f"reached train.max_minutes={t.max_minutes}"
    if data.finished:
        return f"reached train.max_epochs={t.max_epochs}"
    return ""


def _validation_due(run: Run, data: DataPosition, seconds_since_tick: float) -> bool:
    """Every `valid_every` updates, at each epoch's end, and before a step or time limit stops the run."""
    t, s = run.cfg.train, run.state
    last_step = bool(t.max_steps) and s.step >= t.max_steps
    out_of_time = bool(t.max_minutes) and s.wall_seconds + seconds_since_tick >= 60 * t.max_minutes
    return s.step % t.valid_every == 0 or data.epoch_done or last_step or out_of_time


def _record_validation(run: Run, scores: dict[str, float]) -> bool:
    """Early-stopping bookkeeping of one validation; True when the score is the best so far."""
    t, s = run.cfg.train, run.state
    metric = scores[t.valid_metric]
    better = s.best_score is None or (
        metric > s.best_score if t.valid_metric == "bleu" else metric < s.best_score
    )
    if better:
        s.best_score, s.best_step, s.bad_validations = metric, s.step, 0
    else:
        s.bad_validations += 1
    if isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        run.scheduler.step(metric)
    return better


def _keep_checkpoints(run: Run, score: float, better: bool) -> None:
    """best.pt is the best so far; step-N.pt files keep the best `keep_best` and last `keep_last`."""
    t, s = run.cfg.train, run.state
    if t.keep_best + t.keep_last:
        name = f"step-{s.step}.pt"
        save_checkpoint(run.files.checkpoints / name, run.checkpoint(resumable=False))
        s.best_checkpoints, s.last_checkpoints = rotate_checkpoints(
            run.files.checkpoints, s.best_checkpoints, s.last_checkpoints, name, score,
            t.valid_metric == "bleu", t.keep_best, t.keep_last,
        )  # fmt: skip
    if better:
        save_checkpoint(run.files.best, run.checkpoint(resumable=False))


def _validate_and_save(
    run: Run, prepared: Prepared, valid: ParallelCorpus, progress: TrainProgress
) -> tuple[bool, float]:
    """Validate, write the checkpoints, then the record (the caller then writes last.pt); returns
    (patience ran out, the score).

    A checkpoint that cannot be written is an error before the record is written; a record written
    before a kill is dropped on resume (metrics.jsonl is cut back to the length saved in last.pt)."""
    t, s = run.cfg.train, run.state
    scores = validate(run.model, prepared, valid, run.cfg, next(run.model.parameters()).device)
    better = _record_validation(run, scores)
    _keep_checkpoints(run, scores[t.valid_metric], better)
    record = {"type": "valid", "step": s.step, "epoch": s.epoch + 1, "minutes": round(s.wall_seconds / 60, 3),
              **{k: round(v, 4) for k, v in scores.items()}, "best": better}  # fmt: skip
    run.record(record)
    progress.message(
        f"valid @ {s.step}: loss {scores['loss']:.3f} ppl {scores['ppl']:.2f} "
        f"BLEU {scores['bleu']:.2f}{' (best)' if better else ''}"
    )
    run.files.write_log(f"valid step {s.step}: {json.dumps(record)}")
    plot_after_validation(run.files.dir)
    if run.board is not None:
        run.board.attention(run.model, prepared.tokenizer, valid.src, run.cfg.decode, s.step)
    return bool(t.patience) and s.bad_validations >= t.patience, scores[t.valid_metric]


def _validate_on_main(run: Run, prepared: Prepared, valid: ParallelCorpus, progress: TrainProgress) -> bool:
    """Rank 0 validates and writes the checkpoints while the others wait; every rank then steps a
    plateau schedule with the same score and writes (rank 0) last.pt. True when patience runs out."""
    out = [0.0, 0.0]
    if run.dist.is_main:
        ran_out, score = _validate_and_save(run, prepared, valid, progress)
        out = [float(ran_out), score]
    patience_out, score = run.dist.from_main(out)
    if not run.dist.is_main and isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        run.scheduler.step(score)
    run.save_last()
    return bool(patience_out)


def _skip_nonfinite(run: Run, progress: TrainProgress) -> None:
    s = run.state
    s.nonfinite_in_row += 1
    s.nonfinite_total += 1
    run.optimizer.zero_grad(set_to_none=True)
    progress.message(
        f"warning: non-finite loss at update {s.step + 1}; skipped "
        f"({s.nonfinite_in_row} in a row, {s.nonfinite_total} in all)"
    )
    if s.nonfinite_in_row >= run.cfg.train.max_bad_steps:
        raise Seq2SeqError(
            f"{s.nonfinite_in_row} non-finite losses in a row at update {s.step}: lower train.lr or "
            f"train.clip_norm; the last good checkpoint is {run.files.last}"
        )


def _train_record(run: Run, grad_norm: float, sampling: float, tokens_per_s: float) -> dict[str, Any]:
    s = run.state
    record = {"type": "train", "step": s.step, "epoch": s.epoch + 1,
              "loss": round(s.window_loss / max(1, s.window_tokens), 4),
              "lr": run.optimizer.param_groups[0]["lr"], "grad_norm": round(grad_norm, 4),
              "teacher_forcing": round(1.0 - sampling, 4), "tgt_tokens_per_s": round(tokens_per_s, 1),
              "minutes": round(s.wall_seconds / 60, 3)}  # fmt: skip
    s.window_loss, s.window_tokens = 0.0, 0
    return record


def _resume_point(files: RunFiles, cfg: Config, restart: bool) -> Checkpoint | None:
    """The last.pt to resume from; None to start afresh. Refuses a run it cannot resume."""
    if restart:
        files.clear()
        return None
    if not files.last.is_file():
        if files.progress():
            raise Seq2SeqError(
                f"{files.dir} holds a run ({files.progress()}) but no checkpoints/last.pt to resume from; "
                "pass --restart to start over in it, or choose another --out"
            )
        return None
    ckpt = Checkpoint.load(files.last)
    if not ckpt.resumable:
        raise Seq2SeqError(f"{files.last}: holds no optimizer/RNG state to resume from; pass --restart")
    diffs = _config_diff(ckpt.config, cfg.to_dict())
    if diffs:
        raise Seq2SeqError(
            f"{files.dir} was trained with another config ({'; '.join(diffs[:3])}); resume with the "
            "same recipe, pass --restart to start over, or choose another --out"
        )
    return ckpt


def _setup(
    cfg: Config, files: RunFiles, prepared: Prepared, resume: Checkpoint | None, dist: Distributed
) -> Run:
    """Model, optimizer and scheduler, fresh from the seed or restored from `resume`."""
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    random.seed(t.seed)
    np.random.seed(t.seed)
    tok = prepared.tokenizer
    device = dist.device(resolve_device(t.device))
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size).to(device)
    if dist.active:  # the same initial weights everywhere, each rank its own dropout masks
        torch.manual_seed(t.seed + 1000 * dist.rank)
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer)
    run = Run(cfg, files, model, optimizer, scheduler, tok.state(), TrainState(), dist)
    if resume is not None:
        assert resume.optimizer is not None and resume.rng is not None
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        run.state = TrainState.from_dict(resume.train_state)
        dist.check_resumable(int(resume.rng.get("world_size", 1)), files.dir)
        _set_rng_state(resume.rng["ranks"][dist.rank] if dist.active else resume.rng)
        if run.state.metrics_bytes is not None and dist.is_main:
            files.truncate_metrics(run.state.metrics_bytes)
    if cfg.train.tensorboard and dist.is_main:
        run.board = Board(files.dir, resumed_step=None if resume is None else run.state.step)
    return run


def train(
    cfg: Config,
    run_dir: Path,
    data_dir: Path | None = None,
    restart: bool = False,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
) -> TrainResult:
    """Train (or resume) a model in `run_dir`; preprocesses the corpus first if needed.

    Under torchrun (RANK and WORLD_SIZE set) this process is one rank of a data-parallel job: see
    `seq2seq.distributed`. Rank 0 holds the run lock and writes every file."""
    if cfg.train.tensorboard:
        summary_writer_class()  # a missing package is an error before any work
    files = RunFiles(Path(run_dir))
    dist = Distributed.from_env(resolve_device(cfg.train.device))
    try:
        with files.lock() if dist.is_main else contextlib.nullcontext():
            return _train(
                cfg, files, Path(data_dir) if data_dir else files.dir / "data", restart,
                log if dist.is_main else _quiet, show_progress and dist.is_main, dist,
            )  # fmt: skip
    finally:
        dist.close()


def _quiet(line: str) -> None:
    pass


def _train(
    cfg: Config,
    files: RunFiles,
    data_dir: Path,
    restart: bool,
    log: Callable[[str], None],
    show_progress: bool,
    dist: Distributed,
) -> TrainResult:
    def say(line: str) -> None:
        if dist.is_main:
            log(line)
            files.write_log(line)

    from seq2seq.data import load_prepared, preprocess, report_table  # these import `datasets`

    if dist.is_main:  # the others wait until rank 0 has cleared (--restart) and preprocessed
        resume = _resume_point(files, cfg, restart)
        for tmp in remove_stale_temporaries(files.checkpoints):
            say(f"removed {tmp}, left by a run killed while saving")
        result = preprocess(cfg, data_dir, log=say)
        if not result.cached:
            say("cleaning report:\n" + report_table(result.manifest))
    dist.barrier()
    if not dist.is_main:
        resume = _resume_point(files, cfg, restart=False)
    prepared = load_prepared(data_dir)
    if "valid" not in prepared.splits:
        raise Seq2SeqError("data.valid: training needs a validation set (a path prefix in the recipe)")
    train_data = ParallelCorpus.from_dataset(prepared.splits["train"])
    valid_data = ParallelCorpus.from_dataset(prepared.splits["valid"])
    run = _setup(cfg, files, prepared, resume, dist)
    if dist.is_main:  # decoding's vocabulary shortlist (seq2seq.shortlist), stored in every checkpoint
        run.shortlist = corpus_shortlist(train_data, prepared.tokenizer, cfg.decode).state()
    model, state, t = run.model, run.state, cfg.train
    update_model = dist.wrap(model)
    device = next(model.parameters()).device
    if resume is not None:
        say(
            f"resuming {files.dir} at update {state.step} "
            f"(epoch {state.epoch + 1}, batch {state.batch_in_epoch})"
        )
    else:
        if dist.is_main:
            files.config.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
        processes = f" x {dist.world_size} processes" if dist.active else ""
        say(f"training {count_parameters(model):,} parameters on {device}{processes}; "
            f"{len(train_data):,} training pairs; run directory {files.dir}")  # fmt: skip
        run.save_last()
    data = DataPosition(train_data, cfg, state, dist)
    first_epoch = data.batches(0)
    say(f"{len(first_epoch)} batches per epoch, {sum(map(len, first_epoch)) / len(first_epoch):.1f} "
        f"sentences a batch on average, {train_data.padding_fraction(first_epoch):.1%} padding")  # fmt: skip
    progress = TrainProgress(cfg, len(first_epoch), enabled=show_progress, say=log)
    if dist.active:
        say(f"rank 0 of {dist.world_size}: each update is {dist.world_size} x {t.accum_steps} batches of "
            f"up to {dist.batch_tokens(t.batch_tokens)} tokens")  # fmt: skip
    model.train()
    speed_tokens, speed_start = 0, time.perf_counter()
    with StopSignals() as stop, progress:
        progress.update(state)
        last_tick = last_save = time.perf_counter()
        while True:
            now = time.perf_counter()
            state.wall_seconds, last_tick = state.wall_seconds + now - last_tick, now
            # every rank stops together: on a signal any rank got, or by rank 0's clock
            asked, wall = dist.max([float(bool(stop.requested)), state.wall_seconds if dist.is_main else 0.0])
            state.wall_seconds = wall
            if asked and not stop.requested:
                stop.requested = "a signal to another rank"
            state.stop_reason = _stop_rule(run, data, stop)
            if state.stop_reason:
                break
            batches = [train_data.batch(idx).to(device) for idx in data.next_group()]
            sampling = 1.0 - teacher_forcing_ratio(cfg, state.step)
            n_tokens = int(dist.sum([sum(b.n_tgt_tokens for b in batches)])[0])
            loss_sum, _ = accumulate_gradients(
                update_model, batches, t.label_smoothing, sampling, device, t.bf16,
                normaliser=n_tokens / dist.world_size,  # DDP averages the ranks' gradients
            )  # fmt: skip
            loss_sum = dist.sum([loss_sum])[0]
            if not math.isfinite(loss_sum):
                _skip_nonfinite(run, progress)
                continue
            state.nonfinite_in_row = 0
            grad_norm = clip_and_step(model, run.optimizer, cfg)
            if not isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                run.scheduler.step()
            state.step += 1
            state.tgt_tokens += n_tokens
            state.train_seconds += time.perf_counter() - now
            state.window_loss += loss_sum
            state.window_tokens += n_tokens
            speed_tokens += n_tokens
            if state.step % t.log_every == 0 and dist.is_main:
                speed = speed_tokens / (time.perf_counter() - speed_start)
                run.record(_train_record(run, grad_norm, sampling, speed))
                speed_tokens, speed_start = 0, time.perf_counter()
            lr = run.optimizer.param_groups[0]["lr"]
            progress.update(state, loss=loss_sum / max(1, n_tokens), lr=lr, tokens=n_tokens)
            due = _validation_due(run, data, time.perf_counter() - last_tick)
            save_due = (
                bool(t.save_every_minutes) and time.perf_counter() - last_save >= 60 * t.save_every_minutes
            )
            agreed = dist.from_main([float(due), float(save_due)])
            if agreed[0]:
                last_save = time.perf_counter()
                if _validate_on_main(run, prepared, valid_data, progress):
                    state.stop_reason = f"no improvement in {t.patience} validations"
                    break
            elif agreed[1]:
                run.save_last()
                last_save = time.perf_counter()
        never_validated = state.best_score is None and state.step > 0 and state.stop_reason != "interrupted"
        if dist.from_main([float(never_validated)])[0]:
            _validate_on_main(run, prepared, valid_data, progress)
        else:
            run.save_last()
    if run.board is not None:
        run.board.close()

    if state.stop_reason == "interrupted":
        say(f"interrupted ({stop.requested}) at update {state.step}; saved {files.last}. Resume with the "
            f"same command (seq2seq train ... --out {files.dir})")  # fmt: skip
    best = files.best if files.best.exists() else files.last
    scored = "no validation yet"
    if state.best_score is not None:
        scored = f"best valid {t.valid_metric} {state.best_score:.2f} at update {state.best_step}: {best}"
    say(f"done: {state.step} updates in {state.wall_seconds / 60:.1f} min ({state.stop_reason}); {scored}")
    return TrainResult(
        files.dir, best, files.last, state.best_score, t.valid_metric, state.step, state.stop_reason
    )

"""Self-contained checkpoints, written atomically and loaded without running code.

A checkpoint holds the resolved config, the weights, the SentencePiece model bytes and (for resuming)
the optimizer, scheduler, RNG and data-position state, so `translate` and `eval` need this one file.
Files are written to a temporary name in the same directory, flushed to disk, then renamed over the
old one: a crash mid-write leaves the previous checkpoint intact. Loading uses
`torch.load(weights_only=True)`, which refuses anything but tensors and plain Python data.
"""

from __future__ import annotations

import errno
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seq2seq.config import Config, config_from_dict
from seq2seq.errors import Seq2SeqError
from seq2seq.model import Seq2Seq, build_model
from seq2seq.tokenizer import Tokenizer

FORMAT = "seq2seq-checkpoint"
VERSION = 1


TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class Checkpoint:
    """What a run's checkpoint holds. `best.pt` and `step-N.pt` carry the model part (enough to
    translate); `last.pt` adds the optimizer, scheduler and RNG state needed to resume exactly."""

    config: dict[str, Any]
    model: dict[str, torch.Tensor]
    tokenizer: dict[str, Any]
    train_state: dict[str, Any]
    """`seq2seq.train.TrainState` as a dict: counters, data position, early stopping, kept files."""
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = field(default=None)
    shortlist: dict[str, Any] | None = None
    """`seq2seq.shortlist.Shortlist.state()`: the vocabulary shortlist of decoding (absent in older files)."""

    @property
    def resumable(self) -> bool:
        return self.optimizer is not None and self.scheduler is not None and self.rng is not None

    def payload(self) -> dict[str, Any]:
        """The dict written to disk (model-only checkpoints leave the resume keys out)."""
        out: dict[str, Any] = {
            "config": self.config,
            "model": self.model,
            "tokenizer": self.tokenizer,
            "train_state": self.train_state,
        }
        if self.shortlist is not None:
            out["shortlist"] = self.shortlist
        if self.resumable:
            out |= {"optimizer": self.optimizer, "scheduler": self.scheduler, "rng": self.rng}
        return out

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """A checkpoint of a run; one-line error naming the file when it lacks a part."""
        payload = load_checkpoint(path)
        check_model_entries(path, payload)
        try:
            return cls(
                config=payload["config"],
                model=payload["model"],
                tokenizer=payload["tokenizer"],
                train_state=payload["train_state"],
                optimizer=payload.get("optimizer"),
                scheduler=payload.get("scheduler"),
                rng=payload.get("rng"),
                shortlist=payload.get("shortlist"),
            )
        except KeyError as exc:
            raise Seq2SeqError(f"{path}: damaged checkpoint (no {exc.args[0]!r} entry)") from None


def save_checkpoint(path: Path, payload: dict[str, Any] | Checkpoint) -> None:
    """Atomically write `payload` (plus format tags) to `path`.

    The bytes go to a temporary file in the same directory, are flushed to disk, then renamed over
    `path`: whatever stops the process, `path` is the old or the new checkpoint, never a partial one.
    A failed write (full disk, read-only directory) removes the temporary file and is a one-line
    `Seq2SeqError` naming `path`.
    """
    path = Path(path)
    if isinstance(payload, Checkpoint):
        payload = payload.payload()
    tmp_name = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        if tmp_name:
            Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError | RuntimeError) and _os_error(exc) is not None:
            raise Seq2SeqError(f"{path}: could not write the checkpoint ({_os_error(exc)})") from None
        raise


def _os_error(exc: BaseException) -> str | None:
    """The reason of a failed write: OSError's text, or torch's wrapping of one (RuntimeError)."""
    if isinstance(exc, OSError):
        hint = "; free some disk space and run again" if exc.errno == errno.ENOSPC else ""
        return f"{exc.strerror or exc}{hint}"
    text = str(exc)
    if "No space left on device" in text or "write failed" in text:
        return f"{text.splitlines()[0][:160]}; free some disk space and run again"
    return None


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files a killed `save_checkpoint` left in `directory`; the removed paths.

    Call only while holding the run's lock: another process's temporary file is not stale.
    """
    directory = Path(directory)
    stale = sorted(directory.glob(f".*.pt.*{TMP_SUFFIX}")) if directory.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def rotate_checkpoints(
    directory: Path,
    best: list[list[Any]],
    last: list[str],
    new: str,
    score: float,
    higher_is_better: bool,
    keep_best: int,
    keep_last: int,
) -> tuple[list[list[Any]], list[str]]:
    """Register the new `step-N.pt` file `new` and delete those neither among the best `keep_best`
    nor the latest `keep_last`. Names are relative to `directory` (a copied run stays self-contained);
    `best` is [[score, name], ...] best first. Returns the new (best, last) lists."""
    best = sorted([*best, [score, new]], key=lambda x: -x[0] if higher_is_better else x[0])
    last = [*last, new]
    keep = {name for _, name in best[:keep_best]} | set(last[len(last) - keep_last :] if keep_last else [])
    for name in {name for _, name in best} | set(last):
        if name not in keep:
            (directory / name).unlink(missing_ok=True)
    return [x for x in best if x[1] in keep], [name for name in last if name in keep]


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents; anything that is not a seq2seq checkpoint is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise Seq2SeqError(
            f"{path}: checkpoint not found" + (" (it is a directory)" if path.is_dir() else "")
        )
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles before refusing them
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to unpickle means "not a checkpoint", never code to run
        raise Seq2SeqError(
            f"{path}: not a loadable seq2seq checkpoint ({type(exc).__name__}: the file is damaged or was "
            "not written by seq2seq train); pass a .pt file from a run's checkpoints/ directory"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise Seq2SeqError(f"{path}: not a seq2seq checkpoint; pass a .pt file written by seq2seq train")
    if payload.get("version") != VERSION:
        raise Seq2SeqError(
            f"{path}: checkpoint format {payload.get('version')} is not supported "
            f"(this seq2seq reads version {VERSION})"
        )
    return payload


def check_model_entries(path: Path, payload: dict[str, Any]) -> None:
    """The entries a model needs (`config`, `tokenizer`, `model`) are there and are mappings."""
    for entry in ("config", "tokenizer", "model"):
        if not isinstance(payload.get(entry), dict):
            found = "missing" if entry not in payload else f"{type(payload[entry]).__name__}, not a mapping"
            raise Seq2SeqError(
                f"{path}: not a loadable seq2seq checkpoint (its '{entry}' entry is {found}); "
                "pass a .pt file from a run's checkpoints/ directory"
            )


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[Seq2Seq, Tokenizer, Config]:
    """Model (in eval mode, on `device`), tokenizer and config from a checkpoint."""
    payload = load_checkpoint(path)
    check_model_entries(path, payload)
    try:
        cfg = config_from_dict(payload["config"], f"{path} (config)")
        tokenizer = Tokenizer.from_state(payload["tokenizer"], f"{path} (tokenizer)")
        model = build_model(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())  # torch's state_dict errors span lines; the first says little
        raise Seq2SeqError(f"{path}: damaged checkpoint ({reason[:200]})") from None
    return model.to(device).eval(), tokenizer, cfg


def _check_same_weights(paths: list[Path], payloads: list[dict[str, Any]]) -> None:
    """Every checkpoint holds tensors of the same names and shapes as the last one."""
    for path, payload in zip(paths, payloads, strict=True):
        for name, tensor in payload["model"].items():
            if not isinstance(tensor, torch.Tensor):
                raise Seq2SeqError(f"{path}: damaged checkpoint (weight {name!r} is not a tensor)")
    reference = payloads[-1]["model"]
    for path, payload in zip(paths, payloads, strict=True):
        weights = payload["model"]
        for name in sorted(reference.keys() ^ weights.keys()):
            raise Seq2SeqError(
                f"{path} and {paths[-1]} hold different weights ({name!r} is in one only); "
                "average one run's checkpoints"
            )
        for name, tensor in reference.items():
            if weights[name].shape != tensor.shape:
                raise Seq2SeqError(
                    f"{path}: weight {name!r} has shape {tuple(weights[name].shape)}, "
                    f"{tuple(tensor.shape)} in {paths[-1]}; average one run's checkpoints"
                )


def average_checkpoints(paths: list[Path]) -> dict[str, Any]:
    """The element-wise mean of the weights of several checkpoints of one run.

    The config and tokenizer come from the last path; every checkpoint must have the same config.
    Integer tensors (none in our models, but buffers could be) are taken from the last checkpoint.
    """
    if not paths:
        raise Seq2SeqError("average: give at least one checkpoint")
    payloads = [load_checkpoint(p) for p in paths]
    for path, payload in zip(paths, payloads, strict=True):
        check_model_entries(path, payload)
    last = payloads[-1]
    for path, payload in zip(paths, payloads, strict=True):
        if payload.get("config") != last.get("config"):
            raise Seq2SeqError(
                f"{path}: trained with another config than {paths[-1]}; average one run's checkpoints"
            )
    _check_same_weights(paths, payloads)
    averaged: dict[str, torch.Tensor] = {}
    for name, tensor in last["model"].items():
        if tensor.is_floating_point():
            total = torch.zeros_like(tensor, dtype=torch.float64)
            for payload in payloads:
                total += payload["model"][name].to(torch.float64)
            averaged[name] = (total / len(payloads)).to(tensor.dtype)
        else:
            averaged[name] = tensor
    return {"config": last["config"], "model": averaged, "tokenizer": last["tokenizer"],
            "averaged": [str(p) for p in paths],
            **({"shortlist": last["shortlist"]} if "shortlist" in last else {})}  # fmt: skip

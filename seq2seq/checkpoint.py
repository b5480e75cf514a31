"""Self-contained checkpoints, written atomically and loaded without running code.

A checkpoint holds the resolved config, the weights, the SentencePiece model bytes and (for resuming)
the optimizer, scheduler, RNG and data-position state, so `translate` and `eval` need this one file.
Files are written to a temporary name in the same directory, flushed to disk, then renamed over the
old one: a crash mid-write leaves the previous checkpoint intact. Loading uses
`torch.load(weights_only=True)`, which refuses anything but tensors and plain Python data.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from seq2seq.config import Config, config_from_dict
from seq2seq.errors import Seq2SeqError
from seq2seq.model import Seq2Seq, build_model
from seq2seq.tokenizer import Tokenizer

FORMAT = "seq2seq-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomically write `payload` (plus format tags) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


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
            "averaged": [str(p) for p in paths]}  # fmt: skip

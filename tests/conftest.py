"""Shared fixtures: a tiny recipe on the built-in corpus and one model trained on it per test session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from seq2seq.config import Config, config_from_dict
from seq2seq.train import TrainResult, train

TINY: dict[str, Any] = {
    "data": {"format": "builtin", "builtin_train_size": 1500, "builtin_eval_size": 40},
    "tokenizer": {"vocab_size": 48, "split_digits": True},
    "model": {
        "emb_size": 16,
        "enc_hidden": 16,
        "dec_hidden": 32,
        "dropout": 0.1,
        "emb_dropout": 0.1,
        "out_dropout": 0.1,
    },
    "train": {
        "batch_tokens": 400,
        "lr": 0.005,
        "max_epochs": 2,
        "max_steps": 40,
        "valid_every": 20,
        "log_every": 5,
        "threads": 1,
    },
    "decode": {"beam": 3},
}


def tiny_config(**sections: dict[str, Any]) -> Config:
    """The tiny recipe with some keys changed, e.g. tiny_config(train={"max_steps": 10})."""
    raw = {name: dict(values) for name, values in TINY.items()}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw, "tiny")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A small model trained once for the whole session (a few seconds)."""
    run = tmp_path_factory.mktemp("run") / "tiny"
    return train(tiny_config(), run, log=lambda line: None, show_progress=False)


@pytest.fixture(scope="session")
def checkpoint(trained: TrainResult) -> Path:
    return trained.best_checkpoint


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` run where CUDA is available and are skipped, with the reason, elsewhere."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

"""Exported models: no pickle, and they translate exactly as their checkpoint does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seq2seq import Seq2SeqError, Translator
from seq2seq.cli import app
from seq2seq.export import export_model

pytest.importorskip("safetensors")
SENTENCES = ["4721", "", "12", "300000", "99", "7"]


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_model(checkpoint, tmp_path_factory.mktemp("export") / "model")


def test_folder_holds_no_pickle(exported: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "shortlist.safetensors",
        "spm.model",
    ]
    assert json.loads((exported / "config.json").read_text())["decode"]["beam"] == 3
    card = (exported / "README.md").read_text(encoding="utf-8")
    assert "parameters" in card and "nrefs:1|case:mixed" in card and "seq2seq train" in card


def test_the_folder_carries_the_checkpoints_shortlist(checkpoint: Path, exported: Path) -> None:
    from seq2seq.shortlist import load_shortlist

    stored, carried = load_shortlist(checkpoint), load_shortlist(exported)
    assert stored is not None and carried is not None
    assert torch.equal(stored.candidates, carried.candidates) and torch.equal(
        stored.frequent, carried.frequent
    )
    assert stored.tgt_vocab == carried.tgt_vocab


@pytest.mark.parametrize("beam", [1, 3])
def test_round_trip_translates_as_the_checkpoint(checkpoint: Path, exported: Path, beam: int) -> None:
    original = Translator.from_checkpoint(checkpoint, device="cpu")
    loaded = Translator.from_pretrained(exported, device="cpu")
    assert loaded.cfg == original.cfg
    assert loaded.translate(SENTENCES, beam=beam) == original.translate(SENTENCES, beam=beam)
    a = original.translate_batch(SENTENCES, original.options(beam=beam))
    b = loaded.translate_batch(SENTENCES, loaded.options(beam=beam))
    assert [c.score for t in a for c in t.candidates] == [c.score for t in b for c in t.candidates]


def test_cli_export_and_translate_from_the_folder(checkpoint: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "shared"
    result = runner.invoke(app, ["export", str(checkpoint), str(out)])
    assert result.exit_code == 0, result.output
    lines = "4721\n\n12\n"
    from_dir = runner.invoke(app, ["translate", "--model", str(out), "--beam", "2"], input=lines)
    from_ckpt = runner.invoke(app, ["translate", "--model", str(checkpoint), "--beam", "2"], input=lines)
    assert from_dir.exit_code == 0, from_dir.output
    assert from_dir.stdout == from_ckpt.stdout and len(from_dir.stdout.splitlines()) == 3


def test_a_folder_that_is_not_an_export_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="not an exported model"):
        Translator.from_pretrained(tmp_path, device="cpu")

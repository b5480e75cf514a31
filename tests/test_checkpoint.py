import os
import pickle
from pathlib import Path

import pytest
import torch

from seq2seq.checkpoint import average_checkpoints, load_checkpoint, load_model, save_checkpoint
from seq2seq.errors import Seq2SeqError


class Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("echo pwned > /dev/null",))


def test_roundtrip(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.ones(2)}, "blob": b"\x00spm"})
    payload = load_checkpoint(tmp_path / "c.pt")
    assert payload["blob"] == b"\x00spm" and torch.equal(payload["model"]["w"], torch.ones(2))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a loadable seq2seq checkpoint"),
        (b"garbage\n", "not a loadable seq2seq checkpoint"),
        (pickle.dumps(Evil()), "not a loadable seq2seq checkpoint"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(Seq2SeqError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_code_in_a_checkpoint_never_runs(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "seq2seq-checkpoint", "version": 1, "x": Evil()}, path)
    with pytest.raises(Seq2SeqError):
        load_checkpoint(path)


def test_other_torch_files_are_refused(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(Seq2SeqError, match="not a seq2seq checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(Seq2SeqError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"v": 1})

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # a kill in the middle of writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"v": 2})
    assert load_checkpoint(path)["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


def test_truncated_checkpoint(tmp_path: Path, checkpoint: Path) -> None:
    cut = tmp_path / "cut.pt"
    cut.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(Seq2SeqError, match="not a loadable"):
        load_model(cut)
    model, tokenizer, _ = load_model(checkpoint)
    assert not model.training and tokenizer.tgt_vocab_size == model.tgt_vocab


def test_average_checkpoints(tmp_path: Path) -> None:
    config = {"model": {}}
    for i, value in enumerate((1.0, 2.0, 6.0)):
        weights = {"w": torch.full((2,), value), "n": torch.tensor([i])}
        save_checkpoint(tmp_path / f"{i}.pt", {"config": config, "tokenizer": {}, "model": weights})
    averaged = average_checkpoints([tmp_path / f"{i}.pt" for i in range(3)])
    assert torch.equal(averaged["model"]["w"], torch.full((2,), 3.0))
    assert torch.equal(averaged["model"]["n"], torch.tensor([2]))
    save_checkpoint(tmp_path / "other.pt", {"config": {"model": {"x": 1}}, "tokenizer": {}, "model": {}})
    with pytest.raises(Seq2SeqError, match="another config"):
        average_checkpoints([tmp_path / "0.pt", tmp_path / "other.pt"])


@pytest.mark.parametrize(
    ("first", "message"),
    [
        ({"model": {"w": torch.zeros(3)}}, "{d}/0.pt: weight 'w' has shape (3,), (2,) in {d}/1.pt"),
        (
            {"model": {"v": torch.zeros(2)}},
            "{d}/0.pt and {d}/1.pt hold different weights ('v' is in one only)",
        ),
        ({"model": {"w": "x"}}, "{d}/0.pt: damaged checkpoint (weight 'w' is not a tensor)"),
        ({"model": None}, "{d}/0.pt: not a loadable seq2seq checkpoint (its 'model' entry is NoneType"),
        (
            {"tokenizer": None},
            "{d}/0.pt: not a loadable seq2seq checkpoint (its 'tokenizer' entry is NoneType",
        ),
    ],
)
def test_averaging_mismatched_checkpoints_names_them(
    tmp_path: Path, first: dict[str, object], message: str
) -> None:
    good = {"config": {"model": {}}, "tokenizer": {}, "model": {"w": torch.zeros(2)}}
    save_checkpoint(tmp_path / "0.pt", {**good, **first})
    save_checkpoint(tmp_path / "1.pt", good)
    with pytest.raises(Seq2SeqError, match=None) as info:
        average_checkpoints([tmp_path / "0.pt", tmp_path / "1.pt"])
    assert str(info.value).startswith(message.format(d=tmp_path))


def test_averaged_model_translates(tmp_path: Path, trained) -> None:
    from typer.testing import CliRunner

    from seq2seq.cli import app

    steps = sorted(trained.run_dir.glob("checkpoints/step-*.pt"))
    out = tmp_path / "avg.pt"
    result = CliRunner().invoke(
        app, ["average", *map(str, steps), str(trained.best_checkpoint), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    model, _, _ = load_model(out)
    assert not model.training

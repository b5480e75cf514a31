"""Learning curves: a PNG of every panel for one or several runs; train redraws it at each validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seq2seq import Seq2SeqError
from seq2seq.cli import app
from seq2seq.plot import PLOT_NAME, plot_runs, read_metrics
from seq2seq.train import TrainResult

pytest.importorskip("matplotlib")
PNG = b"\x89PNG\r\n\x1a\n"


def fake_run(path: Path, scale: float) -> Path:
    path.mkdir(parents=True)
    records = [{"type": "train", "step": s, "loss": scale / s, "lr": 0.001 * min(1, s / 20), "minutes": s}
               for s in range(5, 60, 5)]  # fmt: skip
    records += [{"type": "valid", "step": s, "minutes": s / 10, "loss": scale / s, "bleu": s / scale}
                for s in (20, 40, 60)]  # fmt: skip
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_read_metrics_splits_train_and_valid(tmp_path: Path) -> None:
    train, valid = read_metrics(fake_run(tmp_path / "a", 2.0))
    assert [r["step"] for r in valid] == [20, 40, 60] and len(train) == 11


def test_plot_several_runs_writes_a_png(tmp_path: Path) -> None:
    out = plot_runs([fake_run(tmp_path / "a", 2.0), fake_run(tmp_path / "b", 3.0)], tmp_path / "p" / "c.png")
    data = out.read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 640)  # 15 x 8 inches at 80 dpi


def test_missing_metrics_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="metrics.jsonl: not found"):
        plot_runs([tmp_path], tmp_path / "c.png")
    result = CliRunner().invoke(app, ["plot", str(tmp_path), "-o", str(tmp_path / "c.png")])
    assert result.exit_code == 2 and "not found" in result.stderr


def test_train_draws_the_curves_of_its_run(trained: TrainResult) -> None:
    png = trained.best_checkpoint.parent.parent / PLOT_NAME
    assert png.read_bytes().startswith(PNG)


def test_cli_plot(tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    result = CliRunner().invoke(app, ["plot", str(fake_run(tmp_path / "a", 2.0)), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(PNG) and str(out) in result.stdout


def test_a_failed_write_names_the_png_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_outputs import fill_disk

    out = tmp_path / "out" / "curves.png"
    out.parent.mkdir()
    out.write_bytes(b"old")
    fill_disk(monkeypatch, room=1)  # the PNG is written in several pieces: fail after the first
    result = CliRunner().invoke(app, ["plot", str(fake_run(tmp_path / "a", 2.0)), "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: {out}: No space left on device"
    assert out.read_bytes() == b"old" and [p.name for p in out.parent.iterdir()] == ["curves.png"]


def test_an_output_that_is_an_input_is_refused_before_reading(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "a", 2.0)
    (run / "metrics.jsonl").write_text("not json\n")  # read first, it would be a 'not a JSON line' error
    before = (run / "metrics.jsonl").read_bytes()
    result = CliRunner().invoke(app, ["plot", str(run), "-o", str(run / "metrics.jsonl")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: --output {run / 'metrics.jsonl'}: is the input file {run / 'metrics.jsonl'}; "
        "write the output to another file"
    )
    assert (run / "metrics.jsonl").read_bytes() == before

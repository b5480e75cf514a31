"""TensorBoard: event files hold metrics.jsonl's scalars and attention images; a resume drops newer events."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from seq2seq.cli import app
from seq2seq.data import preprocess
from seq2seq.errors import Seq2SeqError
from seq2seq.tensorboard import ATTENTION_SENTENCES, MISSING, SCALARS, Board, event_files
from seq2seq.train import train
from tests.conftest import TINY, tiny_config

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

QUIET: dict[str, Any] = {"log": lambda line: None, "show_progress": False}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    preprocess(tiny_config(), out, log=lambda line: None)
    return out


def board_config(max_steps: int) -> Any:
    return tiny_config(train={"max_steps": max_steps, "valid_every": 10, "log_every": 5, "tensorboard": True})


def metrics_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} of the run's metrics.jsonl, as the board should have written them."""
    out: dict[str, list[tuple[int, float]]] = {}
    for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for name in SCALARS[record["type"]]:
            out.setdefault(f"{record['type']}/{name}", []).append((record["step"], float(record[name])))
    return out


def read_board(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def board_scalars(events: EventAccumulator) -> dict[str, list[tuple[int, float]]]:
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def assert_same_scalars(run: Path) -> None:
    expected, found = metrics_scalars(run), board_scalars(read_board(run))
    assert sorted(found) == sorted(expected)
    for tag, points in expected.items():
        assert [s for s, _ in found[tag]] == [s for s, _ in points], tag
        assert [v for _, v in found[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag


def test_scalars_equal_metrics_jsonl_and_attention_images_are_written(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "run"
    train(board_config(20), run, data_dir, **QUIET)
    assert len(event_files(run)) == 1
    assert_same_scalars(run)
    assert set(metrics_scalars(run)) == {f"train/{n}" for n in SCALARS["train"]} | {
        f"valid/{n}" for n in SCALARS["valid"]
    }
    events = read_board(run)
    assert sorted(events.Tags()["images"]) == [f"attention/{n}" for n in range(1, ATTENTION_SENTENCES + 1)]
    for tag in events.Tags()["images"]:
        images = events.Images(tag)
        assert [i.step for i in images] == [10, 20]  # one per validation
        assert all(i.encoded_image_string.startswith(PNG) and i.width > 50 and i.height > 50 for i in images)


def raw_scalar_steps(run: Path, tag: str) -> Counter[int]:
    """How many events of `tag` each step has in the event files, before TensorBoard applies purges."""
    steps: Counter[int] = Counter()
    for path in event_files(run):
        for event in EventFileLoader(str(path)).Load():
            steps.update(event.step for v in event.summary.value if v.tag == tag)
    return steps


def test_a_resumed_run_drops_events_newer_than_its_checkpoint(tmp_path: Path, data_dir: Path) -> None:
    """Kill after events of updates 11-20 were written but before last.pt moved past update 10: the
    resumed run writes 11-20 again, and TensorBoard shows each once, equal to metrics.jsonl."""
    run = tmp_path / "run"
    train(board_config(10), run, data_dir, **QUIET)
    saved = tmp_path / "last-at-10.pt"
    shutil.copy(run / "checkpoints" / "last.pt", saved)
    train(board_config(20), run, data_dir, **QUIET)
    shutil.copy(saved, run / "checkpoints" / "last.pt")  # as if killed before the later checkpoints
    train(board_config(20), run, data_dir, **QUIET)
    assert len(event_files(run)) == 3
    assert raw_scalar_steps(run, "train/loss")[15] == 2  # the stale event is still in the older file...
    assert_same_scalars(run)  # ...and purged when read: one event per record, the records' values
    assert [i.step for i in read_board(run).Images("attention/1")] == [10, 20]


def test_a_fresh_run_removes_old_event_files(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "run"
    train(board_config(10), run, data_dir, **QUIET)
    train(board_config(5), run, data_dir, restart=True, **QUIET)
    assert len(event_files(run)) == 1
    assert_same_scalars(run)
    assert max(s for s, _ in board_scalars(read_board(run))["train/loss"]) == 5


@pytest.mark.parametrize("module", ["torch.utils.tensorboard", "matplotlib.backends.backend_agg"])
def test_a_missing_package_is_one_line_naming_the_extra(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import` of it fail as if not installed
    assert "pip install 'seq2seq[tensorboard]'" in MISSING
    with pytest.raises(Seq2SeqError) as info:
        Board(tmp_path, resumed_step=None)
    assert str(info.value) == MISSING
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    run = tmp_path / "run"
    args = ["train", str(recipe), "--out", str(run), "--data", str(data_dir), "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--set", "train.tensorboard=true"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {MISSING}"
    assert not (run / "checkpoints" / "last.pt").exists()

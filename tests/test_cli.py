"""The command line end to end: preprocess -> train -> translate -> eval on a tiny generated corpus."""

import json
from pathlib import Path

import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from cli import app
from seq2seq.runtime import native_bf16
from tests.conftest import TINY

runner = CliRunner()


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    return path


def test_help_lists_every_subcommand() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("preprocess", "train", "translate", "eval", "bench", "score", "plot", "export"):
        assert command in result.output


@pytest.mark.parametrize(
    "command", ["preprocess", "train", "translate", "eval", "bench", "average", "score", "plot", "export"]
)
def test_every_option_is_described(command: str) -> None:
    """Every option and argument carries help text (checked on the command, not on wrapped output)."""
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    assert params
    for param in params:
        assert getattr(param, "help", None), f"{command}: {param.name} has no help"
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0


def test_end_to_end(recipe: Path, tmp_path: Path) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    result = runner.invoke(app, ["preprocess", str(recipe), "--out", str(data)])
    assert result.exit_code == 0, result.output
    assert "kept" in result.output and (data / "manifest.json").is_file()
    again = runner.invoke(app, ["preprocess", str(recipe), "--out", str(data)])
    assert "up to date" in again.output

    result = runner.invoke(
        app,
        [
            "train",
            str(recipe),
            "--out",
            str(run),
            "--data",
            str(data),
            "--set",
            "train.max_steps=25",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    best = run / "checkpoints" / "best.pt"
    assert f"best model: {best}" in result.output

    src = data / "corpus" / "test.src"
    out = tmp_path / "hyp.txt"
    result = runner.invoke(app, ["translate", "--model", str(best), str(src), "-o", str(out), "--beam", "2"])
    assert result.exit_code == 0, result.output
    assert len(out.read_text(encoding="utf-8").split("\n")) - 1 == len(src.read_text().splitlines())

    result = runner.invoke(
        app, ["translate", "-m", str(best), "--format", "jsonl", "--n-best", "2"], input="12\n\n345\n"
    )
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3] and rows[1]["translation"] == ""

    ref = data / "corpus" / "test.tgt"
    result = runner.invoke(app, ["eval", "--hyp", str(out), "--ref", str(ref), "--format", "json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert [s["metric"] for s in scores] == ["bleu", "chrf", "ter"]
    assert all("version:" in s["signature"] for s in scores)

    result = runner.invoke(
        app,
        ["eval", "-m", str(best), "--src", str(src), "--ref", str(ref), "--metrics", "bleu", "--beam", "2"],
    )
    assert result.exit_code == 0 and "BLEU = " in result.stdout and "signature: nrefs:1" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "missing.yaml"], "missing.yaml: recipe not found"),
        (["preprocess", "{recipe}", "--set", "model.hiden=3"], "unknown key 'hiden'"),
        (["translate", "-m", "{garbage}"], "not a loadable seq2seq checkpoint"),
        (["translate", "-m", "missing.pt"], "missing.pt: checkpoint not found"),
        (["translate", "-m", "{ckpt}", "--beam", "0"], "need beam >= 1"),
        (["translate", "-m", "{ckpt}", "--min-len", "-1"], "--min-len: must not be negative"),
        (["translate", "-m", "{garbage}", "--format", "xml"], "--format: 'xml' is not one of"),
        (["translate", "-m", "{ckpt}", "nothere.txt"], "nothere.txt: input file not found"),
        (["translate", "-m", "{garbage}", "--bf16", "--quantize", "int8"], "choose one"),
        (["eval", "--ref", "{two}", "--hyp", "{three}"], "has 3 lines but"),
        (["eval", "--ref", "{two}"], "give either --hyp FILE, or --model CKPT"),
        (["eval", "--ref", "nothere.txt", "--hyp", "{two}"], "nothere.txt: file not found"),
    ],
)
def test_bad_input_is_one_line_without_traceback(
    recipe: Path, checkpoint: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    (tmp_path / "two.txt").write_text("a\nb\n")
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    names = {
        "recipe": recipe,
        "garbage": garbage,
        "ckpt": checkpoint,
        "two": tmp_path / "two.txt",
        "three": tmp_path / "three.txt",
    }
    result = runner.invoke(app, [a.format(**names) for a in args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_debug_shows_the_traceback() -> None:
    result = runner.invoke(app, ["--debug", "train", "missing.yaml"])
    assert result.exit_code != 0 and result.exception is not None


def test_translate_options_and_attention_file(checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("21\n\n4721\n", encoding="utf-8")
    align, out = tmp_path / "align.jsonl", tmp_path / "out.jsonl"
    args = [
        "translate",
        "-m",
        str(checkpoint),
        str(source),
        "-o",
        str(out),
        "--attention",
        str(align),
        "--format",
        "jsonl",
        "--no-unk",
        "--min-len",
        "1",
        "--penalty",
        "length",
        "--beam",
        "3",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in align.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3] and rows[1]["attention"] == []
    for row in (rows[0], rows[2]):
        assert len(row["attention"]) == len(row["target_tokens"])
        assert all(len(r) == len(row["source_tokens"]) for r in row["attention"])
        assert all(abs(sum(r) - 1) < 1e-3 for r in row["attention"])
    outputs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert all("<unk>" not in o["translation"] and o["time_ms"] >= 0 for o in outputs)
    result = runner.invoke(app, ["translate", "-m", str(checkpoint), "--penalty", "wide"], input="1\n")
    assert result.exit_code == 2 and "--penalty" in result.stderr


@pytest.mark.parametrize(
    "native",
    [
        pytest.param(
            True, marks=pytest.mark.skipif(not native_bf16(torch.device("cpu")), reason="no native bf16 CPU")
        ),
        False,
    ],
)
def test_translate_bf16_falls_back_to_fp32_without_native_bf16(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr("seq2seq.translate.native_bf16", lambda device: native)
    result = runner.invoke(
        app, ["translate", "-m", str(checkpoint), "--bf16", "--beam", "2"], input="12\n\n7\n"
    )
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 3
    assert ("no native bf16" in result.stderr) is not native

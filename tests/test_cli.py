"""The command line end to end: preprocess -> train -> translate -> eval on a tiny generated corpus."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from seq2seq.cli import app
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


HELP_IMPORTS = """
import sys
from typer.testing import CliRunner
from seq2seq.cli import app
for args in (["--help"], ["translate", "--help"], ["eval", "--help"]):
    assert CliRunner().invoke(app, args).exit_code == 0, args
print(" ".join(m for m in ("torch", "sacrebleu", "matplotlib", "datasets") if m in sys.modules))
"""


def test_help_imports_no_heavy_library() -> None:
    """`seq2seq --help` answers in a fraction of a second: the commands import torch when they run."""
    done = subprocess.run([sys.executable, "-c", HELP_IMPORTS], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_package_names_load_on_first_use() -> None:
    """`seq2seq.train` is the function even after its module `seq2seq.train` was imported first."""
    code = (
        "import sys, seq2seq; assert 'torch' not in sys.modules; import seq2seq.train as m; "
        "from seq2seq import Translator, train; assert callable(train) and train is seq2seq.train; "
        "assert train.__module__ == 'seq2seq.train' and Translator.__name__ == 'Translator'; "
        "assert 'Translator' in dir(seq2seq); import seq2seq.data; assert callable(seq2seq.preprocess)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_eval_metrics_default_is_every_metric() -> None:
    from seq2seq.cli import EVAL_METRICS
    from seq2seq.evaluate import METRICS

    assert ",".join(METRICS) == EVAL_METRICS


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
        (["translate", "-m", "{ckpt}", "--penalty", "wide"], "--penalty: 'wide' is not one of 'gnmt', 'le"),
        (["translate", "-m", "{ckpt}", "--stop", "never"], "--stop: 'never' is not one of 'exact', 'early'"),
        (["eval", "-m", "{ckpt}", "--src", "{two}", "--ref", "{two}", "--stop", "x"], "--stop: 'x' is not"),
        (["score", "-m", "{ckpt}", "--src", "{two}", "--tgt", "{two}", "--format", "xml"], "--format: 'xml'"),
        (["translate", "-m", "{ckpt}", "nothere.txt"], "nothere.txt: input file not found"),
        (["translate", "-m", "{garbage}", "--bf16", "--quantize", "int8"], "choose one"),
        (["eval", "--ref", "{two}", "--hyp", "{three}"], "has 3 lines but"),
        (["eval", "--ref", "{two}"], "give either --hyp FILE, or --model CKPT"),
        (["eval", "--ref", "nothere.txt", "--hyp", "{two}"], "nothere.txt: file not found"),
        # issue 15: an output that is an input, non-finite numbers, empty files, messages
        (["translate", "-m", "{garbage}", "{two}", "-o", "{two}"], "--output {two}: is the input file"),
        (
            ["translate", "-m", "{garbage}", "{two}", "--attention", "{two}"],
            "--attention {two}: is the input",
        ),
        (["translate", "-m", "{garbage}", "{two}", "-o", "{garbage}"], "is the input file {garbage}"),
        (["translate", "-m", "{garbage}", "-o", "{dir}"], "--output {dir}: is a directory"),
        (["translate", "-m", "{garbage}", "--length-penalty", "nan"], "--length-penalty: must be a finite"),
        (["translate", "-m", "{garbage}", "--length-penalty", "inf"], "--length-penalty: must be a finite"),
        (["translate", "-m", "{garbage}", "--max-len-a", "nan"], "--max-len-a: must be a finite number"),
        (["eval", "--ref", "{empty}", "--hyp", "{empty}"], "{empty}: no lines to score"),
        (["eval", "--ref", "{empty}", "-m", "{garbage}", "--src", "{empty}"], "{empty}: no lines to score"),
        (["eval", "--ref", "{dir}", "--hyp", "{two}"], "{dir}: is a directory"),
        (["eval", "--ref", "{two}", "--hyp", "{two}", "--metrics", ","], "--metrics: give at least one"),
        (["eval", "--ref", "{two}", "--hyp", "{two}", "--metrics", "bleu,rouge"], "unknown metric 'rouge'"),
        (["eval", "--ref", "{two}", "-m", "{garbage}", "--src", "{two}", "-o", "{two}"], "is the input file"),
        (["average", "{garbage}", "-o", "{garbage}"], "--output {garbage}: is the input file"),
        (
            ["score", "-m", "{garbage}", "--src", "{two}", "--tgt", "{three}", "-o", "{two}"],
            "--output {two}: is",
        ),
        (
            ["score", "-m", "{garbage}", "--src", "{two}", "--tgt", "{two}", "-o", "{garbage}"],
            "file {garbage}",
        ),
        (["score", "-m", "{garbage}", "--src", "{two}", "--tgt", "{two}", "-o", "{dir}"], "{dir}: is a dir"),
        (["plot", "{dir}", "-o", "{dir}/metrics.jsonl"], "--output {dir}/metrics.jsonl: is the input file"),
        (["plot", "{dir}", "-o", "{dir}"], "--output {dir}: is a directory"),
        (["serve", "-m", "{garbage}", "--max-wait-ms", "nan"], "--max-wait-ms: must be a finite number"),
        (["serve", "-m", "{garbage}", "--request-timeout", "inf"], "--request-timeout: must be a finite"),
        (["translate", "-m", "{ckpt}", "--decoders", "-1", "{two}"], "--decoders: must be 0 (one per CPU"),
        (
            ["eval", "-m", "{ckpt}", "--src", "{two}", "--ref", "{two}", "--decoders", "-2"],
            "--decoders: must",
        ),
        (["preprocess", "{recipe}", "--out", "{two}"], "--out {two}: is a file, expected a directory"),
        (["preprocess", "{recipe}", "--set", "train.lr=nan"], "error: --set train.lr: must be a finite"),
        (
            ["preprocess", "{recipe}", "--set", "train.clip_norm=.inf"],
            "error: --set train.clip_norm: must be",
        ),
        (["preprocess", "{recipe}", "--set", "train.lr=abc"], "error: --set train.lr: expected a number"),
    ],
)
def test_bad_input_is_one_line_without_traceback(
    recipe: Path, checkpoint: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    (tmp_path / "two.txt").write_text("a\nb\n")
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    (tmp_path / "empty.txt").write_text("")
    names = {
        "recipe": recipe,
        "garbage": garbage,
        "ckpt": checkpoint,
        "two": tmp_path / "two.txt",
        "three": tmp_path / "three.txt",
        "empty": tmp_path / "empty.txt",
        "dir": tmp_path,
    }
    result = runner.invoke(app, [a.format(**names) for a in args])
    assert result.exit_code == 2
    assert message.format(**names) in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "two.txt").read_text() == "a\nb\n" and garbage.read_bytes() == b"not a checkpoint"


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
        "--stop",
        "early",
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


def _hostile_checkpoint(checkpoint: Path, path: Path, **entries: object) -> Path:
    payload = torch.load(checkpoint, weights_only=True)
    torch.save({**payload, **entries}, path)
    return path


HOSTILE = [
    ({"config": None}, "{ckpt}: not a loadable seq2seq checkpoint (its 'config' entry is NoneType"),
    ({"tokenizer": None}, "{ckpt}: not a loadable seq2seq checkpoint (its 'tokenizer' entry is"),
    ({"model": [1, 2]}, "{ckpt}: not a loadable seq2seq checkpoint (its 'model' entry is list"),
    ({"tokenizer": {"src": b"junk", "tgt": None}}, "{ckpt} (tokenizer): source SentencePiece model: not a"),
    ({"tokenizer": {"src": None}}, "{ckpt} (tokenizer): has no source SentencePiece model"),
]


@pytest.mark.parametrize(
    ("command", "entries", "message"),
    [("translate", *case) for case in HOSTILE] + [("average", *case) for case in HOSTILE[:3]],
)
def test_hostile_checkpoints_are_named(
    checkpoint: Path, tmp_path: Path, command: str, entries: dict[str, object], message: str
) -> None:
    ckpt = _hostile_checkpoint(checkpoint, tmp_path / "hostile.pt", **entries)
    args = (
        ["translate", "-m", str(ckpt)] if command == "translate" else ["average", str(checkpoint), str(ckpt)]
    )
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "out")], input="1\n")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: " + message.format(ckpt=ckpt))
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_directory_as_input_says_so(checkpoint: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["translate", "-m", str(checkpoint), str(tmp_path)])
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"error: {tmp_path}: is a directory, expected a text file (one sentence per line)"
    )


@pytest.mark.parametrize("command", ["translate", "translate-attention", "eval", "score"])
def test_a_full_disk_names_the_file_and_keeps_the_old_output(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    from tests.test_outputs import fill_disk

    source, out = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("21\n4721\n7\n", encoding="utf-8")
    out.write_text("old\n")
    fill_disk(monkeypatch, room=0 if command == "eval" else 1)  # the others fail after their first line
    args = {
        "translate": ["translate", "-m", str(checkpoint), str(source), "-o", str(out), "--chunk-lines", "1"],
        "translate-attention": ["translate", "-m", str(checkpoint), str(source), "--attention", str(out)],
        "eval": ["eval", "-m", str(checkpoint), "--src", str(source), "--ref", str(source), "-o", str(out)],
        "score": ["score", "-m", str(checkpoint), "--src", str(source), "--tgt", str(source), "-o", str(out)],
    }[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1] == f"error: {out}: No space left on device"
    assert "Traceback" not in result.output
    assert out.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@pytest.mark.parametrize("command", ["eval", "translate", "score"])
def test_a_full_stdout_is_one_line(checkpoint: Path, tmp_path: Path, command: str) -> None:
    text = tmp_path / "two.txt"
    text.write_text("21\n7\n", encoding="utf-8")
    args = {
        "eval": ["eval", "--ref", str(text), "--hyp", str(text), "--metrics", "chrf"],
        "translate": ["translate", "-m", str(checkpoint), str(text), "--beam", "1"],
        "score": ["score", "-m", str(checkpoint), "--src", str(text), "--tgt", str(text)],
    }[command]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "seq2seq", *args],
            cwd=Path(__file__).resolve().parents[1],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: <stdout>: No space left on device"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_an_unwritable_eval_output_fails_before_translating(checkpoint: Path, tmp_path: Path) -> None:
    text, out = tmp_path / "two.txt", tmp_path / "missing" / "out.txt"
    text.write_text("21\n7\n", encoding="utf-8")
    args = ["eval", "-m", str(checkpoint), "--src", str(text), "--ref", str(text), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {out}: No such file or directory"  # no "translated ..." line


@pytest.mark.parametrize("case", ["output is stdin", "output is /dev/stdout"])
def test_special_outputs(checkpoint: Path, tmp_path: Path, case: str) -> None:
    text = tmp_path / "in.txt"
    text.write_text("21\n7\n", encoding="utf-8")
    output = str(text) if case == "output is stdin" else "/dev/stdout"
    with open(text, "rb") as stdin:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "seq2seq",
                "translate",
                "-m",
                str(checkpoint),
                "--beam",
                "1",
                "-o",
                str(output),
            ],
            cwd=Path(__file__).resolve().parents[1],
            stdin=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
    assert text.read_text(encoding="utf-8") == "21\n7\n"
    if case == "output is stdin":
        assert done.returncode == 2
        assert (
            done.stderr.strip()
            == f"error: --output {text}: is the input file /dev/stdin; write the output to another file"
        )
    else:  # a device is written in place, never replaced by a renamed file
        assert (
            done.returncode == 0 and len(done.stdout.splitlines()) == 2 and Path("/dev/stdout").is_symlink()
        )

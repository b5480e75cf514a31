"""Forced decoding: the score of a translation is the log-probability search gave it, batch or not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seq2seq import Seq2SeqError, Translator
from seq2seq.cli import app
from seq2seq.scoring import score_pairs
from seq2seq.search import length_penalty

SOURCES = ["4721", "12", "300000", "99", "7", "1010"]


@pytest.fixture(scope="module")
def translator(checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(checkpoint, device="cpu")


@pytest.mark.parametrize("beam", [1, 3])
def test_score_of_a_translation_is_its_search_log_prob(translator: Translator, beam: int) -> None:
    # score gives full-vocabulary log-probabilities: compare with the search over the full vocabulary
    results = translator.translate_batch(SOURCES, translator.options(beam=beam, shortlist=False))
    targets = [r.text for r in results]
    scores = score_pairs(translator, SOURCES, targets)
    d = translator.cfg.decode
    for r, s in zip(results, scores, strict=True):
        best = r.candidates[0]
        assert s.tokens == len(best.tokens) + 1
        assert s.log_prob == pytest.approx(best.log_prob, abs=1e-3)
        assert s.per_token == pytest.approx(s.log_prob / s.tokens)
        assert s.normalized == pytest.approx(
            s.log_prob / length_penalty(float(s.tokens), d.length_penalty, d.penalty)
        )


def test_batched_scores_equal_one_at_a_time(translator: Translator) -> None:
    targets = ["vier tausend", "zwölf", "", "neun und neunzig", "sieben sieben", "tausend zehn"]
    batched = score_pairs(translator, SOURCES, targets, batch_tokens=10_000)
    alone = [score_pairs(translator, [s], [t])[0] for s, t in zip(SOURCES, targets, strict=True)]
    assert [b.log_prob for b in batched] == pytest.approx([a.log_prob for a in alone], abs=1e-4)
    assert batched[2].tokens == 1  # an empty target is scored as EOS alone
    assert all(s.log_prob <= 0 for s in batched)


def test_a_better_translation_scores_higher(translator: Translator) -> None:
    best = translator.translate(["12"], beam=3)[0]
    good, bad = score_pairs(translator, ["12", "12"], [best, best + " " + best])
    assert good.log_prob > bad.log_prob


def test_mismatched_line_counts_are_an_error(translator: Translator) -> None:
    with pytest.raises(Seq2SeqError, match="sources has 2 lines but targets has 1"):
        score_pairs(translator, ["1", "2"], ["eins"])


def test_cli_score(checkpoint: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    src, tgt, short = tmp_path / "src.txt", tmp_path / "tgt.txt", tmp_path / "short.txt"
    src.write_text("12\n\n7\n", encoding="utf-8")
    tgt.write_text("zwölf\n\nsieben\n", encoding="utf-8")
    short.write_text("zwölf\n", encoding="utf-8")
    base = ["score", "-m", str(checkpoint), "--src", str(src)]
    plain = runner.invoke(app, [*base, "--tgt", str(tgt)])
    assert plain.exit_code == 0, plain.output
    rows = [line.split("\t") for line in plain.stdout.splitlines()]
    assert len(rows) == 3 and all(len(r) == 3 for r in rows)
    jsonl = runner.invoke(app, [*base, "--tgt", str(tgt), "--format", "jsonl"])
    records = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3]
    assert [f"{r['log_prob']:.4f}" for r in records] == [r[0] for r in rows]
    bad = runner.invoke(app, [*base, "--tgt", str(short)])
    assert bad.exit_code == 2 and f"{src} has 3 lines but {short} has 1" in bad.stderr


def test_cli_score_output_file_is_complete_or_absent(checkpoint: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    src, tgt, short, out = (tmp_path / n for n in ("src.txt", "tgt.txt", "short.txt", "out.txt"))
    src.write_text("12\n7\n", encoding="utf-8")
    tgt.write_text("zwölf\nsieben\n", encoding="utf-8")
    short.write_text("zwölf\n", encoding="utf-8")
    base = ["score", "-m", str(checkpoint), "--src", str(src)]
    printed = runner.invoke(app, [*base, "--tgt", str(tgt)])
    written = runner.invoke(app, [*base, "--tgt", str(tgt), "-o", str(out)])
    assert written.exit_code == 0 and written.stdout == ""
    assert out.read_text(encoding="utf-8") == printed.stdout and f"-> {out}" in written.stderr
    out.unlink()
    failed = runner.invoke(app, [*base, "--tgt", str(short), "-o", str(out)])
    assert failed.exit_code == 2 and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.txt", "src.txt", "tgt.txt"]

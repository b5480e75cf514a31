import json
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.errors import Seq2SeqError
from seq2seq.evaluate import METRICS, parse_metrics, score_corpus

HYPS = ["The cat sat on the mat.", "a b c d", "", "Zwei Männer stehen am Herd.", "It's 5 o'clock!"]
REFS = ["The cat sat on a mat.", "a b c e", "nothing", "Zwei Männer stehen an einem Herd.", "it is 5 o'clock"]


def sacrebleu_command(tmp_path: Path, extra: list[str]) -> list[dict[str, object]]:
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text("".join(h + "\n" for h in HYPS), encoding="utf-8")
    ref.write_text("".join(r + "\n" for r in REFS), encoding="utf-8")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "sacrebleu",
            str(ref),
            "-i",
            str(hyp),
            "-m",
            "bleu",
            "chrf",
            "ter",
            "-w",
            "4",
            *extra,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


@pytest.mark.parametrize(("lowercase", "extra"), [(False, []), (True, ["-lc", "--chrf-lowercase"])])
def test_scores_equal_the_sacrebleu_command(tmp_path: Path, lowercase: bool, extra: list[str]) -> None:
    expected = sacrebleu_command(tmp_path, extra)
    ours = score_corpus(HYPS, REFS, lowercase=lowercase)
    assert [s.signature for s in ours] == [e["signature"] for e in expected]
    assert [round(s.score, 4) for s in ours] == [e["score"] for e in expected]


def test_line_count_mismatch_names_both_counts() -> None:
    with pytest.raises(Seq2SeqError, match="hyp.txt has 2 lines but ref.txt has 3"):
        score_corpus(["a", "b"], ["a", "b", "c"], names=("hyp.txt", "ref.txt"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"metrics": ["blue"]}, "unknown metric 'blue'"), ({"tokenize": "nope"}, "--tokenize: 'nope'")],
)
def test_bad_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(Seq2SeqError, match=message):
        score_corpus(["a"], ["a"], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bleu", ("bleu",)),
        (" BLEU , chrf,", ("bleu", "chrf")),
        (",".join(METRICS), METRICS),
        (",", "--metrics: give at least one of bleu, chrf, ter"),
        ("", "--metrics: give at least one"),
        ("bleu,rouge", "--metrics: unknown metric 'rouge'"),
    ],
)
def test_parse_metrics(text: str, expected: tuple[str, ...] | str) -> None:
    if isinstance(expected, tuple):
        assert parse_metrics(text) == expected
        return
    with pytest.raises(Seq2SeqError, match=None) as info:
        parse_metrics(text)
    assert str(info.value).startswith(expected)


@pytest.mark.parametrize(("hyps", "metrics"), [([], METRICS), (["a"], ())])
def test_nothing_to_score_is_an_error(hyps: list[str], metrics: tuple[str, ...]) -> None:
    with pytest.raises(Seq2SeqError, match="ref.txt: no lines to score|--metrics: give at least one"):
        score_corpus(hyps, hyps, metrics, names=("hyp.txt", "ref.txt"))

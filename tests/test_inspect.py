"""`Translator.inspect`, corpus statistics, the written page/PNGs/arrays and `seq2seq inspect` bad input."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from seq2seq import Seq2SeqError, Translator
from seq2seq.cli import app
from seq2seq.inspect.report import write_inspection
from seq2seq.inspect.stats import CorpusAccumulator, _Moments
from seq2seq.model import build_model
from seq2seq.train import TrainResult

runner = CliRunner()
SENTENCES = ["21", "1999", "40213"]


@pytest.fixture(scope="module")
def translator(trained: TrainResult) -> Translator:
    return Translator.from_checkpoint(trained.best_checkpoint, "cpu")


def other_cell(translator: Translator, cell: str) -> Translator:
    """A random (untrained) model of another cell type with the trained model's tokenizer."""
    cfg = dataclasses.replace(translator.cfg, model=dataclasses.replace(translator.cfg.model, cell=cell))
    tok = translator.tokenizer
    torch.manual_seed(0)
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size)
    return Translator(model, tok, cfg, torch.device("cpu"))


def test_inspect_traces_its_own_translation(translator: Translator) -> None:
    """The traced log-probability of the model's own greedy output is the search's, and shapes name tokens."""
    trace = translator.inspect("1999", beam=1)
    # the trace's log-probabilities are over the full vocabulary, as the search's without a shortlist
    (translation,) = translator.translate_batch(["1999"], translator.options(beam=1, shortlist=False))
    best = translation.candidates[0]
    assert trace.tgt_tokens == [*best.tokens, "</s>"]
    assert trace.src_tokens == [*translation.source_tokens, "</s>"]
    assert float(trace["log_prob"].sum()) == pytest.approx(best.log_prob, abs=1e-4)
    assert not trace.forced
    s, t = len(trace.src_tokens), len(trace.tgt_tokens)
    cfg = translator.cfg.model
    assert trace["attention"].shape == (t, s)
    np.testing.assert_allclose(trace["attention"].sum(1), 1.0, atol=1e-5)
    for name in ("f", "i", "g", "o", "c", "h"):
        assert trace[f"encoder.0.fwd.{name}"].shape == (s, cfg.enc_hidden)
        assert trace[f"encoder.0.bwd.{name}"].shape == (s, cfg.enc_hidden)
        assert trace[f"decoder.0.fwd.{name}"].shape == (t, cfg.dec_hidden)
    assert trace.groups == ["encoder.0.fwd", "encoder.0.bwd", "decoder.0.fwd"]


def test_forced_target_and_gradients(translator: Translator) -> None:
    trace = translator.inspect("21", target="einundzwanzig", gradients=True)
    assert trace.forced
    assert "".join(trace.tgt_tokens[:-1]).replace("▁", "") == "einundzwanzig"
    assert trace["log_prob"].shape == (len(trace.tgt_tokens),)
    for state in ("h", "c"):
        grad = trace[f"encoder.0.fwd.grad_{state}"]
        assert grad.shape == (len(trace.src_tokens),)
        assert np.isfinite(grad).all() and (grad >= 0).all()


def test_bad_sentences(translator: Translator) -> None:
    with pytest.raises(Seq2SeqError, match="empty sentence"):
        translator.inspect("   ")
    short = Translator(
        translator.model,
        translator.tokenizer,
        dataclasses.replace(translator.cfg, decode=dataclasses.replace(translator.cfg.decode, max_src_len=2)),
        translator.device,
    )
    trace = short.inspect("40213")
    assert trace.truncated and len(trace.src_tokens) == 3


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_gru_and_rnn_models_get_their_own_gates(translator: Translator, cell: str, tmp_path: Path) -> None:
    other = other_cell(translator, cell)
    trace = other.inspect("21", target="zwei")
    assert trace.names == {"gru": ("r", "z", "n", "h"), "rnn": ("h",)}[cell]
    report = write_inspection(other, SENTENCES[:2], tmp_path, targets=["zwei", "eins"], figures=1)
    assert any(cell.upper() in note for note in report.notes)
    assert (tmp_path / "index.html").is_file()


def test_corpus_statistics_count_every_token(translator: Translator) -> None:
    traces = [translator.inspect(s) for s in SENTENCES]
    acc = CorpusAccumulator()
    for trace in traces:
        acc.add(trace)
    stats = acc.result()
    assert stats.sentences == 3
    tokens = sum(len(t.src_tokens) for t in traces)
    assert stats.tokens["encoder.0.fwd"] == tokens
    assert stats.forget_hist.sum() == sum(t[f"{g}.f"].size for t in traces for g in t.groups)
    for name in stats.low:
        assert ((stats.low[name] + stats.high[name]) <= 1 + 1e-9).all()
    low = np.concatenate([t["encoder.0.fwd.i"] for t in traces]) < 0.1
    np.testing.assert_allclose(stats.low["encoder.0.fwd.i"], low.mean(0))
    assert len(stats.top_units("position", "decoder.0.fwd", 3)) == 3


def test_running_correlation_equals_numpy() -> None:
    gen = np.random.default_rng(0)
    x, y = gen.normal(size=(50, 4)), gen.normal(size=50)
    x[:, 1] = 3 * y + 1  # perfectly correlated unit
    x[:, 2] = 5.0  # constant unit: r = 0, not NaN
    m = _Moments()
    m.add(x[:20], y[:20])
    m.add(x[20:], y[20:])
    r = m.r()
    assert r[1] == pytest.approx(1.0) and r[2] == 0.0
    assert r[0] == pytest.approx(np.corrcoef(x[:, 0], y)[0, 1])


def test_page_pngs_and_arrays(translator: Translator, tmp_path: Path) -> None:
    report = write_inspection(translator, ["", *SENTENCES], tmp_path, beam=2, gradients=True, figures=1)
    assert report.traced == 3
    assert report.notes == ["line 1: empty sentence, skipped"]
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "the page must not fetch anything"
    assert "__DATA__" not in page and '"corpus": {' in page
    for name in report.files:
        assert (tmp_path / name).stat().st_size > 0, name
    pngs = [f for f in report.files if f.endswith(".png")]
    assert "s1-attention.png" in pngs and "s1-gradients.png" in pngs and "corpus-saturation.png" in pngs
    assert not any(f.startswith("s2-") for f in pngs), "figures only for the first --figures sentences"
    for name in pngs:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with np.load(tmp_path / "trace.npz", allow_pickle=False) as arrays:
        assert list(arrays["s1.src_tokens"])[-1] == "</s>"
        assert arrays["s1.encoder.0.fwd.c"].shape[0] == len(arrays["s1.src_tokens"])
        assert "corpus.low.encoder.0.fwd.f" in arrays


def test_sentences_keep_their_order_through_batched_tracing(translator: Translator, tmp_path: Path) -> None:
    """Traced in length-sorted batches, each shown sentence's arrays are still its own: equal to tracing it
    alone with `Translator.inspect`, in input order."""
    sentences = ["40213", "7", "1999"]
    write_inspection(translator, sentences, tmp_path, figures=3, png="none")
    with np.load(tmp_path / "trace.npz", allow_pickle=False) as arrays:
        for k, sentence in enumerate(sentences, 1):
            alone = translator.inspect(sentence)
            assert list(arrays[f"s{k}.src_tokens"]) == alone.src_tokens
            assert list(arrays[f"s{k}.tgt_tokens"]) == alone.tgt_tokens
            for name, value in alone.arrays.items():
                np.testing.assert_allclose(arrays[f"s{k}.{name}"], value, atol=1e-5, err_msg=name)


SUMMARY = {"s1-attention.png", "s1-encoder.0.fwd.png", "s1-gradients.png"}
CORPUS = {"corpus-saturation.png", "corpus-forget.png", "corpus-units.png"}
REST = {"s1-encoder.0.bwd.png", "s1-decoder.0.fwd.png", "s1-lines.png", "s1-change.png"}


@pytest.mark.parametrize(
    ("png", "expected"), [("none", set()), ("summary", SUMMARY | CORPUS), ("all", SUMMARY | CORPUS | REST)]
)
def test_png_choice_picks_the_figures(
    translator: Translator, tmp_path: Path, png: str, expected: set[str]
) -> None:
    report = write_inspection(translator, SENTENCES[:2], tmp_path, gradients=True, figures=1, png=png)
    assert {f for f in report.files if f.endswith(".png")} == expected
    assert {p.name for p in tmp_path.glob("*.png")} == expected
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert '"forget_hist": [' in page and '"attention": [[' in page, "the page has every figure's data"


def test_unknown_png_choice_is_a_clear_error(translator: Translator, tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="--png: 'some' is not one of summary, all, none"):
        write_inspection(translator, SENTENCES, tmp_path, png="some")


def test_target_count_must_match(translator: Translator, tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="1 target line.*for 3 source line"):
        write_inspection(translator, SENTENCES, tmp_path, targets=["eins"])


def test_cli_inspect(trained: TrainResult, tmp_path: Path) -> None:
    ckpt = str(trained.best_checkpoint)
    args = ["inspect", "-m", ckpt, "21", "7", "--figures", "1", "--out", str(tmp_path / "a")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "inspected 2 sentence(s)" in result.output
    ref = tmp_path / "ref.txt"
    ref.write_text("eins\n", encoding="utf-8")
    bad = runner.invoke(
        app, ["inspect", "--model", ckpt, "21", "7", "--ref", str(ref), "--out", str(tmp_path)]
    )
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == [
        "error: --target/--ref: 1 target line(s) for 2 source line(s); "
        "give exactly one target per source line"
    ]
    empty = runner.invoke(app, ["inspect", "--model", ckpt, "", "--out", str(tmp_path / "e")])
    assert empty.exit_code == 0 and "note: line 1: empty sentence, skipped" in empty.output
    assert (tmp_path / "e" / "index.html").is_file()


def test_every_inspect_option_is_described() -> None:
    import typer

    params = typer.main.get_command(app).commands["inspect"].params  # type: ignore[attr-defined]
    for param in params:
        assert getattr(param, "help", None), f"inspect: {param.name} has no help"


def test_a_failed_page_write_leaves_the_previous_page_whole(
    translator: Translator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file is written through a temporary file: a failure while rendering leaves the previous
    index.html byte for byte, no temporary file behind, and no file the report would not have written."""
    write_inspection(translator, SENTENCES[:1], tmp_path, figures=1, png="summary")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(*args: object, **kwargs: object) -> str:
        return "<html>\ud800"  # a lone surrogate: encoding fails once the file is open, as a full disk would

    monkeypatch.setattr("seq2seq.inspect.report.render_page", broken)
    with pytest.raises(UnicodeEncodeError):
        write_inspection(translator, SENTENCES[1:2], tmp_path, figures=1, png="summary")
    after = {p.name for p in tmp_path.iterdir()}
    assert not [name for name in after if name.endswith(".tmp")]
    assert (tmp_path / "index.html").read_bytes() == before["index.html"]
    for name in after:
        assert name in before, f"{name}: a new file although the page was never written"

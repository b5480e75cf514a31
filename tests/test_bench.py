from pathlib import Path

import pytest
import torch

from seq2seq.bench import (
    format_table,
    generated_corpus,
    matmul_peak_gflops,
    reference_config,
    run_bench,
    train_flops_per_token,
)
from seq2seq.model import build_model, count_parameters
from seq2seq.runtime import native_bf16
from tests.conftest import tiny_config


def test_reference_model_size() -> None:
    model = build_model(reference_config().model, 8000, 8000)
    assert 7.5e6 < count_parameters(model) < 8.5e6


def test_flop_count_scales_as_the_matmuls_do() -> None:
    cfg = reference_config().model
    base = train_flops_per_token(cfg, 8000, 1.0, 14.0)
    # output layer: 3 passes x 2 FLOPs x hidden x vocab
    assert train_flops_per_token(cfg, 9000, 1.0, 14.0) - base == pytest.approx(3 * 2 * 256 * 1000)
    # attention reads every source position: score + context, forward and backward
    assert train_flops_per_token(cfg, 8000, 1.0, 15.0) - base == pytest.approx(3 * (2 * 256 + 2 * 256))
    assert 15e6 < base < 30e6  # ~20 MFLOP per target token for the reference model


def test_generated_corpus_is_multi30k_shaped() -> None:
    corpus = generated_corpus(2000, 8000)
    assert len(corpus) == 2000
    assert 11 < corpus.src.lengths.mean() < 16 and corpus.tgt.lengths.mean() > corpus.src.lengths.mean()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matmul_peak_counts_2n3_flops_per_matmul(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype) -> None:
    """On a clock that advances 1 ms per reading, 4 timed n x n matmuls take 1 ms: 4 * 2n^3 / 1 ms."""
    ticks = iter(range(10**6))
    monkeypatch.setattr("seq2seq.bench.time.perf_counter", lambda: next(ticks) / 1000)
    peak = matmul_peak_gflops(size=64, seconds=0.01, dtype=dtype)
    assert peak == pytest.approx(4 * 2 * 64**3 / 1e-3 / 1e9)


def test_bench_on_a_recipe(tmp_path: Path, checkpoint: Path) -> None:
    source = tmp_path / "src.txt"
    source.write_text("12\n345\n\n6789\n", encoding="utf-8")
    result = run_bench(
        tiny_config(), tmp_path / "data", checkpoint, source, warmup=1, steps=3, log=lambda s: None
    )
    precisions = ["fp32", "bf16"] if native_bf16(torch.device("cpu")) else ["fp32"]
    assert list(result.train) == precisions
    for figures in result.train.values():
        assert figures["tgt_tokens_per_s"] > 0 and 0 <= figures["padding_fraction"] < 1
    assert list(result.machine["matmul_peak_gflops"]) == precisions
    bf16 = {"bf16 beam1", "bf16 beam5"} if "bf16" in precisions else set()
    assert set(result.decode) == {"beam1", "beam5", "int8 beam1", "int8 beam5", *bf16}
    assert {d["decoders"] for d in result.decode.values()} == {torch.get_num_threads()}  # as translate
    assert result.memory["peak_rss_mib"] > 0
    lines = format_table(result).splitlines()
    assert any(line.split()[1:] == precisions for line in lines if line.startswith("training"))
    labels = {line[:34].strip() for line in lines}
    for label in ("train target tokens/s", "fraction of peak", "padding fraction", "beam5", "int8 beam1"):
        assert label in labels
    assert any(
        line.startswith(f"decoding, batch 12,000 src x beam, {torch.get_num_threads()} search(es)")
        for line in lines
    )

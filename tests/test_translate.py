import io
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seq2seq import Seq2SeqError, Translator
from seq2seq.runtime import native_bf16
from seq2seq.textio import LineStats, iter_lines


@pytest.fixture(scope="module")
def translator(checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(checkpoint, device="cpu")


def translate_bytes(translator: Translator, data: bytes, chunk_lines: int = 3) -> tuple[list[str], LineStats]:
    stats = LineStats()
    lines = iter_lines(io.BytesIO(data), "input", replace_invalid=True, stats=stats)
    opts = translator.options(beam=2, max_len_b=5)
    results = list(translator.translate_stream(lines, opts, chunk_lines=chunk_lines))
    return [r.text for r in results], stats


def expected_line_count(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=8), st.booleans())
def test_one_output_line_per_input_line_for_any_bytes(
    translator: Translator, lines: list[bytes], trailing_newline: bool
) -> None:
    data = b"\n".join(lines) + (b"\n" if trailing_newline and lines else b"")
    outputs, stats = translate_bytes(translator, data)
    assert len(outputs) == expected_line_count(data) == stats.lines
    assert all("\n" not in o and "\r" not in o for o in outputs)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=20), max_size=8)
)
def test_order_is_kept_for_any_text(translator: Translator, lines: list[str]) -> None:
    sources = [line.rstrip("\r") for line in lines]
    results = list(
        translator.translate_stream(sources, translator.options(beam=1, max_len_b=5), chunk_lines=2)
    )
    assert [r.source for r in results] == sources
    alone = [translator.translate([s], beam=1, max_len_b=5)[0] for s in sources]
    assert [r.text for r in results] == alone


def test_tricky_lines(translator: Translator) -> None:
    huge = b"1" * 20000
    data = b"12\n\n\xff\xfe 7\n\x0b\x0c\x1c\xe2\x80\xa8 5\r\n" + huge + b"\n  \n42"
    outputs, stats = translate_bytes(translator, data)
    assert len(outputs) == 7
    assert outputs[1] == "" and outputs[5] == ""  # empty and whitespace-only lines stay empty
    assert stats.invalid_utf8 == 1
    assert translator.stats.truncated >= 1


def test_translate_list_api(translator: Translator) -> None:
    out = translator.translate(["7", "", "123"], beam=3)
    assert len(out) == 3 and out[1] == ""
    batch = translator.translate_batch(["123"], translator.options(beam=3, n_best=3))
    assert 1 <= len(batch[0].candidates) <= 3
    scores = [c.score for c in batch[0].candidates]
    assert scores == sorted(scores, reverse=True)


def test_int8_quantized_translation(checkpoint: Path) -> None:
    quantized = Translator.from_checkpoint(checkpoint, device="cpu", quantize="int8")
    assert "quantized" in type(quantized.model.output).__module__
    assert "quantized" in type(quantized.model.decoder.rnn).__module__
    out = quantized.translate(["12", "", "4721"], beam=3)
    assert len(out) == 3 and out[1] == ""


@pytest.mark.skipif(
    not native_bf16(torch.device("cpu")), reason="this CPU has no native bf16 (AVX512-BF16/AMX)"
)
def test_bf16_translation_runs_the_matmuls_in_bf16(checkpoint: Path) -> None:
    fast = Translator.from_checkpoint(checkpoint, device="cpu", bf16=True)
    seen: list[torch.dtype] = []
    fast.model.output.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    out = fast.translate(["12", "", "4721"], beam=3)
    assert len(out) == 3 and out[1] == "" and out[0]
    assert seen and set(seen) == {torch.bfloat16}
    fast.model.output._forward_hooks.clear()
    hyps = fast.translate_batch(["4721"], fast.options(beam=3, n_best=2))[0].candidates
    assert all(isinstance(c.score, float) and c.score <= 0 for c in hyps)  # scores stay fp32 log-probs


def test_bf16_falls_back_to_fp32_without_native_bf16(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("seq2seq.translate.native_bf16", lambda device: False)
    asked = Translator.from_checkpoint(checkpoint, device="cpu", bf16=True)
    plain = Translator.from_checkpoint(checkpoint, device="cpu")
    assert not asked.bf16
    assert asked.translate(["12", "", "4721"], beam=3) == plain.translate(["12", "", "4721"], beam=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"quantize": "int4"}, "not supported"), ({"quantize": "int8", "bf16": True}, "choose one")],
)
def test_bad_precision_options(checkpoint: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(Seq2SeqError, match=message):
        Translator.from_checkpoint(checkpoint, device="cpu", **kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("beam", [1, 3])
def test_cuda_translates_like_cpu(checkpoint: Path, translator: Translator, beam: int) -> None:
    """The same checkpoint on CUDA gives the CPU's translations, line for line (fp32 both)."""
    on_gpu = Translator.from_checkpoint(checkpoint, device="cuda")
    assert on_gpu.device.type == "cuda"
    sentences = ["4721", "", "12", "300000", "99", "7"]
    assert on_gpu.translate(sentences, beam=beam) == translator.translate(sentences, beam=beam)

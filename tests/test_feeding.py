"""The teacher-forced decoder equals stepping `Decoder._step` (the decoder before the fused input-feeding
Function) in value and gradient, in float64, in every model mode, with dropout on and a fixed seed; and the
Function's hand-written backward passes torch's numerical gradcheck.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from seq2seq.config import ModelConfig
from seq2seq.model import Seq2Seq
from seq2seq.model.decoder import Decoder, DecoderState
from seq2seq.model.encoder import EncoderOutput
from seq2seq.model.feeding import LstmFeedingAttention
from tests.test_model import (
    ALL_MODES,
    EMBEDDING_MODES,
    SRC_LENGTHS,
    TINY,
    is_valid,
    mode_id,
    one_thread,
    source_batch,
    target_batch,
    tiny_model,
)

__all__ = ["one_thread"]  # the module-scoped single-thread fixture applies here too

RNN_MODES = [
    cfg
    for attention, feed, layers in itertools.product(["bahdanau", "dot", "general"], [True, False], [1, 2])
    if is_valid(
        cfg := dataclasses.replace(
            TINY, cell="rnn", attention=attention, input_feeding=feed, enc_layers=layers, dec_layers=layers
        )
    )
]
MODES = ALL_MODES + EMBEDDING_MODES + RNN_MODES


def fused(cfg: ModelConfig) -> bool:
    """The modes `LstmFeedingAttention` claims; the others step `Decoder._step` on both sides."""
    return cfg.input_feeding and cfg.cell == "lstm" and cfg.dec_layers == 1 and cfg.attention != "bahdanau"


STEPPED = [cfg for cfg in MODES if not fused(cfg)]
DEFAULT_MODES = [cfg for cfg in MODES if fused(cfg)] + STEPPED[::8]
"""Every fused mode and a sample of the stepped ones; the whole table runs with the slow tests."""
TGT_LEN = 5


def stepped(decoder: Decoder, tgt_in: torch.Tensor, state: DecoderState, enc: EncoderOutput):
    """The reference: the whole target embedded (and dropped out) once, then `_step` over it under
    autograd, as the decoder did before the fused Function."""
    return decoder._forward_stepped(decoder.emb_dropout(decoder.embed(tgt_in)), state, enc)


def logits_and_grads(model: Seq2Seq, fused: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Logits, attention and parameter gradients of a random projection of the logits, in training mode
    (every dropout on) from the same seed, through the model's decoder or the stepped reference."""
    src_ids, src_lengths = source_batch()
    tgt_in = target_batch(len(SRC_LENGTHS), TGT_LEN)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    enc = model.encode(src_ids, src_lengths)
    state = model.init_state(enc)
    run = model.decoder if fused else lambda *a: stepped(model.decoder, *a)
    att, weights = run(tgt_in, state, enc)
    logits = model.output(model.decoder.out_dropout(att))
    projection = torch.randn(logits.shape, generator=torch.Generator().manual_seed(3), dtype=logits.dtype)
    (logits * projection).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), weights.detach(), grads


@pytest.mark.parametrize(
    "cfg",
    [c if c in DEFAULT_MODES else pytest.param(c, marks=pytest.mark.slow) for c in MODES],
    ids=mode_id,
)
def test_forward_and_gradients_equal_stepping(cfg: ModelConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    apply = LstmFeedingAttention.apply
    monkeypatch.setattr(LstmFeedingAttention, "apply", lambda *a: calls.append(1) or apply(*a))
    model = tiny_model(cfg).double().train()
    logits, weights, grads = logits_and_grads(model, fused=True, seed=4)
    assert len(calls) == fused(cfg)
    ref_logits, ref_weights, ref_grads = logits_and_grads(model, fused=False, seed=4)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(weights, ref_weights, rtol=1e-10, atol=1e-12)
    assert grads.keys() == ref_grads.keys()
    assert len(grads) == len(list(model.parameters()))
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-9, atol=1e-12, msg=name)


def random_inputs(src_lengths: list[int], steps: int, emb: int, hid: int, enc_size: int):
    gen = torch.Generator().manual_seed(5)
    batch, src_len = len(src_lengths), max(src_lengths)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()

    mask = torch.arange(src_len).unsqueeze(0) < torch.tensor(src_lengths).unsqueeze(1)
    return (
        rand(steps, batch, 4 * hid),
        rand(batch, hid),
        rand(batch, hid),
        rand(batch, hid),
        rand(4 * hid, 2 * hid),
        rand(batch, src_len, hid),
        rand(batch, src_len, enc_size),
        mask,
        rand(hid, enc_size + hid),
    )


@pytest.mark.parametrize("steps", [1, 4])
def test_backward_passes_gradcheck(steps: int) -> None:
    """Every input's gradient against finite differences, padded source positions included."""
    inputs = random_inputs([3, 5, 2], steps, 4, 3, 6)
    assert torch.autograd.gradcheck(lambda *a: LstmFeedingAttention.apply(*a)[0], inputs)


def test_attention_weights_carry_no_gradient() -> None:
    att, weights = LstmFeedingAttention.apply(*random_inputs([3, 5], 2, 4, 3, 6))
    assert att.requires_grad and not weights.requires_grad
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, dtype=torch.float64))
    assert bool((weights[0, :, 3:] == 0).all())


def test_autocast_keeps_the_stepped_decoder() -> None:
    """The Function is written for one dtype: under bf16 autocast the decoder steps `_step` as before
    (whether that runs depends on the CPU: oneDNN has no bf16 LSTM without native bf16)."""
    model = tiny_model(TINY).train()
    emb = model.decoder.embed(target_batch(len(SRC_LENGTHS), TGT_LEN))
    assert model.decoder._fusable(emb)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not model.decoder._fusable(emb)
    assert not model.decoder._fusable(emb.to(torch.bfloat16))

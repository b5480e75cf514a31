"""The inference step of a one-layer LSTM decoder that looks its embedding projection up
(`seq2seq.model.lookup`) equals `nn.LSTM`'s step, follows weight updates, and stays out of training,
autograd, autocast, quantized models and vocabularies too large for its table."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from seq2seq.config import ModelConfig
from seq2seq.model import Seq2Seq
from seq2seq.model import lookup as lookup_module
from seq2seq.model.decoder import Decoder
from seq2seq.model.lookup import LookupLstmStep
from tests.test_model import TINY, VOCAB, source_batch, target_batch, tiny_model

LSTM_MODES = [
    dataclasses.replace(TINY, input_feeding=True),
    dataclasses.replace(TINY, input_feeding=False),
    dataclasses.replace(TINY, input_feeding=True, attention="bahdanau", emb_size=8, tie_embeddings=True),
]


def lookup_model(cfg: ModelConfig = TINY) -> Seq2Seq:
    model = tiny_model(cfg)
    model.decoder.enable_lookup()
    return model


def steps(model: Seq2Seq, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """decode_step over a target batch with autograd on (nn.LSTM) or off (the lookup) -> log-probs and
    cells (hidden states for a GRU)."""
    src_ids, src_lengths = source_batch()
    tgt_in = target_batch(src_ids.size(0))
    log_probs, cells = [], []
    with torch.set_grad_enabled(grad):
        enc = model.encode(src_ids, src_lengths)
        state = model.init_state(enc)
        for t in range(tgt_in.size(1)):
            out = model.decode_step(tgt_in[:, t], state, enc)
            state = out.state
            log_probs.append(out.log_probs.detach())
            cells.append((state.hidden if state.cell is None else state.cell).detach())
    return torch.stack(log_probs, 1), torch.stack(cells, 1)


def count_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = LookupLstmStep.__call__

    def counted(self: LookupLstmStep, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls[0] += 1
        return original(self, *args)

    monkeypatch.setattr(LookupLstmStep, "__call__", counted)
    return calls


@pytest.mark.parametrize("cfg", LSTM_MODES, ids=["feed", "nofeed", "bahdanau-tied"])
def test_lookup_step_equals_the_lstm_step(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    model = lookup_model(cfg).double()
    calls = count_calls(monkeypatch)
    reference, reference_cells = steps(model, grad=True)
    assert calls[0] == 0
    looked_up, cells = steps(model, grad=False)
    assert calls[0] == target_batch(3).size(1)
    torch.testing.assert_close(cells, reference_cells, rtol=1e-12, atol=1e-12)  # float64
    torch.testing.assert_close(looked_up, reference)  # decode_step's log-probabilities are float32


def test_the_table_follows_weight_updates() -> None:
    model = lookup_model().double()
    steps(model, grad=False)  # builds the table
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()  # in place, as between two validations of a training run
    reference, reference_cells = steps(model, grad=True)
    looked_up, cells = steps(model, grad=False)
    torch.testing.assert_close(cells, reference_cells, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(looked_up, reference)
    model.float()  # new tensors: the table follows the dtype too
    _, cells32 = steps(model, grad=False)
    assert cells32.dtype == torch.float32
    torch.testing.assert_close(cells32.double(), reference_cells, rtol=1e-4, atol=1e-4)


def test_the_lookup_stays_out_of_training_and_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    model = lookup_model()
    calls = count_calls(monkeypatch)
    model.train()
    steps(model, grad=False)  # dropout active: the plain step
    model.eval()
    prev = torch.tensor([4, 5])
    with torch.no_grad():
        assert model.decoder._lookup_step(prev) is not None
        with torch.autocast("cpu", dtype=torch.bfloat16):  # (this CPU may lack a bf16 LSTM to run)
            assert model.decoder._lookup_step(prev) is None
    assert calls[0] == 0
    with torch.inference_mode():
        steps(model, grad=False)
    assert calls[0] > 0


@pytest.mark.parametrize(
    "cfg",
    [dataclasses.replace(TINY, dec_layers=2), dataclasses.replace(TINY, cell="gru")],
    ids=["two-layers", "gru"],
)
def test_other_decoders_step_as_before(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_calls(monkeypatch)
    steps(lookup_model(cfg), grad=False)
    assert calls[0] == 0


def test_a_table_too_large_is_not_built(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    monkeypatch.setattr(lookup_module, "MAX_TABLE_ELEMENTS", VOCAB * 4 * TINY.dec_hidden - 1)
    assert not LookupLstmStep.applies(model.decoder.embed, model.decoder.rnn)
    monkeypatch.setattr(lookup_module, "MAX_TABLE_ELEMENTS", VOCAB * 4 * TINY.dec_hidden)
    assert LookupLstmStep.applies(model.decoder.embed, model.decoder.rnn)


def test_a_quantized_decoder_does_not_use_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from seq2seq.translate import quantize_int8

    model = lookup_model()
    steps(model, grad=False)  # the float model made its lookup
    quantized = quantize_int8(model)
    decoder = quantized.decoder
    assert isinstance(decoder, Decoder)
    assert not LookupLstmStep.applies(decoder.embed, decoder.rnn)
    calls = count_calls(monkeypatch)
    steps(quantized, grad=False)
    assert calls[0] == 0


def test_the_lookup_is_off_until_enabled_and_translators_enable_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation during training (fused optimizers change weights untraced) steps nn.LSTM."""
    from seq2seq.translate import Translator

    model = tiny_model()
    calls = count_calls(monkeypatch)
    steps(model, grad=False)
    assert calls[0] == 0 and not model.decoder.lookup_enabled
    translator = Translator(model, tokenizer=None, cfg=None, device=torch.device("cpu"))  # type: ignore[arg-type]
    assert translator.model is model and model.decoder.lookup_enabled


def test_each_use_of_the_context_builds_a_fresh_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation during training decodes inside `Decoder.looked_up()`: weights changed without a trace
    between two validations (a fused optimizer step) are seen, and the table is gone afterwards."""
    model = tiny_model().double()
    calls = count_calls(monkeypatch)
    for _ in range(2):
        _, reference_cells = steps(model, grad=True)
        with model.decoder.looked_up():
            _, cells = steps(model, grad=False)
        assert not model.decoder.lookup_enabled and model.decoder._lookup is None
        torch.testing.assert_close(cells, reference_cells, rtol=1e-12, atol=1e-12)
        with torch.no_grad():
            for p in model.parameters():
                p.data.add_(0.1 * torch.randn_like(p))  # .data: no version bump, as in torch's fused Adam
    assert calls[0] == 2 * target_batch(3).size(1)

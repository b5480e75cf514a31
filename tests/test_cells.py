"""The reference cells and the tracer equal the fused torch modules, in float64, in every model mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seq2seq.config import ModelConfig
from seq2seq.inspect.trace import DIRECTIONS, gate_names, key, trace_batch, trace_ids
from seq2seq.model import Seq2Seq
from seq2seq.model.cells import cell_weights, step
from seq2seq.tokenizer import BOS
from tests.test_model import ALL_MODES, SRC_LENGTHS, VOCAB, mode_id, one_thread, source_batch, tiny_model

__all__ = ["one_thread"]  # the module-scoped single-thread fixture applies here too

ATOL = 1e-6


def rnn_of(kind: str, input_size: int, hidden: int) -> nn.Module:
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
    return cls(input_size, hidden, num_layers=2, batch_first=True, bidirectional=True).double()


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("reverse", [False, True])
def test_step_equals_torch_rnn(kind: str, reverse: bool) -> None:
    """Step by step over a sequence, the reference cell gives the fused module's h (and its final c)."""
    torch.manual_seed(0)
    rnn = rnn_of(kind, 3, 5)
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    out, final = rnn(x)
    layer_input = x
    for layer in range(2):
        outputs = []
        for d in (0, 1):
            w = cell_weights(rnn, layer, reverse=d == 1)
            state = {"h": x.new_zeros(2, 5), "c": x.new_zeros(2, 5)}
            hs = [torch.empty(0)] * 7
            for t in range(7)[:: -1 if d else 1]:
                result = step(kind, layer_input[:, t], state, w)
                state = {"h": result["h"], "c": result.get("c", state["c"])}
                hs[t] = result["h"]
            outputs.append(torch.stack(hs, dim=1))
            h_final = final[0] if isinstance(final, tuple) else final
            torch.testing.assert_close(state["h"], h_final[2 * layer + d], atol=ATOL, rtol=0)
            if isinstance(final, tuple):
                torch.testing.assert_close(state["c"], final[1][2 * layer + d], atol=ATOL, rtol=0)
        layer_input = torch.cat(outputs, dim=-1)
    torch.testing.assert_close(layer_input, out, atol=ATOL, rtol=0)


def test_lstm_gates_follow_the_equations() -> None:
    """C_t = f C_{t-1} + i C̃ and h_t = o tanh(C_t); every sigmoid gate is in (0, 1)."""
    torch.manual_seed(1)
    rnn = rnn_of("lstm", 3, 4)
    x, h, c = (torch.randn(5, n, dtype=torch.float64) for n in (3, 4, 4))
    out = step("lstm", x, {"h": h, "c": c}, cell_weights(rnn, 0))
    torch.testing.assert_close(out["c"], out["f"] * c + out["i"] * out["g"])
    torch.testing.assert_close(out["h"], out["o"] * torch.tanh(out["c"]))
    for gate in "fio":
        assert bool(((out[gate] > 0) & (out[gate] < 1)).all())


def test_unknown_layer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no layer 2"):
        cell_weights(rnn_of("gru", 3, 4), 2)


TRACE_MODES = ALL_MODES + [
    cfg.__class__(**{**cfg.__dict__, "cell": "rnn"}) for cfg in ALL_MODES if cfg.cell == "gru"
]


def double_model(cfg: ModelConfig) -> Seq2Seq:
    return tiny_model(cfg).double()


@pytest.mark.parametrize("cfg", TRACE_MODES, ids=mode_id)
def test_trace_equals_the_model(cfg: ModelConfig) -> None:
    """Traced encoder states, final states (every layer), decoder states and log-probs, and attention equal
    the model's own (`encode` over a padded batch, `init_state`, `decode_step`)."""
    model = double_model(cfg)
    src_ids, src_lengths = source_batch()
    tgt = [5, 7, 4]
    b = 0  # a sentence shorter than the batch width: the padded batch checks the real length is used
    n = SRC_LENGTHS[b]
    raw = trace_ids(model, src_ids[b, : n - 1].tolist(), tgt)
    with torch.no_grad():
        enc = model.encode(src_ids, src_lengths).index_select(torch.tensor([b]))
        torch.testing.assert_close(raw.enc.states[0], enc.states[0, :n], atol=ATOL, rtol=0)
        torch.testing.assert_close(raw.enc.hidden, enc.hidden, atol=ATOL, rtol=0)
        assert (raw.enc.cell is None) == (enc.cell is None)
        if enc.cell is not None:
            torch.testing.assert_close(raw.enc.cell, enc.cell, atol=ATOL, rtol=0)
        enc = enc._replace(states=enc.states[:, :n], mask=enc.mask[:, :n], keys=enc.keys[:, :n])
        state = model.init_state(enc)
        for t, prev in enumerate([BOS, *tgt]):
            out = model.decode_step(torch.tensor([prev]), state, enc)
            state = out.state
            torch.testing.assert_close(raw.dec_hidden[t], state.hidden[:, 0], atol=ATOL, rtol=0)
            if state.cell is not None:
                assert raw.dec_cell is not None
                torch.testing.assert_close(raw.dec_cell[t], state.cell[:, 0], atol=ATOL, rtol=0)
            torch.testing.assert_close(raw.arrays["attention"][t], out.attention[0], atol=ATOL, rtol=0)
            # decode_step returns float32 log-probs; its float64 attentional vector is compared exactly
            torch.testing.assert_close(
                raw.log_probs[t], out.log_probs[0].double(), atol=ATOL * 4, rtol=0, check_dtype=False
            )
            logits = model.output(state.feed[0])
            torch.testing.assert_close(raw.log_probs[t], torch.log_softmax(logits, -1), atol=ATOL, rtol=0)
    he = cfg.enc_hidden
    for layer in range(cfg.enc_layers):
        for d in range(2 if cfg.bidirectional else 1):
            h = raw.arrays[key("encoder", layer, DIRECTIONS[d], "h")]
            assert h.shape == (n, he)
            # the final state read by this direction is its h at the last (fwd) or first (bwd) position
            last = h[n - 1] if d == 0 else h[0]
            torch.testing.assert_close(last, raw.enc.hidden[layer, 0, d * he : (d + 1) * he])
            for name in gate_names(cfg.cell):
                assert key("encoder", layer, DIRECTIONS[d], name) in raw.arrays
    assert raw.arrays["attention"].shape == (len(tgt) + 1, n)
    assert raw.log_probs.shape == (len(tgt) + 1, VOCAB)


@pytest.mark.parametrize("cfg", [c for c in TRACE_MODES if not c.bidirectional][::7], ids=mode_id)
def test_every_step_of_every_encoder_layer_equals_the_fused_rnn_on_prefixes(cfg: ModelConfig) -> None:
    """nn.LSTM returns c only at the end: run it on every prefix to check each traced C_t and h_t of every
    layer, not just the last one."""
    model = double_model(cfg)
    src = [4, 6, 5, 8]
    raw = trace_ids(model, src, [5])
    emb = model.encoder.embed(torch.tensor([[*src, 3]]))
    with torch.no_grad():
        for t in range(1, len(src) + 2):
            _, final = model.encoder.rnn(emb[:, :t])
            hidden, cell = final if isinstance(final, tuple) else (final, None)
            for layer in range(cfg.enc_layers):
                h = raw.arrays[key("encoder", layer, "fwd", "h")][t - 1]
                torch.testing.assert_close(h, hidden[layer, 0], atol=ATOL, rtol=0)
                if cell is not None:
                    c = raw.arrays[key("encoder", layer, "fwd", "c")][t - 1]
                    torch.testing.assert_close(c, cell[layer, 0], atol=ATOL, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_gradients_per_source_position(cell: str) -> None:
    """With a zero bridge and one layer, the last forward (first backward) h feeds only the encoder states:
    its traced gradient norm equals autograd's through the real model's teacher-forced forward pass."""
    cfg = next(
        c
        for c in TRACE_MODES
        if c.cell == cell and c.bidirectional and c.enc_layers == 1 and c.bridge == "zero"
    )
    model = double_model(cfg)
    src, tgt = [4, 6, 5, 8], [5, 7]
    raw = trace_ids(model, src, tgt, gradients=True)
    grad_h = {d: raw.arrays[key("encoder", 0, d, "grad_h")] for d in DIRECTIONS}
    assert grad_h["fwd"].shape == (len(src) + 1,)
    assert bool((grad_h["fwd"] > 0).all())
    if cell == "lstm":
        assert raw.arrays[key("encoder", 0, "bwd", "grad_c")].shape == (len(src) + 1,)
    src_ids, lengths = torch.tensor([[*src, 3]]), torch.tensor([len(src) + 1])
    enc = model.encode(src_ids, lengths)
    states = enc.states.detach().requires_grad_(True)  # the fused encoder's outputs, as a leaf
    keys = model.decoder.attention.project_keys(states)
    enc = enc._replace(states=states, keys=keys)
    att, _ = model.decoder(torch.tensor([[BOS, *tgt]]), model.init_state(enc), enc)
    loss = -torch.log_softmax(model.output(att), -1)[0].gather(1, torch.tensor([[*tgt, 3]]).T).sum()
    (grad_states,) = torch.autograd.grad(loss, states)
    he = cfg.enc_hidden
    torch.testing.assert_close(grad_h["fwd"][-1], grad_states[0, -1, :he].norm(), atol=ATOL, rtol=0)
    torch.testing.assert_close(grad_h["bwd"][0], grad_states[0, 0, he:].norm(), atol=ATOL, rtol=0)


BATCH_SOURCES = [[4, 6, 5, 8, 9], [7], [5, 5, 6]]
BATCH_TARGETS = [[5, 7], [6, 4, 8, 5], [9]]


@pytest.mark.parametrize("cfg", TRACE_MODES[::5], ids=mode_id)
def test_a_sentence_traced_in_a_padded_batch_equals_it_traced_alone(cfg: ModelConfig) -> None:
    """Sources and targets of different lengths in one batch: every array (gates, states, attention,
    gradient norms), the log-probs, the encoder output and the decoder states of each sentence equal its
    own trace, so padding reaches neither a backward direction nor attention nor another sentence's loss."""
    model = double_model(cfg)
    batch = trace_batch(model, BATCH_SOURCES, BATCH_TARGETS, gradients=True)
    assert len(batch) == len(BATCH_SOURCES)
    for src, tgt, raw in zip(BATCH_SOURCES, BATCH_TARGETS, batch, strict=True):
        alone = trace_ids(model, src, tgt, gradients=True)
        assert raw.arrays.keys() == alone.arrays.keys()
        for name, value in alone.arrays.items():
            torch.testing.assert_close(raw.arrays[name], value, atol=ATOL, rtol=0, msg=name)
        torch.testing.assert_close(raw.log_probs, alone.log_probs, atol=ATOL, rtol=0)
        for got, want in zip(raw.enc, alone.enc, strict=True):
            if want is None:
                assert got is None
            else:
                torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
        torch.testing.assert_close(raw.dec_hidden, alone.dec_hidden, atol=ATOL, rtol=0)
        assert raw.arrays["attention"].shape == (len(tgt) + 1, len(src) + 1)


def test_trace_batch_needs_one_target_per_source() -> None:
    model = double_model(TRACE_MODES[0])
    with pytest.raises(ValueError, match="2 sources for 1 targets"):
        trace_batch(model, [[4], [5]], [[6]])

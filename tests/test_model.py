"""Model properties on tiny random models: shapes, padding masked, a sentence alone equals it inside a padded
batch, teacher-forced `forward` equals a loop of `decode_step` in every mode, initialisation, overfitting.
No numbers from seeded weights are pinned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.config import Config, ModelConfig, check_config
from seq2seq.errors import Seq2SeqError
from seq2seq.model import Seq2Seq, build_model
from seq2seq.special import BOS, EOS, PAD

VOCAB = 10
SRC_LENGTHS = [4, 6, 2]
"""Source lengths (EOS included) of the test batch; the widest sets S."""
TGT_LEN = 4

TINY = ModelConfig(emb_size=6, enc_hidden=4, dec_hidden=8, dropout=0.3, emb_dropout=0.3, out_dropout=0.3)
"""Bidirectional encoder output 2 x 4 == dec_hidden 8; unidirectional 4 != 8 (dot and last then invalid)."""


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Tiny tensors: on a shared CPU, handing them between threads costs more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    with single_thread():
        yield


def is_valid(cfg: ModelConfig) -> bool:
    try:
        check_config(Config(model=cfg))
    except Seq2SeqError:
        return False
    return True


def mode_id(cfg: ModelConfig) -> str:
    return (
        f"{cfg.cell}-{cfg.attention}-{'feed' if cfg.input_feeding else 'nofeed'}-{cfg.bridge}-"
        f"{'bi' if cfg.bidirectional else 'uni'}-enc{cfg.enc_layers}-dec{cfg.dec_layers}"
    )


ALL_MODES = [
    cfg
    for cell, attention, feed, bridge, bi, enc_layers, dec_layers in itertools.product(
        ["lstm", "gru"],
        ["bahdanau", "dot", "general"],
        [True, False],
        ["zero", "last", "learned"],
        [True, False],
        [1, 2],
        [1, 2],
    )
    if is_valid(
        cfg := dataclasses.replace(
            TINY,
            cell=cell,
            attention=attention,
            input_feeding=feed,
            bridge=bridge,
            bidirectional=bi,
            enc_layers=enc_layers,
            dec_layers=dec_layers,
        )
    )
]
EMBEDDING_MODES = [
    dataclasses.replace(TINY, emb_size=8, tie_embeddings=True),
    dataclasses.replace(TINY, share_embeddings=True),
    dataclasses.replace(TINY, emb_size=8, tie_embeddings=True, share_embeddings=True, cell="gru"),
]


def tiny_model(cfg: ModelConfig = TINY, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return build_model(cfg, VOCAB, VOCAB).eval()


def source_batch(src_lengths: list[int] = SRC_LENGTHS, pad: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """src_ids [B, S] of random words (ids 4..V-1) then EOS, `pad` after; src_lengths [B]."""
    gen = torch.Generator().manual_seed(1)
    src_ids = torch.full((len(src_lengths), max(src_lengths)), pad, dtype=torch.long)
    for b, n in enumerate(src_lengths):
        src_ids[b, : n - 1] = torch.randint(4, VOCAB, (n - 1,), generator=gen)
        src_ids[b, n - 1] = EOS
    return src_ids, torch.tensor(src_lengths)


def target_batch(batch: int, length: int = TGT_LEN) -> torch.Tensor:
    """tgt_in [B, T]: BOS then random words, the last row padded after two tokens."""
    gen = torch.Generator().manual_seed(2)
    tgt_in = torch.randint(4, VOCAB, (batch, length), generator=gen)
    tgt_in[:, 0] = BOS
    tgt_in[-1, 2:] = PAD
    return tgt_in


def stepwise(model: Seq2Seq, src_ids: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor):
    """decode_step over tgt_in [B, T] -> log-probs [B, T, V], attention [B, T, S]."""
    enc = model.encode(src_ids, src_lengths)
    state = model.init_state(enc)
    log_probs, attention = [], []
    for t in range(tgt_in.size(1)):
        out = model.decode_step(tgt_in[:, t], state, enc)
        log_probs.append(out.log_probs)
        attention.append(out.attention)
        state = out.state
    return torch.stack(log_probs, dim=1), torch.stack(attention, dim=1)


def test_mode_table_covers_every_option() -> None:
    """The filter keeps both sizes of every option and drops only what check_config forbids."""
    assert len(ALL_MODES) == 184
    for name in ("cell", "attention", "input_feeding", "bridge", "bidirectional", "enc_layers", "dec_layers"):
        assert len({getattr(cfg, name) for cfg in ALL_MODES}) >= 2, name
    assert not any(cfg.attention == "dot" and not cfg.bidirectional for cfg in ALL_MODES)
    assert not any(cfg.bridge == "last" and cfg.enc_layers != cfg.dec_layers for cfg in ALL_MODES)


@pytest.mark.parametrize("cfg", ALL_MODES + EMBEDDING_MODES, ids=mode_id)
def test_forward_equals_stepwise_decoding(cfg: ModelConfig) -> None:
    model = tiny_model(cfg)
    src_ids, src_lengths = source_batch()
    tgt_in = target_batch(len(SRC_LENGTHS))
    with torch.no_grad():
        logits = model(src_ids, src_lengths, tgt_in)
        log_probs, attention = stepwise(model, src_ids, src_lengths, tgt_in)
        enc = model.encode(src_ids, src_lengths)
        _, forward_attention = model.decoder(tgt_in, model.init_state(enc), enc)
    assert logits.shape == (len(SRC_LENGTHS), TGT_LEN, VOCAB)
    torch.testing.assert_close(torch.log_softmax(logits, dim=-1), log_probs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(forward_attention, attention, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("input_feeding", [True, False])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_input_feeding_feeds_the_attentional_vector(input_feeding: bool, cell: str) -> None:
    """The state carries the attentional vector that produced this step's output; the next step reads it
    only with input feeding."""
    model = tiny_model(dataclasses.replace(TINY, cell=cell, input_feeding=input_feeding))
    src_ids, src_lengths = source_batch()
    with torch.no_grad():
        enc = model.encode(src_ids, src_lengths)
        out = model.decode_step(torch.full((len(SRC_LENGTHS),), BOS), model.init_state(enc), enc)
        torch.testing.assert_close(torch.log_softmax(model.output(out.state.feed), dim=-1), out.log_probs)
        prev = torch.full((len(SRC_LENGTHS),), 5)
        fed = model.decode_step(prev, out.state, enc).log_probs
        unfed = model.decode_step(prev, out.state._replace(feed=torch.zeros_like(out.state.feed)), enc)
    assert torch.allclose(fed, unfed.log_probs) != input_feeding


SHAPE_MODES = [
    TINY,
    dataclasses.replace(TINY, cell="gru", bidirectional=False, enc_layers=2, dec_layers=1),
    dataclasses.replace(TINY, enc_layers=1, dec_layers=2, attention="bahdanau"),
    dataclasses.replace(TINY, cell="gru", enc_layers=2, dec_layers=2, bridge="last", attention="dot"),
]


@pytest.mark.parametrize("cfg", SHAPE_MODES, ids=mode_id)
def test_shapes(cfg: ModelConfig) -> None:
    model = tiny_model(cfg)
    src_ids, src_lengths = source_batch()
    batch, width = src_ids.shape
    enc_size = cfg.enc_hidden * (2 if cfg.bidirectional else 1)
    enc = model.encode(src_ids, src_lengths)
    assert enc.states.shape == (batch, width, enc_size)
    assert enc.mask.shape == (batch, width) and enc.mask.dtype == torch.bool
    assert enc.keys.shape[:2] == (batch, width)
    assert enc.hidden.shape == (cfg.enc_layers, batch, enc_size)
    assert (enc.cell is None) == (cfg.cell == "gru")
    if enc.cell is not None:
        assert enc.cell.shape == enc.hidden.shape
    state = model.init_state(enc)
    assert state.hidden.shape == (cfg.dec_layers, batch, cfg.dec_hidden)
    assert (state.cell is None) == (cfg.cell == "gru")
    assert state.feed.shape == (batch, cfg.dec_hidden)
    out = model.decode_step(torch.full((batch,), BOS), state, enc)
    assert out.log_probs.shape == (batch, VOCAB)
    assert out.attention.shape == (batch, width)
    assert out.state.hidden.shape == state.hidden.shape
    torch.testing.assert_close(out.log_probs.exp().sum(-1), torch.ones(batch))
    index = torch.tensor([2, 0, 0])
    assert enc.index_select(index).states.shape == enc.states.shape
    assert out.state.index_select(index).hidden.shape == state.hidden.shape


ENCODER_MODES = [
    dataclasses.replace(TINY, cell=cell, bidirectional=bi, enc_layers=layers)
    for cell, bi, layers in itertools.product(["lstm", "gru"], [True, False], [1, 2])
]


@pytest.mark.parametrize("cfg", ENCODER_MODES, ids=mode_id)
def test_encoder_alone_equals_inside_padded_batch(cfg: ModelConfig) -> None:
    model = tiny_model(cfg)
    src_ids, src_lengths = source_batch()
    with torch.no_grad():
        enc = model.encode(src_ids, src_lengths)
        for b, n in enumerate(SRC_LENGTHS):
            alone = model.encode(src_ids[b : b + 1, :n], src_lengths[b : b + 1])
            torch.testing.assert_close(enc.states[b : b + 1, :n], alone.states)
            torch.testing.assert_close(enc.keys[b : b + 1, :n], alone.keys)
            torch.testing.assert_close(enc.hidden[:, b : b + 1], alone.hidden)
            if enc.cell is not None:
                assert alone.cell is not None
                torch.testing.assert_close(enc.cell[:, b : b + 1], alone.cell)
            assert bool((enc.states[b, n:] == 0).all())
            assert enc.mask[b].tolist() == [i < n for i in range(src_ids.size(1))]


@pytest.mark.parametrize("cfg", ENCODER_MODES, ids=mode_id)
def test_final_state_is_the_last_real_position(cfg: ModelConfig) -> None:
    """The top layer's final forward state is its output at the last real token, the backward one at the
    first token: the directions and layers of the final state are not mixed up."""
    model = tiny_model(cfg)
    src_ids, src_lengths = source_batch()
    with torch.no_grad():
        enc = model.encode(src_ids, src_lengths)
    h = cfg.enc_hidden
    for b, n in enumerate(SRC_LENGTHS):
        torch.testing.assert_close(enc.hidden[-1, b, :h], enc.states[b, n - 1, :h])
        if cfg.bidirectional:
            torch.testing.assert_close(enc.hidden[-1, b, h:], enc.states[b, 0, h:])


@pytest.mark.parametrize("cfg", [TINY, *ALL_MODES[::23]], ids=mode_id)
def test_padded_source_positions_are_masked(cfg: ModelConfig) -> None:
    """Attention is zero at padding, and whatever token stands there changes nothing."""
    model = tiny_model(cfg)
    src_ids, src_lengths = source_batch()
    garbage, _ = source_batch(pad=VOCAB - 1)
    tgt_in = target_batch(len(SRC_LENGTHS))
    with torch.no_grad():
        log_probs, attention = stepwise(model, src_ids, src_lengths, tgt_in)
        other_log_probs, other_attention = stepwise(model, garbage, src_lengths, tgt_in)
        logits = model(src_ids, src_lengths, tgt_in)
        other_logits = model(garbage, src_lengths, tgt_in)
    for b, n in enumerate(SRC_LENGTHS):
        assert bool((attention[b, :, n:] == 0).all())
        assert bool((attention[b, :, :n] > 0).all())
    torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:2]))
    torch.testing.assert_close(log_probs, other_log_probs)
    torch.testing.assert_close(attention, other_attention)
    torch.testing.assert_close(logits, other_logits)


@pytest.mark.parametrize(
    "cfg",
    [
        dataclasses.replace(TINY, bridge="zero"),
        dataclasses.replace(TINY, bridge="last", enc_layers=2, dec_layers=2),
        dataclasses.replace(TINY, bridge="last", cell="gru"),
    ],
    ids=mode_id,
)
def test_bridge_zero_and_last(cfg: ModelConfig) -> None:
    model = tiny_model(cfg)
    enc = model.encode(*source_batch())
    state = model.init_state(enc)
    assert bool((state.feed == 0).all())
    if cfg.bridge == "zero":
        assert bool((state.hidden == 0).all())
        assert state.cell is not None and bool((state.cell == 0).all())
    else:
        torch.testing.assert_close(state.hidden, enc.hidden)
        assert (state.cell is None) == (enc.cell is None)
        if state.cell is not None:
            torch.testing.assert_close(state.cell, enc.cell)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("layers", [1, 2])
def test_forget_gate_bias(bidirectional: bool, layers: int) -> None:
    """b_ih + b_hh, the effective bias, is `forget_bias` on the forget gate of every LSTM layer."""
    cfg = dataclasses.replace(
        TINY, forget_bias=2.5, bidirectional=bidirectional, enc_layers=layers, dec_layers=layers
    )
    model = tiny_model(cfg)
    for rnn in (model.encoder.rnn, model.decoder.rnn):
        assert isinstance(rnn, nn.LSTM)
        h = rnn.hidden_size
        suffixes = [f"l{i}{d}" for i in range(layers) for d in ("", "_reverse")[: 1 + rnn.bidirectional]]
        assert len(suffixes) == layers * (2 if rnn is model.encoder.rnn and bidirectional else 1)
        for suffix in suffixes:
            bias = getattr(rnn, f"bias_ih_{suffix}") + getattr(rnn, f"bias_hh_{suffix}")
            torch.testing.assert_close(bias[h : 2 * h], torch.full((h,), 2.5))
            assert not torch.allclose(bias[:h], torch.full((h,), 2.5)), "only the forget gate is set"


def test_embeddings_tied_and_shared() -> None:
    model = tiny_model(EMBEDDING_MODES[2])
    assert model.encoder.embed is model.decoder.embed
    assert model.output.weight is model.decoder.embed.weight
    assert bool((model.decoder.embed.weight[PAD] == 0).all())
    separate = tiny_model(TINY)
    assert separate.encoder.embed is not separate.decoder.embed
    assert separate.output.weight is not separate.decoder.embed.weight
    with pytest.raises(ValueError, match="joint vocabulary"):
        build_model(EMBEDDING_MODES[1], VOCAB, VOCAB + 1)


@pytest.mark.parametrize(
    "cfg", [TINY, dataclasses.replace(TINY, cell="gru", input_feeding=False)], ids=mode_id
)
def test_overfits_one_batch(cfg: ModelConfig) -> None:
    """A few dozen Adam steps memorise three random sentence pairs (the loss starts near log V = 2.3)."""
    cfg = dataclasses.replace(
        cfg, emb_size=16, enc_hidden=16, dec_hidden=16, dropout=0.0, emb_dropout=0.0, out_dropout=0.0
    )
    model = tiny_model(cfg).train()
    src_ids, src_lengths = source_batch()
    tgt = target_batch(len(SRC_LENGTHS), TGT_LEN + 1)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(50):
        logits = model(src_ids, src_lengths, tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), tgt_out.reshape(-1), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


def test_decode_step_in_inference_mode_equals_the_plain_log_softmax() -> None:
    """Search runs decode_step under inference mode, where the log-softmax is taken in place."""
    model = tiny_model().eval()
    src_ids, src_lengths = source_batch()
    prev = torch.full((src_ids.size(0),), BOS)
    with torch.no_grad():
        enc = model.encode(src_ids, src_lengths)
        state = model.init_state(enc)
        expected = model.decode_step(prev, state, enc).log_probs
        att, _, _ = model.decoder.step(prev, state, enc)
        logits = model.output(att)
    with torch.inference_mode():
        got = model.decode_step(prev, state, enc).log_probs
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(expected, F.log_softmax(logits, dim=-1))

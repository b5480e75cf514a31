"""Re-run a trained encoder-decoder with the reference cells of `seq2seq.model.cells`, recording every gate.

The encoder runs every layer and direction over the real source (no padding: one sentence at a time); the
decoder runs its layers step by step with the model's own bridge, input feeding, attention and output layer,
forced on a given target. What is recorded, per token, layer, direction and unit: the gates (f, i, g = C̃, o
for the LSTM; r, z, n for the GRU; none for the tanh RNN), the memory cell C_t (LSTM) and h_t, and the
attention weights. The traced states equal the fused torch modules' (tests/test_cells.py, in every model
mode). With `gradients`, ‖∂loss/∂C_t‖ and ‖∂loss/∂h_t‖ per source position, the loss being the forced
target's negative log-likelihood.

Notation: S source length (EOS included), T target steps (EOS included), H hidden size, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seq2seq.model import EncoderOutput, Seq2Seq
from seq2seq.model.cells import GATES, STATES, cell_kind, cell_weights, step
from seq2seq.tokenizer import BOS, EOS

DIRECTIONS = ("fwd", "bwd")


def key(side: str, layer: int, direction: str, name: str) -> str:
    """Array name, e.g. 'encoder.0.fwd.f' (side 'encoder' or 'decoder', layer from 0 at the bottom)."""
    return f"{side}.{layer}.{direction}.{name}"


@dataclass(frozen=True)
class RawTrace:
    """Tensors of one traced sentence pair (batch dimension dropped)."""

    cell: str
    arrays: dict[str, torch.Tensor]
    """`key(...)` -> [S, H] (encoder) or [T, H] (decoder) for every gate and state; 'attention' [T, S];
    with gradients, 'encoder.L.D.grad_h' and '...grad_c' [S]."""
    log_probs: torch.Tensor
    """[T, V] decoder output distribution at every step."""
    enc: EncoderOutput
    """What the traced encoder hands to the decoder (for comparisons with `Seq2Seq.encode`)."""
    dec_hidden: torch.Tensor
    """[T, L, H] decoder hidden state of every layer after every step."""
    dec_cell: torch.Tensor | None
    """[T, L, H] decoder memory cell after every step (LSTM)."""


class _Recorder:
    """Collects per-step outputs of one layer and direction into [steps, H] tensors."""

    def __init__(self) -> None:
        self.steps: dict[str, list[torch.Tensor]] = {}

    def add(self, out: dict[str, torch.Tensor]) -> None:
        for name, value in out.items():
            self.steps.setdefault(name, []).append(value)

    def stacked(self, order: list[int] | None = None) -> dict[str, torch.Tensor]:
        result = {}
        for name, values in self.steps.items():
            rows = values if order is None else [values[i] for i in order]
            result[name] = torch.cat(rows, dim=0)  # [steps, H]
        return result


def _zero_state(kind: str, like: torch.Tensor, hidden: int) -> dict[str, torch.Tensor]:
    return {name: like.new_zeros(1, hidden) for name in STATES[kind]}


def _run_encoder(
    model: Seq2Seq, src: torch.Tensor, arrays: dict[str, torch.Tensor], live: list[tuple[str, torch.Tensor]]
) -> EncoderOutput:
    """src [S] ids (EOS included) -> EncoderOutput for a batch of one, recording into `arrays`."""
    encoder = model.encoder
    rnn = encoder.rnn
    kind = cell_kind(rnn)
    hidden = rnn.hidden_size
    length = src.size(0)
    layer_input = encoder.embed(src)  # [S, E]
    finals: dict[str, list[torch.Tensor]] = {name: [] for name in STATES[kind]}
    for layer in range(encoder.layers):
        outputs = []
        per_state: dict[str, list[torch.Tensor]] = {name: [] for name in STATES[kind]}
        for d in range(encoder.directions):
            weights = cell_weights(rnn, layer, reverse=d == 1)
            positions = list(range(length))[:: -1 if d == 1 else 1]
            state = _zero_state(kind, layer_input, hidden)
            rec = _Recorder()
            for t in positions:
                out = step(kind, layer_input[t : t + 1], state, weights)
                state = {name: out[name] for name in STATES[kind]}
                for name in STATES[kind]:
                    live.append((key("encoder", layer, DIRECTIONS[d], name), out[name]))
                rec.add(out)
            order = list(range(length))[::-1] if d == 1 else None  # back into source order
            recorded = rec.stacked(order)
            for name, value in recorded.items():
                arrays[key("encoder", layer, DIRECTIONS[d], name)] = value
            outputs.append(recorded["h"])
            for name in STATES[kind]:
                per_state[name].append(state[name])  # [1, H]: last position read by this direction
        layer_input = torch.cat(outputs, dim=-1)  # [S, D * H]
        for name in STATES[kind]:
            finals[name].append(torch.cat(per_state[name], dim=-1))  # [1, D * H]
    states = layer_input.unsqueeze(0)  # [1, S, He]
    mask = torch.ones(1, length, dtype=torch.bool, device=src.device)
    cell = torch.stack(finals["c"]) if "c" in finals else None  # [L, 1, He]
    keys = model.decoder.attention.project_keys(states)
    return EncoderOutput(states, mask, keys, torch.stack(finals["h"]), cell)


def trace_ids(model: Seq2Seq, src_ids: list[int], tgt_ids: list[int], gradients: bool = False) -> RawTrace:
    """Trace the model (in eval mode) on source ids and forced target ids, both without BOS/EOS."""
    if model.training:
        raise ValueError("trace a model in eval mode (dropout would make the trace random)")
    kind = cell_kind(model.encoder.rnn)
    device = model.output.weight.device
    src = torch.tensor([*src_ids, EOS], device=device)
    tgt_in = [BOS, *tgt_ids]
    tgt_out = torch.tensor([*tgt_ids, EOS], device=device)
    arrays: dict[str, torch.Tensor] = {}
    live: list[tuple[str, torch.Tensor]] = []
    with torch.set_grad_enabled(gradients):
        enc = _run_encoder(model, src, arrays, live)
        log_probs, dec_hidden, dec_cell, attention = _run_decoder(model, kind, enc, tgt_in, arrays)
        arrays["attention"] = attention
        if gradients:
            _encoder_gradients(log_probs, tgt_out, live, arrays)
    detached = {name: value.detach() for name, value in arrays.items()}
    return RawTrace(kind, detached, log_probs.detach(), enc, dec_hidden, dec_cell)


def _run_decoder(
    model: Seq2Seq, kind: str, enc: EncoderOutput, tgt_in: list[int], arrays: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Forced decoding -> log-probs [T, V], hidden [T, L, H], cell [T, L, H] or None, attention [T, S]."""
    decoder = model.decoder
    layers = decoder.rnn.num_layers
    weights = [cell_weights(decoder.rnn, layer) for layer in range(layers)]
    init = model.init_state(enc)
    states = [
        {"h": init.hidden[layer]} | ({} if init.cell is None else {"c": init.cell[layer]})
        for layer in range(layers)
    ]
    feed = init.feed  # [1, H]
    recs = [_Recorder() for _ in range(layers)]
    log_probs, hiddens, cells, attention = [], [], [], []
    prev = torch.tensor(tgt_in, device=enc.states.device)
    for t in range(prev.size(0)):
        x = decoder.embed(prev[t : t + 1])  # [1, E]
        if decoder.input_feeding:
            x = torch.cat([x, feed.to(x.dtype)], dim=-1)
        for layer in range(layers):
            out = step(kind, x, states[layer], weights[layer])
            states[layer] = {name: out[name] for name in STATES[kind]}
            recs[layer].add(out)
            x = out["h"]
        att, w = decoder._attend(x.unsqueeze(1), enc)  # [1, 1, H], [1, 1, S]
        feed = att.squeeze(1)
        log_probs.append(torch.log_softmax(model.output(feed), dim=-1))
        hiddens.append(torch.cat([s["h"] for s in states]))  # [L, H]
        if "c" in STATES[kind]:
            cells.append(torch.cat([s["c"] for s in states]))
        attention.append(w[0])
    for layer, rec in enumerate(recs):
        for name, value in rec.stacked().items():
            arrays[key("decoder", layer, "fwd", name)] = value
    return (
        torch.cat(log_probs),
        torch.stack(hiddens).detach(),
        torch.stack(cells).detach() if cells else None,
        torch.cat(attention),
    )


def _encoder_gradients(
    log_probs: torch.Tensor,
    tgt_out: torch.Tensor,
    live: list[tuple[str, torch.Tensor]],
    arrays: dict[str, torch.Tensor],
) -> None:
    """‖∂loss/∂h_t‖ (and C_t) per source position for every encoder layer and direction."""
    loss = -log_probs.gather(1, tgt_out.unsqueeze(1)).sum()
    tensors = [value for _, value in live]
    grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    by_name: dict[str, list[torch.Tensor]] = {}
    for (name, value), grad in zip(live, grads, strict=True):
        norm = value.new_zeros(()) if grad is None else grad.norm()
        by_name.setdefault(name, []).append(norm)
    for name, norms in by_name.items():
        side, layer, direction, state = name.split(".")
        values = torch.stack(norms)
        if direction == "bwd":  # recorded from the last position back
            values = values.flip(0)
        arrays[key(side, int(layer), direction, f"grad_{state}")] = values


def gate_names(kind: str) -> tuple[str, ...]:
    """Gates then states recorded for cell `kind`."""
    return GATES[kind] + STATES[kind]

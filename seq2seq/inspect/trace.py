"""Re-run a trained encoder-decoder with the reference cells of `seq2seq.model.cells`, recording every gate.

The encoder runs every layer and direction over the real sources, the decoder its layers step by step with
the model's own bridge, input feeding, attention and output layer, forced on given targets. Sentences are
traced together in a padded batch (one matmul per step for all of them): a backward direction starts from
a zero state at each sentence's own last token, and attention masks the padding, so a sentence traced in a
batch equals the same sentence traced alone. What is recorded, per token, layer, direction and unit: the
gates (f, i, g = C̃, o for the LSTM; r, z, n for the GRU; none for the tanh RNN), the memory cell C_t (LSTM)
and h_t, and the attention weights. The traced states equal the fused torch modules' (tests/test_cells.py,
in every model mode). With `gradients`, ‖∂loss/∂C_t‖ and ‖∂loss/∂h_t‖ per source position, the loss being
the forced target's negative log-likelihood (each sentence's own: sentences do not interact).

Notation: B sentences, S source length (EOS included), T target steps (EOS included), H hidden size,
V vocabulary; in a batch, S and T are the longest and shorter sentences are padded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from seq2seq.model import EncoderOutput, Seq2Seq
from seq2seq.model.cells import GATES, STATES, CellWeights, cell_kind, cell_weights, step
from seq2seq.special import PAD
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


Live = list[tuple[str, torch.Tensor]]
"""(array name, [B, H] state of one step), in the order the steps ran: what gradients are taken of."""


def _padded(rows: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> ids [B, N] padded with PAD, lengths [B]."""
    lengths = torch.tensor([len(row) for row in rows], device=device)
    ids = torch.full((len(rows), int(lengths.max())), PAD, dtype=torch.long, device=device)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, lengths


def _run_direction(
    kind: str,
    layer_input: torch.Tensor,
    mask: torch.Tensor,
    weights: CellWeights,
    reverse: bool,
    live: Live,
    names: dict[str, str],
) -> dict[str, torch.Tensor]:
    """One layer and direction over layer_input [B, S, In] -> every gate and state [B, S, H], source order.

    Reading right to left, the state stays zero over a sentence's padding (mask [B, S] False), so each
    sentence starts from zero at its own last token; reading left to right, padding comes after the end
    and is never read back. Every step's states go to `live` under `names` (state -> array name)."""
    batch, length = mask.shape
    hidden = weights.w_hh.size(1)
    zero = layer_input.new_zeros(batch, hidden)
    state = {name: zero for name in STATES[kind]}
    steps: list[dict[str, torch.Tensor]] = [{}] * length
    for t in range(length - 1, -1, -1) if reverse else range(length):
        out = step(kind, layer_input[:, t], state, weights)
        if reverse:
            real = mask[:, t : t + 1]
            state = {name: torch.where(real, out[name], zero) for name in STATES[kind]}
        else:
            state = {name: out[name] for name in STATES[kind]}
        for name in STATES[kind]:
            live.append((names[name], out[name]))
        steps[t] = out
    return {name: torch.stack([out[name] for out in steps], dim=1) for name in steps[0]}


def _run_encoder(
    model: Seq2Seq, src: torch.Tensor, lengths: torch.Tensor, arrays: dict[str, torch.Tensor], live: Live
) -> EncoderOutput:
    """src [B, S] ids (EOS included, PAD after), lengths [B] -> EncoderOutput, recording [B, S, H] arrays."""
    encoder = model.encoder
    rnn = encoder.rnn
    kind = cell_kind(rnn)
    batch, length = src.shape
    mask = torch.arange(length, device=src.device).unsqueeze(0) < lengths.unsqueeze(1)  # [B, S]
    rows = torch.arange(batch, device=src.device)
    layer_input = encoder.embed(src)  # [B, S, E]
    finals: dict[str, list[torch.Tensor]] = {name: [] for name in STATES[kind]}
    for layer in range(encoder.layers):
        outputs = []
        per_state: dict[str, list[torch.Tensor]] = {name: [] for name in STATES[kind]}
        for d in range(encoder.directions):
            names = {name: key("encoder", layer, DIRECTIONS[d], name) for name in STATES[kind]}
            weights = cell_weights(rnn, layer, reverse=d == 1)
            recorded = _run_direction(kind, layer_input, mask, weights, d == 1, live, names)
            for name, value in recorded.items():
                arrays[key("encoder", layer, DIRECTIONS[d], name)] = value
            outputs.append(recorded["h"])
            # the last position this direction reads: the sentence's end (fwd) or its start (bwd)
            last = lengths - 1 if d == 0 else torch.zeros_like(lengths)
            for name in STATES[kind]:
                per_state[name].append(recorded[name][rows, last])  # [B, H]
        layer_input = torch.cat(outputs, dim=-1) * mask.unsqueeze(-1)  # [B, S, D * H], zero at padding
        for name in STATES[kind]:
            finals[name].append(torch.cat(per_state[name], dim=-1))  # [B, D * H]
    cell = torch.stack(finals["c"]) if "c" in finals else None  # [L, B, He]
    keys = model.decoder.attention.project_keys(layer_input)
    return EncoderOutput(layer_input, mask, keys, torch.stack(finals["h"]), cell)


def trace_batch(
    model: Seq2Seq,
    src_ids: Sequence[Sequence[int]],
    tgt_ids: Sequence[Sequence[int]],
    gradients: bool = False,
) -> list[RawTrace]:
    """Trace the model (in eval mode) on source ids and forced target ids of B sentences, both without
    BOS/EOS, in one padded batch -> one RawTrace per sentence, in order."""
    if model.training:
        raise ValueError("trace a model in eval mode (dropout would make the trace random)")
    if len(src_ids) != len(tgt_ids) or not src_ids:
        raise ValueError(f"{len(src_ids)} sources for {len(tgt_ids)} targets: give one target per source")
    kind = cell_kind(model.encoder.rnn)
    device = model.output.weight.device
    src, src_lengths = _padded([[*ids, EOS] for ids in src_ids], device)
    tgt_in, tgt_lengths = _padded([[BOS, *ids] for ids in tgt_ids], device)
    tgt_out, _ = _padded([[*ids, EOS] for ids in tgt_ids], device)
    arrays: dict[str, torch.Tensor] = {}
    live: Live = []
    with torch.set_grad_enabled(gradients):
        enc = _run_encoder(model, src, src_lengths, arrays, live)
        log_probs, dec_hidden, dec_cell, attention = _run_decoder(model, kind, enc, tgt_in, arrays)
        arrays["attention"] = attention
        if gradients:
            tgt_mask = torch.arange(tgt_in.size(1), device=device).unsqueeze(0) < tgt_lengths.unsqueeze(1)
            _encoder_gradients(log_probs, tgt_out, tgt_mask, live, arrays)
    traces = []
    for b, (n, t) in enumerate(zip(src_lengths.tolist(), tgt_lengths.tolist(), strict=True)):
        one = {}
        for name, value in arrays.items():
            if name == "attention":
                one[name] = value[b, :t, :n].detach()
            else:
                one[name] = value[b, : t if name.startswith("decoder") else n].detach()
        one_enc = EncoderOutput(
            enc.states[b : b + 1, :n].detach(),
            enc.mask[b : b + 1, :n],
            enc.keys[b : b + 1, :n].detach(),
            enc.hidden[:, b : b + 1].detach(),
            None if enc.cell is None else enc.cell[:, b : b + 1].detach(),
        )
        traces.append(
            RawTrace(
                kind,
                one,
                log_probs[b, :t].detach(),
                one_enc,
                dec_hidden[:t, :, b],
                None if dec_cell is None else dec_cell[:t, :, b],
            )
        )
    return traces


def trace_ids(model: Seq2Seq, src_ids: list[int], tgt_ids: list[int], gradients: bool = False) -> RawTrace:
    """Trace the model (in eval mode) on one sentence's source ids and forced target ids, both without
    BOS/EOS."""
    return trace_batch(model, [src_ids], [tgt_ids], gradients)[0]


def _run_decoder(
    model: Seq2Seq, kind: str, enc: EncoderOutput, tgt_in: torch.Tensor, arrays: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Forced decoding of tgt_in [B, T] (BOS first) -> log-probs [B, T, V], hidden [T, L, B, H], cell
    [T, L, B, H] or None, attention [B, T, S]; records [B, T, H] arrays."""
    decoder = model.decoder
    layers = decoder.rnn.num_layers
    weights = [cell_weights(decoder.rnn, layer) for layer in range(layers)]
    init = model.init_state(enc)
    states = [
        {"h": init.hidden[layer]} | ({} if init.cell is None else {"c": init.cell[layer]})
        for layer in range(layers)
    ]
    feed = init.feed  # [B, H]
    steps: list[list[dict[str, torch.Tensor]]] = [[] for _ in range(layers)]
    log_probs, hiddens, cells, attention = [], [], [], []
    for t in range(tgt_in.size(1)):
        x = decoder.embed(tgt_in[:, t])  # [B, E]
        if decoder.input_feeding:
            x = torch.cat([x, feed.to(x.dtype)], dim=-1)
        for layer in range(layers):
            out = step(kind, x, states[layer], weights[layer])
            states[layer] = {name: out[name] for name in STATES[kind]}
            steps[layer].append(out)
            x = out["h"]
        att, w = decoder._attend(x.unsqueeze(1), enc)  # [B, 1, H], [B, 1, S]
        feed = att.squeeze(1)
        log_probs.append(torch.log_softmax(model.output(feed), dim=-1))
        hiddens.append(torch.stack([s["h"] for s in states]).detach())  # [L, B, H]
        if "c" in STATES[kind]:
            cells.append(torch.stack([s["c"] for s in states]).detach())
        attention.append(w)
    for layer, outs in enumerate(steps):
        for name in outs[0]:
            arrays[key("decoder", layer, "fwd", name)] = torch.stack([out[name] for out in outs], dim=1)
    return (
        torch.stack(log_probs, dim=1),
        torch.stack(hiddens),
        torch.stack(cells) if cells else None,
        torch.cat(attention, dim=1),
    )


def _encoder_gradients(
    log_probs: torch.Tensor,
    tgt_out: torch.Tensor,
    tgt_mask: torch.Tensor,
    live: Live,
    arrays: dict[str, torch.Tensor],
) -> None:
    """‖∂loss/∂h_t‖ (and C_t) per sentence and source position for every encoder layer and direction.

    log_probs [B, T, V], tgt_out [B, T], tgt_mask [B, T]. The batch loss is the sum of the sentences'
    losses, and a sentence's states reach no other sentence's loss, so each row of a gradient is that
    sentence's own."""
    nll = -log_probs.gather(2, tgt_out.unsqueeze(2)).squeeze(2)  # [B, T]
    loss = nll.masked_fill(~tgt_mask, 0.0).sum()
    grads = torch.autograd.grad(loss, [value for _, value in live], allow_unused=True)
    by_name: dict[str, list[torch.Tensor]] = {}
    for (name, value), grad in zip(live, grads, strict=True):
        norm = value.new_zeros(value.size(0)) if grad is None else grad.norm(dim=-1)  # [B]
        by_name.setdefault(name, []).append(norm)
    for name, norms in by_name.items():
        side, layer, direction, state = name.split(".")
        values = torch.stack(norms, dim=1)  # [B, S] in the order the steps ran
        if direction == "bwd":  # recorded from the last position back
            values = values.flip(1)
        arrays[key(side, int(layer), direction, f"grad_{state}")] = values


def gate_names(kind: str) -> tuple[str, ...]:
    """Gates then states recorded for cell `kind`."""
    return GATES[kind] + STATES[kind]

"""The encoder-decoder and the small protocol that search depends on.

Search needs only `encode`, `init_state` and `decode_step` (see `seq2seq.search.DecoderModel`), so a
scripted fake model can stand in for this one in tests.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from seq2seq.config import ModelConfig
from seq2seq.model.decoder import Decoder, DecoderState
from seq2seq.model.encoder import Encoder, EncoderOutput, init_forget_bias
from seq2seq.special import PAD


class StepOutput(NamedTuple):
    log_probs: torch.Tensor
    """[B, V]"""
    state: DecoderState
    attention: torch.Tensor
    """[B, S]"""


class Bridge(nn.Module):
    """Decoder initial state from the encoder's final state: zero, as is, or linear + tanh."""

    def __init__(
        self, kind: str, cell: str, enc_size: int, dec_size: int, enc_layers: int, dec_layers: int
    ) -> None:
        super().__init__()
        self.kind, self.dec_size, self.dec_layers, self.enc_layers = (
            kind,
            dec_size,
            dec_layers,
            enc_layers,
        )
        self.hidden_proj = self.cell_proj = None
        if kind == "learned":
            self.hidden_proj = nn.Linear(enc_size, dec_size)
            self.cell_proj = nn.Linear(enc_size, dec_size) if cell == "lstm" else None

    def _layers(self, state: torch.Tensor) -> torch.Tensor:
        """[L_enc, B, He] -> [L_dec, B, He]: matching layers, or the top layer for every decoder layer."""
        if self.enc_layers == self.dec_layers:
            return state
        return state[-1:].expand(self.dec_layers, -1, -1)

    def forward(self, enc: EncoderOutput) -> DecoderState:
        batch = enc.states.size(0)
        zeros = enc.states.new_zeros(self.dec_layers, batch, self.dec_size)
        feed = enc.states.new_zeros(batch, self.dec_size)
        has_cell = enc.cell is not None
        if self.kind == "zero":
            return DecoderState(zeros, zeros.clone() if has_cell else None, feed)
        if self.kind == "last":
            return DecoderState(
                enc.hidden.contiguous(), None if enc.cell is None else enc.cell.contiguous(), feed
            )
        assert self.hidden_proj is not None
        hidden = torch.tanh(self.hidden_proj(self._layers(enc.hidden))).contiguous()
        cell = None
        if self.cell_proj is not None and enc.cell is not None:
            cell = torch.tanh(self.cell_proj(self._layers(enc.cell))).contiguous()
        return DecoderState(hidden, cell, feed)


class Seq2Seq(nn.Module):
    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        src_embed = nn.Embedding(src_vocab, cfg.emb_size, padding_idx=PAD)
        tgt_embed = (
            src_embed if cfg.share_embeddings else nn.Embedding(tgt_vocab, cfg.emb_size, padding_idx=PAD)
        )
        self.encoder = Encoder(
            src_embed,
            cfg.cell,
            cfg.enc_hidden,
            cfg.enc_layers,
            cfg.bidirectional,
            cfg.dropout,
            cfg.emb_dropout,
        )
        self.bridge = Bridge(
            cfg.bridge,
            cfg.cell,
            self.encoder.output_size,
            cfg.dec_hidden,
            cfg.enc_layers,
            cfg.dec_layers,
        )
        self.decoder = Decoder(
            tgt_embed,
            cfg.cell,
            cfg.dec_hidden,
            cfg.dec_layers,
            self.encoder.output_size,
            cfg.attention,
            cfg.input_feeding,
            cfg.dropout,
            cfg.emb_dropout,
            cfg.out_dropout,
        )
        self.output = nn.Linear(cfg.dec_hidden, tgt_vocab)
        self._init_weights()
        if cfg.tie_embeddings:
            self.output.weight = tgt_embed.weight

    def _init_weights(self) -> None:
        for emb in {id(e): e for e in (self.encoder.embed, self.decoder.embed)}.values():
            nn.init.normal_(emb.weight, std=emb.embedding_dim**-0.5)
            with torch.no_grad():
                emb.weight[PAD].zero_()
        for rnn in (self.encoder.rnn, self.decoder.rnn):
            init_forget_bias(rnn, self.cfg.forget_bias)

    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        """src_ids [B, S], src_lengths [B] -> EncoderOutput."""
        states, hidden, cell = self.encoder(src_ids, src_lengths)
        positions = torch.arange(src_ids.size(1), device=src_ids.device)
        mask = positions.unsqueeze(0) < src_lengths.to(src_ids.device).unsqueeze(1)
        keys = self.decoder.attention.project_keys(states)
        return EncoderOutput(states, mask, keys, hidden, cell)

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        return self.bridge(enc)

    def decode_step(self, prev: torch.Tensor, state: DecoderState, enc: EncoderOutput) -> StepOutput:
        """prev [N] -> log-probabilities [N, V] of the next token, new state, attention [N, S].

        N = B, or B x K in beam search (the hypotheses of a sentence in consecutive rows; `enc` keeps B).
        """
        att, state, weights = self.decoder.step(prev, state, enc)
        logits = self.output(self.decoder.out_dropout(att)).float()
        if torch.is_inference_mode_enabled():  # search: normalise in place, the logits are not needed again
            return StepOutput(torch.log_softmax(logits, dim=-1, out=logits), state, weights)
        return StepOutput(torch.log_softmax(logits, dim=-1), state, weights)

    def forward(
        self, src_ids: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor, sampling: float = 0.0
    ) -> torch.Tensor:
        """Logits [B, T, V] for the target inputs tgt_in [B, T].

        With `sampling` = 0 (teacher forcing) the output layer runs once over all B x T positions. With
        `sampling` > 0 (scheduled sampling), each input token after BOS is replaced, with that probability,
        by the model's own greedy prediction at the previous step, so the decoder has to step.
        """
        enc = self.encode(src_ids, src_lengths)
        if sampling > 0.0:
            return self._forward_sampled(enc, tgt_in, sampling)
        att, _ = self.decoder(tgt_in, self.init_state(enc), enc)
        return self.output(self.decoder.out_dropout(att))

    def _forward_sampled(self, enc: EncoderOutput, tgt_in: torch.Tensor, sampling: float) -> torch.Tensor:
        state = self.init_state(enc)
        prev = tgt_in[:, 0]
        logits = []
        for t in range(tgt_in.size(1)):
            att, state, _ = self.decoder.step(prev, state, enc)
            step_logits = self.output(self.decoder.out_dropout(att))  # [B, V]
            logits.append(step_logits)
            if t + 1 < tgt_in.size(1):
                own = torch.rand(prev.shape, device=prev.device) < sampling
                gold = tgt_in[:, t + 1]
                prev = torch.where(own & (gold != PAD), step_logits.detach().argmax(-1), gold)
        return torch.stack(logits, dim=1)


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> Seq2Seq:
    """The one place that reads a `ModelConfig` (validated by `seq2seq.config.check_config`)."""
    if cfg.share_embeddings and src_vocab != tgt_vocab:
        raise ValueError("share_embeddings needs one joint vocabulary")
    return Seq2Seq(cfg, src_vocab, tgt_vocab)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())

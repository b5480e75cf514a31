"""One sentence traced as named numpy arrays, on the model's own translation or forced on a given target."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seq2seq.errors import Seq2SeqError
from seq2seq.inspect.trace import RawTrace, gate_names, trace_batch
from seq2seq.model import Seq2Seq
from seq2seq.model.cells import STATES
from seq2seq.search import SearchOptions, search
from seq2seq.tokenizer import EOS, Tokenizer

EOS_PIECE = "</s>"


@dataclass(frozen=True)
class Trace:
    """Everything recorded for one sentence. Array names (`arrays`):

    - 'encoder.L.D.X' [S, H] and 'decoder.L.fwd.X' [T, H] for layer L (0 = bottom), direction D ('fwd' or
      'bwd') and X a gate (f, i, g = C̃, o; r, z, n) or state (c = C_t, h = h_t) of `gate_names(cell)`;
    - 'attention' [T, S]; 'log_prob' [T] of each target token (EOS included);
    - with gradients, 'encoder.L.D.grad_h' and 'encoder.L.D.grad_c' [S]: ‖∂loss/∂h_t‖, ‖∂loss/∂C_t‖.

    S counts the source pieces plus EOS, T the target pieces plus EOS.
    """

    source: str
    src_tokens: list[str]
    tgt_tokens: list[str]
    cell: str
    forced: bool
    """True when traced on a given target, False on the model's own translation."""
    truncated: bool
    """The source was cut to `decode.max_src_len` pieces, as `translate` does."""
    arrays: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def groups(self) -> list[str]:
        """'side.layer.direction' prefixes present, encoder first, bottom layer first."""
        seen = dict.fromkeys(name.rsplit(".", 1)[0] for name in self.arrays if name.count(".") == 3)
        return list(seen)

    @property
    def names(self) -> tuple[str, ...]:
        """Gates then states recorded per group."""
        return gate_names(self.cell)

    @property
    def memory(self) -> str:
        """The state that carries memory: 'c' for the LSTM, 'h' otherwise."""
        return STATES[self.cell][0]


def source_ids(tokenizer: Tokenizer, sentence: str, max_src_len: int) -> tuple[str, list[int], bool]:
    """(stripped text, source ids cut to `max_src_len` as `translate` does, whether they were cut)."""
    text = sentence.strip()
    src_ids = tokenizer.encode_src([text])[0] if text else []
    if not src_ids:
        raise Seq2SeqError("empty sentence: there is nothing to trace")
    return text, src_ids[:max_src_len], len(src_ids) > max_src_len


def trace_sentence(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    sentence: str,
    target: str | None,
    opts: SearchOptions,
    max_src_len: int,
    gradients: bool = False,
    target_ids: list[int] | None = None,
) -> Trace:
    """Trace one sentence: on `target` (text) or `target_ids` (without BOS/EOS) if given, else on the
    model's own search result under `opts`."""
    text, src_ids, truncated = source_ids(tokenizer, sentence, max_src_len)
    if target_ids is not None:
        tgt_ids = target_ids
    elif target is None:
        with torch.inference_mode():
            device = next(model.parameters()).device  # a quantized output layer has no .weight tensor
            src = torch.tensor([[*src_ids, EOS]], device=device)
            tgt_ids = search(model, src, torch.tensor([len(src_ids) + 1], device=device), opts)[0][0].tokens
    else:
        tgt_ids = tokenizer.encode_tgt([target.strip()])[0]
    (raw,) = _trace(model, [src_ids], [tgt_ids], gradients)
    forced = target is not None or target_ids is not None
    return _named(raw, tokenizer, text, src_ids, tgt_ids, forced, truncated)


def trace_sentences(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    sentences: Sequence[str],
    target_ids: Sequence[list[int]],
    max_src_len: int,
    forced: bool,
    gradients: bool = False,
    batch_sentences: int = 64,
) -> Iterator[tuple[int, Trace]]:
    """Trace non-empty `sentences` on `target_ids` (one list per sentence, without BOS/EOS) in padded
    batches of similar source length -> (index in `sentences`, Trace), batch by batch (not in input order),
    so a corpus is never held in memory at once. `forced` says whether the targets were given or are the
    model's own translations."""
    prepared = [source_ids(tokenizer, sentence, max_src_len) for sentence in sentences]
    order = sorted(range(len(sentences)), key=lambda k: len(prepared[k][1]))
    for start in range(0, len(order), batch_sentences):
        batch = order[start : start + batch_sentences]
        raws = _trace(model, [prepared[k][1] for k in batch], [target_ids[k] for k in batch], gradients)
        for k, raw in zip(batch, raws, strict=True):
            text, src_ids, truncated = prepared[k]
            yield k, _named(raw, tokenizer, text, src_ids, target_ids[k], forced, truncated)


def _trace(
    model: Seq2Seq, src_ids: list[list[int]], tgt_ids: list[list[int]], gradients: bool
) -> list[RawTrace]:
    try:
        return trace_batch(model, src_ids, tgt_ids, gradients)
    except ValueError as exc:  # e.g. a quantized model, whose packed weights the reference cells cannot read
        raise Seq2SeqError(f"cannot trace this model: {exc}") from None


def _named(
    raw: RawTrace,
    tokenizer: Tokenizer,
    text: str,
    src_ids: list[int],
    tgt_ids: list[int],
    forced: bool,
    truncated: bool,
) -> Trace:
    """A RawTrace as named float32 numpy arrays with token strings, plus each target token's log-prob."""
    arrays = {name: value.float().cpu().numpy() for name, value in raw.arrays.items()}
    gold = torch.tensor([*tgt_ids, EOS], device=raw.log_probs.device)
    arrays["log_prob"] = raw.log_probs.gather(1, gold.unsqueeze(1))[:, 0].float().cpu().numpy()
    return Trace(
        text,
        [*tokenizer.src_pieces(src_ids), EOS_PIECE],
        [*tokenizer.tgt_pieces(tgt_ids), EOS_PIECE],
        raw.cell,
        forced,
        truncated,
        arrays,
    )

"""Batched greedy and beam search over any model with `encode`, `init_state` and `decode_step`.

Beam search keeps batch x beam in one tensor (B * K rows); the encoder runs once per batch. Each step
takes the top 2K candidates of every sentence, moves those among the first K that end in EOS into a
per-sentence set of K finished hypotheses (ranked by length-penalised score), and keeps the best K others
alive. An EOS candidate outside the first K is pruned like any other candidate outside the beam (as in
fairseq), so a beam of 1 is greedy search. A sentence is done when its best alive hypothesis can no
longer beat its n-th best finished one (the bound uses the longest length still allowed, so it is exact
for any penalty that grows with length), or at its maximum length; with `stop="early"` also once a step's
best candidate has ended in EOS and n-best hypotheses are finished (OpenNMT-py's and Marian's rule, which
takes fewer steps and may miss a longer hypothesis that would have won). Nothing is ever appended after
EOS.
Sampling draws each next token from the temperature-scaled, top-k / top-p filtered distribution
(`sampling_distribution`), n paths per sentence, with a seeded generator.

Notation: B sentences, K beam, V vocabulary, S source length, t step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, NamedTuple, Protocol, get_args

import torch
import torch.nn.functional as F

from seq2seq.config import DecodeConfig, Penalty, Stop
from seq2seq.errors import Seq2SeqError
from seq2seq.special import BOS, EOS, PAD, UNK


class Reorderable(Protocol):
    def index_select(self, index: torch.Tensor) -> Any: ...


class StepResult(Protocol):
    @property
    def log_probs(self) -> torch.Tensor: ...

    @property
    def state(self) -> Any: ...

    @property
    def attention(self) -> torch.Tensor: ...


class DecoderModel(Protocol):
    """What search needs of a model."""

    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor) -> Any: ...

    def init_state(self, enc: Any) -> Any: ...

    def decode_step(self, prev: torch.Tensor, state: Any, enc: Any) -> StepResult:
        """Next-token log-probabilities [N, V] in a tensor of the caller's, which search modifies in place.

        `enc` has one row per sentence (B rows) while `prev` and `state` may have N = B x G rows: beam
        search keeps the G hypotheses of each sentence in consecutive rows and never copies `enc` per
        hypothesis."""
        ...


@dataclass(frozen=True)
class SearchOptions:
    """How to decode. `from_config` fills what is not given from a recipe's `decode` section; invalid
    values raise `Seq2SeqError` naming the option."""

    beam: int = 5
    n_best: int = 1
    length_penalty: float = 1.0
    """alpha: `gnmt` divides by ((5 + len) / 6) ** alpha, `length` by len ** alpha; 0 = raw log-prob."""
    penalty: Penalty = "gnmt"
    stop: Stop = "exact"
    """Beam search: `exact` ends a sentence once no alive hypothesis can win, `early` also once a step's
    best candidate ends (see the module docstring)."""
    max_len_a: float = 1.5
    max_len_b: int = 10
    min_len: int = 0
    block_unk: bool = False
    return_attention: bool = False
    sample: bool = False
    """Draw `n_best` samples per sentence instead of searching (`beam` is then unused)."""
    temperature: float = 1.0
    top_k: int = 0
    """Sample among the k most probable tokens only; 0 = all."""
    top_p: float = 1.0
    """Sample among the most probable tokens that make up this much probability; 1.0 = all."""
    seed: int = 0
    """Seed of the sampling generator (each search call starts from it)."""
    shortlist: bool | None = None
    """Decode over the model's vocabulary shortlist (`seq2seq.shortlist`; applied by the translator):
    None = when the model has one (and decoding does not sample), True = required, False = never. In a
    recipe, `decode.shortlist: true` means None."""

    def __post_init__(self) -> None:
        if self.sample:
            if self.n_best < 1:
                raise Seq2SeqError(f"--n-samples: must be at least 1, got {self.n_best}")
            if self.shortlist:
                raise Seq2SeqError(
                    "--shortlist: sampling draws from the full distribution (a shortlist would cut its "
                    "tail); drop --shortlist"
                )
            if not self.temperature > 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
                raise Seq2SeqError(
                    "sampling needs --temperature > 0, --top-k >= 0 and 0 < --top-p <= 1 (got "
                    f"{self.temperature}, {self.top_k}, {self.top_p})"
                )
        elif self.beam < 1 or not 1 <= self.n_best <= self.beam:
            raise Seq2SeqError(
                f"--beam/--n-best: need beam >= 1 and 1 <= n_best <= beam "
                f"(beam {self.beam}, n_best {self.n_best})"
            )
        if self.penalty not in get_args(Penalty):
            raise Seq2SeqError(f"--penalty: {self.penalty!r} is not one of 'gnmt', 'length'")
        if self.stop not in get_args(Stop):
            raise Seq2SeqError(f"--stop: {self.stop!r} is not one of 'exact', 'early'")
        for name in ("min_len", "max_len_a", "max_len_b"):
            if getattr(self, name) < 0:
                raise Seq2SeqError(
                    f"--{name.replace('_', '-')}: must not be negative, got {getattr(self, name)}"
                )

    @classmethod
    def from_config(cls, decode: DecodeConfig, **overrides: Any) -> SearchOptions:
        """Options from a `decode` section; `overrides` (SearchOptions fields) that are None keep it."""
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"not search options: {', '.join(sorted(unknown))}")
        values = {f.name: getattr(decode, f.name) for f in fields(cls) if hasattr(decode, f.name)}
        values["shortlist"] = None if decode.shortlist else False  # the recipe's true: when there is one
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]
    """Output token ids, without BOS and EOS."""
    score: float
    """Length-penalised score that ranks hypotheses."""
    log_prob: float
    """Sum of token log-probabilities, EOS included."""
    attention: torch.Tensor | None = None
    """[len(tokens) + 1, S] attention weights per output step (EOS step included), if asked for."""


def length_penalty(length: torch.Tensor | float, alpha: float, kind: str) -> torch.Tensor | float:
    """The divisor of a hypothesis' log-probability; `length` counts tokens including EOS."""
    if alpha == 0.0:
        return 1.0 if isinstance(length, float) else torch.ones_like(length, dtype=torch.float)
    if kind == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    return length**alpha


def max_lengths(src_lengths: torch.Tensor, opts: SearchOptions) -> torch.Tensor:
    """[B] most output tokens (EOS excluded) per sentence: a * source tokens + b (EOS not counted)."""
    n = (src_lengths - 1).clamp(min=0).float()
    return (opts.max_len_a * n + opts.max_len_b).floor().long().clamp(min=1)


def _constrain_(scores: torch.Tensor, step: int, max_len: torch.Tensor, opts: SearchOptions) -> torch.Tensor:
    """Apply min/max length and <unk> blocking in place to [N, V] scores at `step` (tokens so far).

    `scores` must be a tensor the caller owns (a fresh sum or copy), so no [N, V] copy is made here.
    Rows at their maximum length (`step >= max_len`) may only end; they keep EOS's own score.
    """
    eos = scores[:, EOS].clone()
    scores[:, PAD] = float("-inf")
    scores[:, BOS] = float("-inf")
    if opts.block_unk:
        scores[:, UNK] = float("-inf")
    if step < opts.min_len:
        scores[:, EOS] = float("-inf")
    force = step >= max_len  # [N]
    if bool(force.any()):
        scores.masked_fill_(force.unsqueeze(1), float("-inf"))
        scores[:, EOS] = torch.where(force, eos, scores[:, EOS])
    return scores


def top_k(scores: torch.Tensor, k: int, groups: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of `scores.topk(k, dim=1)` for [B, M] scores, ~3x faster on CPU at beam shapes.

    torch's CPU topk is slow on long rows. View each row as `groups` interleaved slices of length
    G = M / groups; a vectorised elementwise max over the slices gives, at position j, the best of the set
    {j, j + G, j + 2G, ...}. Exact: if t is the k-th best score, only sets holding one of the k scores
    >= t have a maximum >= t, so the k sets with the best maxima hold all k; a topk over their
    k * groups members finishes. Ties may pick other (equal-scored) indices than `topk`.
    """
    batch, width = scores.shape
    if width % groups or width // groups < k or scores.device.type != "cpu":
        values, indices = scores.topk(k, dim=1)
        return values, indices
    stride = width // groups
    best_of_set = scores.view(batch, groups, stride).amax(dim=1)  # [B, G]
    sets = best_of_set.topk(k, dim=1).indices  # [B, k]
    members = (sets.unsqueeze(2) + stride * torch.arange(groups, device=scores.device)).view(batch, -1)
    values, pos = scores.gather(1, members).topk(k, dim=1)  # [B, k] of [B, k * groups]
    return values, members.gather(1, pos)


def sampling_distribution(
    log_probs: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """[N, V] probabilities to sample the next token from, given the model's [N, V] log-probabilities.

    Divides by `temperature`, keeps the `top_k` most probable tokens (0: all), then the smallest set of
    most probable tokens whose probability reaches `top_p` (nucleus sampling; 1.0: all), renormalised.
    """
    logits = log_probs / temperature
    if 0 < top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # [N, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the more probable tokens
        sorted_logits = sorted_logits.masked_fill(before >= top_p, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    return logits.softmax(dim=-1)


@torch.inference_mode()
def greedy_search(
    model: DecoderModel, src_ids: torch.Tensor, src_lengths: torch.Tensor, opts: SearchOptions
) -> list[list[Hypothesis]]:
    """The most probable next token at every step; one hypothesis per sentence.

    Sentences leave the batch as soon as they emit EOS, so the last steps run on the few long ones.
    """
    return _single_path_search(model, src_ids, src_lengths, opts, lambda scores: scores.max(dim=-1), 1)


@torch.inference_mode()
def sample_search(
    model: DecoderModel,
    src_ids: torch.Tensor,
    src_lengths: torch.Tensor,
    opts: SearchOptions,
    generator: torch.Generator | None = None,
) -> list[list[Hypothesis]]:
    """`opts.n_best` samples per sentence, in the order drawn: each next token is drawn from
    `sampling_distribution` (temperature, top-k, top-p) of the constrained log-probabilities. Scores are
    the model's own log-probabilities (length-penalised), whatever the temperature. `generator` (default:
    one seeded with `opts.seed`) makes the draws reproducible."""
    if generator is None:
        generator = torch.Generator(src_ids.device).manual_seed(opts.seed)

    def draw(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = sampling_distribution(scores, opts.temperature, opts.top_k, opts.top_p)
        tok = torch.multinomial(probs, 1, generator=generator)  # [N, 1]
        return scores.gather(1, tok).squeeze(1), tok.squeeze(1)

    return _single_path_search(model, src_ids, src_lengths, opts, draw, opts.n_best)


def _single_path_search(
    model: DecoderModel,
    src_ids: torch.Tensor,
    src_lengths: torch.Tensor,
    opts: SearchOptions,
    choose: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    copies: int,
) -> list[list[Hypothesis]]:
    """`copies` paths per sentence, each extended by `choose` ([N, V] scores -> (score, token) per row).

    The encoder runs once per sentence; its output is then repeated `copies` times (B * copies rows,
    a sentence's copies consecutive), so every path is a row of its own and leaves the batch at EOS.
    """
    device = src_ids.device
    enc = model.encode(src_ids, src_lengths)
    if copies > 1:
        repeat = torch.arange(src_ids.size(0), device=device).repeat_interleave(copies)
        enc, src_lengths = enc.index_select(repeat), src_lengths.repeat_interleave(copies)
    batch = src_lengths.size(0)
    state = model.init_state(enc)
    max_len = max_lengths(src_lengths, opts).to(device)  # [B_active]
    max_steps = int(max_len.max()) + 1
    active = torch.arange(batch, device=device)  # original index of each row still decoding
    prev = torch.full((batch,), BOS, dtype=torch.long, device=device)
    tokens = torch.full((batch, max_steps), PAD, dtype=torch.long, device=device)
    scores = torch.zeros(batch, device=device)
    attention: torch.Tensor | None = None
    for step in range(max_steps):
        out = model.decode_step(prev, state, enc)
        log_probs = _constrain_(out.log_probs.float(), step, max_len, opts)  # ours to modify
        best, tok = choose(log_probs)
        tokens[active, step] = tok
        scores[active] += best
        if opts.return_attention:
            if attention is None:
                attention = out.attention.new_zeros(
                    batch, max_steps, out.attention.size(-1), dtype=torch.float
                )
            attention[active, step] = out.attention.float()
        running = tok != EOS
        if not bool(running.any()):
            break
        if not bool(running.all()):
            keep = running.nonzero().squeeze(1)
            active, max_len, tok = active[keep], max_len[keep], tok[keep]
            enc, state = enc.index_select(keep), out.state.index_select(keep)
        else:
            state = out.state
        prev = tok
    ids = tokens.tolist()
    results = []
    for i, row in enumerate(ids):
        length = row.index(EOS) if EOS in row else len(row)
        lp = float(length_penalty(float(length + 1), opts.length_penalty, opts.penalty))
        hyp_attn = None if attention is None else attention[i, : length + 1].cpu()
        results.append(Hypothesis(row[:length], float(scores[i]) / lp, float(scores[i]), hyp_attn))
    return [results[b : b + copies] for b in range(0, len(results), copies)]


@dataclass(frozen=True)
class BeamState:
    """What beam search carries from step to step, as named tensors.

    Sentence fields have one row per sentence still searching (B); hypothesis fields one row per alive
    hypothesis (B x W: the W hypotheses of a sentence in consecutive rows; W is 1 before the first step,
    then K). `select` keeps some sentences in every field at once.
    """

    active: torch.Tensor
    """[B] original index of each sentence"""
    max_len: torch.Tensor
    """[B] most output tokens (EOS excluded)"""
    best_possible_lp: torch.Tensor
    """[B] the length penalty of the longest allowed hypothesis (the stopping bound divides by it)"""
    top_ended: torch.Tensor
    """[B] a step's best candidate has ended in EOS (what `stop="early"` waits for)"""
    alive_scores: torch.Tensor
    """[B, W] log-probability of each alive hypothesis"""
    fin_scores: torch.Tensor
    """[B, K] length-penalised scores of the finished hypotheses, best first; -inf = none yet"""
    fin_raw: torch.Tensor
    """[B, K] their log-probabilities"""
    fin_tokens: torch.Tensor
    """[B, K, T] their tokens, EOS included, PAD after (T: the most steps of the batch)"""
    fin_attn: torch.Tensor | None
    """[B, K, T, S] their attention, when asked for"""
    enc: Any
    """the model's encoder output (B rows, see `DecoderModel`)"""
    alive_tokens: torch.Tensor
    """[B x W, t] tokens of each alive hypothesis so far"""
    alive_attn: torch.Tensor | None
    """[B x W, t, S] their attention, when asked for"""
    prev: torch.Tensor
    """[B x W] last token of each alive hypothesis (BOS before the first step)"""
    row_max_len: torch.Tensor
    """[B x W] `max_len` of each row's sentence"""
    dec_state: Any
    """the model's decoder state (B x W rows)"""

    PER_SENTENCE: ClassVar[frozenset[str]] = frozenset(
        {"active", "max_len", "best_possible_lp", "top_ended", "alive_scores", "fin_scores", "fin_raw",
         "fin_tokens", "fin_attn", "enc"}
    )  # fmt: skip
    """The sentence fields; the others have a row per hypothesis."""

    @property
    def width(self) -> int:
        return self.alive_scores.size(1)

    def select(self, keep: torch.Tensor) -> BeamState:
        """The sentences `keep` [B'] (indices into B) and their hypotheses, in every field."""
        rows = (keep.unsqueeze(1) * self.width + torch.arange(self.width, device=keep.device)).view(-1)
        return BeamState(**{
            f.name: _index(getattr(self, f.name), keep if f.name in self.PER_SENTENCE else rows)
            for f in fields(self)
        })  # fmt: skip


def _index(value: Any, index: torch.Tensor) -> Any:
    if value is None or isinstance(value, torch.Tensor):
        return None if value is None else value[index]
    return value.index_select(index)


class Candidates(NamedTuple):
    """A step's best extensions of each sentence's alive hypotheses, best first ([B, C], C = max(2K, K))."""

    scores: torch.Tensor
    """[B, C] log-probability of the extended hypothesis (-inf: impossible)"""
    rows: torch.Tensor
    """[B, C] the alive row (of B x W) each extends"""
    tokens: torch.Tensor
    """[B, C] the token it appends"""
    finished: torch.Tensor
    """[B, C] True where it ends with EOS inside the beam (among the first K) and is possible"""


def beam_step(scores: torch.Tensor, k: int) -> Candidates:
    """The 2K best candidates of each sentence from scores [B, W, V] (each alive hypothesis' score plus
    its next-token log-probabilities, constrained); a vocabulary too small for K is padded with
    impossible candidates. Pure: the search's bookkeeping is left to the caller."""
    batch, width, vocab = scores.shape
    top_scores, top_ids = top_k(scores.view(batch, width * vocab), min(2 * k, width * vocab))  # [B, 2K]
    if top_scores.size(1) < k:
        top_scores = F.pad(top_scores, (0, k - top_scores.size(1)), value=float("-inf"))
        top_ids = F.pad(top_ids, (0, k - top_ids.size(1)), value=PAD)
    beam_idx, tok = top_ids // vocab, top_ids % vocab
    rows = torch.arange(batch, device=scores.device).unsqueeze(1) * width + beam_idx
    in_beam = torch.arange(top_scores.size(1), device=scores.device) < k
    return Candidates(top_scores, rows, tok, (tok == EOS) & in_beam & torch.isfinite(top_scores))


@torch.inference_mode()
def beam_search(
    model: DecoderModel, src_ids: torch.Tensor, src_lengths: torch.Tensor, opts: SearchOptions
) -> list[list[Hypothesis]]:
    """The `opts.n_best` best hypotheses per sentence, best first.

    A sentence that is done leaves the batch: its finished hypotheses are collected and its rows are
    dropped from every tensor (`BeamState.select`), so later steps only compute what can still change
    the result. The first step runs one row per sentence (all K beams would start from the same BOS) and
    then fans out to K.
    """
    batch, k = src_ids.size(0), opts.beam
    device = src_ids.device
    enc = model.encode(src_ids, src_lengths)
    max_len = max_lengths(src_lengths, opts).to(device)  # [B]
    max_steps = int(max_len.max()) + 1
    st = BeamState(
        active=torch.arange(batch, device=device),
        max_len=max_len,
        best_possible_lp=torch.as_tensor(
            length_penalty((max_len + 1).float(), opts.length_penalty, opts.penalty)
        ),
        top_ended=torch.zeros(batch, dtype=torch.bool, device=device),
        alive_scores=torch.zeros(batch, 1, device=device),
        fin_scores=torch.full((batch, k), float("-inf"), device=device),
        fin_raw=torch.full((batch, k), float("-inf"), device=device),
        fin_tokens=torch.full((batch, k, max_steps), PAD, dtype=torch.long, device=device),
        fin_attn=None,
        enc=enc,
        alive_tokens=torch.empty(batch, 0, dtype=torch.long, device=device),
        alive_attn=None,
        prev=torch.full((batch,), BOS, dtype=torch.long, device=device),
        row_max_len=max_len,
        dec_state=model.init_state(enc),
    )
    results: list[list[Hypothesis]] = [[] for _ in range(batch)]
    for step in range(max_steps):
        out = model.decode_step(st.prev, st.dec_state, st.enc)
        log_probs = out.log_probs.float()  # [B * W, V], ours to modify (see DecoderModel)
        scores = _constrain_(log_probs.add_(st.alive_scores.view(-1, 1)), step, st.row_max_len, opts)
        cand = beam_step(scores.view(st.alive_scores.size(0), st.width, -1), k)
        step_attn = out.attention.float() if opts.return_attention else None
        if bool(cand.finished.any()):
            st = _finish(st, cand, step, opts, step_attn, max_steps)
        st = _advance(st, cand, out.state, step_attn, k)
        done = _done(st, step, opts)
        if not bool(done.any()):
            continue
        finished = done.nonzero().squeeze(1)
        hyps = _collect(st.fin_tokens[finished], st.fin_scores[finished], st.fin_raw[finished],
                        None if st.fin_attn is None else st.fin_attn[finished], opts.n_best)  # fmt: skip
        for b, sentence_hyps in zip(st.active[finished].tolist(), hyps, strict=True):
            results[b] = sentence_hyps
        keep = (~done).nonzero().squeeze(1)
        if keep.numel() == 0:
            break
        st = st.select(keep)
    return results


def _done(st: BeamState, step: int, opts: SearchOptions) -> torch.Tensor:
    """[B] the sentences whose search is over after `step` (see the module docstring)."""
    nth_best = st.fin_scores[:, opts.n_best - 1]
    done = (nth_best >= st.alive_scores[:, 0] / st.best_possible_lp) | (step >= st.max_len)
    if opts.stop == "early":
        done |= st.top_ended & (nth_best > float("-inf"))
    return done


def _finish(
    st: BeamState,
    cand: Candidates,
    step: int,
    opts: SearchOptions,
    step_attn: torch.Tensor | None,
    max_steps: int,
) -> BeamState:
    """Merge the candidates that end in EOS into the finished sets (K best by penalised score)."""
    n, k = st.fin_scores.shape
    rows = cand.rows.view(-1)
    lp = length_penalty(float(step + 1), opts.length_penalty, opts.penalty)
    eos_scores = torch.where(cand.finished, cand.scores / lp, float("-inf"))
    merged, sel = torch.cat([st.fin_scores, eos_scores], dim=1).topk(k, dim=1)  # [B, K]
    cand_tokens = torch.cat([st.alive_tokens[rows].view(n, cand.tokens.size(1), step),
                             cand.tokens.unsqueeze(2)], dim=2)  # fmt: skip
    cand_tokens = F.pad(cand_tokens, (0, max_steps - step - 1), value=PAD)
    all_tokens = torch.cat([st.fin_tokens, cand_tokens], dim=1)
    eos_raw = torch.where(cand.finished, cand.scores, float("-inf"))
    fin_raw = torch.cat([st.fin_raw, eos_raw], 1).gather(1, sel)
    fin_attn = st.fin_attn
    if step_attn is not None:
        fin_attn = _merge_attention(fin_attn, st.alive_attn, step_attn, rows, sel, n, k, step, max_steps)
    return dataclasses.replace(
        st,
        top_ended=st.top_ended | cand.finished[:, 0],
        fin_scores=merged,
        fin_raw=fin_raw,
        fin_tokens=all_tokens.gather(1, sel.unsqueeze(2).expand(-1, -1, max_steps)),
        fin_attn=fin_attn,
    )


def _advance(
    st: BeamState, cand: Candidates, dec_state: Any, step_attn: torch.Tensor | None, k: int
) -> BeamState:
    """Keep the best K candidates that did not end as the new alive hypotheses."""
    alive_cand = cand.scores.masked_fill(cand.tokens == EOS, float("-inf"))
    alive_scores, pos = alive_cand.topk(k, dim=1)  # [B, K]
    reorder = cand.rows.gather(1, pos).view(-1)  # [B * K]
    new_tok = cand.tokens.gather(1, pos).view(-1)
    alive_attn = st.alive_attn
    if step_attn is not None:
        moved = step_attn[reorder].unsqueeze(1)
        alive_attn = moved if alive_attn is None else torch.cat([alive_attn[reorder], moved], dim=1)
    return dataclasses.replace(
        st,
        alive_scores=alive_scores,
        alive_tokens=torch.cat([st.alive_tokens[reorder], new_tok.unsqueeze(1)], dim=1),
        alive_attn=alive_attn,
        prev=new_tok,
        # the encoder output stays one row per sentence (see DecoderModel); rows fan out once, to K
        row_max_len=st.row_max_len[reorder] if st.width == 1 else st.row_max_len,
        dec_state=dec_state.index_select(reorder),
    )


def _merge_attention(
    fin_attn: torch.Tensor | None,
    alive_attn: torch.Tensor | None,
    step_attn: torch.Tensor,
    rows: torch.Tensor,
    sel: torch.Tensor,
    batch: int,
    k: int,
    step: int,
    max_steps: int,
) -> torch.Tensor:
    """Finished-set attention [B, K, max_steps, S] after the merge that picked `sel`."""
    src_len = step_attn.size(-1)
    if fin_attn is None:
        fin_attn = step_attn.new_zeros(batch, k, max_steps, src_len)
    history = (
        step_attn[rows].unsqueeze(1)
        if alive_attn is None
        else torch.cat([alive_attn[rows], step_attn[rows].unsqueeze(1)], dim=1)
    )
    history = F.pad(history, (0, 0, 0, max_steps - step - 1))
    cand = history.view(batch, -1, max_steps, src_len)
    merged = torch.cat([fin_attn, cand], dim=1)
    return merged.gather(1, sel.view(batch, k, 1, 1).expand(-1, -1, max_steps, src_len))


def _collect(
    tokens: torch.Tensor,
    scores: torch.Tensor,
    raw: torch.Tensor,
    attn: torch.Tensor | None,
    n_best: int,
) -> list[list[Hypothesis]]:
    token_rows, score_rows, raw_rows = tokens.tolist(), scores.tolist(), raw.tolist()
    results = []
    for b in range(len(token_rows)):
        hyps = []
        for j in range(n_best):
            if score_rows[b][j] == float("-inf"):
                break
            row = token_rows[b][j]
            length = row.index(EOS)
            hyp_attn = None if attn is None else attn[b, j, : length + 1].cpu()
            hyps.append(Hypothesis(row[:length], score_rows[b][j], raw_rows[b][j], hyp_attn))
        results.append(hyps)
    return results


def search(
    model: DecoderModel, src_ids: torch.Tensor, src_lengths: torch.Tensor, opts: SearchOptions
) -> list[list[Hypothesis]]:
    """Sampling with `opts.sample`, greedy for beam 1, beam search otherwise."""
    if opts.sample:
        return sample_search(model, src_ids, src_lengths, opts)
    if opts.beam == 1:
        return greedy_search(model, src_ids, src_lengths, opts)
    return beam_search(model, src_ids, src_lengths, opts)

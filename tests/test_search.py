"""Greedy and beam search against a scripted fake model (every beam and score worked out by hand below)
and properties on a small random real model.

Probabilities are written as products along the path, scores as log(p) / penalty where the GNMT penalty
of a hypothesis with n tokens (EOS included) is ((5 + n) / 6) ** alpha and the `length` penalty n ** alpha.
In the fake model's scripts, unlisted tokens have probability 0 and unlisted prefixes end (EOS, p = 1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import torch

from seq2seq.errors import Seq2SeqError
from seq2seq.model import Seq2Seq
from seq2seq.search import (
    Hypothesis,
    SearchOptions,
    beam_search,
    greedy_search,
    length_penalty,
    max_lengths,
    search,
    top_k,
)
from seq2seq.special import BOS, EOS, PAD, UNK
from tests.fake_model import A, B, C, D, FakeModel, Script, attention_row, fake_batch
from tests.test_model import TINY, single_thread, source_batch, tiny_model

# Greedy takes A (.5) then C (.4): p = .2. Beam 2 keeps A (.5) and B (.4); after them B C = .4 * .9 = .36
# beats A C = .2 and A D = .175, so beam finds B C.
BEAM_BEATS_GREEDY = Script(
    {
        (): {A: 0.5, B: 0.4, EOS: 0.1},
        (A,): {C: 0.4, D: 0.35, EOS: 0.25},
        (B,): {C: 0.9, EOS: 0.1},
    }
)
# Greedy: A (.6), B (.5): p = .3. EOS ranks second at the first step, so a beam of 2 finishes [] (.4),
# which the best alive A B (.3) cannot beat; a beam of 1 must not finish it (beam 1 = greedy).
EOS_SECOND = Script({(): {A: 0.6, EOS: 0.4}, (A,): {B: 0.5, C: 0.3, EOS: 0.2}})
# [] (.31) ranks third at the first step: outside a beam of 2 it is pruned like any other candidate, so
# the beam ends with A C (.21) and B C (.187) even though [] is more probable.
EOS_THIRD = Script({(): {A: 0.35, B: 0.34, EOS: 0.31}, (A,): {C: 0.6, EOS: 0.4}, (B,): {C: 0.55, EOS: 0.45}})
# [] ends first (.5, the top candidate of step 0), A B ends two steps later (.45):
#   alpha 0:            [] -0.693 > A B -0.799
#   gnmt alpha 1:       [] -0.693 / 1 = -0.693 < A B -0.799 / (8/6) = -0.599
#   length alpha 1:     [] -0.693 / 1 = -0.693 < A B -0.799 / 3 = -0.266
EARLY_END = Script({(): {EOS: 0.5, A: 0.45, C: 0.05}, (A,): {B: 1.0}})
# [] (.5) against A B C (.4): gnmt alpha 1 gives -0.693 < -0.916 / (9/6) = -0.611, so the longer wins. A
# stopping test that divided the best alive A (-0.916) by the penalty of its shortest ending (A EOS, 7/6:
# -0.785) would stop at step 0; the bound divides by the longest allowed (max_len 5 + EOS: 11/6, -0.500).
LOOK_AHEAD = Script({(): {EOS: 0.5, A: 0.4}, (A,): {B: 1.0}, (A, B): {C: 1.0}})
# Ends at once (.9); the alternative A goes on with A (.99) or EOS (.01) until the maximum length.
STOP_EARLY = Script({(): {EOS: 0.9, A: 0.1}}, default={A: 0.99, EOS: 0.01})
# The two beams swap places at step 2: A C (.45) leads B C (.36), then B C D (.36) leads A C D (.18); A C B
# (.1575) and A C EOS (.1125) fall out. A beam whose history is not reordered shows it in its attention.
CROSS = Script(
    {
        (): {A: 0.5, B: 0.4, EOS: 0.1},
        (A,): {C: 0.9, EOS: 0.1},
        (B,): {C: 0.9, EOS: 0.1},
        (A, C): {D: 0.4, B: 0.35, EOS: 0.25},
        (B, C): {D: 1.0},
    }
)
# Always prefers to go on: A (.98), EOS (.02).
LONG = Script({}, default={A: 0.98, EOS: 0.02})
# Always prefers to end: EOS (.9), A (.1).
SHORT = Script({}, default={EOS: 0.9, A: 0.1})
# UNK is the likeliest first token; blocked, A (.3) is next.
UNK_FIRST = Script({(): {UNK: 0.6, A: 0.3, EOS: 0.1}})
# PAD and BOS are the likeliest tokens but never allowed: A (.2) then EOS (.1).
SPECIALS = Script({(): {PAD: 0.4, BOS: 0.3, A: 0.2, EOS: 0.1}, (A,): {PAD: 0.5, BOS: 0.4, EOS: 0.1}})

SCRIPTS = {
    "beam_beats_greedy": BEAM_BEATS_GREEDY,
    "eos_second": EOS_SECOND,
    "eos_third": EOS_THIRD,
    "early_end": EARLY_END,
    "look_ahead": LOOK_AHEAD,
    "cross": CROSS,
    "stop_early": STOP_EARLY,
    "long": LONG,
    "short": SHORT,
    "unk_first": UNK_FIRST,
    "specials": SPECIALS,
}

Expected = list[tuple[list[int], float]]
"""Hypotheses best first, as (tokens, path probability)."""

# src_len 3 (2 tokens + EOS), a 0, b 5: at most 5 tokens before EOS, longest penalty at 6 tokens.
SRC_LEN = 3


def opts(**kwargs: object) -> SearchOptions:
    base: dict[str, object] = {"beam": 2, "length_penalty": 0.0, "max_len_a": 0.0, "max_len_b": 5}
    base.update(kwargs)
    return SearchOptions(**base)  # type: ignore[arg-type]


def decode(
    script: Script | Sequence[Script],
    o: SearchOptions,
    src_lengths: Sequence[int] = (SRC_LEN,),
    beam_fn: Callable[..., list[list[Hypothesis]]] = search,
) -> tuple[list[list[Hypothesis]], FakeModel]:
    """Decode one sentence per length (sentence i follows script i, or all follow `script`)."""
    scripts = [script] * len(src_lengths) if isinstance(script, Script) else list(script)
    model = FakeModel(scripts)
    src_ids, lengths = fake_batch(range(len(scripts)), src_lengths)
    results = beam_fn(model, src_ids, lengths, o)
    for hyps, s in zip(results, scripts, strict=True):
        check_hypotheses(hyps, s, o)
    return results, model


def check_hypotheses(hyps: list[Hypothesis], script: Script, o: SearchOptions) -> None:
    """What holds for every n-best list: sorted best first, distinct, scores and log-probs consistent."""
    assert len(hyps) <= o.n_best
    for h in hyps:
        assert not {EOS, PAD, BOS} & set(h.tokens), "no special token inside a hypothesis"
        assert h.log_prob == pytest.approx(script.path_log_prob([*h.tokens, EOS]), abs=1e-5)
        lp = length_penalty(float(len(h.tokens) + 1), o.length_penalty, o.penalty)
        assert h.score == pytest.approx(h.log_prob / float(lp), abs=1e-5)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    assert len({tuple(h.tokens) for h in hyps}) == len(hyps)


def expect(hyps: list[Hypothesis], expected: Expected, o: SearchOptions) -> None:
    assert [h.tokens for h in hyps] == [tokens for tokens, _ in expected]
    for h, (tokens, p) in zip(hyps, expected, strict=True):
        assert h.log_prob == pytest.approx(math.log(p), abs=1e-5)
        lp = float(length_penalty(float(len(tokens) + 1), o.length_penalty, o.penalty))
        assert h.score == pytest.approx(math.log(p) / lp, abs=1e-5)


GNMT1 = {"length_penalty": 1.0, "penalty": "gnmt"}
LEN1 = {"length_penalty": 1.0, "penalty": "length"}

# (script, options, expected n-best, decode_step calls)
BEAM_CASES: dict[str, tuple[Script, dict[str, Any], Expected, int]] = {
    # step 0: A .5, B .4 alive (EOS .1 is third). step 1: B C .36, A C .2 alive; A D .175 and A EOS .125
    # fall out. step 2: both end.
    "beam_beats_greedy": (BEAM_BEATS_GREEDY, {"n_best": 2}, [([B, C], 0.4 * 0.9), ([A, C], 0.5 * 0.4)], 3),
    # beam 3: step 0 finishes [] (.1); step 1 keeps B C, A C, A D; step 2 ends all three, pushing [] out.
    "beam_3": (
        BEAM_BEATS_GREEDY,
        {"beam": 3, "n_best": 3},
        [([B, C], 0.4 * 0.9), ([A, C], 0.5 * 0.4), ([A, D], 0.5 * 0.35)],
        3,
    ),
    # step 0: A, B alive. step 1: A C, B C. step 2: B C D, A C D (swapped). step 3: both end.
    "cross": (CROSS, {"n_best": 2}, [([B, C, D], 0.4 * 0.9), ([A, C, D], 0.5 * 0.9 * 0.4)], 4),
    # step 0 finishes [] (.4); step 1: best alive A B .3 < .4, done.
    "eos_second": (EOS_SECOND, {}, [([], 0.4)], 2),
    # alpha 0: [] (.5) ends at step 0 and the best alive A (.45) can only fall: done after one step.
    "early_end_stops": (EARLY_END, {}, [([], 0.5)], 1),
    # n_best 2 must go on until a second hypothesis ends: C EOS (.05) at step 1, A B EOS (.45) at step 2.
    "early_end_n_best": (EARLY_END, {"n_best": 2}, [([], 0.5), ([A, B], 0.45)], 3),
    # gnmt: [] ends first but A B wins (see EARLY_END); the bound -0.799 / (11/6) = -0.436 > -0.693 keeps
    # the search going until A B ends.
    "early_end_gnmt": (EARLY_END, GNMT1, [([A, B], 0.45)], 3),
    "early_end_gnmt_n_best": (EARLY_END, {**GNMT1, "n_best": 2}, [([A, B], 0.45), ([], 0.5)], 3),
    # length: the bound -0.799 / 6 = -0.133 > -0.693 keeps it going; A B wins with -0.266.
    "early_end_length": (EARLY_END, LEN1, [([A, B], 0.45)], 3),
    # gnmt: A B C (-0.611) beats [] (-0.693), found at step 3.
    "look_ahead_gnmt": (LOOK_AHEAD, GNMT1, [([A, B, C], 0.4)], 4),
    # gnmt: [] scores -0.105; the best alive A can reach at most -2.303 / (11/6) = -1.256: done at once.
    "stop_early_gnmt": (STOP_EARLY, GNMT1, [([], 0.9)], 1),
    # length: bound -2.303 / 6 = -0.384 < -0.105: done at once.
    "stop_early_length": (STOP_EARLY, LEN1, [([], 0.9)], 1),
    # length alpha 2: bound -2.303 / 36 = -0.064 > -0.105, so it must go on to the maximum length (5
    # tokens, 6 steps); the longest ending A^5 EOS scores log(.1 * .99^4 * .01) / 36 = -0.193 < -0.105.
    "stop_early_must_continue": (
        STOP_EARLY,
        {"length_penalty": 2.0, "penalty": "length", "n_best": 2},
        [([], 0.9), ([A] * 5, 0.1 * 0.99**4 * 0.01)],
        6,
    ),
    # alpha 0, n_best 2: the second best is A EOS (.001); nothing alive can beat it until the forced end,
    # since every alive A^n (.1 * .99^(n-1)) still might.
    "stop_early_n_best": (STOP_EARLY, {"n_best": 2}, [([], 0.9), ([A], 0.1 * 0.01)], 6),
    # stop early: [] is step 0's best candidate and one hypothesis is finished, so the search ends there
    # and misses A B, which wins under gnmt (`early_end_gnmt` searches on to find it).
    "early_end_gnmt_stop_early": (EARLY_END, {**GNMT1, "stop": "early"}, [([], 0.5)], 1),
    # ... and misses A B C the same way (`look_ahead_gnmt`).
    "look_ahead_gnmt_stop_early": (LOOK_AHEAD, {**GNMT1, "stop": "early"}, [([], 0.5)], 1),
    # n_best 2: step 0's best candidate ended, but one hypothesis is not two. step 1: A B (.45) leads and
    # goes on, C EOS (.05) is second and ends: two finished, done; [C] (-2.568) ranks below [] (-0.693).
    "early_end_gnmt_n_best_stop_early": (
        EARLY_END,
        {**GNMT1, "n_best": 2, "stop": "early"},
        [([], 0.5), ([C], 0.05)],
        2,
    ),
    # the best candidate ends only at the last step: the same search as `beam_beats_greedy`.
    "beam_beats_greedy_stop_early": (
        BEAM_BEATS_GREEDY,
        {"n_best": 2, "stop": "early"},
        [([B, C], 0.4 * 0.9), ([A, C], 0.5 * 0.4)],
        3,
    ),
    # PAD and BOS are skipped: step 0 keeps A (.2) and finishes [] (.1); step 1 ends A (.02).
    "specials": (SPECIALS, {"n_best": 2}, [([], 0.1), ([A], 0.2 * 0.1)], 2),
    # EOS ranks third at step 0 ([] .31) and is pruned with the rest of the candidates outside the beam.
    # step 1: A C .21, B C .187 alive; B EOS .153 and A EOS .14 pruned. step 2: both end.
    "eos_outside_beam_pruned": (
        EOS_THIRD,
        {"n_best": 2},
        [([A, C], 0.35 * 0.6), ([B, C], 0.34 * 0.55)],
        3,
    ),
}


@pytest.mark.parametrize("name", list(BEAM_CASES))
def test_beam_finds_hand_computed_hypotheses(name: str) -> None:
    script, kwargs, expected, calls = BEAM_CASES[name]
    o = opts(**kwargs)
    (hyps,), model = decode(script, o)
    expect(hyps, expected, o)
    assert model.calls == calls


# (script, options, expected (tokens, probability))
GREEDY_CASES: dict[str, tuple[Script, dict[str, Any], tuple[list[int], float]]] = {
    "beam_beats_greedy": (BEAM_BEATS_GREEDY, {}, ([A, C], 0.5 * 0.4)),
    "eos_second": (EOS_SECOND, {}, ([A, B], 0.6 * 0.5)),
    "early_end": (EARLY_END, {}, ([], 0.5)),
    # the length penalty ranks nothing in greedy search; it only divides the final score
    "early_end_gnmt": (EARLY_END, GNMT1, ([], 0.5)),
    "specials": (SPECIALS, {}, ([A], 0.2 * 0.1)),
    "long": (LONG, {}, ([A] * 5, 0.98**5 * 0.02)),
}


@pytest.mark.parametrize("name", list(GREEDY_CASES))
def test_greedy_follows_the_most_probable_token(name: str) -> None:
    script, kwargs, expected = GREEDY_CASES[name]
    o = opts(beam=1, **kwargs)
    (hyps,), _ = decode(script, o)
    expect(hyps, [expected], o)


@pytest.mark.parametrize("name", list(SCRIPTS))
@pytest.mark.parametrize("extra", [{}, {"min_len": 1}, {"block_unk": True}])
def test_beam_1_equals_greedy_on_scripts(name: str, extra: dict[str, object]) -> None:
    o = opts(beam=1, **extra)
    greedy, _ = decode(SCRIPTS[name], o, beam_fn=greedy_search)
    beam, _ = decode(SCRIPTS[name], o, beam_fn=beam_search)
    assert same_hypotheses(beam, greedy)


def same_hypotheses(got: list[list[Hypothesis]], want: list[list[Hypothesis]], tol: float = 1e-5) -> bool:
    """Same tokens exactly, scores and log-probs within `tol`."""
    return all(
        len(g) == len(w)
        and all(
            x.tokens == y.tokens
            and x.score == pytest.approx(y.score, abs=tol)
            and x.log_prob == pytest.approx(y.log_prob, abs=tol)
            for x, y in zip(g, w, strict=True)
        )
        for g, w in zip(got, want, strict=True)
    )


@pytest.mark.parametrize("stop", ["exact", "early"])
@pytest.mark.parametrize("beam", [1, 2, 3])
def test_batch_sentences_finish_independently(beam: int, stop: str) -> None:
    """Sentences that need 1, 3 and 4 steps (exact; early: 1, 1 and 1 or 2) decode as they would alone,
    padded source included."""
    scripts = [STOP_EARLY, EARLY_END, LOOK_AHEAD, BEAM_BEATS_GREEDY]
    o = opts(beam=beam, stop=stop, n_best=beam, **GNMT1)
    batch, _ = decode(scripts, o, src_lengths=[2, SRC_LEN, 4, SRC_LEN])
    lengths = [2, SRC_LEN, 4, SRC_LEN]
    alone = [decode(s, o, src_lengths=[n])[0][0] for s, n in zip(scripts, lengths, strict=True)]
    assert same_hypotheses(batch, alone)


@pytest.mark.parametrize(
    ("src_len", "a", "b", "expected"),
    [(5, 1.5, 2, 8), (3, 0.0, 4, 4), (2, 2.0, 0, 2), (4, 0.5, 1, 2), (6, 1.0, 0, 5), (1, 3.0, 2, 2)],
)
def test_max_length_formula(src_len: int, a: float, b: int, expected: int) -> None:
    """a * (src_len - 1) + b, rounded down; src_len counts the source EOS."""
    o = SearchOptions(max_len_a=a, max_len_b=b)
    assert max_lengths(torch.tensor([src_len]), o).tolist() == [expected]


@pytest.mark.parametrize(
    ("src_lengths", "a", "b"), [([5], 1.5, 2), ([3], 0.0, 4), ([2, 6, 4], 1.0, 0), ([4, 2], 0.5, 1)]
)
@pytest.mark.parametrize("beam", [1, 3])
def test_max_length_is_respected(src_lengths: list[int], a: float, b: int, beam: int) -> None:
    """LONG never wants to end; with the `length` penalty the longest hypothesis also scores best."""
    o = opts(beam=beam, n_best=beam, max_len_a=a, max_len_b=b, **LEN1)
    results, model = decode(LONG, o, src_lengths=src_lengths)
    limits = max_lengths(torch.tensor(src_lengths), o).tolist()
    for hyps, limit in zip(results, limits, strict=True):
        assert hyps[0].tokens == [A] * limit
        assert all(len(h.tokens) <= limit for h in hyps)
    assert model.calls == max(limits) + 1


@pytest.mark.parametrize("min_len", [0, 1, 3])
def test_min_length_is_respected(min_len: int) -> None:
    """SHORT always wants to end: greedy and beam give exactly min_len tokens, then one more."""
    (greedy,), _ = decode(SHORT, opts(beam=1, min_len=min_len))
    assert greedy[0].tokens == [A] * min_len
    o = opts(n_best=2, min_len=min_len)
    (beam,), _ = decode(SHORT, o)
    expect(beam, [([A] * min_len, 0.1**min_len * 0.9), ([A] * (min_len + 1), 0.1 ** (min_len + 1) * 0.9)], o)


@pytest.mark.parametrize(
    ("block_unk", "expected"),
    [(False, [([UNK], 0.6), ([A], 0.3)]), (True, [([A], 0.3), ([], 0.1)])],
)
@pytest.mark.parametrize("beam", [1, 2])
def test_block_unk(block_unk: bool, expected: Expected, beam: int) -> None:
    o = opts(beam=beam, n_best=beam, block_unk=block_unk)
    (hyps,), _ = decode(UNK_FIRST, o)
    expect(hyps, expected[:beam], o)


def test_options_are_validated() -> None:
    for bad in (
        {"beam": 0},
        {"beam": 2, "n_best": 3},
        {"n_best": 0},
        {"penalty": "none"},
        {"stop": "never"},
        {"min_len": -1},
        {"max_len_a": -0.5},
    ):
        with pytest.raises(Seq2SeqError):
            SearchOptions(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("length", "alpha", "kind", "expected"),
    [
        (1.0, 1.0, "gnmt", 1.0),
        (7.0, 1.0, "gnmt", 2.0),
        (7.0, 0.5, "gnmt", 2**0.5),
        (4.0, 0.5, "length", 2.0),
        (3.0, 2.0, "length", 9.0),
        (3.0, 0.0, "gnmt", 1.0),
        (3.0, 0.0, "length", 1.0),
    ],
)
def test_length_penalty(length: float, alpha: float, kind: str, expected: float) -> None:
    assert length_penalty(length, alpha, kind) == pytest.approx(expected)
    as_tensor = length_penalty(torch.tensor([length]), alpha, kind)
    assert isinstance(as_tensor, torch.Tensor)
    assert as_tensor.tolist() == pytest.approx([expected])


@pytest.mark.parametrize("beam", [1, 2, 3])
def test_attention_history_follows_each_hypothesis(beam: int) -> None:
    """The fake model's attention depends on the prefix, so a wrongly reordered history shows."""
    scripts, src_lengths = [BEAM_BEATS_GREEDY, CROSS, EARLY_END, LONG], [5, 4, 2, 3]
    o = opts(beam=beam, n_best=beam, return_attention=True, **GNMT1)
    results, _ = decode(scripts, o, src_lengths=src_lengths)
    for hyps, src_len in zip(results, src_lengths, strict=True):
        for h in hyps:
            assert h.attention is not None
            want = [attention_row(tuple(h.tokens[:t]), src_len, 5) for t in range(len(h.tokens) + 1)]
            torch.testing.assert_close(h.attention, torch.stack(want))


def test_no_attention_unless_asked() -> None:
    for beam in (1, 2):
        (hyps,), _ = decode(BEAM_BEATS_GREEDY, opts(beam=beam))
        assert hyps[0].attention is None


# Real model: random weights, only properties (no numbers from the weights).


@pytest.fixture(scope="module", params=["lstm", "gru"])
def model(request: pytest.FixtureRequest) -> Iterator[Seq2Seq]:
    with single_thread():
        yield tiny_model(dataclasses.replace(TINY, cell=request.param))


REAL_LENGTHS = [5, 2, 8, 3]


def real_opts(**kwargs: object) -> SearchOptions:
    base: dict[str, object] = {"max_len_a": 1.0, "max_len_b": 3}
    base.update(kwargs)
    return SearchOptions(**base)  # type: ignore[arg-type]


def test_beam_1_equals_greedy_on_real_model(model: Seq2Seq) -> None:
    """Over many steps EOS often ranks second; a beam of 1 must not keep such a hypothesis."""
    src_ids, src_lengths = source_batch(REAL_LENGTHS * 3)
    o = real_opts(beam=1, length_penalty=0.0, max_len_b=8)
    assert same_hypotheses(
        beam_search(model, src_ids, src_lengths, o), greedy_search(model, src_ids, src_lengths, o)
    )


@pytest.mark.parametrize("beam", [1, 5])
def test_alone_equals_inside_padded_batch(model: Seq2Seq, beam: int) -> None:
    o = real_opts(beam=beam, n_best=min(beam, 2))
    src_ids, src_lengths = source_batch(REAL_LENGTHS)
    batch = search(model, src_ids, src_lengths, o)
    for i, n in enumerate(REAL_LENGTHS):
        alone = search(model, src_ids[i : i + 1, :n], src_lengths[i : i + 1], o)
        assert same_hypotheses(batch[i : i + 1], alone, tol=1e-4)


@pytest.mark.parametrize("n_best", [1, 3])
def test_stopping_early_never_searches_longer_or_finds_better(model: Seq2Seq, n_best: int) -> None:
    """Until early stopping ends a sentence both searches are the same; the exact one only goes on, so
    it takes at least as many steps and finds hypotheses at least as good."""
    src_ids, src_lengths = source_batch(REAL_LENGTHS * 2)
    found, calls = {}, {}
    for stop in ("exact", "early"):
        counted = CountingModel(model)
        found[stop] = search(counted, src_ids, src_lengths, real_opts(beam=4, n_best=n_best, stop=stop))
        calls[stop] = counted.rows
    assert calls["early"] <= calls["exact"]
    for early, exact in zip(found["early"], found["exact"], strict=True):
        assert len(early) == len(exact) == n_best
        for e, x in zip(early, exact, strict=True):
            assert e.score <= x.score + 1e-5


class CountingModel:
    """A model that counts the decoder rows it computes."""

    def __init__(self, model: Seq2Seq) -> None:
        self.model, self.rows = model, 0

    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor) -> Any:
        return self.model.encode(src_ids, src_lengths)

    def init_state(self, enc: Any) -> Any:
        return self.model.init_state(enc)

    def decode_step(self, prev: torch.Tensor, state: Any, enc: Any) -> Any:
        self.rows += prev.numel()
        return self.model.decode_step(prev, state, enc)


@pytest.mark.parametrize("beam", [1, 4])
def test_real_attention_per_hypothesis(model: Seq2Seq, beam: int) -> None:
    src_ids, src_lengths = source_batch(REAL_LENGTHS)
    results = search(model, src_ids, src_lengths, real_opts(beam=beam, n_best=beam, return_attention=True))
    for hyps, n in zip(results, REAL_LENGTHS, strict=True):
        assert len(hyps) == beam
        for h in hyps:
            assert h.attention is not None
            assert h.attention.shape == (len(h.tokens) + 1, src_ids.size(1))
            torch.testing.assert_close(h.attention.sum(-1), torch.ones(len(h.tokens) + 1))
            assert bool((h.attention[:, n:] == 0).all())
            assert bool((h.attention[:, :n] > 0).all())


@pytest.mark.parametrize("beam", [1, 5])
def test_real_hypotheses_are_well_formed(model: Seq2Seq, beam: int) -> None:
    src_ids, src_lengths = source_batch(REAL_LENGTHS)
    o = real_opts(beam=beam, n_best=beam, min_len=1, block_unk=True, **GNMT1)
    limits = max_lengths(src_lengths, o).tolist()
    for hyps, limit in zip(search(model, src_ids, src_lengths, o), limits, strict=True):
        assert len(hyps) == beam
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == beam
        for h in hyps:
            assert 1 <= len(h.tokens) <= limit
            assert not {PAD, UNK, BOS, EOS} & set(h.tokens)
            assert h.score == pytest.approx(
                h.log_prob / float(length_penalty(len(h.tokens) + 1.0, 1.0, "gnmt"))
            )


@pytest.mark.parametrize(
    ("rows", "width", "k", "seed"),
    [(1, 160, 10, 0), (7, 40000, 10, 1), (3, 4096, 32, 2), (5, 48, 3, 3), (2, 100, 4, 4), (4, 16, 1, 5)],
)
def test_top_k_equals_torch_topk(rows: int, width: int, k: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(rows, width, generator=gen)
    scores[:, ::7] = float("-inf")  # masked tokens, as after constraints
    scores[0, 3:9] = 2.5  # ties among the best
    values, indices = top_k(scores, k)
    expected = scores.topk(k, dim=1).values
    assert torch.equal(values, expected)
    assert torch.equal(scores.gather(1, indices), values)  # each index points at its value
    assert all(len(set(row)) == k for row in indices.tolist())  # no index twice


def test_top_k_rows_that_are_almost_all_masked() -> None:
    """A sentence at its maximum length: only K EOS scores are finite among K * V."""
    scores = torch.full((2, 5 * 64), float("-inf"))
    scores[:, 3::64] = torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0])
    values, indices = top_k(scores, 10)
    assert values[:, :5].tolist() == [[-1.0, -2.0, -3.0, -4.0, -5.0]] * 2
    assert indices[:, :5].tolist() == [[3, 67, 131, 195, 259]] * 2
    assert torch.isinf(values[:, 5:]).all()


def all_hypotheses(script: Script, max_tokens: int) -> list[tuple[list[int], float]]:
    """Every hypothesis the script can produce with at most `max_tokens` tokens, by brute force."""
    found, frontier = [], [((), 0.0)]
    for t in range(max_tokens + 1):
        grown = []
        for prefix, logp in frontier:
            for tok, p in script.probs(prefix).items():
                if tok == EOS:
                    found.append((list(prefix), logp + math.log(p)))
                elif t < max_tokens and tok not in (PAD, BOS):
                    grown.append(((*prefix, tok), logp + math.log(p)))
        frontier = grown
    return sorted(found, key=lambda h: -h[1])


@pytest.mark.parametrize("name", ["beam_beats_greedy", "cross", "early_end_n_best"])
def test_beam_wider_than_the_vocabulary_is_exhaustive(name: str) -> None:
    """Beam 10 > V = 8 candidates at the first step: the n-best equals the brute-force n-best."""
    script = BEAM_CASES[name][0]
    o = opts(beam=10, n_best=4)
    (hyps,), _ = decode(script, o)
    best = all_hypotheses(script, max_lengths(torch.tensor([SRC_LEN]), o).item())[:4]
    assert [h.tokens for h in hyps] == [tokens for tokens, _ in best]
    assert [h.log_prob for h in hyps] == pytest.approx([logp for _, logp in best], abs=1e-5)


def test_options_from_config_keep_every_decode_setting() -> None:
    from seq2seq.config import DecodeConfig

    d = DecodeConfig(
        beam=4, length_penalty=0.6, penalty="length", stop="early", max_len_a=2.0, max_len_b=3, min_len=2
    )
    o = SearchOptions.from_config(d)
    assert (o.beam, o.length_penalty, o.penalty, o.stop, o.max_len_a, o.max_len_b, o.min_len) == (
        4, 0.6, "length", "early", 2.0, 3, 2)  # fmt: skip
    o = SearchOptions.from_config(d, beam=1, min_len=None, block_unk=True)
    assert (o.beam, o.min_len, o.block_unk) == (1, 2, True)
    with pytest.raises(TypeError, match="beem"):
        SearchOptions.from_config(d, beem=3)

"""Built-in corpora generated on demand, so anyone can train and score a model with no download.

`numbers-de`: a number in digits ("4721") into German number words, one word per token
("vier tausend sieben hundert ein und zwanzig"). German says the units before the tens ("ein und
zwanzig" for 21), so the target must be reordered relative to the source: a model without working
attention, or with broken masking, visibly fails on it. Validation and test numbers (four to six digits)
never occur in the training split, so the test score measures generalisation.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

_UNITS = ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"]
_TEENS = {
    10: "zehn",
    11: "elf",
    12: "zwölf",
    13: "drei zehn",
    14: "vier zehn",
    15: "fünf zehn",
    16: "sech zehn",
    17: "sieb zehn",
    18: "acht zehn",
    19: "neun zehn",
}
_TENS = {
    2: "zwanzig",
    3: "dreißig",
    4: "vierzig",
    5: "fünfzig",
    6: "sechzig",
    7: "siebzig",
    8: "achtzig",
    9: "neunzig",
}


def _below_100(n: int, final: bool) -> list[str]:
    """Words for 1..99; `final` is False inside a compound ("ein tausend", not "eins tausend")."""
    if n < 10:
        word = _UNITS[n]
        return [word if final or n != 1 else "ein"]
    if n < 20:
        return _TEENS[n].split()
    tens, units = divmod(n, 10)
    if units == 0:
        return [_TENS[tens]]
    unit = "ein" if units == 1 else _UNITS[units]
    return [unit, "und", _TENS[tens]]


def _below_1000(n: int, final: bool) -> list[str]:
    hundreds, rest = divmod(n, 100)
    words: list[str] = []
    if hundreds:
        words += [*_below_100(hundreds, final=False), "hundert"]
    if rest:
        words += _below_100(rest, final)
    return words


def german_number(n: int) -> str:
    """0 <= n < 1,000,000 as spaced German number words: 1021 -> 'ein tausend ein und zwanzig'."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"german_number covers 0..999999, got {n}")
    if n == 0:
        return "null"
    thousands, rest = divmod(n, 1000)
    words: list[str] = []
    if thousands:
        words += [*_below_1000(thousands, final=False), "tausend"]
    if rest:
        words += _below_1000(rest, final=True)
    return " ".join(words)


# Every number below 1000 is in the training split, short ones repeated so that they are not drowned
# out by the long ones: (first, last, copies).
_SMALL = ((0, 9, 20), (10, 99, 5), (100, 999, 2))


def numbers_de(train_size: int, eval_size: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """Train on every number below 1000 plus random larger ones; validate/test on unseen larger ones."""
    rng = random.Random(seed)
    needed = train_size + 2 * eval_size
    large: set[int] = set()
    while len(large) < needed:
        digits = rng.randint(4, 6)
        large.add(rng.randrange(10 ** (digits - 1), 10**digits))
    pool = sorted(large)
    rng.shuffle(pool)
    valid, test = pool[:eval_size], pool[eval_size : 2 * eval_size]
    small = [n for first, last, copies in _SMALL for n in range(first, last + 1) for _ in range(copies)]
    train = small + pool[2 * eval_size : 2 * eval_size + max(0, train_size - len(small))]
    rng.shuffle(train)
    train = train[:train_size]

    def pairs(numbers: list[int]) -> list[tuple[str, str]]:
        return [(str(n), german_number(n)) for n in numbers]

    return {"train": pairs(train), "valid": pairs(valid), "test": pairs(test)}


PARITY_LENGTHS = (2, 40)
"""Shortest and longest `parity` source, in tokens."""


def parity(train_size: int, eval_size: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """A long-range dependency that attention cannot shortcut: a sequence of letters a-f ("c a f a b")
    into "even" or "odd", the parity of the number of a's. The answer depends on every token, so only
    memory carried through the recurrence solves it; lengths are uniform over `PARITY_LENGTHS`."""
    rng = random.Random(seed)

    def pair() -> tuple[str, str]:
        tokens = [rng.choice("abcdef") for _ in range(rng.randint(*PARITY_LENGTHS))]
        return " ".join(tokens), "odd" if tokens.count("a") % 2 else "even"

    return {
        "train": [pair() for _ in range(train_size)],
        "valid": [pair() for _ in range(eval_size)],
        "test": [pair() for _ in range(eval_size)],
    }


BUILTIN: dict[str, Callable[[int, int, int], dict[str, list[tuple[str, str]]]]] = {
    "numbers-de": numbers_de,
    "parity": parity,
}


def write_builtin(name: str, out_dir: Path, train_size: int, eval_size: int, seed: int) -> Path:
    """Write `{train,valid,test}.{src,tgt}` under `out_dir`; returns `out_dir`."""
    splits = BUILTIN[name](train_size, eval_size, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        for side, column in (("src", 0), ("tgt", 1)):
            text = "".join(pair[column] + "\n" for pair in pairs)
            (out_dir / f"{split}.{side}").write_text(text, encoding="utf-8")
    return out_dir

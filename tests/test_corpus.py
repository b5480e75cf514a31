import pytest

from seq2seq.corpus import german_number, numbers_de


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "null"),
        (1, "eins"),
        (7, "sieben"),
        (11, "elf"),
        (16, "sech zehn"),
        (21, "ein und zwanzig"),
        (30, "dreißig"),
        (101, "ein hundert eins"),
        (110, "ein hundert zehn"),
        (1000, "ein tausend"),
        (1001, "ein tausend eins"),
        (21000, "ein und zwanzig tausend"),
        (4721, "vier tausend sieben hundert ein und zwanzig"),
        (999999, "neun hundert neun und neunzig tausend neun hundert neun und neunzig"),
    ],
)
def test_german_numbers(n: int, words: str) -> None:
    assert german_number(n) == words


def test_splits_are_deterministic_and_held_out() -> None:
    a, b = numbers_de(3000, 100, seed=7), numbers_de(3000, 100, seed=7)
    assert a == b
    train = {src for src, _ in a["train"]}
    assert len(a["train"]) == 3000 and len(a["valid"]) == len(a["test"]) == 100
    assert not train & {s for s, _ in a["test"]} and not train & {s for s, _ in a["valid"]}
    assert not {s for s, _ in a["valid"]} & {s for s, _ in a["test"]}
    assert numbers_de(3000, 100, seed=8) != a

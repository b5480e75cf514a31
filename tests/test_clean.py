"""The cleaning rules one by one, their order, and the report table."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from seq2seq.config import DataConfig
from seq2seq.data.clean import (
    KEEP,
    LENGTH_RULES,
    RULES,
    SplitReport,
    TextPrep,
    check_not_empty,
    count_drops,
    length_drops,
    pair_hashes,
    report_table,
    text_drops,
)
from seq2seq.data.sources import Picker
from seq2seq.errors import Seq2SeqError

CODE = {rule: i + 1 for i, rule in enumerate(RULES)} | {"keep": KEEP}


@pytest.mark.parametrize(
    ("src_len", "tgt_len", "options", "rule"),
    [
        (5, 5, {}, "keep"),
        (0, 5, {}, "too_short"),
        (2, 3, {"min_len": 3}, "too_short"),
        (3, 3, {"min_len": 3}, "keep"),
        (101, 4, {}, "too_long"),
        (100, 100, {}, "keep"),
        (500, 500, {"max_len": 0}, "keep"),
        (10, 3, {"max_ratio": 3.0}, "ratio"),
        (9, 3, {"max_ratio": 3.0}, "keep"),
        (10, 3, {}, "keep"),
        (0, 4, {"min_len": 0, "max_ratio": 3.0}, "ratio"),
        (1, 200, {"max_ratio": 2.0}, "too_long"),
        (0, 200, {"max_ratio": 2.0}, "too_short"),
    ],
)
def test_length_rules_in_order(src_len: int, tgt_len: int, options: dict[str, float], rule: str) -> None:
    codes = length_drops(np.array([src_len]), np.array([tgt_len]), DataConfig(**options))  # type: ignore[arg-type]
    assert codes.tolist() == [CODE[rule]]


def text(pairs: list[tuple[str, str]]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"src": [s for s, _ in pairs], "tgt": [t for _, t in pairs]})


def test_text_rules_empty_then_duplicate() -> None:
    pairs = [("a", "b"), ("", "b"), ("a", ""), ("a", "b"), ("", ""), ("ab", ""), ("a", "bb"), ("a", "b")]
    assert text_drops(text(pairs), dedup=False).tolist() == [0, 1, 1, 0, 1, 1, 0, 0]
    assert text_drops(text(pairs), dedup=True).tolist() == [0, 1, 1, 2, 1, 1, 0, 2]


def test_pair_hash_separates_the_sides() -> None:
    hashes = pair_hashes(["ab", "a", "ab"], ["c", "bc", "c"])
    assert hashes[0] != hashes[1] and hashes[0] == hashes[2] and hashes.dtype == np.int64


def test_count_drops_includes_zeros() -> None:
    codes = np.array([0, 3, 3, 5, 0], dtype=np.int8)
    assert count_drops(codes, LENGTH_RULES) == {"too_short": 2, "too_long": 0, "ratio": 1}


@pytest.mark.parametrize(
    ("form", "src", "expected"),
    [
        ("", "  ﬁ Ａ \u2028", "ﬁ Ａ"),
        ("NFKC", " ﬁ Ａ ", "fi A"),
        ("NFC", "e\u0301", "\u00e9"),
        ("", "e\u0301", "e\u0301"),
    ],
)
def test_text_prep_normalizes_then_strips(form: str, src: str, expected: str) -> None:
    prep = TextPrep(Picker("s", "t"), form)
    assert prep({"s": [src], "t": [None]}) == {"src": [expected], "tgt": [""]}


def test_emptied_split_names_the_last_rule() -> None:
    report = SplitReport(read=10, dropped={"empty": 4, "duplicate": 0, "too_short": 6, "too_long": 0})
    with pytest.raises(
        Seq2SeqError, match=r"filter 'too_short' dropped the last 6 of 10 \(empty 4, too_short 6\)"
    ):
        check_not_empty(report, "data.train")


def test_report_table_aligns_and_marks_unfiltered_splits() -> None:
    manifest = {
        "splits": {
            "train": {
                "read": 1200,
                "kept": 1000,
                "dropped": {"empty": 200, "too_long": 0},
                "utf8_replaced": 3,
            },
            "valid": {"read": 7, "kept": 7, "dropped": {}, "utf8_replaced": 0},
        }
    }
    assert report_table(manifest).splitlines() == [
        "split  read  empty  too_long  kept  utf8_replaced",
        "train  1200    200         0  1000              3",
        "valid     7      -         -     7              0",
    ]

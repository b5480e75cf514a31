"""Cleaning rules and their report: every pair dropped is counted under the rule that dropped it.

Text is normalised (optional Unicode form) and stripped on every split. Only the training split is then
filtered, by these rules in this order, each pair counted under the first rule that drops it: `empty`
(a side is empty or whitespace only), `duplicate` (the same pair seen before), then, once SentencePiece
exists, `too_short`, `too_long` and `ratio` in subwords. Validation and test keep every line, so that
hypotheses line up with their references.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seq2seq.config import DataConfig
from seq2seq.errors import Seq2SeqError

RULES = ("empty", "duplicate", "too_short", "too_long", "ratio")
TEXT_RULES = RULES[:2]
LENGTH_RULES = RULES[2:]
KEEP = 0
"""Drop codes: 0 keeps a pair, RULES[i] has code i + 1."""
_CODE = {rule: i + 1 for i, rule in enumerate(RULES)}
_HINT = {
    "empty": "every remaining pair has an empty side",
    "duplicate": "every remaining pair repeats an earlier one (data.dedup)",
    "too_short": "lower data.min_len",
    "too_long": "raise data.max_len (0 = no limit)",
    "ratio": "raise data.max_ratio (0 = off)",
}
BATCH = 10_000
"""Rows per Arrow batch when computing drop codes."""


@dataclass
class SplitReport:
    """How many pairs a split had, what each rule dropped, and how many lines had bad UTF-8 replaced."""

    read: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    utf8_replaced: int = 0


@dataclass(frozen=True)
class TextPrep:
    """Batch -> `src`/`tgt` strings, Unicode-normalised when asked and stripped (a `map` function)."""

    pick: Callable[[dict[str, list[Any]]], dict[str, list[str]]]
    form: str = ""

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[str]]:
        picked = self.pick(batch)
        if self.form:
            return {k: [unicodedata.normalize(self.form, s).strip() for s in v] for k, v in picked.items()}  # type: ignore[arg-type]
        return {k: [s.strip() for s in v] for k, v in picked.items()}


def text_drops(text: datasets.Dataset, dedup: bool) -> np.ndarray:
    """Drop codes [N] for the rules that need no tokenizer: empty sides, then repeated pairs.

    Works batch by batch on the Arrow data: memory is 1 byte per pair, plus 8 for `dedup`'s hashes.
    """
    codes, hashes = [], []
    for batch in arrow_batches(text, ["src", "tgt"]):
        empty = pc.or_(*(pc.equal(pc.utf8_length(batch.column(side)), 0) for side in ("src", "tgt")))
        codes.append(np.where(empty.to_numpy(zero_copy_only=False), _CODE["empty"], KEEP).astype(np.int8))
        if dedup:
            hashes.append(pair_hashes(batch.column("src").to_pylist(), batch.column("tgt").to_pylist()))
    all_codes = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int8)
    if dedup and hashes:
        candidates = np.flatnonzero(all_codes == KEEP)
        _, first = np.unique(np.concatenate(hashes)[candidates], return_index=True)
        repeated = np.ones(len(candidates), dtype=bool)
        repeated[first] = False
        all_codes[candidates[repeated]] = _CODE["duplicate"]
    return all_codes


def arrow_batches(data: datasets.Dataset, columns: list[str]) -> Iterator[pa.Table]:
    """`columns` of `data` as Arrow tables of `BATCH` rows (zero-copy from the memory-mapped files)."""
    yield from data.select_columns(columns).with_format("arrow").iter(batch_size=BATCH)


def pair_hashes(src: list[str], tgt: list[str]) -> np.ndarray:
    """A 64-bit hash per pair [N], so de-duplication holds 8 bytes per pair, not the text."""
    digests = b"".join(
        hashlib.blake2b(f"{len(s)}:{s}{t}".encode(), digest_size=8).digest()
        for s, t in zip(src, tgt, strict=True)
    )
    return np.frombuffer(digests, dtype=np.int64)


def length_drops(src_len: np.ndarray, tgt_len: np.ndarray, cfg: DataConfig) -> np.ndarray:
    """Drop codes [N] by subword length: too short, then too long, then too unequal (longer / shorter)."""
    shorter, longer = np.minimum(src_len, tgt_len), np.maximum(src_len, tgt_len)
    codes = np.full(len(src_len), KEEP, dtype=np.int8)
    if cfg.max_ratio:
        codes[longer > cfg.max_ratio * np.maximum(shorter, 1)] = _CODE["ratio"]
    if cfg.max_len:
        codes[longer > cfg.max_len] = _CODE["too_long"]
    codes[shorter < cfg.min_len] = _CODE["too_short"]
    return codes


def count_drops(codes: np.ndarray, rules: tuple[str, ...]) -> dict[str, int]:
    """How many pairs each of `rules` dropped (zeros included, so the report shows every rule)."""
    counts = np.bincount(codes, minlength=len(RULES) + 1)
    return {rule: int(counts[_CODE[rule]]) for rule in rules}


def check_not_empty(report: SplitReport, where: str) -> None:
    """An emptied training split names the rule that dropped its last pairs, and what to change."""
    if report.read == 0:
        raise Seq2SeqError(f"{where}: the training split is empty (0 pairs)")
    last = [rule for rule in RULES if report.dropped.get(rule)][-1]
    summary = ", ".join(f"{rule} {n}" for rule, n in report.dropped.items() if n)
    raise Seq2SeqError(
        f"{where}: no training pairs left after cleaning: filter '{last}' dropped the last "
        f"{report.dropped[last]} of {report.read} ({summary}); {_HINT[last]}"
    )


def report_table(manifest: dict[str, Any]) -> str:
    """The cleaning report: pairs read, dropped by each rule ("-" = never applied), kept; row per split."""
    splits = manifest["splits"]
    rules = [rule for rule in RULES if any(rule in s["dropped"] for s in splits.values())]
    extra = ["utf8_replaced"] if any(s.get("utf8_replaced") for s in splits.values()) else []
    rows = [["split", "read", *rules, "kept", *extra]]
    for split, s in splits.items():
        drops = [str(s["dropped"][r]) if r in s["dropped"] else "-" for r in rules]
        rows.append([split, str(s["read"]), *drops, str(s["kept"]), *(str(s[k]) for k in extra)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    )

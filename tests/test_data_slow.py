"""`preprocess` on the real corpora (run with: pytest -m slow tests/test_data_slow.py).

Multi30k en->de must take at most 60 s and Tatoeba (170k pairs) at most 2 minutes on 2 cores; both keep
their validation and test line counts exact. benchmarks/preprocess.py measures time and memory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from seq2seq.config import config_from_dict
from seq2seq.data import load_prepared, preprocess

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"the shared corpora are not at {DATA}"),
]


def test_multi30k_en_de(tmp_path: Path) -> None:
    root = DATA / "multi30k"
    cfg = config_from_dict(
        {
            "data": {
                "src_lang": "en",
                "tgt_lang": "de",
                "train": str(root / "train"),
                "valid": str(root / "val"),
                "test": str(root / "test_2016_flickr"),
            }
        }
    )
    result = preprocess(cfg, tmp_path / "out", log=lambda line: None)
    splits = result.manifest["splits"]
    assert splits["train"]["read"] == 29000 and splits["train"]["kept"] > 28900
    assert (splits["valid"]["kept"], splits["test"]["kept"]) == (1014, 1000)
    assert result.manifest["seconds"] <= 60
    prepared = load_prepared(result.dir)
    references = (root / "val.de").read_text(encoding="utf-8").split("\n")[:1014]
    assert prepared.splits["valid"]["tgt"] == [r.strip() for r in references]
    assert preprocess(cfg, tmp_path / "out", log=lambda line: None).cached


def _held_out(english: str) -> str:
    """valid, test or train, by a hash of the English sentence: no sentence is in two splits."""
    bucket = int.from_bytes(hashlib.blake2b(english.encode(), digest_size=4).digest(), "little") % 100
    return "valid" if bucket == 0 else "test" if bucket == 1 else "train"


def test_tatoeba_with_held_out_sets_by_english_sentence(tmp_path: Path) -> None:
    root = DATA / "tatoeba-deu-eng"
    en = (root / "deu.en").read_text(encoding="utf-8").split("\n")[:-1]
    de = (root / "deu.de").read_text(encoding="utf-8").split("\n")[:-1]
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "valid": [], "test": []}
    for pair in zip(en, de, strict=True):
        splits[_held_out(pair[0])].append(pair)
    for name, pairs in splits.items():
        (tmp_path / f"{name}.en").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
        (tmp_path / f"{name}.de").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    data = {name: str(tmp_path / name) for name in splits}
    cfg = config_from_dict({"data": {"src_lang": "en", "tgt_lang": "de", "dedup": True, **data}})
    result = preprocess(cfg, tmp_path / "out", log=lambda line: None)
    counts = result.manifest["splits"]
    assert sum(counts[s]["read"] for s in splits) == len(en) == 169_813
    assert counts["valid"]["kept"] == len(splits["valid"]) and counts["test"]["kept"] == len(splits["test"])
    assert counts["train"]["kept"] == counts["train"]["read"] - sum(counts["train"]["dropped"].values())
    assert not {s for s, _ in splits["valid"]} & {s for s, _ in splits["train"]}
    assert result.manifest["seconds"] <= 120

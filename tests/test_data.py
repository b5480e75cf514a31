"""`preprocess` end to end on tiny corpora: every source type, each filter, the report, the cache."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import datasets
import pytest

from seq2seq.config import Config, config_from_dict, load_config
from seq2seq.data import ParallelCorpus, load_prepared, preprocess, report_table
from seq2seq.data.prepare import PrepareResult
from seq2seq.errors import Seq2SeqError
from seq2seq.special import EOS

WORDS = ["cat", "dog", "sees", "eats", "big", "red", "house", "tree", "small", "bird"]


def corpus(n: int, offset: int = 0) -> list[tuple[str, str]]:
    """Distinct three-word pairs; the target is the source reversed and upper-cased."""
    pairs = []
    for i in range(offset, offset + n):
        words = [WORDS[i % 10], WORDS[(i // 10) % 10], WORDS[(i // 100 + 3) % 10]]
        pairs.append((" ".join(words), " ".join(w.upper() for w in reversed(words))))
    return pairs


TRAIN, VALID, TEST = corpus(60), corpus(8, 500), corpus(5, 700)


def write_text(prefix: Path, pairs: list[tuple[str, str]]) -> str:
    for side, lang in ((0, "en"), (1, "de")):
        Path(f"{prefix}.{lang}").write_text("".join(p[side] + "\n" for p in pairs), encoding="utf-8")
    return str(prefix)


def config(**data: Any) -> Config:
    tokenizer = data.pop("tokenizer", {})
    return config_from_dict(
        {"data": {"src_lang": "en", "tgt_lang": "de", **data}, "tokenizer": {"vocab_size": 40, **tokenizer}}
    )


def run(cfg: Config, out: Path, force: bool = False) -> tuple[PrepareResult, list[str]]:
    lines: list[str] = []
    return preprocess(cfg, out, log=lines.append, force=force), lines


def text_config(tmp_path: Path, train: list[tuple[str, str]] = TRAIN, **data: Any) -> Config:
    return config(
        train=write_text(tmp_path / "train", train),
        valid=write_text(tmp_path / "valid", VALID),
        test=write_text(tmp_path / "test", TEST),
        **data,
    )


def column(out: Path, split: str, name: str) -> list[Any]:
    return list(datasets.load_from_disk(str(out / "dataset"))[split][name])


def test_text_corpus_end_to_end(tmp_path: Path) -> None:
    result, log = run(text_config(tmp_path), tmp_path / "out")
    out = result.dir
    prepared = load_prepared(out)
    assert set(prepared.splits) == {"train", "valid", "test"}
    assert prepared.splits["train"].column_names == ["src", "tgt", "src_ids", "tgt_ids", "src_len", "tgt_len"]
    assert column(out, "valid", "tgt") == [t for _, t in VALID]
    decoded = prepared.tokenizer.decode_tgt(column(out, "test", "tgt_ids"))
    assert decoded == [t for _, t in TEST]
    assert column(out, "train", "src_len") == [len(ids) for ids in column(out, "train", "src_ids")]
    batch = ParallelCorpus.from_dataset(prepared.splits["train"]).batch(
        prepared.splits["train"]["src_len"][:0]
    )
    assert batch.src_ids.shape[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"] == {
        "read": 60,
        "kept": 60,
        "dropped": {"empty": 0, "too_short": 0, "too_long": 0, "ratio": 0},
        "utf8_replaced": 0,
    }
    assert manifest["splits"]["valid"]["kept"] == 8 and manifest["splits"]["valid"]["dropped"] == {}
    files = manifest["sources"]["train"]["files"]
    assert [Path(f["path"]).name for f in files] == ["train.en", "train.de"]
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in files)
    assert manifest["tokenizer"]["special_ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
    assert manifest["vocab"]["src"] == prepared.tokenizer.src_vocab_size and manifest["seconds"] >= 0
    assert not (out / "work").exists() and not (out / "spm.tgt.model").exists()
    assert any("training SentencePiece" in line for line in log)


def write_source(tmp_path: Path, fmt: str, name: str, pairs: list[tuple[str, str]]) -> str:
    """The same pairs as TSV (numbered columns), CSV (named), JSON Lines (translation shape)."""
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "tsv":
        path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    elif fmt == "csv":
        path.write_text("de,en\n" + "".join(f"{t},{s}\n" for s, t in pairs), encoding="utf-8")
    else:
        rows = [json.dumps({"translation": {"en": s, "de": t}}) + "\n" for s, t in pairs]
        path.write_text("".join(rows), encoding="utf-8")
    return str(path)


def hub_source(tmp_path: Path) -> str:
    root = tmp_path / "hub" / "data"
    root.mkdir(parents=True)
    for name, pairs in (("train", TRAIN), ("validation", VALID), ("test", TEST)):
        write_source(root, "jsonl", name, pairs)
    return str(root.parent)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The text corpus, preprocessed: every other source type must give exactly this."""
    tmp = tmp_path_factory.mktemp("reference")
    return run(text_config(tmp), tmp / "out")[0].dir


@pytest.mark.parametrize(
    ("fmt", "streaming"),
    [("tsv", False), ("csv", True), ("jsonl", False), ("jsonl", True), ("hub", False), ("hub", True)],
)
def test_every_source_gives_the_same_dataset(
    tmp_path: Path, reference: Path, fmt: str, streaming: bool
) -> None:
    if fmt == "hub":
        cfg = config(format="hub", dataset=hub_source(tmp_path), streaming=streaming)
    else:
        splits = {
            s: write_source(tmp_path, fmt, s, p)
            for s, p in (("train", TRAIN), ("valid", VALID), ("test", TEST))
        }
        cfg = config(format=fmt, header=fmt == "csv", streaming=streaming, **splits)
    out = run(cfg, tmp_path / "out")[0].dir
    for split in ("train", "valid", "test"):
        for name in ("src", "tgt", "src_ids", "tgt_ids"):
            assert column(out, split, name) == column(reference, split, name), (split, name)


def test_num_proc_gives_the_same_dataset_and_no_rebuild(
    tmp_path: Path, reference: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = sys.modules["seq2seq.data.prepare"]
    monkeypatch.setattr(module, "BATCH", 16)  # several batches, so that two processes map
    out = tmp_path / "out"
    run(text_config(tmp_path, num_proc=2), out)
    assert column(out, "train", "tgt_ids") == column(reference, "train", "tgt_ids")
    assert run(text_config(tmp_path, num_proc=1), out)[0].cached


DIRTY = [
    ("  cat dog  ", "\tDOG CAT "),  # kept, stripped
    ("   ", "BIRD"),  # empty: whitespace only
    ("bird", ""),  # empty
    ("cat dog", "DOG CAT"),  # duplicate of the first, after stripping
    ("ﬁsh tree", "TREE FISH"),  # kept; NFKC turns the ligature into "fi"
    ("cat", "CAT"),  # too_short with min_len 2
    (" ".join(WORDS * 3), " ".join(WORDS * 3).upper()),  # too_long with max_len 25
    (" ".join(WORDS[:8] + WORDS[:4]), "TREE RED"),  # ratio with max_ratio 6
]


def test_each_filter_is_counted_and_valid_test_are_never_filtered(tmp_path: Path) -> None:
    cfg = config(
        train=write_text(tmp_path / "train", DIRTY + TRAIN),
        valid=write_text(tmp_path / "valid", DIRTY),
        test=write_text(tmp_path / "test", DIRTY),
        dedup=True,
        normalize="NFKC",
        min_len=2,
        max_len=25,
        max_ratio=6.0,
        tokenizer={"vocab_size": 60},
    )
    result = run(cfg, tmp_path / "out")[0]
    train = result.manifest["splits"]["train"]
    assert train["dropped"] == {"empty": 2, "duplicate": 1, "too_short": 1, "too_long": 1, "ratio": 1}
    assert train["read"] == 68 and train["kept"] == 62
    kept = column(result.dir, "train", "src")
    assert kept[:2] == ["cat dog", "fish tree"] and column(result.dir, "train", "tgt")[0] == "DOG CAT"
    for split in ("valid", "test"):
        assert result.manifest["splits"][split]["kept"] == len(DIRTY)
        assert column(result.dir, split, "src") == [s.strip() for s, _ in DIRTY[:4]] + ["fish tree"] + [
            s for s, _ in DIRTY[5:]
        ]
    table = report_table(result.manifest).splitlines()
    assert table[0].split() == [
        "split",
        "read",
        "empty",
        "duplicate",
        "too_short",
        "too_long",
        "ratio",
        "kept",
    ]
    assert table[1].split() == ["train", "68", "2", "1", "1", "1", "1", "62"]
    assert table[2].split() == ["valid", "8", "-", "-", "-", "-", "-", "8"]


@pytest.mark.parametrize(
    ("pairs", "options", "message"),
    [
        ([("", "A"), (" ", "B")], {}, r"filter 'empty' dropped the last 2 of 2 \(empty 2\)"),
        (
            TRAIN[:5] * 2,
            {"dedup": True, "max_len": 1},
            r"filter 'too_long' dropped the last 5 of 10 .*data.max_len",
        ),
        (
            TRAIN[:5],
            {"max_len": 0, "min_len": 50},
            r"filter 'too_short' dropped the last 5 of 5.*data.min_len",
        ),
        ([], {}, r"the training split is empty \(0 pairs\)"),
    ],
    ids=["empty", "too_long", "too_short", "no-lines"],
)
def test_emptied_corpus_names_the_filter(
    tmp_path: Path, pairs: list[tuple[str, str]], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(Seq2SeqError, match=message):
        run(text_config(tmp_path, pairs, **options), tmp_path / "out")


def test_utf8_replacement_is_reported(tmp_path: Path) -> None:
    cfg = text_config(tmp_path, invalid_utf8="replace")
    with open(tmp_path / "train.en", "ab") as f:
        f.write(b"bad \xff byte\n")
    with open(tmp_path / "train.de", "ab") as f:
        f.write(b"BAD BYTE\n")
    result = run(cfg, tmp_path / "out")[0]
    assert result.manifest["splits"]["train"]["utf8_replaced"] == 1
    assert report_table(result.manifest).splitlines()[0].split()[-1] == "utf8_replaced"


def test_cache_no_op_and_rebuilds(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = text_config(tmp_path)
    first = run(cfg, out)[0]
    again, log = run(cfg, out)
    assert again.cached and again.manifest == first.manifest and "up to date" in log[-1]
    assert not run(text_config(tmp_path, max_len=50), out)[0].cached
    assert run(text_config(tmp_path, max_len=50), out)[0].cached
    with open(tmp_path / "valid.de", "a", encoding="utf-8") as f:
        f.write("EXTRA\n")
    with open(tmp_path / "valid.en", "a", encoding="utf-8") as f:
        f.write("extra\n")
    cfg = config(train=str(tmp_path / "train"), valid=str(tmp_path / "valid"), test=str(tmp_path / "test"))
    rebuilt = run(cfg, out)[0]
    assert not rebuilt.cached and rebuilt.manifest["splits"]["valid"]["read"] == len(VALID) + 1
    assert not run(cfg, out, force=True)[0].cached
    (out / "manifest.json").unlink()
    assert not run(cfg, out)[0].cached


def test_moved_corpus_and_output_stay_up_to_date(tmp_path: Path) -> None:
    first = tmp_path / "a"
    first.mkdir()
    run(text_config(first), first / "out")
    moved = tmp_path / "b"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    again, log = run(text_config(moved), moved / "out")
    assert again.cached, log
    assert not run(text_config(moved, train=[*TRAIN, ("extra", "EXTRA")]), moved / "out")[0].cached


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    cfg = config(train=str(tmp_path / "nope"))
    with pytest.raises(Seq2SeqError, match=r"nope.en: file not found \(data.train in the recipe\)"):
        run(cfg, tmp_path / "out")


def test_user_supplied_models(tmp_path: Path, reference: Path) -> None:
    joint = reference / "spm.src.model"
    result = run(text_config(tmp_path, tokenizer={"model": str(joint)}), tmp_path / "joint")[0]
    assert (result.dir / "spm.src.model").read_bytes() == joint.read_bytes()
    assert column(result.dir, "train", "src_ids") == column(reference, "train", "src_ids")
    separate = {"model": str(joint), "tgt_model": str(joint), "joint": False}
    result = run(text_config(tmp_path, tokenizer=separate), tmp_path / "separate")[0]
    assert (result.dir / "spm.tgt.model").is_file() and result.manifest["tokenizer"]["models"][1]["sha256"]
    with pytest.raises(Seq2SeqError, match="SentencePiece model not found"):
        run(text_config(tmp_path, tokenizer={"model": str(tmp_path / "none.model")}), tmp_path / "x")


def test_separate_bpe_models(tmp_path: Path) -> None:
    cfg = text_config(tmp_path, tokenizer={"joint": False, "type": "bpe", "vocab_size": 30})
    result = run(cfg, tmp_path / "out")[0]
    prepared = load_prepared(result.dir)
    assert not prepared.tokenizer.joint and (result.dir / "spm.tgt.model").is_file()
    assert prepared.tokenizer.decode_tgt(column(result.dir, "valid", "tgt_ids")) == [t for _, t in VALID]
    assert EOS not in column(result.dir, "train", "tgt_ids")[0]


def test_load_prepared_without_data(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="no preprocessed data here"):
        load_prepared(tmp_path)


@pytest.mark.parametrize(
    ("data", "tokenizer", "message"),
    [
        ({"train_src": "a.en"}, {}, "data.train_src and data.train_tgt go together"),
        ({"train": "a", "train_src": "a.en", "train_tgt": "a.de"}, {}, "give either data.train"),
        ({"format": "tsv", "valid_src": "a", "valid_tgt": "b"}, {}, "are for data.format: text"),
        ({"min_len": 10, "max_len": 5}, {}, "data.min_len (10) is above data.max_len (5)"),
        ({"max_ratio": 0.5}, {}, "data.max_ratio is longer / shorter"),
        ({"num_proc": 0}, {}, "data.num_proc must be at least 1"),
        ({"format": "parquet"}, {}, "data.format: 'parquet' is not one of"),
        ({"invalid_utf8": "ignore"}, {}, "data.invalid_utf8: 'ignore' is not one of 'error', 'replace'"),
        ({}, {"character_coverage": 0}, "tokenizer.character_coverage must be in (0, 1]"),
        ({}, {"input_sentence_size": 50}, "tokenizer.input_sentence_size must be 0 (all) or above 100"),
        ({}, {"tgt_model": "t.model", "joint": False}, "tokenizer.tgt_model needs tokenizer.model"),
        ({}, {"model": "s.model", "tgt_model": "t.model"}, "set tokenizer.joint: false"),
        ({}, {"model": "s.model", "joint": False}, "needs tokenizer.tgt_model too"),
    ],
)
def test_bad_data_and_tokenizer_keys(data: dict[str, Any], tokenizer: dict[str, Any], message: str) -> None:
    with pytest.raises(Seq2SeqError) as info:
        config_from_dict({"data": data, "tokenizer": tokenizer})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_recipe_paths_are_relative_to_the_recipe(tmp_path: Path) -> None:
    (tmp_path / "sub" / "local").mkdir(parents=True)
    recipe = tmp_path / "sub" / "r.yaml"
    recipe.write_text(
        "data:\n  train_src: c/t.en\n  train_tgt: /abs/t.de\ntokenizer:\n  model: m/s.model\n",
        encoding="utf-8",
    )
    cfg = load_config(recipe)
    assert cfg.data.train_src == str(tmp_path / "sub" / "c" / "t.en") and cfg.data.train_tgt == "/abs/t.de"
    assert cfg.tokenizer.model == str(tmp_path / "sub" / "m" / "s.model")
    for name, expected in (("local", str(tmp_path / "sub" / "local")), ("wmt14", "wmt14")):
        recipe.write_text(f"data:\n  format: hub\n  dataset: {name}\n", encoding="utf-8")
        assert load_config(recipe).data.dataset == expected

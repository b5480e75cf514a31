"""Every source type read into pairs, and each bad-input case as one line naming the fault."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest

from seq2seq.config import DataConfig
from seq2seq.data.sources import RawSplit, Source, read_hub, read_split, split_sources, stream_batches
from seq2seq.errors import Seq2SeqError

PAIRS = [("Hello.", "Hallo."), ("NA", "null"), ("1", "2"), ('say "hi"', "sag »hi«")]


def read_pairs(raw: RawSplit) -> list[tuple[str, str]]:
    """All pairs of a split, whichever way it was loaded."""
    batches = [raw.data[:]] if isinstance(raw.data, datasets.Dataset) else list(stream_batches(raw))
    picked = [raw.pick(b) for b in batches]
    return [pair for p in picked for pair in zip(p["src"], p["tgt"], strict=True)]


def read(cfg: DataConfig, tmp_path: Path, split: str = "train") -> RawSplit:
    sources = split_sources(cfg, tmp_path / "builtin")
    if cfg.format == "hub":
        return read_hub(sources, cfg, tmp_path / "cache")[split]
    return read_split(sources[split], cfg, tmp_path / "cache")


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def write_text_pair(tmp_path: Path, prefix: str = "train", pairs: list[tuple[str, str]] = PAIRS) -> str:
    write_bytes(tmp_path / f"{prefix}.en", "".join(s + "\n" for s, _ in pairs).encode())
    write_bytes(tmp_path / f"{prefix}.de", "".join(t + "\n" for _, t in pairs).encode())
    return str(tmp_path / prefix)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_text_prefix_and_explicit_paths(tmp_path: Path) -> None:
    prefix = write_text_pair(tmp_path)
    by_prefix = DataConfig(src_lang="en", tgt_lang="de", train=prefix)
    explicit = DataConfig(train_src=f"{prefix}.en", train_tgt=f"{prefix}.de")
    assert read_pairs(read(by_prefix, tmp_path)) == PAIRS
    assert read_pairs(read(explicit, tmp_path)) == PAIRS


def test_text_is_line_exact(tmp_path: Path) -> None:
    """Only b"\\n" ends a line: \\x0b, \\x1c, \\x85, \\u2028 and a bare \\r stay inside it."""
    pairs = [("a\x0bb", "c\x1cd"), ("e\u2028f", "g\x85h"), ("i\rj", "k"), ("crlf", "end")]
    src = write_bytes(tmp_path / "t.en", b"a\x0bb\ne\xe2\x80\xa8f\ni\rj\ncrlf\r\n")
    tgt = write_bytes(tmp_path / "t.de", "c\x1cd\ng\x85h\nk\nend".encode())
    assert read_pairs(read(DataConfig(train_src=str(src), train_tgt=str(tgt)), tmp_path)) == pairs


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("en\tde\nHello.\tHallo.\nNA\tnull\n", {"header": True}, PAIRS[:2]),
        ("Hello.\tHallo.\tx\n1\t2\ty\n", {}, [PAIRS[0], PAIRS[2]]),
        ("x\tHallo.\tHello.\n", {"src_column": "2", "tgt_column": "1"}, [PAIRS[0]]),
        (
            "id\tsrc\ttgt\n7\tHello.\tHallo.\n",
            {"header": True, "src_column": "1", "tgt_column": "tgt"},
            [PAIRS[0]],
        ),
        ('say "hi"\tsag »hi«\n', {}, [PAIRS[3]]),
        ("Hello.\tHallo.\n\n1\t2\n", {}, [PAIRS[0], ("", ""), PAIRS[2]]),
        ("a\rb\tc\u2028d\r\n1\t2\n", {}, [("a\rb", "c\u2028d\r"), PAIRS[2]]),
    ],
    ids=[
        "named",
        "numbered",
        "positions",
        "mixed",
        "quotes-are-text",
        "blank-line-kept",
        "only-newline-ends",
    ],
)
def test_tsv(tmp_path: Path, text: str, options: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    path = write_bytes(tmp_path / "train.tsv", text.encode())
    cfg = DataConfig(format="tsv", src_lang="en", tgt_lang="de", train=str(path), **options)
    assert read_pairs(read(cfg, tmp_path)) == expected


def test_csv_quoting_and_streaming(tmp_path: Path) -> None:
    text = 'de,en\n"Hallo, Welt.","Hello, world."\n"zwei\nZeilen",two\n'
    path = write_bytes(tmp_path / "train.csv", text.encode())
    expected = [("Hello, world.", "Hallo, Welt."), ("two", "zwei\nZeilen")]
    for streaming in (False, True):
        cfg = DataConfig(
            format="csv", src_lang="en", tgt_lang="de", train=str(path), header=True, streaming=streaming
        )
        assert read_pairs(read(cfg, tmp_path)) == expected


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    ("rows", "options"),
    [
        ([{"translation": {"en": s, "de": t}} for s, t in PAIRS], {}),
        ([{"en": s, "de": t, "id": i} for i, (s, t) in enumerate(PAIRS)], {}),
        ([{"a": s, "b": t} for s, t in PAIRS], {"src_column": "a", "tgt_column": "b"}),
        ([{"x": {"en": s}, "y": {"de": t}} for s, t in PAIRS], {"src_column": "x.en", "tgt_column": "y.de"}),
    ],
    ids=["translation", "flat", "named", "nested"],
)
def test_jsonl(tmp_path: Path, rows: list[dict[str, Any]], options: dict[str, Any], streaming: bool) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = DataConfig(format="jsonl", src_lang="en", tgt_lang="de", train=path, streaming=streaming, **options)
    assert read_pairs(read(cfg, tmp_path)) == PAIRS


def test_jsonl_numbers_and_nulls_become_text(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"src": 4721, "tgt": "vier"}, {"src": "x", "tgt": None}])
    cfg = DataConfig(format="jsonl", train=path)
    assert read_pairs(read(cfg, tmp_path)) == [("4721", "vier"), ("x", "")]


def hub_dir(tmp_path: Path) -> Path:
    root = tmp_path / "hubdata"
    (root / "data").mkdir(parents=True)
    write_jsonl(root / "data" / "train.jsonl", [{"translation": {"en": s, "de": t}} for s, t in PAIRS])
    write_jsonl(root / "data" / "validation.jsonl", [{"translation": {"en": "a", "de": "b"}}])
    return root


@pytest.mark.parametrize("streaming", [False, True])
def test_hub_local_directory(tmp_path: Path, streaming: bool) -> None:
    cfg = DataConfig(
        format="hub", dataset=str(hub_dir(tmp_path)), src_lang="en", tgt_lang="de", test_split=""
    )
    cfg = DataConfig(**{**cfg.__dict__, "streaming": streaming})
    assert read_pairs(read(cfg, tmp_path)) == PAIRS
    assert read_pairs(read(cfg, tmp_path, "valid")) == [("a", "b")]


@pytest.mark.parametrize("streaming", [False, True])
def test_hub_saved_with_save_to_disk(tmp_path: Path, streaming: bool) -> None:
    features = datasets.Features({"translation": datasets.Translation(languages=["de", "en"])})
    rows = {"translation": [{"en": s, "de": t} for s, t in PAIRS]}
    saved = tmp_path / "saved"
    datasets.DatasetDict({"fit": datasets.Dataset.from_dict(rows, features=features)}).save_to_disk(
        str(saved)
    )
    cfg = DataConfig(
        format="hub",
        dataset=str(saved),
        train_split="fit",
        valid_split="",
        test_split="",
        src_column="translation.en",
        tgt_column="translation.de",
        streaming=streaming,
    )
    assert read_pairs(read(cfg, tmp_path)) == PAIRS


def test_hub_missing_split_lists_the_available_ones(tmp_path: Path) -> None:
    cfg = DataConfig(format="hub", dataset=str(hub_dir(tmp_path)), src_lang="en", tgt_lang="de")
    with pytest.raises(
        Seq2SeqError, match=r"data.test_split: .* no split 'test'; available: train, validation"
    ):
        read(cfg, tmp_path)


@pytest.mark.parametrize(
    ("fmt", "content", "options", "message"),
    [
        (
            "tsv",
            "a\tb\n",
            {"src_column": "en"},
            r"data.src_column: no column 'en'; available: 0, 1 \(data.header",
        ),
        (
            "csv",
            "x,y\n1,2\n",
            {"header": True},
            r"data.src_column: no column 'translation.src' or 'src'; available: x, y",
        ),
        (
            "jsonl",
            '{"en": "a", "fr": "b"}\n',
            {"src_lang": "en", "tgt_lang": "de"},
            r"data.tgt_column: .*available: en, fr",
        ),
    ],
)
def test_missing_column_lists_the_available_ones(
    tmp_path: Path, fmt: str, content: str, options: dict[str, Any], message: str
) -> None:
    path = write_bytes(tmp_path / f"train.{fmt}", content.encode())
    with pytest.raises(Seq2SeqError, match=message):
        read(DataConfig(format=fmt, train=str(path), **options), tmp_path)


def test_mismatched_line_counts_name_both_files(tmp_path: Path) -> None:
    src = write_bytes(tmp_path / "c.en", b"a\nb\nc\n")
    tgt = write_bytes(tmp_path / "c.de", b"a\nb\n")
    with pytest.raises(Seq2SeqError, match=f"{src} has 3 lines but {tgt} has 2"):
        read(DataConfig(train_src=str(src), train_tgt=str(tgt)), tmp_path)


@pytest.mark.parametrize(
    ("fmt", "content"),
    [
        ("text", b"ok\nok\nbad \xff\n"),
        ("tsv", b"ok\tok\nok\tok\nbad \xff\tbyte\n"),
        ("csv", b"ok,ok\nok,ok\nbad \xff,byte\n"),
        (
            "jsonl",
            b'{"src": "ok", "tgt": "ok"}\n{"src": "ok", "tgt": "ok"}\n{"src": "bad \xff", "tgt": "b"}\n',
        ),
    ],
)
def test_invalid_utf8_names_file_and_line_or_is_counted(tmp_path: Path, fmt: str, content: bytes) -> None:
    if fmt == "text":
        path = write_bytes(tmp_path / "c.src", content)
        write_bytes(tmp_path / "c.tgt", b"x\ny\nz\n")
        options: dict[str, Any] = {"train": str(tmp_path / "c")}
    else:
        path = write_bytes(tmp_path / f"c.{fmt}", content)
        options = {"format": fmt, "train": str(path)}
    with pytest.raises(Seq2SeqError, match=f"{path}:3: invalid UTF-8"):
        read_pairs(read(DataConfig(**options), tmp_path))
    raw = read(DataConfig(invalid_utf8="replace", **options), tmp_path)
    pairs = read_pairs(raw)
    assert len(pairs) == 3 and pairs[2][0] == "bad \ufffd" and raw.utf8_replaced == 1


def test_malformed_row_names_the_file(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "c.tsv", b"a\tb\nc\td\te\n")
    with pytest.raises(Seq2SeqError, match=f"{path}: .*Expected 2 fields in line 2, saw 3"):
        read_pairs(read(DataConfig(format="tsv", train=str(path)), tmp_path))


def test_split_sources_need_a_training_corpus() -> None:
    with pytest.raises(Seq2SeqError, match="data.train: no training corpus given"):
        split_sources(DataConfig(), Path())
    with pytest.raises(Seq2SeqError, match="data.dataset: no dataset given"):
        split_sources(DataConfig(format="hub"), Path())


def test_where_names_files_or_dataset() -> None:
    assert Source("train", "text", (Path("a.en"), Path("a.de"))).where() == "a.en + a.de"
    hub = Source("valid", "hub", dataset="wmt14", dataset_config="de-en", dataset_split="validation")
    assert hub.where() == "wmt14 (de-en) split 'validation'"


def test_missing_dataset_is_one_line(tmp_path: Path) -> None:
    cfg = DataConfig(format="hub", dataset=str(tmp_path / "nowhere"))
    with pytest.raises(Seq2SeqError, match=r"data.dataset '.*nowhere': Couldn't find any data file"):
        read(cfg, tmp_path)

"""Where the pairs come from: text files, TSV/CSV, JSON Lines or a `datasets` dataset, read as batches.

Every source ends up as a `RawSplit`: a `datasets.Dataset` (to `map`) or a stream of batches, plus a
`Picker` that turns a batch into `src`/`tgt` strings. Tables, JSON Lines and hub datasets go through
`datasets.load_dataset` (with `streaming=True` when asked). Plain text does not: the `text` builder
splits lines on "\\r" too, so the two files of a pair are read here, line-exactly (see `seq2seq.textio`),
and a stream of batches is all `datasets` then needs. Source errors become one-line `Seq2SeqError`s
that name the file, the line or the available columns.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pandas as pd

from seq2seq.config import DataConfig
from seq2seq.errors import Seq2SeqError
from seq2seq.textio import LineStats, count_lines, iter_lines

SPLITS = ("train", "valid", "test")
BATCH = 10_000
"""Pairs per batch read from a stream (memory per batch, not per corpus)."""
Batch = dict[str, list[Any]]


@dataclass(frozen=True)
class Source:
    """Where one split comes from: files (text: source and target; tables: one), or a dataset split."""

    split: str
    format: str
    files: tuple[Path, ...] = ()
    dataset: str = ""
    dataset_config: str = ""
    dataset_split: str = ""

    def where(self) -> str:
        """How messages name this source."""
        if self.files:
            return " + ".join(map(str, self.files))
        config = f" ({self.dataset_config})" if self.dataset_config else ""
        return f"{self.dataset}{config} split {self.dataset_split!r}"


def split_sources(cfg: DataConfig, builtin_dir: Path) -> dict[str, Source]:
    """The configured splits (train always; valid and test when given) and where each comes from."""
    if cfg.format == "builtin":
        return {s: Source(s, "text", (builtin_dir / f"{s}.src", builtin_dir / f"{s}.tgt")) for s in SPLITS}
    if cfg.format == "hub":
        if not cfg.dataset:
            raise Seq2SeqError("data.dataset: no dataset given (a hub name or a local directory)")
        names = {"train": cfg.train_split, "valid": cfg.valid_split, "test": cfg.test_split}
        if not names["train"]:
            raise Seq2SeqError("data.train_split: no training split given (e.g. train)")
        return {
            s: Source(s, "hub", dataset=cfg.dataset, dataset_config=cfg.dataset_config, dataset_split=name)
            for s, name in names.items()
            if name
        }
    sources = {}
    for split in SPLITS:
        files = _split_files(cfg, split)
        if files:
            sources[split] = Source(split, cfg.format, files)
        elif split == "train":
            what = "a path prefix, e.g. data/train" if cfg.format == "text" else f"a .{cfg.format} file"
            raise Seq2SeqError(f"data.train: no training corpus given ({what})")
    return sources


def _split_files(cfg: DataConfig, split: str) -> tuple[Path, ...]:
    explicit = getattr(cfg, f"{split}_src"), getattr(cfg, f"{split}_tgt")
    if all(explicit):
        return Path(explicit[0]), Path(explicit[1])
    value = getattr(cfg, split)
    if not value:
        return ()
    if cfg.format == "text":
        return Path(f"{value}.{cfg.src_lang}"), Path(f"{value}.{cfg.tgt_lang}")
    return (Path(value),)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(source: Source) -> dict[str, Any]:
    """What the manifest and the fingerprint record: each file's size and hash, or the dataset split.

    A local dataset directory is hashed file by file; a dataset on the hub is known only by name,
    configuration and split (a new upload under the same name is not noticed: use --force).
    """
    if source.format != "hub":
        for path in source.files:
            if not path.is_file():
                raise Seq2SeqError(f"{path}: file not found (data.{source.split} in the recipe)")
        return {"files": [file_entry(p) for p in source.files]}
    entry: dict[str, Any] = {
        "dataset": source.dataset,
        "config": source.dataset_config,
        "split": source.dataset_split,
    }
    root = Path(source.dataset)
    if root.is_dir():
        files = (p for p in sorted(root.rglob("*")) if p.is_file() and not _hidden(p.relative_to(root)))
        entry["files"] = [file_entry(p) for p in files]
    return entry


def _hidden(relative: Path) -> bool:
    """Files under .git, .cache and the like are not the dataset."""
    return any(part.startswith(".") for part in relative.parts)


def file_entry(path: Path) -> dict[str, Any]:
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256(path)}


@dataclass(frozen=True)
class Picker:
    """Takes the source and target columns out of a batch as strings (None becomes "", numbers text).

    A column is a name or a dotted path into nested fields (`translation.en`).
    """

    src: str
    tgt: str

    def __call__(self, batch: Batch) -> dict[str, list[str]]:
        return {"src": _column(batch, self.src), "tgt": _column(batch, self.tgt)}


def _column(batch: Batch, path: str) -> list[str]:
    if path in batch:
        values = batch[path]
    else:
        head, *keys = path.split(".")
        values = batch[head]
        for key in keys:
            values = [v.get(key) if isinstance(v, dict) else None for v in values]
    return ["" if v is None else v if isinstance(v, str) else str(v) for v in values]


@dataclass
class RawSplit:
    """One split as read, before cleaning: a `Dataset` to `map`, or a stream of batches, and its picker."""

    source: Source
    data: datasets.Dataset | Iterable[Batch]
    pick: Picker
    stats: list[LineStats] = field(default_factory=list)
    """Per file read line by line: lines whose invalid UTF-8 was replaced (filled while reading)."""

    @property
    def utf8_replaced(self) -> int:
        return sum(s.invalid_utf8 for s in self.stats)


def read_split(source: Source, cfg: DataConfig, cache_dir: Path) -> RawSplit:
    """Open one split; a file source is checked and read lazily, a dataset is loaded (or streamed)."""
    if source.format == "text":
        return _read_text(source, cfg.invalid_utf8 == "replace")
    if source.format in ("tsv", "csv"):
        return _read_table(source, cfg, cache_dir)
    if source.format == "jsonl":
        return _read_jsonl(source, cfg, cache_dir)
    raise ValueError(f"read_split: {source.format} is read with read_hub")


def _read_text(source: Source, replace: bool) -> RawSplit:
    src, tgt = source.files
    n_src, n_tgt = count_lines(src), count_lines(tgt)
    if n_src != n_tgt:
        raise Seq2SeqError(
            f"{src} has {n_src} lines but {tgt} has {n_tgt}: "
            "a parallel corpus needs one target line per source line"
        )
    stats = [LineStats(), LineStats()]
    return RawSplit(source, _text_batches(src, tgt, replace, stats), Picker("src", "tgt"), stats)


def _text_batches(src: Path, tgt: Path, replace: bool, stats: list[LineStats]) -> Iterator[Batch]:
    with _suggest_replace(), open(src, "rb") as f_src, open(tgt, "rb") as f_tgt:
        src_lines = iter_lines(f_src, str(src), replace, stats[0])
        tgt_lines = iter_lines(f_tgt, str(tgt), replace, stats[1])
        batch: Batch = {"src": [], "tgt": []}
        for s, t in zip(src_lines, tgt_lines, strict=True):
            batch["src"].append(s)
            batch["tgt"].append(t)
            if len(batch["src"]) == BATCH:
                yield batch
                batch = {"src": [], "tgt": []}
        if batch["src"]:
            yield batch


def _utf8_stats(path: Path, replace: bool) -> list[LineStats]:
    """Check a table or JSON Lines file is UTF-8 before a builder reads it: the error names the line
    (pandas names none, and pyarrow's JSON reader lets bad bytes through); replaced lines are counted."""
    stats = LineStats()
    with _suggest_replace(), open(path, "rb") as f:
        for _ in iter_lines(f, str(path), replace, stats):
            pass
    return [stats]


@contextlib.contextmanager
def _suggest_replace() -> Iterator[None]:
    """Invalid UTF-8 (named by file and line in `iter_lines`) also says how to read the file anyway."""
    try:
        yield
    except Seq2SeqError as exc:
        if "invalid UTF-8" not in str(exc):
            raise
        raise Seq2SeqError(f"{exc}, or set data.invalid_utf8: replace") from None


def _first_row(path: Path, fmt: str) -> list[str]:
    """The header, or the first row whose length numbers the columns (its line ends at b"\\n" only)."""
    with open(path, "rb") as f:
        line = next(iter_lines(f, str(path), replace_invalid=True), None)
    if line is None:
        return []
    if fmt == "tsv":
        return line.split("\t")
    try:
        return next(csv.reader([line]), [])
    except csv.Error as exc:
        raise Seq2SeqError(f"{path}:1: {exc}") from None


def _read_table(source: Source, cfg: DataConfig, cache_dir: Path) -> RawSplit:
    """TSV (no quoting: a quote is text) or CSV; every field read as a string, "NA" and blanks kept."""
    (path,) = source.files
    delimiter, quoting = ("\t", csv.QUOTE_NONE) if source.format == "tsv" else (",", csv.QUOTE_MINIMAL)
    first = _first_row(path, source.format)
    names = first if cfg.header else [str(i) for i in range(len(first))]
    stats = _utf8_stats(path, cfg.invalid_utf8 == "replace")
    if not first:
        return RawSplit(source, [], Picker("0", "1"), stats)
    pick = picker(names, cfg)
    options = {
        "delimiter": delimiter,
        "quoting": quoting,
        "header": 0 if cfg.header else None,
        "column_names": names,
        "features": datasets.Features({n: datasets.Value("string") for n in names}),
        "keep_default_na": False,
        "na_filter": False,
        "skip_blank_lines": False,
        "lineterminator": "\n",  # as for text: a bare "\r" is not a line break (a "\r\n" one is stripped)
        "encoding_errors": "replace" if cfg.invalid_utf8 == "replace" else "strict",
    }
    return RawSplit(source, _load_file("csv", path, cfg.streaming, cache_dir, options), pick, stats)


def _read_jsonl(source: Source, cfg: DataConfig, cache_dir: Path) -> RawSplit:
    (path,) = source.files
    replace = cfg.invalid_utf8 == "replace"
    stats = _utf8_stats(path, replace)
    if path.stat().st_size == 0:
        return RawSplit(source, [], Picker("src", "tgt"), stats)
    # The json builder applies `encoding_errors` only when the encoding is not spelled "utf-8".
    options = {"encoding": "utf8", "encoding_errors": "replace"} if replace else {}
    data = _load_file("json", path, cfg.streaming, cache_dir, options)
    names = column_names(data.features) if data.features is not None else _peek_names(data, path)
    pick = picker(names, cfg)
    return RawSplit(source, data, pick, stats)


def _load_file(
    builder: str, path: Path, streaming: bool, cache_dir: Path, options: dict[str, Any]
) -> datasets.Dataset | datasets.IterableDataset:
    with _source_errors(path):
        return datasets.load_dataset(  # type: ignore[no-any-return]
            builder,
            data_files={"train": str(path)},
            split="train",
            streaming=streaming,
            cache_dir=str(cache_dir),
            **options,
        )


def _peek_names(data: datasets.IterableDataset, path: Path) -> list[str]:
    with _source_errors(path):
        first = next(iter(data), None)
    return _flat_names(first or {})


def _flat_names(row: dict[str, Any], prefix: str = "") -> list[str]:
    names = []
    for key, value in row.items():
        if isinstance(value, dict):
            names += _flat_names(value, f"{prefix}{key}.")
        else:
            names.append(f"{prefix}{key}")
    return names


def column_names(features: datasets.Features | dict[str, Any], prefix: str = "") -> list[str]:
    """Column names with nested fields spelled out: `translation` -> `translation.en`, `translation.de`."""
    names = []
    for key, feature in features.items():
        if isinstance(feature, datasets.Translation):
            names += [f"{prefix}{key}.{lang}" for lang in feature.languages]
        elif isinstance(feature, dict):
            names += column_names(feature, f"{prefix}{key}.")
        else:
            names.append(f"{prefix}{key}")
    return names


def picker(names: list[str], cfg: DataConfig) -> Picker:
    """The source and target columns among `names`, as data.src_column / data.tgt_column say."""
    return Picker(
        resolve_column(cfg.src_column, cfg.src_lang, 0, names, "src_column", cfg),
        resolve_column(cfg.tgt_column, cfg.tgt_lang, 1, names, "tgt_column", cfg),
    )


def resolve_column(wanted: str, lang: str, position: int, names: list[str], key: str, cfg: DataConfig) -> str:
    """The column `data.<key>` names, or the default: `translation.LANG`, `LANG`, else by position."""
    top = list(dict.fromkeys(n.split(".")[0] for n in names))
    if wanted:
        if wanted in names:
            return wanted
        if wanted.isdigit() and int(wanted) < len(top):
            return top[int(wanted)]
    else:
        for candidate in (f"translation.{lang}", lang, str(position)):
            if candidate in names:
                return candidate
    what = f"no column {wanted!r}" if wanted else f"no column 'translation.{lang}' or {lang!r}"
    hint = " (data.header is false: columns are numbered)" if cfg.format in ("tsv", "csv") else ""
    raise Seq2SeqError(f"data.{key}: {what}; available: {', '.join(names) or 'none'}{hint}")


def read_hub(sources: dict[str, Source], cfg: DataConfig, cache_dir: Path) -> dict[str, RawSplit]:
    """Load the dataset once (a `save_to_disk` directory, a local directory or a hub name), pick splits."""
    loaded = _load_hub(cfg, cache_dir)
    available = list(loaded)
    raw = {}
    for split, source in sources.items():
        if source.dataset_split not in loaded:
            raise Seq2SeqError(
                f"data.{split}_split: {cfg.dataset} has no split {source.dataset_split!r}; "
                f"available: {', '.join(available)}" + ("" if split == "train" else " ('' = none)")
            )
        data = loaded[source.dataset_split]
        if cfg.streaming and isinstance(data, datasets.Dataset):
            data = data.to_iterable_dataset()
        names = column_names(data.features) if data.features is not None else _peek_names(data, Path(""))
        pick = picker(names, cfg)
        raw[split] = RawSplit(source, data, pick)
    return raw


def _load_hub(cfg: DataConfig, cache_dir: Path) -> Any:
    """`load_from_disk` for a `save_to_disk` directory, else the real `load_dataset(name, config)`."""
    root = Path(cfg.dataset)
    try:
        if (root / "dataset_dict.json").is_file():
            return datasets.load_from_disk(str(root))
        if (root / "state.json").is_file():
            return {"train": datasets.load_from_disk(str(root))}
        return datasets.load_dataset(
            cfg.dataset,
            cfg.dataset_config or None,
            streaming=cfg.streaming,
            cache_dir=str(cache_dir) if root.is_dir() else None,
        )
    except (OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Seq2SeqError(f"data.dataset {cfg.dataset!r}: {first}") from None


def stream_batches(raw: RawSplit) -> Iterator[Batch]:
    """The split's batches, with read errors (bad UTF-8, a malformed row) named by file and line."""
    data = raw.data
    if isinstance(data, datasets.IterableDataset):
        data = data.iter(batch_size=BATCH)
    path = raw.source.files[0] if raw.source.files else Path(raw.source.where())
    with _source_errors(path):
        yield from data  # type: ignore[misc]


@contextlib.contextmanager
def _source_errors(path: Path) -> Iterator[None]:
    """Turn what `datasets`, pandas and pyarrow raise on a bad file into one line naming it."""
    try:
        yield
    except Seq2SeqError:
        raise
    except FileNotFoundError:
        raise Seq2SeqError(f"{path}: file not found") from None
    except Exception as exc:
        cause = _root_cause(exc)
        if isinstance(cause, UnicodeDecodeError):
            _raise_invalid_utf8(path)
        if isinstance(cause, pd.errors.ParserError | ValueError):
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            raise Seq2SeqError(f"{path}: {first}") from None
        raise


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _raise_invalid_utf8(path: Path) -> None:
    """Find the first invalid line: `iter_lines` raises the error naming the file and line."""
    with open(path, "rb") as f:
        for _ in iter_lines(f, str(path)):
            pass
    raise Seq2SeqError(f"{path}: invalid UTF-8; fix or re-encode the file, or set data.invalid_utf8: replace")

"""Corpus -> cleaned pairs -> SentencePiece -> encoded Arrow dataset on disk, with a manifest.

The output directory holds `dataset/` (a `datasets.DatasetDict` written with `save_to_disk`, read back
memory-mapped), the SentencePiece model(s) and `manifest.json`. Every step works on Arrow files under
`work/` (deleted at the end) with batched `map`, so memory depends on the batch size, not the corpus
(de-duplication adds 8 bytes per training pair; SentencePiece holds its `input_sentence_size` sample).
The manifest records a fingerprint of the inputs and settings: running again with the same ones is a
no-op, a changed file or setting rebuilds. It is written last, so an interrupted run never looks finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets.arrow_writer import ArrowWriter

from seq2seq.config import Config, DataConfig, TokenizerConfig
from seq2seq.corpus import BUILTIN, write_builtin
from seq2seq.data.clean import (
    KEEP,
    LENGTH_RULES,
    TEXT_RULES,
    SplitReport,
    TextPrep,
    arrow_batches,
    check_not_empty,
    count_drops,
    length_drops,
    report_table,
    text_drops,
)
from seq2seq.data.sources import (
    BATCH,
    RawSplit,
    Source,
    describe,
    file_entry,
    read_hub,
    read_split,
    split_sources,
    stream_batches,
)
from seq2seq.errors import Seq2SeqError
from seq2seq.special import BOS, EOS, PAD, UNK
from seq2seq.tokenizer import Tokenizer

__all__ = ["PrepareResult", "Prepared", "load_prepared", "preprocess", "report_table"]

FORMAT_VERSION = 3
Log = Callable[[str], None]
TEXT = datasets.Features({"src": datasets.Value("string"), "tgt": datasets.Value("string")})
ENCODED = datasets.Features(
    {
        "src": datasets.Value("string"),
        "tgt": datasets.Value("string"),
        "src_ids": datasets.Sequence(datasets.Value("int32")),
        "tgt_ids": datasets.Sequence(datasets.Value("int32")),
        "src_len": datasets.Value("int32"),
        "tgt_len": datasets.Value("int32"),
    }
)
OUTPUT_ONLY = ("num_proc",)
"""Settings that change how fast preprocessing runs, never its output: left out of the fingerprint."""
PATH_KEYS = (
    *(f"{split}{side}" for split in ("train", "valid", "test") for side in ("", "_src", "_tgt")),
    "dataset",
)
"""Data keys that say where the inputs lie: the fingerprint hashes the files' content instead."""


@dataclass(frozen=True)
class PrepareResult:
    dir: Path
    manifest: dict[str, Any]
    cached: bool


def preprocess(cfg: Config, out_dir: Path, log: Log = print, force: bool = False) -> PrepareResult:
    """Prepare the recipe's corpus in `out_dir`; a no-op when it is already up to date."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if cfg.data.format == "builtin":
        _write_builtin(cfg, out_dir / "corpus", log)
    sources = split_sources(cfg.data, out_dir / "corpus")
    described = {split: describe(source) for split, source in sources.items()}
    models = _model_entries(cfg.tokenizer)
    fingerprint = _fingerprint(cfg, described, models)
    old = None if force else _up_to_date(out_dir, fingerprint)
    if old is not None:
        log(f"preprocessed data in {out_dir} is up to date (fingerprint {fingerprint}); nothing to do")
        return PrepareResult(out_dir, old, cached=True)

    datasets.disable_progress_bars()
    work = out_dir / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        encoded, tokenizer, reports = _build(cfg, sources, work, log)
        log(f"writing {out_dir / 'dataset'}")
        _save(out_dir, encoded, tokenizer)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    manifest = {
        "fingerprint": fingerprint,
        "version": FORMAT_VERSION,
        "sources": described,
        "splits": {k: dataclasses.asdict(v) for k, v in reports.items()},
        "data": dataclasses.asdict(cfg.data),
        "tokenizer": {
            **dataclasses.asdict(cfg.tokenizer),
            "models": models,
            "special_ids": {"pad": PAD, "unk": UNK, "bos": BOS, "eos": EOS},
        },
        "vocab": {"src": tokenizer.src_vocab_size, "tgt": tokenizer.tgt_vocab_size},
        "seconds": round(time.perf_counter() - start, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_json(out_dir / "manifest.json", manifest)
    return PrepareResult(out_dir, manifest, cached=False)


def _write_builtin(cfg: Config, corpus_dir: Path, log: Log) -> None:
    """Generate the built-in corpus once per setting (its text files are then an ordinary source)."""
    d = cfg.data
    if d.builtin not in BUILTIN:
        raise Seq2SeqError(f"data.builtin: unknown corpus {d.builtin!r} (have: {', '.join(BUILTIN)})")
    marker = f"{d.builtin}:{d.builtin_train_size}:{d.builtin_eval_size}:{cfg.train.seed}"
    settings = corpus_dir / "SETTINGS"
    if not settings.is_file() or settings.read_text() != marker:
        write_builtin(d.builtin, corpus_dir, d.builtin_train_size, d.builtin_eval_size, cfg.train.seed)
        settings.write_text(marker)
        log(f"generated built-in corpus {d.builtin!r} in {corpus_dir}")


def _model_entries(t: TokenizerConfig) -> list[dict[str, Any]]:
    """Size and hash of user-supplied SentencePiece models, so a changed model rebuilds."""
    paths = [Path(p) for p in (t.model, t.tgt_model) if p]
    for path in paths:
        if not path.is_file():
            raise Seq2SeqError(
                f"{path}: SentencePiece model not found (tokenizer.model / tokenizer.tgt_model)"
            )
    return [file_entry(p) for p in paths]


def _fingerprint(cfg: Config, described: dict[str, Any], models: list[dict[str, Any]]) -> str:
    """A hash of what the output depends on: the settings and the content of every input file, not where
    the files lie, so a copied or moved run (or corpus) is still up to date."""
    data = {k: v for k, v in dataclasses.asdict(cfg.data).items() if k not in OUTPUT_ONLY + PATH_KEYS}
    if cfg.data.format == "hub" and not Path(cfg.data.dataset).is_dir():
        data["dataset"] = cfg.data.dataset  # a hub name is what identifies it
    tokenizer = {
        k: v for k, v in dataclasses.asdict(cfg.tokenizer).items() if k not in ("model", "tgt_model")
    }
    settings = {
        "version": FORMAT_VERSION,
        "data": data,
        "tokenizer": tokenizer,
        "sources": {split: _without_paths(entry) for split, entry in described.items()},
        "models": [_without_paths(m) for m in models],
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _without_paths(entry: dict[str, Any]) -> dict[str, Any]:
    """A `describe`/`file_entry` record with file paths left out (their sizes and hashes stay)."""
    kept = {k: v for k, v in entry.items() if k not in ("path", "dataset")}
    if "files" in kept:
        kept["files"] = [_without_paths(f) for f in kept["files"]]
    if "dataset" in entry and not Path(entry["dataset"]).is_dir():
        kept["dataset"] = entry["dataset"]
    return kept


def _up_to_date(out_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The finished manifest when `out_dir` already holds this fingerprint's output, else None."""
    path = out_dir / "manifest.json"
    if not path.is_file() or not (out_dir / "dataset").is_dir() or not (out_dir / "spm.src.model").is_file():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest if manifest.get("fingerprint") == fingerprint else None


def _build(
    cfg: Config, sources: dict[str, Source], work: Path, log: Log
) -> tuple[dict[str, datasets.Dataset], Tokenizer, dict[str, SplitReport]]:
    """Read and clean every split, get the tokenizer, encode, and drop training pairs by length."""
    raws = _read_all(sources, cfg.data, work)
    texts: dict[str, datasets.Dataset] = {}
    reports: dict[str, SplitReport] = {}
    for split, raw in raws.items():
        log(f"reading {split}: {raw.source.where()}")
        text = _stage_text(raw, cfg.data, work / f"{split}.text.arrow")
        reports[split] = SplitReport(read=len(text), utf8_replaced=raw.utf8_replaced)
        texts[split] = _drop_text(text, cfg.data, reports[split]) if split == "train" else text
    tokenizer = _tokenizer(cfg.tokenizer, texts["train"], log)
    log(f"encoding {', '.join(f'{s} ({len(x)} pairs)' for s, x in texts.items())}")
    encoded = {}
    for split, text in texts.items():
        ids = _encode(text, tokenizer, cfg.data.num_proc, work / f"{split}.ids.arrow")
        if split == "train":
            ids = _drop_lengths(ids, cfg.data, reports[split])
        reports[split].kept = len(ids)
        encoded[split] = ids
    return encoded, tokenizer, reports


def _read_all(sources: dict[str, Source], cfg: DataConfig, work: Path) -> dict[str, RawSplit]:
    cache = work / "hf-cache"
    if cfg.format == "hub":
        return read_hub(sources, cfg, cache)
    return {split: read_split(source, cfg, cache) for split, source in sources.items()}


def _stage_text(raw: RawSplit, cfg: DataConfig, path: Path) -> datasets.Dataset:
    """The split's stripped, normalised pairs as an Arrow file: a batched `map`, or written from a stream."""
    prep = TextPrep(raw.pick, cfg.normalize)
    if isinstance(raw.data, datasets.Dataset):
        return raw.data.map(
            prep,
            batched=True,
            batch_size=BATCH,
            remove_columns=raw.data.column_names,
            features=TEXT,
            num_proc=_procs(cfg.num_proc, len(raw.data)),
            cache_file_name=str(path),
            load_from_cache_file=False,
        )
    with ArrowWriter(features=TEXT, path=str(path)) as writer:
        for batch in stream_batches(raw):
            writer.write_batch(prep(batch))
        writer.finalize()
    return datasets.Dataset.from_file(str(path))


def _procs(num_proc: int, rows: int) -> int | None:
    """`map` processes: None (in process) for one, never more than there are batches."""
    procs = min(num_proc, -(-rows // BATCH))
    return procs if procs > 1 else None


def _drop_text(text: datasets.Dataset, cfg: DataConfig, report: SplitReport) -> datasets.Dataset:
    codes = text_drops(text, cfg.dedup)
    report.dropped.update(count_drops(codes, TEXT_RULES if cfg.dedup else TEXT_RULES[:1]))
    keep = np.flatnonzero(codes == KEEP)
    if len(keep) == 0:
        check_not_empty(report, "data.train")
    return text if len(keep) == len(text) else text.select(keep)


def _drop_lengths(ids: datasets.Dataset, cfg: DataConfig, report: SplitReport) -> datasets.Dataset:
    codes = np.concatenate(
        [
            length_drops(b.column(0).to_numpy(), b.column(1).to_numpy(), cfg)
            for b in arrow_batches(ids, ["src_len", "tgt_len"])
        ]
        or [np.zeros(0, dtype=np.int8)]
    )
    report.dropped.update(count_drops(codes, LENGTH_RULES))
    keep = np.flatnonzero(codes == KEEP)
    if len(keep) == 0:
        check_not_empty(report, "data.train")
    return ids if len(keep) == len(ids) else ids.select(keep)


def _tokenizer(t: TokenizerConfig, train: datasets.Dataset, log: Log) -> Tokenizer:
    """The user's SentencePiece model(s), or new ones trained on the cleaned training pairs."""
    if t.model:
        tokenizer = Tokenizer.from_files(Path(t.model), Path(t.tgt_model) if t.tgt_model else None)
        log(f"using SentencePiece model {t.model}" + (f" and {t.tgt_model}" if t.tgt_model else ""))
        return tokenizer
    sample = f", sample of at most {t.input_sentence_size} sentences" if t.input_sentence_size else ""
    log(
        f"training SentencePiece ({t.type}, vocab {t.vocab_size}, {'joint' if t.joint else 'separate'}"
        f"{sample}) on {len(train)} pairs"
    )
    threads = os.cpu_count() or 1
    return Tokenizer.train(_sentences(train, "src"), _sentences(train, "tgt"), t, threads)


def _sentences(text: datasets.Dataset, side: str) -> Iterator[str]:
    for batch in text.select_columns([side]).iter(batch_size=BATCH):
        yield from batch[side]


@dataclass(frozen=True)
class Encode:
    """Batch of text -> subword ids and lengths (a `map` function; SentencePiece uses every core)."""

    tokenizer: Tokenizer

    def __call__(self, batch: dict[str, list[str]]) -> dict[str, list[Any]]:
        src_ids, tgt_ids = self.tokenizer.encode_src(batch["src"]), self.tokenizer.encode_tgt(batch["tgt"])
        return {
            "src_ids": src_ids,
            "tgt_ids": tgt_ids,
            "src_len": [len(x) for x in src_ids],
            "tgt_len": [len(x) for x in tgt_ids],
        }


def _encode(text: datasets.Dataset, tokenizer: Tokenizer, num_proc: int, path: Path) -> datasets.Dataset:
    return text.map(
        Encode(tokenizer),
        batched=True,
        batch_size=BATCH,
        features=ENCODED,
        num_proc=_procs(num_proc, len(text)),
        cache_file_name=str(path),
        load_from_cache_file=False,
    )


def _save(out_dir: Path, encoded: dict[str, datasets.Dataset], tokenizer: Tokenizer) -> None:
    """Write the splits and the models; the old manifest goes first, so a failure leaves no stale one."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    tmp = out_dir / "dataset.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    datasets.DatasetDict(encoded).save_to_disk(str(tmp))
    shutil.rmtree(out_dir / "dataset", ignore_errors=True)
    tmp.rename(out_dir / "dataset")
    (out_dir / "spm.src.model").write_bytes(tokenizer.src_model)
    if tokenizer.tgt_model is not None:
        (out_dir / "spm.tgt.model").write_bytes(tokenizer.tgt_model)
    else:
        (out_dir / "spm.tgt.model").unlink(missing_ok=True)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


@dataclass(frozen=True)
class Prepared:
    """A preprocessed corpus opened for training: memory-mapped splits and the tokenizer."""

    dir: Path
    splits: datasets.DatasetDict
    tokenizer: Tokenizer
    manifest: dict[str, Any]


def load_prepared(data_dir: Path) -> Prepared:
    data_dir = Path(data_dir)
    manifest_path = data_dir / "manifest.json"
    if not manifest_path.is_file():
        raise Seq2SeqError(
            f"{data_dir}: no preprocessed data here; run: seq2seq preprocess RECIPE --out {data_dir}"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    tgt_model = data_dir / "spm.tgt.model"
    tokenizer = Tokenizer(
        (data_dir / "spm.src.model").read_bytes(),
        tgt_model.read_bytes() if tgt_model.exists() else None,
    )
    splits = datasets.load_from_disk(str(data_dir / "dataset"))
    if not isinstance(splits, datasets.DatasetDict):
        raise Seq2SeqError(f"{data_dir / 'dataset'}: expected train/valid/test splits")
    return Prepared(data_dir, splits, tokenizer, manifest)

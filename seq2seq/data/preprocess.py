"""Corpus -> cleaned pairs -> SentencePiece -> encoded Arrow dataset on disk, with a manifest.

The output directory holds `dataset/` (a `datasets.DatasetDict` written with `save_to_disk`, read back
memory-mapped), the SentencePiece model(s) and `manifest.json`. The manifest records a fingerprint of the
inputs and settings: running again with the same ones is a no-op, a changed file or setting rebuilds.
The manifest is written last, so an interrupted run is never mistaken for a finished one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from seq2seq.config import Config, DataConfig
from seq2seq.corpus import BUILTIN, write_builtin
from seq2seq.errors import Seq2SeqError
from seq2seq.textio import read_lines
from seq2seq.tokenizer import Tokenizer

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
Log = Callable[[str], None]


@dataclass
class SplitReport:
    """How many pairs a split had and what each cleaning rule dropped."""

    read: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PrepareResult:
    dir: Path
    manifest: dict[str, Any]
    cached: bool


def source_files(cfg: DataConfig, data_dir: Path) -> dict[str, tuple[Path, Path]]:
    """(source file, target file) for each configured split; generates the built-in corpus if needed."""
    if cfg.format == "builtin":
        if cfg.builtin not in BUILTIN:
            raise Seq2SeqError(f"data.builtin: unknown corpus {cfg.builtin!r} (have: {', '.join(BUILTIN)})")
        prefix_dir = data_dir / "corpus"
        return {split: (prefix_dir / f"{split}.src", prefix_dir / f"{split}.tgt") for split in SPLITS}
    files: dict[str, tuple[Path, Path]] = {}
    for split in SPLITS:
        prefix = getattr(cfg, split)
        if not prefix:
            if split == "train":
                raise Seq2SeqError("data.train: no training corpus given (a path prefix, e.g. data/train)")
            continue
        files[split] = (Path(f"{prefix}.{cfg.src_lang}"), Path(f"{prefix}.{cfg.tgt_lang}"))
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(cfg: Config, files: dict[str, tuple[Path, Path]]) -> tuple[str, dict[str, Any]]:
    sources: dict[str, Any] = {}
    for split, (src, tgt) in files.items():
        for path in (src, tgt):
            if not path.is_file():
                raise Seq2SeqError(f"{path}: file not found (data.{split} in the recipe)")
        sources[split] = {
            "src": str(src),
            "tgt": str(tgt),
            "src_sha256": _sha256(src),
            "tgt_sha256": _sha256(tgt),
            "src_bytes": src.stat().st_size,
            "tgt_bytes": tgt.stat().st_size,
        }
    settings = {
        "version": FORMAT_VERSION,
        "data": dataclasses.asdict(cfg.data),
        "tokenizer": dataclasses.asdict(cfg.tokenizer),
        "sources": {k: (v["src_sha256"], v["tgt_sha256"]) for k, v in sources.items()},
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16], sources


def read_pairs(src: Path, tgt: Path) -> tuple[list[str], list[str]]:
    """Both sides of a parallel corpus; mismatched line counts name both files and counts."""
    src_lines, tgt_lines = read_lines(src), read_lines(tgt)
    if len(src_lines) != len(tgt_lines):
        raise Seq2SeqError(
            f"{src} has {len(src_lines)} lines but {tgt} has {len(tgt_lines)}: "
            "a parallel corpus needs one target line per source line"
        )
    return src_lines, tgt_lines


def _normalize(lines: list[str], form: str) -> list[str]:
    if form:
        return [unicodedata.normalize(form, s).strip() for s in lines]  # type: ignore[arg-type]
    return [s.strip() for s in lines]


def _clean_text(
    src: list[str], tgt: list[str], cfg: DataConfig, report: SplitReport
) -> tuple[list[str], list[str]]:
    """Training-only rules that need no tokenizer: empty pairs, duplicates."""
    keep = [bool(s) and bool(t) for s, t in zip(src, tgt, strict=True)]
    report.dropped["empty"] = keep.count(False)
    if cfg.dedup:
        seen: set[tuple[str, str]] = set()
        dups = 0
        for i, pair in enumerate(zip(src, tgt, strict=True)):
            if keep[i]:
                if pair in seen:
                    keep[i] = False
                    dups += 1
                seen.add(pair)
        report.dropped["duplicate"] = dups
    return [s for s, k in zip(src, keep, strict=True) if k], [t for t, k in zip(tgt, keep, strict=True) if k]


def _length_filter(split: datasets.Dataset, cfg: DataConfig, report: SplitReport) -> datasets.Dataset:
    """Drop training pairs by subword length and length ratio; every drop is counted by rule."""
    src_len, tgt_len = split["src_len"], split["tgt_len"]
    keep = []
    counts = {"too_short": 0, "too_long": 0, "ratio": 0}
    for s, t in zip(src_len, tgt_len, strict=True):
        if min(s, t) < cfg.min_len:
            counts["too_short"] += 1
            keep.append(False)
        elif cfg.max_len and max(s, t) > cfg.max_len:
            counts["too_long"] += 1
            keep.append(False)
        elif cfg.max_ratio and max(s, t) > cfg.max_ratio * max(1, min(s, t)):
            counts["ratio"] += 1
            keep.append(False)
        else:
            keep.append(True)
    report.dropped.update(counts)
    if all(keep):
        return split
    return split.select([i for i, k in enumerate(keep) if k])


def _encode(tokenizer: Tokenizer, src: list[str], tgt: list[str]) -> datasets.Dataset:
    src_ids, tgt_ids = tokenizer.encode_src(src), tokenizer.encode_tgt(tgt)
    features = datasets.Features(
        {
            "src": datasets.Value("string"),
            "tgt": datasets.Value("string"),
            "src_ids": datasets.Sequence(datasets.Value("int32")),
            "tgt_ids": datasets.Sequence(datasets.Value("int32")),
            "src_len": datasets.Value("int32"),
            "tgt_len": datasets.Value("int32"),
        }
    )
    return datasets.Dataset.from_dict(
        {
            "src": src,
            "tgt": tgt,
            "src_ids": src_ids,
            "tgt_ids": tgt_ids,
            "src_len": [len(x) for x in src_ids],
            "tgt_len": [len(x) for x in tgt_ids],
        },
        features=features,
    )


def preprocess(cfg: Config, out_dir: Path, log: Log = print, force: bool = False) -> PrepareResult:
    """Prepare the recipe's corpus in `out_dir`; a no-op when it is already up to date."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if cfg.data.format == "builtin":
        d = cfg.data
        corpus_dir = out_dir / "corpus"
        marker = f"{d.builtin}:{d.builtin_train_size}:{d.builtin_eval_size}:{cfg.train.seed}"
        if not (corpus_dir / "SETTINGS").is_file() or (corpus_dir / "SETTINGS").read_text() != marker:
            write_builtin(d.builtin, corpus_dir, d.builtin_train_size, d.builtin_eval_size, cfg.train.seed)
            (corpus_dir / "SETTINGS").write_text(marker)
            log(f"generated built-in corpus {d.builtin!r} in {corpus_dir}")
    files = source_files(cfg.data, out_dir)
    fingerprint, sources = _fingerprint(cfg, files)
    manifest_path = out_dir / "manifest.json"
    if not force and manifest_path.is_file():
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
        if old.get("fingerprint") == fingerprint and (out_dir / "dataset").is_dir():
            log(f"preprocessed data in {out_dir} is up to date (fingerprint {fingerprint}); nothing to do")
            return PrepareResult(out_dir, old, cached=True)

    reports: dict[str, SplitReport] = {}
    texts: dict[str, tuple[list[str], list[str]]] = {}
    for split, (src_path, tgt_path) in files.items():
        src, tgt = read_pairs(src_path, tgt_path)
        report = reports[split] = SplitReport(read=len(src))
        src, tgt = _normalize(src, cfg.data.normalize), _normalize(tgt, cfg.data.normalize)
        if split == "train":
            src, tgt = _clean_text(src, tgt, cfg.data, report)
            if not src:
                raise Seq2SeqError(f"{src_path}: no training pairs left after dropping empty lines")
        texts[split] = (src, tgt)

    log(
        f"training SentencePiece ({cfg.tokenizer.type}, vocab {cfg.tokenizer.vocab_size}, "
        f"{'joint' if cfg.tokenizer.joint else 'separate'}) on {len(texts['train'][0])} pairs"
    )
    tokenizer = Tokenizer.train(*texts["train"], cfg.tokenizer, threads=os.cpu_count() or 1)

    encoded: dict[str, datasets.Dataset] = {}
    for split, (src, tgt) in texts.items():
        ds = _encode(tokenizer, src, tgt)
        if split == "train":
            ds = _length_filter(ds, cfg.data, reports[split])
            if len(ds) == 0:
                emptied = max(reports[split].dropped.items(), key=lambda kv: kv[1])[0]
                raise Seq2SeqError(
                    f"{files[split][0]}: no training pairs left; filter '{emptied}' dropped the most "
                    "(check data.min_len / data.max_len / data.max_ratio)"
                )
        reports[split].kept = len(ds)
        encoded[split] = ds

    out_dir.mkdir(parents=True, exist_ok=True)
    if manifest_path.exists():
        manifest_path.unlink()
    tmp = out_dir / "dataset.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    datasets.disable_progress_bars()
    datasets.DatasetDict(encoded).save_to_disk(str(tmp))
    shutil.rmtree(out_dir / "dataset", ignore_errors=True)
    tmp.rename(out_dir / "dataset")
    (out_dir / "spm.src.model").write_bytes(tokenizer.src_model)
    if tokenizer.tgt_model is not None:
        (out_dir / "spm.tgt.model").write_bytes(tokenizer.tgt_model)
    elif (out_dir / "spm.tgt.model").exists():
        (out_dir / "spm.tgt.model").unlink()

    manifest = {
        "fingerprint": fingerprint,
        "version": FORMAT_VERSION,
        "sources": sources,
        "splits": {k: dataclasses.asdict(v) for k, v in reports.items()},
        "tokenizer": dataclasses.asdict(cfg.tokenizer),
        "data": dataclasses.asdict(cfg.data),
        "vocab": {"src": tokenizer.src_vocab_size, "tgt": tokenizer.tgt_vocab_size},
        "seconds": round(time.perf_counter() - start, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp_manifest = manifest_path.with_suffix(".json.tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    tmp_manifest.replace(manifest_path)
    return PrepareResult(out_dir, manifest, cached=False)


def report_table(manifest: dict[str, Any]) -> str:
    """The cleaning report: pairs read, dropped by each rule, kept; one row per split."""
    rules = sorted({rule for s in manifest["splits"].values() for rule in s["dropped"]})
    header = ["split", "read", *rules, "kept"]
    rows = [header]
    for split, s in manifest["splits"].items():
        rows.append([split, str(s["read"]), *(str(s["dropped"].get(r, 0)) for r in rules), str(s["kept"])])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    )


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

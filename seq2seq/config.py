"""Typed, frozen configuration and strict recipe loading.

A recipe is a YAML file with up to five sections (`data`, `tokenizer`, `model`, `train`, `decode`); each
key overrides a default below. An unknown key is an error that names the closest valid key, so a misspelt
option never silently does nothing. `--set section.key=value` overrides a recipe from the command line.
`recipes/reference.yaml` documents every key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from seq2seq.errors import Seq2SeqError

Penalty = Literal["gnmt", "length"]
"""Length penalty kinds: `gnmt` divides by ((5 + len) / 6) ** alpha, `length` by len ** alpha."""

Stop = Literal["exact", "early"]
"""When beam search ends a sentence: `exact` once no alive hypothesis can beat the n-th best finished one,
`early` also once a step's best candidate ends (OpenNMT-py's and Marian's rule: fewer steps)."""


@dataclass(frozen=True)
class DataConfig:
    """Where the parallel corpus comes from and how it is cleaned (see `seq2seq.data`)."""

    format: str = "text"
    """`text` (one file per language), `tsv`, `csv` or `jsonl` (one file per split), `hub` (a `datasets`
    dataset: hub name, local directory or `save_to_disk` output) or `builtin` (generated)."""
    src_lang: str = "src"
    """Source language: the file suffix for `text`; the default column (or `translation` key) otherwise."""
    tgt_lang: str = "tgt"
    """Target language, like `src_lang`."""
    train: str = ""
    """Training data, relative to the recipe file: for `text` a path prefix (PREFIX.SRC_LANG and
    PREFIX.TGT_LANG), for `tsv`/`csv`/`jsonl` the file."""
    valid: str = ""
    """Validation data, like `train` (needed for training; never filtered, its line count stays exact)."""
    test: str = ""
    """Test data, like `train` (optional; never filtered)."""
    train_src: str = ""
    """For `text`: the training source file, for files not named PREFIX.LANG (instead of `train`)."""
    train_tgt: str = ""
    """For `text`: the training target file (with `train_src`)."""
    valid_src: str = ""
    """For `text`: the validation source file (with `valid_tgt`, instead of `valid`)."""
    valid_tgt: str = ""
    """For `text`: the validation target file."""
    test_src: str = ""
    """For `text`: the test source file (with `test_tgt`, instead of `test`)."""
    test_tgt: str = ""
    """For `text`: the test target file."""
    src_column: str = ""
    """For `tsv`/`csv`/`jsonl`/`hub`: the source column, by name (`en`), nested field (`translation.en`) or
    0-based position; "" = `translation.SRC_LANG`, else `SRC_LANG`, else column 0."""
    tgt_column: str = ""
    """The target column, like `src_column`; "" = `translation.TGT_LANG`, else `TGT_LANG`, else column 1."""
    header: bool = False
    """For `tsv`/`csv`: the first row names the columns; otherwise the columns are named 0, 1, 2, ..."""
    dataset: str = ""
    """For `hub`: a dataset name (`wmt14`, loaded with `datasets.load_dataset`), a local dataset directory
    or a directory written by `save_to_disk` (relative to the recipe file when it exists there)."""
    dataset_config: str = ""
    """For `hub`: the dataset configuration, e.g. `de-en`; "" = the dataset's default."""
    train_split: str = "train"
    """For `hub`: the split that trains."""
    valid_split: str = "validation"
    """For `hub`: the validation split; "" = none."""
    test_split: str = "test"
    """For `hub`: the test split; "" = none."""
    streaming: bool = False
    """Read `tsv`/`csv`/`jsonl`/`hub` sources as a stream (`load_dataset(..., streaming=True)`): nothing is
    held in memory or copied to the `datasets` cache first. Text files are always read as a stream."""
    invalid_utf8: str = "error"
    """`error`: invalid UTF-8 stops with the file and line; `replace`: bad bytes become U+FFFD and the
    lines are counted in the report."""
    num_proc: int = 1
    """Processes for the batched `map` steps. SentencePiece already encodes on every core, so more
    rarely helps (benchmarks/preprocess.py measures it); does not change the output."""
    builtin: str = "numbers-de"
    """For `builtin`: which generated corpus (see `seq2seq.corpus.BUILTIN`)."""
    builtin_train_size: int = 20000
    """For `builtin`: training pairs."""
    builtin_eval_size: int = 500
    """For `builtin`: validation and test pairs each."""
    min_len: int = 1
    """Training pairs with fewer subwords on either side are dropped (valid/test are never filtered)."""
    max_len: int = 100
    """Training pairs with more subwords on either side are dropped; 0 = no limit."""
    max_ratio: float = 0.0
    """Drop training pairs whose length ratio (longer / shorter, in subwords) exceeds this; 0 = off."""
    dedup: bool = False
    """Drop repeated training pairs (after normalization and stripping), keeping the first; costs
    8 bytes of memory per training pair."""
    normalize: str = ""
    """Unicode normalization applied before everything else: "", "NFC" or "NFKC"."""


@dataclass(frozen=True)
class TokenizerConfig:
    """SentencePiece settings. Special ids are fixed: pad=0, unk=1, bos=2, eos=3."""

    type: str = "unigram"
    """`unigram` or `bpe`."""
    vocab_size: int = 8000
    """A soft limit: a small corpus may give fewer pieces."""
    joint: bool = True
    """One model for both languages (needed for shared embeddings) or one per language."""
    character_coverage: float = 1.0
    """Share of characters the model covers, in (0, 1]; lower (0.9995) for scripts with huge alphabets."""
    split_digits: bool = False
    input_sentence_size: int = 1_000_000
    """At most this many sentences, sampled uniformly (reservoir) from the cleaned training split, train
    the model; 0 = all. Bounds the memory SentencePiece needs on big corpora."""
    model: str = ""
    """An existing SentencePiece model to use instead of training one (both sides, or the source side
    with `tgt_model`), relative to the recipe file; it must have pad=0 unk=1 bos=2 eos=3."""
    tgt_model: str = ""
    """An existing target-side model (with `model` and `joint: false`)."""


@dataclass(frozen=True)
class ModelConfig:
    """Encoder-decoder architecture."""

    cell: str = "lstm"
    """`lstm`, `gru` or `rnn` (a plain tanh RNN, for comparison: see benchmarks/cells.py)."""
    emb_size: int = 256
    enc_hidden: int = 256
    """Hidden size per direction of the encoder."""
    enc_layers: int = 1
    bidirectional: bool = True
    dec_hidden: int = 256
    dec_layers: int = 1
    attention: str = "general"
    """`bahdanau` (additive), `dot` or `general` (Luong)."""
    input_feeding: bool = True
    bridge: str = "learned"
    """Decoder initial state: `zero`, `last` (final encoder state) or `learned` (linear + tanh of it)."""
    dropout: float = 0.2
    """Dropout between stacked RNN layers."""
    emb_dropout: float = 0.2
    out_dropout: float = 0.2
    """Dropout on the attentional hidden state, before the output layer."""
    tie_embeddings: bool = False
    """Decoder input embedding = output layer weights (needs emb_size == dec_hidden)."""
    share_embeddings: bool = False
    """Source and target embeddings are one matrix (needs a joint tokenizer)."""
    forget_bias: float = 1.0
    """Initial forget-gate bias of every LSTM."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, validation and checkpointing."""

    seed: int = 1
    batch_tokens: int = 4096
    """Tokens per batch, counted as batch size x longest sequence (padding included)."""
    accum_steps: int = 1
    max_epochs: int = 20
    max_steps: int = 0
    """Stop after this many optimizer updates; 0 = no limit."""
    max_minutes: float = 0.0
    """Stop after this much training wall-clock time; 0 = no limit."""
    optimizer: str = "adam"
    """`adam`, `adamw` or `sgd`."""
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    """`constant`, `plateau` (lr x factor when the validation metric stalls) or `inverse_sqrt`."""
    warmup_steps: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    min_lr: float = 1e-5
    clip_norm: float = 1.0
    """Clip the gradient norm to this (0 = off); the pre-clip norm is logged."""
    clip_value: float = 0.0
    """If > 0, clip each gradient value to [-v, v] instead of by norm."""
    label_smoothing: float = 0.1
    teacher_forcing: float = 1.0
    """Probability of feeding the gold previous token (1 = pure teacher forcing); with a sampling
    schedule, the floor the schedule decays to."""
    sampling_schedule: str = "constant"
    """Scheduled sampling (Bengio et al., 2015): `constant` (always teacher_forcing), `linear`
    (1 - step / sampling_k), `exponential` (sampling_k ** step, 0 < k < 1) or `inverse_sigmoid`
    (k / (k + exp(step / k)), k >= 1); never below teacher_forcing."""
    sampling_k: float = 10000.0
    valid_every: int = 500
    """Validate every N updates (and at the end of every epoch)."""
    valid_metric: str = "bleu"
    """`bleu` (higher is better) or `loss` (lower is better): picks the best checkpoint."""
    valid_beam: int = 1
    patience: int = 0
    """Stop after this many validations without improvement; 0 = never."""
    keep_best: int = 1
    keep_last: int = 1
    save_every_minutes: float = 5.0
    """Write checkpoints/last.pt at least this often (it is also written at every validation); 0 = only
    at validations and at the end. A kill loses at most this much training."""
    log_every: int = 100
    tensorboard: bool = False
    """Also write TensorBoard event files into the run directory: the metrics.jsonl scalars and attention
    heatmaps of a few validation sentences (`pip install 'seq2seq[tensorboard]'`)."""
    threads: int = 0
    """torch CPU threads; 0 = torch's default."""
    device: str = "auto"
    """`auto` (CUDA when available), `cpu` or `cuda`."""
    bf16: bool = True
    """bf16 autocast where the hardware has native bf16: CUDA, or a CPU with AVX512-BF16 or AMX (on this
    project's 2-core machine it trains ~2x faster than fp32). Elsewhere training runs fp32."""
    max_bad_steps: int = 20
    """Stop after this many non-finite losses in a row."""


@dataclass(frozen=True)
class DecodeConfig:
    """Defaults for translation (each can be overridden on the command line)."""

    beam: int = 5
    length_penalty: float = 1.0
    """alpha of the `penalty`: score / ((5 + len) / 6) ** alpha for gnmt; 0 = raw log-probability."""
    penalty: Penalty = "gnmt"
    """`gnmt` divides by ((5 + len) / 6) ** alpha, `length` by len ** alpha."""
    stop: Stop = "exact"
    """Beam search: `exact` searches until no alive hypothesis can win; `early` also ends a sentence once
    a step's best candidate ends with EOS (and n-best are finished), as OpenNMT-py and Marian do."""
    max_len_a: float = 1.5
    max_len_b: int = 10
    """A hypothesis has at most a * source_length + b tokens."""
    min_len: int = 0
    batch_tokens: int = 12000
    """Source tokens x beam size per translation batch (padding included)."""
    max_src_len: int = 250
    """Longer inputs are truncated (counted in a warning); the output still has one line per input."""
    shortlist: bool = True
    """Decode over the checkpoint's vocabulary shortlist when it has one (never when sampling)."""
    shortlist_per_source: int = 50
    """Shortlists built by train or `seq2seq shortlist`: the target subwords kept per source subword,"""
    shortlist_frequent: int = 100
    """and the most frequent target subwords always kept."""


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_CHOICES: dict[str, tuple[str, ...]] = {
    "data.format": ("text", "tsv", "csv", "jsonl", "hub", "builtin"),
    "data.normalize": ("", "NFC", "NFKC"),
    "data.invalid_utf8": ("error", "replace"),
    "tokenizer.type": ("unigram", "bpe"),
    "model.cell": ("lstm", "gru", "rnn"),
    "model.attention": ("bahdanau", "dot", "general"),
    "model.bridge": ("zero", "last", "learned"),
    "train.optimizer": ("adam", "adamw", "sgd"),
    "train.sampling_schedule": ("constant", "linear", "exponential", "inverse_sigmoid"),
    "train.schedule": ("constant", "plateau", "inverse_sqrt"),
    "train.valid_metric": ("bleu", "loss"),
    "train.device": ("auto", "cpu", "cuda"),
}


def _closest(name: str, options: Sequence[str]) -> str:
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else f" (valid: {', '.join(options)})"


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Turn a YAML or command-line value into the field's type, or fail naming the option."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {
            "true",
            "yes",
            "1",
            "on",
            "false",
            "no",
            "0",
            "off",
        }:
            return value.lower() in {"true", "yes", "1", "on"}
        raise Seq2SeqError(f"{where}: expected true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise Seq2SeqError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            raise Seq2SeqError(f"{where}: expected an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise Seq2SeqError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise Seq2SeqError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise Seq2SeqError(f"{where}: must be a finite number, got {value!r}")
        return number
    if typ is str:
        if value is None:
            return ""
        if isinstance(value, dict | list):
            raise Seq2SeqError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if get_origin(typ) is Literal:
        choices = get_args(typ)
        if value not in choices:
            raise Seq2SeqError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    raise TypeError(f"unsupported config type {typ} at {where}")


def _section_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build_section(section: str, values: Mapping[str, Any], where: str) -> Any:
    cls = _SECTIONS[section]
    types_ = _section_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in types_:
            raise Seq2SeqError(f"{where}: unknown key '{key}'{_closest(key, list(types_))}")
        kwargs[key] = _validate(
            f"{section}.{key}", _coerce(value, types_[key], f"{where}.{key}"), f"{where}.{key}"
        )
    return cls(**kwargs)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "tokenizer": TokenizerConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "decode": DecodeConfig,
}


def _validate(dotted: str, value: Any, where: str) -> Any:
    """Choices and non-negative numbers; `where` names the key in the error."""
    choices = _CHOICES.get(dotted)
    if choices is not None and value not in choices:
        raise Seq2SeqError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise Seq2SeqError(f"{where}: must not be negative, got {value}")
    return value


def config_from_dict(raw: Mapping[str, Any], where: str = "config") -> Config:
    """Build a `Config` from nested mappings, rejecting unknown sections and keys."""
    sections: dict[str, Any] = {}
    for name, values in raw.items():
        if name not in _SECTIONS:
            raise Seq2SeqError(f"{where}: unknown section '{name}'{_closest(name, list(_SECTIONS))}")
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise Seq2SeqError(f"{where}: section '{name}' must be a mapping of key: value")
        sections[name] = _build_section(name, values, f"{where}: {name}")
    cfg = Config(**sections)
    check_config(cfg, where)
    return cfg


def _check_data(d: DataConfig, where: str) -> None:
    """Data keys that only make sense together."""
    for split in ("train", "valid", "test"):
        src, tgt = getattr(d, f"{split}_src"), getattr(d, f"{split}_tgt")
        if bool(src) != bool(tgt):
            raise Seq2SeqError(f"{where}: data.{split}_src and data.{split}_tgt go together (give both)")
        if src and getattr(d, split):
            raise Seq2SeqError(
                f"{where}: give either data.{split} (a path prefix) or data.{split}_src/{split}_tgt, not both"
            )
        if src and d.format != "text":
            raise Seq2SeqError(f"{where}: data.{split}_src/{split}_tgt are for data.format: text")
    if d.max_len and d.min_len > d.max_len:
        raise Seq2SeqError(f"{where}: data.min_len ({d.min_len}) is above data.max_len ({d.max_len})")
    if 0.0 < d.max_ratio < 1.0:
        raise Seq2SeqError(f"{where}: data.max_ratio is longer / shorter, so at least 1 (or 0 = off)")
    if d.num_proc < 1:
        raise Seq2SeqError(f"{where}: data.num_proc must be at least 1")


def _check_tokenizer(t: TokenizerConfig, where: str) -> None:
    if not 0.0 < t.character_coverage <= 1.0:
        raise Seq2SeqError(f"{where}: tokenizer.character_coverage must be in (0, 1]")
    if 0 < t.input_sentence_size <= 100:
        raise Seq2SeqError(f"{where}: tokenizer.input_sentence_size must be 0 (all) or above 100")
    if t.tgt_model and not t.model:
        raise Seq2SeqError(f"{where}: tokenizer.tgt_model needs tokenizer.model (the source side) too")
    if t.tgt_model and t.joint:
        raise Seq2SeqError(f"{where}: tokenizer.tgt_model means separate models: set tokenizer.joint: false")
    if t.model and not t.tgt_model and not t.joint:
        raise Seq2SeqError(
            f"{where}: tokenizer.joint: false with an existing tokenizer.model needs tokenizer.tgt_model too"
        )


def check_config(cfg: Config, where: str = "config") -> None:
    """Cross-field checks that a single key cannot express."""
    m = cfg.model
    if m.tie_embeddings and m.emb_size != m.dec_hidden:
        raise Seq2SeqError(
            f"{where}: model.tie_embeddings needs model.emb_size == model.dec_hidden "
            f"(got {m.emb_size} and {m.dec_hidden})"
        )
    if m.share_embeddings and not cfg.tokenizer.joint:
        raise Seq2SeqError(f"{where}: model.share_embeddings needs tokenizer.joint: true")
    enc_out = m.enc_hidden * (2 if m.bidirectional else 1)
    if m.attention == "dot" and enc_out != m.dec_hidden:
        raise Seq2SeqError(
            f"{where}: model.attention 'dot' needs the encoder output size ({enc_out}) to equal "
            f"model.dec_hidden ({m.dec_hidden}); use 'general' or change the sizes"
        )
    if m.bridge == "last" and (enc_out != m.dec_hidden or m.enc_layers != m.dec_layers):
        raise Seq2SeqError(
            f"{where}: model.bridge 'last' needs equal encoder/decoder layers and sizes "
            f"(encoder {m.enc_layers}x{enc_out}, decoder {m.dec_layers}x{m.dec_hidden}); use 'learned'"
        )
    for name in ("emb_size", "enc_hidden", "dec_hidden", "enc_layers", "dec_layers"):
        if getattr(m, name) < 1:
            raise Seq2SeqError(f"{where}: model.{name} must be at least 1")
    for name in ("dropout", "emb_dropout", "out_dropout"):
        if not 0.0 <= getattr(m, name) < 1.0:
            raise Seq2SeqError(f"{where}: model.{name} must be in [0, 1)")
    if not 0.0 <= cfg.train.teacher_forcing <= 1.0:
        raise Seq2SeqError(f"{where}: train.teacher_forcing must be in [0, 1]")
    if cfg.train.sampling_schedule == "exponential" and not 0.0 < cfg.train.sampling_k < 1.0:
        raise Seq2SeqError(f"{where}: train.sampling_k must be in (0, 1) for the exponential schedule")
    if cfg.train.sampling_schedule in ("linear", "inverse_sigmoid") and cfg.train.sampling_k < 1.0:
        raise Seq2SeqError(
            f"{where}: train.sampling_k must be at least 1 for the {cfg.train.sampling_schedule} schedule"
        )
    if not 0.0 <= cfg.train.label_smoothing < 1.0:
        raise Seq2SeqError(f"{where}: train.label_smoothing must be in [0, 1)")
    if cfg.train.batch_tokens < 1 or cfg.train.accum_steps < 1:
        raise Seq2SeqError(f"{where}: train.batch_tokens and train.accum_steps must be at least 1")
    if cfg.tokenizer.vocab_size < 8:
        raise Seq2SeqError(f"{where}: tokenizer.vocab_size must be at least 8")
    _check_data(cfg.data, where)
    _check_tokenizer(cfg.tokenizer, where)
    if cfg.decode.beam < 1:
        raise Seq2SeqError(f"{where}: decode.beam must be at least 1")
    if cfg.decode.shortlist_per_source < 1 or cfg.decode.shortlist_frequent < 0:
        raise Seq2SeqError(
            f"{where}: decode.shortlist_per_source must be at least 1, decode.shortlist_frequent at least 0"
        )


def parse_overrides(pairs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Turn `["train.lr=0.001", ...]` into nested mappings (values parsed as YAML scalars)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise Seq2SeqError(f"--set {pair!r}: expected section.key=value, e.g. train.lr=0.0005")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        out.setdefault(section, {})[name] = parsed
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    merged = {name: dict(values) if isinstance(values, Mapping) else values for name, values in base.items()}
    for name, values in extra.items():
        if not isinstance(merged.get(name), dict):
            merged[name] = {}
        merged[name].update(values)
    return merged


def _resolve_paths(raw: dict[str, Any], base_dir: Path) -> None:
    """Data paths in a recipe are relative to the recipe file, so recipes work from any directory."""
    data = raw.get("data") or {}
    splits = ("train", "valid", "test")
    for key in (*splits, *(f"{s}_{side}" for s in splits for side in ("src", "tgt"))):
        _resolve_key(data, key, base_dir)
    _resolve_key(data, "dataset", base_dir, only_if_exists=True)
    tokenizer = raw.get("tokenizer") or {}
    for key in ("model", "tgt_model"):
        _resolve_key(tokenizer, key, base_dir)


def _resolve_key(section: Any, key: str, base_dir: Path, only_if_exists: bool = False) -> None:
    """Make `section[key]` absolute against `base_dir`; `only_if_exists` keeps hub names as they are."""
    value = section.get(key) if isinstance(section, dict) else None
    if not isinstance(value, str) or not value:
        return
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base_dir / path).resolve()
    if not only_if_exists or path.exists():
        section[key] = str(path)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a recipe (None = all defaults) and apply `--set` overrides."""
    raw: dict[str, Any] = {}
    where = "--set"
    if path is not None:
        path = Path(path)
        where = str(path)
        if not path.is_file():
            raise Seq2SeqError(f"{path}: recipe not found (see recipes/ for examples)")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise Seq2SeqError(f"{path}:{line} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
        except UnicodeDecodeError:
            raise Seq2SeqError(f"{path}: not UTF-8 text; is this a recipe?") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise Seq2SeqError(f"{path}: a recipe is a mapping of sections (data, model, train, ...)")
        raw = loaded
        _resolve_paths(raw, path.parent)
    extra = parse_overrides(overrides)
    _check_overrides(extra)
    if extra.get("data"):
        _resolve_paths({"data": extra["data"]}, Path.cwd())
    if extra and path is not None:
        where = f"{where} with --set"  # a cross-field error may come from either
    return config_from_dict(_merge(raw, extra), where)


def _check_overrides(extra: Mapping[str, Mapping[str, Any]]) -> None:
    """Each `--set` key and value on its own, so an error blames `--set section.key`, not the recipe."""
    for name, values in extra.items():
        if name not in _SECTIONS:
            raise Seq2SeqError(f"--set: unknown section '{name}'{_closest(name, list(_SECTIONS))}")
        types_ = _section_types(_SECTIONS[name])
        for key, value in values.items():
            where = f"--set {name}.{key}"
            if key not in types_:
                raise Seq2SeqError(f"{where}: unknown key '{key}'{_closest(key, list(types_))}")
            _validate(f"{name}.{key}", _coerce(value, types_[key], where), where)


def replace(cfg: Config, **sections: Mapping[str, Any]) -> Config:
    """A copy of `cfg` with some keys of some sections changed (validated like a recipe)."""
    raw = _merge(cfg.to_dict(), sections)
    return config_from_dict(raw, "config")

"""OpenNMT-py 3.5.1, Joey NMT 2.3.0 and seq2seq side by side on Multi30k en->de (issue 13).

    benchmarks/peers/setup.sh                                   # the peers' venvs, once
    .venv/bin/python benchmarks/peers/run.py --minutes 5 --out /tmp/peers

Prepares the corpus once with the seq2seq recipe (`seq2seq preprocess recipes/multi30k-en-de.yaml`, or reuses
--data), encodes the raw train/val/test text with that SentencePiece model for the peers, trains each toolkit
with the recipe's architecture and optimiser for the same wall-clock budget on 2 threads, decodes
test_2016_flickr with beam 5 and greedy, times decoding (the toolkit's own timer and the whole command),
detokenises and scores with sacrebleu against the raw German reference. Prints one table and writes
OUT/peers.json and OUT/peers.md.

A peer's clock starts at its first training step (its log line) and it gets SIGINT after the budget;
seq2seq stops itself (`train.max_minutes`), validation included. Joey saves its weights on SIGINT; OpenNMT-py
does not, so it saves a checkpoint every 25 updates and the newest is decoded. This module imports neither
peer: their commands run in their own virtual environments under ~/.cache/seq2seq-peers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "multi30k-en-de.yaml"
PEERS_HOME = Path(os.environ.get("SEQ2SEQ_PEERS_HOME", Path.home() / ".cache" / "seq2seq-peers"))
TOOLKITS = ("onmt", "joey", "seq2seq")
PEER_NAMES = {"onmt": "OpenNMT-py 3.5.1", "joey": "Joey NMT 2.3.0"}
THREADS = 2
BEAMS = (5, 1)
LANGS = ("en", "de")
SPLITS = ("train", "val", "test")
SPM_SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
ONMT_SAVE_EVERY = (
    25  # updates between OpenNMT-py checkpoints (--onmt-save-every): it saves nothing when stopped
)
LOG_EVERY = 20  # updates per training log line (the tokens/s windows), every toolkit


@dataclass(frozen=True)
class Arch:
    """The seq2seq recipe's model and optimiser, the part every toolkit is configured with."""

    emb_size: int
    enc_hidden: int  # per direction
    enc_layers: int
    dec_hidden: int
    dropout: float
    lr: float
    batch_tokens: int
    clip_norm: float
    label_smoothing: float
    length_penalty: float
    decode_batch_tokens: int  # source tokens x beam per decoding batch (seq2seq's decode.batch_tokens)


def recipe_arch(recipe: Path = RECIPE) -> tuple[Arch, dict[str, Path]]:
    """The recipe's architecture and its raw corpus prefixes (train, val, test); refuses what the peers'
    configurations below cannot express."""
    from seq2seq.config import load_config

    cfg = load_config(recipe)
    m, t = cfg.model, cfg.train
    expected = {
        "cell": "lstm", "bidirectional": True, "dec_layers": 1, "attention": "general", "input_feeding": True,
        "tie_embeddings": True, "share_embeddings": False, "bridge": "learned",
    }  # fmt: skip
    wrong = {k: getattr(m, k) for k, v in expected.items() if getattr(m, k) != v}
    if wrong or cfg.data.src_lang != "en" or cfg.data.tgt_lang != "de":
        raise SystemExit(f"{recipe}: the peers' configurations assume {expected}, en->de; got {wrong}")
    if not (m.dropout == m.emb_dropout == m.out_dropout):
        raise SystemExit(f"{recipe}: the peers take one dropout value; got {m}")
    arch = Arch(
        emb_size=m.emb_size, enc_hidden=m.enc_hidden, enc_layers=m.enc_layers, dec_hidden=m.dec_hidden,
        dropout=m.dropout, lr=t.lr, batch_tokens=t.batch_tokens, clip_norm=t.clip_norm,
        label_smoothing=t.label_smoothing, length_penalty=cfg.decode.length_penalty,
        decode_batch_tokens=cfg.decode.batch_tokens,
    )  # fmt: skip
    raw = {"train": Path(cfg.data.train), "val": Path(cfg.data.valid), "test": Path(cfg.data.test)}
    return arch, raw


# ---------------------------------------------------------------------------------------------------------
# Peers' configurations


@dataclass(frozen=True)
class Corpus:
    """SentencePiece-encoded splits for the peers: DIR/{train,val,test}.{en,de} and the vocabulary lists."""

    dir: Path

    def split(self, name: str) -> Path:
        """Prefix of a split (`.en`/`.de` appended)."""
        return self.dir / name

    @property
    def onmt_vocab(self) -> Path:
        return self.dir / "vocab.onmt"

    @property
    def joey_vocab(self) -> Path:
        return self.dir / "vocab.joey"


def onmt_config(
    arch: Arch, corpus: Corpus, work: Path, vocab_size: int, save_every: int = ONMT_SAVE_EVERY
) -> dict[str, Any]:
    """onmt_train's YAML: bi-LSTM encoder (`brnn`: enc_hid_size counts both directions), input-feeding LSTM
    decoder with general attention, output layer tied to the target embeddings, constant Adam lr."""
    train = corpus.split("train")
    return {
        "save_data": str(work / "data"), "overwrite": True,
        "src_vocab": str(corpus.onmt_vocab), "share_vocab": True,
        "src_vocab_size": vocab_size, "tgt_vocab_size": vocab_size, "vocab_size_multiple": 1,
        "data": {"corpus_1": {"path_src": f"{train}.en", "path_tgt": f"{train}.de"}},
        "save_model": str(work / "model"), "save_checkpoint_steps": save_every, "keep_checkpoint": 2,
        "train_steps": 10_000_000, "valid_steps": 10_000_000, "report_every": LOG_EVERY,
        "log_file": str(work / "train.log"), "seed": 1,
        "world_size": 1, "gpu_ranks": [], "num_workers": 0, "bucket_size": 32768,
        "batch_type": "tokens", "batch_size": arch.batch_tokens, "normalization": "tokens",
        "accum_count": [1],
        "optim": "adam", "learning_rate": arch.lr, "decay_method": "none", "learning_rate_decay": 1.0,
        "max_grad_norm": arch.clip_norm, "label_smoothing": arch.label_smoothing,
        "encoder_type": "brnn", "decoder_type": "rnn", "rnn_type": "LSTM",
        "enc_layers": arch.enc_layers, "dec_layers": 1,
        "enc_hid_size": 2 * arch.enc_hidden, "dec_hid_size": arch.dec_hidden, "word_vec_size": arch.emb_size,
        "global_attention": "general", "input_feed": 1,
        "share_embeddings": False, "share_decoder_embeddings": True,
        "dropout": [arch.dropout], "attention_dropout": [0.0],
    }  # fmt: skip


def joey_config(
    arch: Arch, corpus: Corpus, work: Path, beam: int = 5, checkpoint: Path | None = None
) -> dict:
    """`python -m joeynmt train|translate` YAML: the same model in Joey's terms (pre-encoded pieces read as
    words, the output layer tied to the target embeddings, a constant lr: `exponential` with factor 1.0)."""
    side = {"level": "word", "voc_file": str(corpus.joey_vocab), "lowercase": False, "max_length": -1}
    embeddings = {"embedding_dim": arch.emb_size, "scale": False, "dropout": arch.dropout}
    testing: dict[str, Any] = {
        "beam_size": beam, "beam_alpha": arch.length_penalty if beam > 1 else -1,
        "batch_size": arch.decode_batch_tokens // beam, "batch_type": "token",
        "eval_metrics": ["bleu"], "sacrebleu_cfg": {"tokenize": "13a"},
    }  # fmt: skip
    if checkpoint is not None:
        testing["load_model"] = str(checkpoint)
    return {
        "name": "peers-joey", "joeynmt_version": "2.3.0", "model_dir": str(work / "model"),
        "use_cuda": False, "fp16": False, "random_seed": 1,
        "data": {
            "train": str(corpus.split("train")), "dev": str(corpus.split("val")),
            "test": str(corpus.split("test")),
            "dataset_type": "plain", "src": {"lang": "en", **side}, "trg": {"lang": "de", **side},
        },
        "testing": testing,
        "training": {
            "optimizer": "adam", "learning_rate": arch.lr, "learning_rate_min": 1.0e-8,
            "scheduling": "exponential", "decrease_factor": 1.0,
            "clip_grad_norm": arch.clip_norm, "label_smoothing": arch.label_smoothing,
            "batch_size": arch.batch_tokens, "batch_type": "token", "normalization": "tokens",
            "epochs": 10_000, "validation_freq": 10_000_000, "logging_freq": LOG_EVERY,
            "early_stopping_metric": "ppl", "keep_best_ckpts": 1, "overwrite": True, "shuffle": True,
            "num_workers": 0, "use_cuda": False, "print_valid_sents": [],
        },
        "model": {
            "tied_embeddings": False, "tied_softmax": True,
            "encoder": {
                "type": "recurrent", "rnn_type": "lstm", "bidirectional": True, "embeddings": embeddings,
                "hidden_size": arch.enc_hidden, "num_layers": arch.enc_layers,
                "dropout": arch.dropout,
            },
            "decoder": {
                "type": "recurrent", "rnn_type": "lstm", "embeddings": embeddings,
                "hidden_size": arch.dec_hidden, "num_layers": 1, "attention": "luong", "input_feeding": True,
                "init_hidden": "bridge",
                "dropout": arch.dropout, "hidden_dropout": arch.dropout,
            },
        },
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# The corpus, once, for everyone


def peer_vocab(pieces: Sequence[str]) -> list[str]:
    """The SentencePiece model's pieces in id order, without its specials: each peer adds its own."""
    return [p for p in pieces if p not in SPM_SPECIALS]


def encode_corpus(spm_model: Path, raw: dict[str, Path], out: Path) -> tuple[Corpus, int]:
    """Encode the raw splits into space-separated pieces with the seq2seq SentencePiece model; write the
    vocabulary list both peers read. Returns the corpus and the vocabulary size (the model's piece count)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    out.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(out)
    for split, prefix in raw.items():
        for lang in LANGS:
            lines = Path(f"{prefix}.{lang}").read_text(encoding="utf-8").splitlines()
            encoded = [
                " ".join(pieces) for pieces in sp.encode([line.strip() for line in lines], out_type=str)
            ]
            if split == "test" and not all(encoded):
                raise SystemExit(f"{prefix}.{lang}: an empty line (Joey's translate would drop it)")
            Path(f"{corpus.split(split)}.{lang}").write_text("\n".join(encoded) + "\n", encoding="utf-8")
    vocab = "\n".join(peer_vocab([sp.id_to_piece(i) for i in range(sp.get_piece_size())])) + "\n"
    corpus.onmt_vocab.write_text(vocab, encoding="utf-8")
    corpus.joey_vocab.write_text(vocab, encoding="utf-8")
    return corpus, sp.get_piece_size()


def detokenize(spm_model: Path, lines: Sequence[str]) -> list[str]:
    """Space-separated pieces back to text (`spm decode`)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    return [sp.decode(line.split()) for line in lines]


def count_subwords(spm_model: Path, lines: Sequence[str]) -> int:
    """Subwords of detokenised text under the SentencePiece model (the decoded output's length)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    return sum(len(ids) for ids in sp.encode(list(lines)))


# ---------------------------------------------------------------------------------------------------------
# Logs


@dataclass(frozen=True)
class TrainStats:
    """One training run: parameters, updates done and target tokens/s (the median of the toolkit's own
    log windows, which keeps a window disturbed by validation or checkpointing out of the figure)."""

    parameters: int | None
    updates: int
    tokens_per_s: float | None
    windows: int


ONMT_STEP = re.compile(r"Step (\d+)(?:/\s*\d+)?; .*?([\d.]+)/\s*([\d.]+) tok/s")
ONMT_PARAMS = re.compile(r"\* number of parameters: (\d+)")
JOEY_STEP = re.compile(r"Step:\s+(\d+), .*Tokens per Sec:\s+([\d.]+)")
JOEY_PARAMS = re.compile(r"Total params: (\d+)")
JOEY_STOP = re.compile(r"Interrupt at epoch \d+, step (\d+)")
SEQ2SEQ_PARAMS = re.compile(r"training ([\d,]+) parameters")
SEQ2SEQ_DONE = re.compile(r"done: (\d+) updates")


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _last_int(pattern: re.Pattern[str], text: str) -> int | None:
    found = pattern.findall(text)
    return int(found[-1].replace(",", "")) if found else None


def parse_onmt_train(log: str) -> TrainStats:
    """onmt_train's log: `Step N/M; ... SRC/TGT tok/s; ...` lines and `* number of parameters: N`."""
    steps = ONMT_STEP.findall(log)
    return TrainStats(
        _last_int(ONMT_PARAMS, log), int(steps[-1][0]) if steps else 0,
        _median([float(tgt) for _, _, tgt in steps]), len(steps),
    )  # fmt: skip


def parse_joey_train(log: str) -> TrainStats:
    """Joey's log: `Epoch E, Step: N, ..., Tokens per Sec: X, ...` lines, `Total params: N` and, when
    stopped by SIGINT, `Interrupt at epoch E, step N.` (the updates done)."""
    steps = JOEY_STEP.findall(log)
    last = int(steps[-1][0]) if steps else 0
    return TrainStats(
        _last_int(JOEY_PARAMS, log), _last_int(JOEY_STOP, log) or last,
        _median([float(speed) for _, speed in steps]), len(steps),
    )  # fmt: skip


def parse_seq2seq_train(log: str, metrics_jsonl: str) -> TrainStats:
    """seq2seq's train.log (`training N parameters`, `done: N updates`) and metrics.jsonl's train records."""
    records = [json.loads(line) for line in metrics_jsonl.splitlines() if line.strip()]
    speeds = [float(r["tgt_tokens_per_s"]) for r in records if r.get("type") == "train"]
    steps = [int(r["step"]) for r in records if r.get("type") == "train"]
    updates = _last_int(SEQ2SEQ_DONE, log) or (steps[-1] if steps else 0)
    return TrainStats(_last_int(SEQ2SEQ_PARAMS, log), updates, _median(speeds), len(speeds))


ONMT_DECODE = re.compile(r"Total translation time \(s\): ([\d.]+)")
JOEY_DECODE = re.compile(r"Generation took ([\d.]+)\[sec\]")
SEQ2SEQ_DECODE = re.compile(r"translated \d+ line\(s\) in ([\d.]+) s")
DECODE_TIMERS = {"onmt": ONMT_DECODE, "joey": JOEY_DECODE, "seq2seq": SEQ2SEQ_DECODE}


def parse_decode_seconds(toolkit: str, log: str) -> float | None:
    """The toolkit's own decoding timer (start-up and model loading excluded), from its log."""
    found = DECODE_TIMERS[toolkit].findall(log)
    return float(found[-1]) if found else None


def newest_onmt_checkpoint(work: Path) -> Path | None:
    """model_step_N.pt with the largest N."""
    steps = {
        int(m.group(1)): p for p in work.glob("model_step_*.pt") if (m := re.search(r"_(\d+)\.pt$", p.name))
    }
    return steps[max(steps)] if steps else None


# ---------------------------------------------------------------------------------------------------------
# Running the toolkits


def select_toolkits(skip: Sequence[str], home: Path = PEERS_HOME) -> list[str]:
    """The toolkits to run: all but `skip`; a peer whose venv is missing is an error that says what to do."""
    unknown = sorted(set(skip) - set(TOOLKITS))
    if unknown:
        raise SystemExit(f"--skip {' '.join(unknown)}: not one of {', '.join(TOOLKITS)}")
    chosen = [t for t in TOOLKITS if t not in skip]
    for name in chosen:
        python = home / name / "bin" / "python"
        if name in PEER_NAMES and not python.is_file():
            raise SystemExit(
                f"{PEER_NAMES[name]}: no virtual environment at {python.parent.parent}; "
                f"run benchmarks/peers/setup.sh, or pass --skip {name}"
            )
    if not chosen:
        raise SystemExit("--skip: nothing left to run")
    return chosen


def thread_env(**extra: str) -> dict[str, str]:
    """The environment of every toolkit's command: 2 threads."""
    return {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS), **extra}


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def train_for(cmd: list[str], log_path: Path, minutes: float, started: str, env: dict[str, str]) -> float:
    """Run a peer's training; its clock starts when `started` appears in its output (its first epoch or
    training loop), and it gets SIGINT `minutes` later. Returns the seconds from start-up to exit."""
    # A SIGINT this process ignores (a background job of a non-interactive shell) stays ignored across exec;
    # one it handles is reset to the default there, so the peer can be interrupted.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    begin = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    clock: float | None = None
    while proc.poll() is None:
        time.sleep(0.5)
        if clock is None:
            if started in log_path.read_text(encoding="utf-8", errors="replace"):
                clock = time.perf_counter()
        elif time.perf_counter() - clock >= 60 * minutes:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise SystemExit(f"{cmd[0]} went on training 60 s after SIGINT; {log_path}") from None
            break
    if clock is None:
        raise SystemExit(
            f"{cmd[0]} exited ({proc.returncode}) before training; {log_path}:\n{_tail(log_path)}"
        )
    return time.perf_counter() - begin


def run_logged(cmd: list[str], log_path: Path, env: dict[str, str], **kwargs: Any) -> float:
    """Run a command to completion, stderr (and stdout unless given) to `log_path`; its wall-clock seconds."""
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        kwargs.setdefault("stdout", log)
        done = subprocess.run(cmd, stderr=log, env=env, check=False, **kwargs)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd[:4])} ... failed ({done.returncode}); {log_path}:\n{_tail(log_path)}"
        )
    return seconds


@dataclass(frozen=True)
class Decode:
    """One decoding of the test set: the toolkit's own timer, the whole command, and sacreBLEU."""

    beam: int
    seconds: float | None
    command_seconds: float
    sentences: int
    bleu: float
    signature: str
    subwords: int = 0
    """Output length: the detokenised hypotheses re-encoded with the shared SentencePiece model (the
    toolkits' models differ, and a shorter output is less work per sentence)."""

    @property
    def sentences_per_s(self) -> float | None:
        return self.sentences / self.seconds if self.seconds else None

    @property
    def subwords_per_s(self) -> float | None:
        return self.subwords / self.seconds if self.seconds and self.subwords else None

    @property
    def command_sentences_per_s(self) -> float:
        return self.sentences / self.command_seconds


@dataclass(frozen=True)
class Row:
    """A toolkit (one decoding setting of it) in the table."""

    toolkit: str
    label: str
    train: TrainStats
    decodes: dict[int, Decode] = field(default_factory=dict)  # by beam size


@dataclass(frozen=True)
class Bench:
    """Everything a toolkit's runner needs."""

    arch: Arch
    corpus: Corpus
    vocab_size: int
    spm_model: Path
    data: Path
    recipe: Path
    raw_test: Path
    references: list[str]
    minutes: float
    out: Path
    onmt_save_every: int = ONMT_SAVE_EVERY


def score(bench: Bench, beam: int, hyp_lines: list[str], seconds: float | None, command: float) -> Decode:
    """sacreBLEU of detokenised hypotheses against the raw reference."""
    from sacrebleu.metrics import BLEU

    if len(hyp_lines) != len(bench.references):
        raise SystemExit(f"beam {beam}: {len(hyp_lines)} hypotheses for {len(bench.references)} references")
    bleu = BLEU()
    result = bleu.corpus_score(hyp_lines, [bench.references])
    subwords = count_subwords(bench.spm_model, hyp_lines)
    return Decode(
        beam, seconds, command, len(hyp_lines), round(result.score, 2), str(bleu.get_signature()), subwords
    )


def _fresh(path: Path) -> Path:
    if path.exists():
        subprocess.run(["rm", "-rf", "--", str(path)], check=True)
    path.mkdir(parents=True)
    return path


def run_onmt(bench: Bench) -> list[Row]:
    work = _fresh(bench.out / "onmt")
    bin_dir = PEERS_HOME / "onmt" / "bin"
    config = work / "train.yaml"
    config.write_text(
        yaml.safe_dump(onmt_config(bench.arch, bench.corpus, work, bench.vocab_size, bench.onmt_save_every))
    )
    env = thread_env(TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")  # its checkpoints need pickle under torch >= 2.6
    print(f"OpenNMT-py: training {bench.minutes} min ({work})", file=sys.stderr)
    train_for([str(bin_dir / "onmt_train"), "-config", str(config)], work / "train.out", bench.minutes,
              "Start training loop", env)  # fmt: skip
    stats = parse_onmt_train((work / "train.out").read_text(encoding="utf-8", errors="replace"))
    checkpoint = newest_onmt_checkpoint(work)
    if checkpoint is None:
        raise SystemExit(f"OpenNMT-py saved no checkpoint in {bench.minutes} min; {work / 'train.out'}")
    decodes = {}
    for beam in BEAMS:
        hyp, log = work / f"test.beam{beam}.sp", work / f"translate.beam{beam}.log"
        penalty = ["-length_penalty", "wu", "-alpha", str(bench.arch.length_penalty)] if beam > 1 else []
        cmd = [str(bin_dir / "onmt_translate"), "-model", str(checkpoint),
               "-src", f"{bench.corpus.split('test')}.en", "-output", str(hyp), "-beam_size", str(beam),
               "-batch_type", "tokens", "-batch_size", str(bench.arch.decode_batch_tokens // beam),
               "-gpu", "-1", "-report_time", *penalty]  # fmt: skip
        command = run_logged(cmd, log, env)
        lines = detokenize(bench.spm_model, hyp.read_text(encoding="utf-8").splitlines())
        decodes[beam] = score(bench, beam, lines, parse_decode_seconds("onmt", log.read_text()), command)
    return [Row("onmt", f"{PEER_NAMES['onmt']} ({checkpoint.stem})", stats, decodes)]


def run_joey(bench: Bench) -> list[Row]:
    work = _fresh(bench.out / "joey")
    python = str(PEERS_HOME / "joey" / "bin" / "python")
    config = work / "train.yaml"
    config.write_text(yaml.safe_dump(joey_config(bench.arch, bench.corpus, work)))
    env = thread_env()
    print(f"Joey NMT: training {bench.minutes} min ({work})", file=sys.stderr)
    cmd = [python, "-m", "joeynmt", "train", str(config), "--skip-test"]
    train_for(cmd, work / "train.out", bench.minutes, "EPOCH 1", env)
    stats = parse_joey_train((work / "train.out").read_text(encoding="utf-8", errors="replace"))
    checkpoint = work / "model" / "latest.ckpt"
    if not checkpoint.exists():
        raise SystemExit(f"Joey NMT saved no checkpoint; {work / 'train.out'}")
    decodes = {}
    for beam in BEAMS:
        decode_config = work / f"translate.beam{beam}.yaml"
        decode_config.write_text(
            yaml.safe_dump(joey_config(bench.arch, bench.corpus, work, beam, checkpoint))
        )
        hyp, log = work / f"test.beam{beam}.sp", work / f"translate.beam{beam}.log"
        with open(f"{bench.corpus.split('test')}.en", "rb") as src, open(hyp, "wb") as sink:
            command = run_logged([python, "-m", "joeynmt", "translate", str(decode_config)], log, env,
                                 stdin=src, stdout=sink)  # fmt: skip
        lines = detokenize(bench.spm_model, hyp.read_text(encoding="utf-8").splitlines())
        decodes[beam] = score(bench, beam, lines, parse_decode_seconds("joey", log.read_text()), command)
    return [Row("joey", f"{PEER_NAMES['joey']} (latest.ckpt)", stats, decodes)]


SEQ2SEQ_SETTINGS = {
    "shortlist (default)": ("default", []),
    "shortlist, one search (--decoders 1)": ("one", ["--decoders", "1"]),
    "shortlist, early stopping (--stop early)": ("early", ["--stop", "early"]),
    "full vocabulary (--no-shortlist)": ("full", ["--no-shortlist"]),
}
"""Each decoding setting of seq2seq in the table: (its files' tag, its `translate` options). The default
searches the batches in one process of one thread per core (`--decoders`); `--decoders 1` is one search
with both threads, as the peers decode; `--stop early` stops beam search by OpenNMT-py's rule."""


def run_seq2seq(bench: Bench) -> list[Row]:
    work = _fresh(bench.out / "seq2seq")
    seq2seq = [sys.executable, "-m", "seq2seq"]
    overrides = [
        f"train.max_minutes={bench.minutes}",
        f"train.threads={THREADS}",
        f"train.log_every={LOG_EVERY}",
    ]
    print(f"seq2seq: training {bench.minutes} min ({work})", file=sys.stderr)
    cmd = [*seq2seq, "train", str(bench.recipe), "--out", str(work / "run"), "--data", str(bench.data),
           "--no-progress", *(f"--set={s}" for s in overrides)]  # fmt: skip
    run_logged(cmd, work / "train.out", thread_env())
    run = work / "run"
    stats = parse_seq2seq_train(
        (run / "train.log").read_text(encoding="utf-8"), (run / "metrics.jsonl").read_text(encoding="utf-8")
    )
    checkpoint = run / "checkpoints" / "best.pt"
    rows = []
    for setting, (name, options) in SEQ2SEQ_SETTINGS.items():
        decodes = {}
        for beam in BEAMS:
            tag = f"beam{beam}.{name}"
            hyp, log = work / f"test.{tag}.txt", work / f"translate.{tag}.log"
            cmd = [*seq2seq, "translate", str(bench.raw_test), "--model", str(checkpoint),
                   "--beam", str(beam), "--output", str(hyp), *options]  # fmt: skip
            command = run_logged(cmd, log, thread_env())
            lines = hyp.read_text(encoding="utf-8").splitlines()
            decodes[beam] = score(
                bench, beam, lines, parse_decode_seconds("seq2seq", log.read_text()), command
            )
        rows.append(Row("seq2seq", f"seq2seq fp32, {setting}", stats, decodes))
    return rows


RUNNERS = {"onmt": run_onmt, "joey": run_joey, "seq2seq": run_seq2seq}


# ---------------------------------------------------------------------------------------------------------
# The table


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return "–" if not ours or not theirs else f"{ours / theirs:.2f}×"


def _decode_cells(row: Row, beam: int) -> list[str]:
    d = row.decodes.get(beam)
    if d is None:
        return ["–"] * 3
    return [f"{_num(d.seconds, 1)} / {d.command_seconds:.1f}",
            f"{_num(d.sentences_per_s)} / {d.command_sentences_per_s:,.0f}", f"{d.bleu:.2f}"]  # fmt: skip


def results_table(rows: Sequence[Row]) -> str:
    """One Markdown table: a row per toolkit and decoding setting."""
    head = ["", "parameters", "train tgt tok/s", "updates"]
    for name in ("beam 5", "greedy"):
        head += [f"{name} s (own / command)", f"{name} sent/s (own / command)", f"{name} BLEU"]
    head.append("subwords out, beam 5 / greedy")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        t = row.train
        cells = [row.label, _num(t.parameters), _num(t.tokens_per_s), f"{t.updates:,}"]
        cells += _decode_cells(row, 5) + _decode_cells(row, 1)
        cells.append(" / ".join(_num(d.subwords if d else None) for d in map(row.decodes.get, BEAMS)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_table(rows: Sequence[Row]) -> str:
    """seq2seq's rows against each peer: speeds as ratios (own timer; whole command), BLEU as differences."""
    ours = [r for r in rows if r.toolkit == "seq2seq"]
    peers = [r for r in rows if r.toolkit != "seq2seq"]
    head = ["seq2seq / peer", "train tgt tok/s", "beam 5 sent/s (own; command)",
            "greedy sent/s (own; command)", "BLEU beam 5", "BLEU greedy",
            "subwords out/s, beam 5; greedy (own)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for us in ours:
        for peer in peers:
            cells = [
                f"{us.label} / {PEER_NAMES[peer.toolkit]}",
                _ratio(us.train.tokens_per_s, peer.train.tokens_per_s),
            ]
            for beam in BEAMS:
                a, b = us.decodes.get(beam), peer.decodes.get(beam)
                own = _ratio(a.sentences_per_s, b.sentences_per_s) if a and b else "–"
                cmd = _ratio(a.command_sentences_per_s, b.command_sentences_per_s) if a and b else "–"
                cells.append(f"{own}; {cmd}")
            for beam in BEAMS:
                a, b = us.decodes.get(beam), peer.decodes.get(beam)
                cells.append(f"{a.bleu - b.bleu:+.2f}" if a and b else "–")
            pairs = [(us.decodes.get(beam), peer.decodes.get(beam)) for beam in BEAMS]
            cells.append("; ".join(_ratio(a.subwords_per_s, b.subwords_per_s) if a and b else "–"
                                   for a, b in pairs))  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) if ours and peers else ""


def machine() -> str:
    """CPU model and the threads used, e.g. 'AMD EPYC 7B13, 2 cores, 2 threads each'."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model = found.group(1).strip() if found else model
    return f"{model}, {os.cpu_count()} cores, {THREADS} threads each"


def report(rows: Sequence[Row], minutes: float, when: str, loads: dict[str, float]) -> str:
    signatures = sorted({d.signature for r in rows for d in r.decodes.values()})
    load = ", ".join(f"{name} {value:.2f}" for name, value in loads.items())
    return "\n".join([
        f"Multi30k en->de, test_2016_flickr (1,000 sentences); {minutes:g} min of training each; {when}; "
        f"{machine()}",
        "", results_table(rows), "", ratio_table(rows), "",
        "train tgt tok/s: median of the toolkit's own log windows; updates: done in the budget; "
        "decoding: the toolkit's own timer (model loading excluded) / the whole command; subwords out: the "
        "detokenised output re-encoded with the shared SentencePiece model; BLEU: sacreBLEU "
        + "; ".join(signatures) + f"; 1-minute load average after each toolkit: {load}",
    ])  # fmt: skip


def to_json(rows: Sequence[Row], minutes: float, when: str, arch: Arch) -> dict[str, Any]:
    return {
        "date": when, "machine": machine(), "minutes": minutes, "arch": asdict(arch),
        "rows": [
            {"toolkit": r.toolkit, "label": r.label, "train": asdict(r.train),
             "decodes": {str(b): {**asdict(d), "sentences_per_s": d.sentences_per_s,
                                  "command_sentences_per_s": d.command_sentences_per_s}
                         for b, d in r.decodes.items()}}
            for r in rows
        ],
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, required=True, help="training budget per toolkit")
    parser.add_argument("--out", type=Path, required=True, help="work directory (its onmt/, joey/, seq2seq/ "
                        "subdirectories are replaced)")  # fmt: skip
    parser.add_argument("--data", type=Path, help="an existing `seq2seq preprocess` output of the recipe")
    parser.add_argument("--skip", action="append", default=[], choices=TOOLKITS, help="repeatable")
    parser.add_argument("--onmt-save-every", type=int, default=ONMT_SAVE_EVERY,
                        help="updates between OpenNMT-py's checkpoints, the newest is decoded")  # fmt: skip
    parser.add_argument("--recipe", type=Path, default=RECIPE, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    toolkits = select_toolkits(args.skip)
    if args.minutes <= 0:
        raise SystemExit("--minutes must be positive")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    arch, raw = recipe_arch(args.recipe)
    data = args.data.resolve() if args.data else out / "data"
    if args.data is None:
        run_logged([sys.executable, "-m", "seq2seq", "preprocess", str(args.recipe), "--out", str(data)],
                   out / "preprocess.log", thread_env())  # fmt: skip
    spm_model = data / "spm.src.model"
    if not spm_model.is_file() or (data / "spm.tgt.model").exists():
        raise SystemExit(f"{data}: expected one joint SentencePiece model spm.src.model")
    corpus, vocab_size = encode_corpus(spm_model, raw, out / "spm")
    references = Path(f"{raw['test']}.de").read_text(encoding="utf-8").splitlines()
    bench = Bench(arch, corpus, vocab_size, spm_model, data, args.recipe.resolve(), Path(f"{raw['test']}.en"),
                  references, args.minutes, out, args.onmt_save_every)  # fmt: skip
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows: list[Row] = []
    loads: dict[str, float] = {}  # what else ran: a 1-minute load average well above 2 means other work
    for toolkit in toolkits:
        rows += RUNNERS[toolkit](bench)
        loads[toolkit] = round(os.getloadavg()[0], 2)
        document = {**to_json(rows, args.minutes, when, arch), "load_average_1min": loads}
        (out / "peers.json").write_text(json.dumps(document, indent=1) + "\n")
    text = report(rows, args.minutes, when, loads)
    (out / "peers.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()

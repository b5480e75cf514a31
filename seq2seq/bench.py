"""`seq2seq bench`: how fast this machine trains and translates, and how close to its limit.

Training throughput is measured over a steady window after warm-up updates, on the recipe's model and
corpus (or, without a recipe, on generated data shaped like Multi30k with the reference model: bi-LSTM
2x128 encoder, LSTM 256 decoder, Luong attention, input feeding, 8k vocabulary). The model's training
cost is counted analytically (`train_flops_per_token`) and compared with the fp32 matmul peak that the
benchmark measures on this machine, which gives the fraction of the machine's limit that training reaches.
Decoding speed (greedy and beam 5) needs a trained checkpoint and a source file.
"""

from __future__ import annotations

import json
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seq2seq.config import Config, DecodeConfig, ModelConfig, config_from_dict
from seq2seq.data.batching import FlatSequences, ParallelCorpus
from seq2seq.errors import Seq2SeqError
from seq2seq.model import build_model, count_parameters
from seq2seq.runtime import allocator_tuned, native_bf16, resolve_device
from seq2seq.textio import read_lines

# The reference model of the benchmark (7.6M parameters with an 8k vocabulary).
REFERENCE_MODEL = {
    "emb_size": 256, "enc_hidden": 128, "enc_layers": 2, "bidirectional": True, "dec_hidden": 256,
    "dec_layers": 1, "attention": "general", "input_feeding": True, "bridge": "learned",
    "dropout": 0.3, "emb_dropout": 0.3, "out_dropout": 0.3,
}  # fmt: skip
REFERENCE_VOCAB = 8000
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class BenchResult:
    machine: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    train: dict[str, dict[str, float]] = field(default_factory=dict)
    """Training figures by precision: "fp32", and "bf16" where the hardware has native bf16."""
    decode: dict[str, dict[str, float]] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def matmul_peak_gflops(
    size: int = 1024,
    seconds: float = 1.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device = torch.device("cpu"),
) -> float:
    """Best GFLOP/s of a square matmul in `dtype` on `device` (on CPU, with the current thread count)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(3):
        torch.mm(a, b, out=out)
    sync()
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b, out=out)
        sync()
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def _rnn_flops(in_size: int, hidden: int, gates: int) -> int:
    """Forward multiply-adds x 2 of one RNN step: input and recurrent matmuls of all gates."""
    return 2 * gates * hidden * (in_size + hidden)


def train_flops_per_token(cfg: ModelConfig, vocab: int, src_per_tgt: float, src_len: float) -> float:
    """Training FLOPs (forward + backward = 3 x forward) per target token.

    Counts the matmuls: encoder RNN layers and directions (per source token, scaled by the source/target
    length ratio), key projection, decoder RNN, attention scores and context (per source position),
    the combine layer and the output layer. `src_len` is the mean source length (attention reads every
    source position). Embedding lookups and element-wise work are not counted.
    """
    gates = 4 if cfg.cell == "lstm" else 3
    directions = 2 if cfg.bidirectional else 1
    enc_out = cfg.enc_hidden * directions
    enc = 0
    for layer in range(cfg.enc_layers):
        in_size = cfg.emb_size if layer == 0 else enc_out
        enc += directions * _rnn_flops(in_size, cfg.enc_hidden, gates)
    keys = 2 * enc_out * cfg.dec_hidden if cfg.attention != "dot" else 0
    dec = 0
    for layer in range(cfg.dec_layers):
        in_size = (
            (cfg.emb_size + (cfg.dec_hidden if cfg.input_feeding else 0)) if layer == 0 else cfg.dec_hidden
        )
        dec += _rnn_flops(in_size, cfg.dec_hidden, gates)
    attention = src_len * (2 * cfg.dec_hidden + 2 * enc_out)  # score + context over the source
    query = 2 * cfg.dec_hidden * cfg.dec_hidden if cfg.attention == "bahdanau" else 0
    combine = 2 * (enc_out + cfg.dec_hidden) * cfg.dec_hidden
    output = 2 * cfg.dec_hidden * vocab
    per_src_token = enc + keys
    forward = src_per_tgt * per_src_token + dec + attention + query + combine + output
    return 3.0 * forward


def generated_corpus(pairs: int, vocab: int, seed: int = 0) -> ParallelCorpus:
    """Random token ids with Multi30k-like lengths (source ~13, target ~15 subwords per sentence)."""
    rng = np.random.default_rng(seed)
    src_len = np.clip(rng.normal(13.5, 5.0, pairs).round(), 2, 60).astype(np.int64)
    tgt_len = np.clip((src_len * rng.normal(1.1, 0.15, pairs)).round(), 2, 70).astype(np.int64)

    def side(lengths: np.ndarray) -> FlatSequences:
        return FlatSequences(rng.integers(4, vocab, int(lengths.sum())), lengths)

    return ParallelCorpus(side(src_len), side(tgt_len))


def reference_config() -> Config:
    return config_from_dict({"model": REFERENCE_MODEL, "tokenizer": {"vocab_size": REFERENCE_VOCAB}}, "bench")


def bench_training(
    cfg: Config,
    corpus: ParallelCorpus,
    vocab: tuple[int, int],
    warmup: int,
    steps: int,
    batch_tokens: int,
    device: torch.device,
    bf16: bool = False,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Tokens/s and achieved FLOP/s over `steps` updates after `warmup` updates, in fp32 or under bf16
    autocast (`bf16` is honoured only where the hardware has native bf16, as in training)."""
    from seq2seq.update import accumulate_gradients, clip_and_step, make_optimizer

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, *vocab).to(device).train()
    optimizer = make_optimizer(cfg, model)
    batches = corpus.batches(batch_tokens, cfg.train.seed, 0)
    needed = warmup + steps
    batches = (batches * (needed // max(1, len(batches)) + 1))[:needed]
    src_tokens = tgt_tokens = 0
    start = 0.0
    for i, idx in enumerate(batches):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            src_tokens = tgt_tokens = 0
        batch = corpus.batch(idx).to(device)
        _, n_tokens = accumulate_gradients(model, [batch], cfg.train.label_smoothing, 0.0, device, bf16)
        clip_and_step(model, optimizer, cfg)
        src_tokens += int(corpus.src.lengths[idx].sum() + len(idx))
        tgt_tokens += n_tokens
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    window = batches[warmup:]
    sentences = sum(len(b) for b in window)
    flops = train_flops_per_token(
        cfg.model, vocab[1], src_tokens / max(1, tgt_tokens), src_tokens / sentences
    )
    stats = {
        "steps": steps,
        "seconds": round(seconds, 3),
        "src_tokens_per_s": round(src_tokens / seconds, 1),
        "tgt_tokens_per_s": round(tgt_tokens / seconds, 1),
        "sentences_per_batch": round(float(np.mean([len(b) for b in window])), 1),
        "padding_fraction": round(corpus.padding_fraction(window), 4),
        "mflop_per_tgt_token": round(flops / 1e6, 2),
        "achieved_gflops": round(flops * tgt_tokens / seconds / 1e9, 1),
    }
    info = {"parameters": count_parameters(model), "vocab": list(vocab), **asdict(cfg.model)}
    return stats, info


def bench_decoding(
    checkpoint: Path,
    source: Path,
    device: torch.device,
    reference: Path | None = None,
    beams: tuple[int, ...] = (1, 5),
    limit: int = 1000,
    batch_tokens: int = DecodeConfig.batch_tokens,
    repeats: int = 2,
) -> dict[str, dict[str, float]]:
    """Sentences/s and target tokens/s of `translate` on the first `limit` lines of `source`: fp32, bf16
    where the hardware has it, and (on CPU) dynamic int8 quantization; with a reference, the BLEU of each.
    As `translate` does by default, the batches are searched in one process of one thread per core on
    the CPU (`seq2seq.search_processes`).

    Decodes at the toolkit's default batch size (not the one stored in the checkpoint) and keeps the
    fastest of `repeats` runs, the usual way to time on a machine that other work may disturb."""
    from seq2seq.evaluate import bleu
    from seq2seq.search_processes import default_decoders
    from seq2seq.translate import Translator

    lines = read_lines(source, replace_invalid=True)[:limit]
    refs = read_lines(reference)[:limit] if reference is not None else None
    precisions = ["", *(["bf16"] if native_bf16(device) else []), *(["int8"] if device.type == "cpu" else [])]
    results = {}
    for precision in precisions:
        translator = Translator.from_checkpoint(
            checkpoint, str(device), "int8" if precision == "int8" else "", precision == "bf16"
        )
        translator.decoders = default_decoders(device)
        translator.translate(lines[:50], beam=max(beams))  # warm-up
        for beam in beams:
            opts = translator.options(beam=beam)
            seconds = float("inf")
            for _ in range(repeats):
                translator.stats.tgt_tokens = 0
                start = time.perf_counter()
                hyps = [t.text for t in translator.translate_batch(lines, opts, batch_tokens)]
                seconds = min(seconds, time.perf_counter() - start)
            row = {
                "sentences": len(lines),
                "batch_tokens": batch_tokens,
                "decoders": translator.decoders,
                "seconds": round(seconds, 3),
                "sentences_per_s": round(len(lines) / seconds, 1),
                "tgt_tokens_per_s": round(translator.stats.tgt_tokens / seconds, 1),
            }
            if refs is not None:
                row["bleu"] = round(bleu(hyps, refs).score, 2)
            results[f"{precision + ' ' if precision else ''}beam{beam}"] = row
        translator.close()
    return results


def peak_memory(device: torch.device) -> dict[str, float]:
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    memory = {"peak_rss_mib": round(rss_kib / 1024 if sys.platform != "darwin" else rss_kib / 2**20, 1)}
    if device.type == "cuda":
        memory["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return memory


def machine_info(device: torch.device, peaks: dict[str, float]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "matmul_peak_gflops": {name: round(value, 1) for name, value in peaks.items()},
        "allocator_tuned": allocator_tuned(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def format_table(result: BenchResult) -> str:
    """The human-readable report: one training column per precision, then decoding and memory."""
    m, peaks = result.machine, result.machine["matmul_peak_gflops"]
    names = list(result.train)

    def row(label: str, values: list[str]) -> str:
        return f"{label:<34}" + "".join(f"{v:>12}" for v in values)

    def train_row(label: str, fmt: str, key: str) -> str:
        return row(label, [format(result.train[n][key], fmt) for n in names])

    lines = [
        f"machine: {m['processor']}, {m['threads']} threads, {m['device']}, torch {m['torch']}"
        + (", heap allocator tuned" if m.get("allocator_tuned") else ""),
        f"model: {result.model['parameters']:,} parameters, vocab {result.model['vocab'][0]}/"
        f"{result.model['vocab'][1]}",
        "",
        row("training", names),
        train_row("train target tokens/s", ",.0f", "tgt_tokens_per_s"),
        train_row("train source tokens/s", ",.0f", "src_tokens_per_s"),
        train_row("sentences per batch", ".1f", "sentences_per_batch"),
        train_row("padding fraction", ".1%", "padding_fraction"),
        train_row("training MFLOP per target token", ".2f", "mflop_per_tgt_token"),
        train_row("achieved GFLOP/s", ".1f", "achieved_gflops"),
        row("matmul peak GFLOP/s", [f"{peaks[n]:.1f}" for n in names]),
        row("fraction of peak", [f"{result.train[n]['achieved_gflops'] / peaks[n]:.1%}" for n in names]),
    ]
    if result.decode:
        first = next(iter(result.decode.values()))
        title = (
            f"decoding, batch {first['batch_tokens']:,} src x beam, {first.get('decoders', 1):.0f} search(es)"
        )
        lines += ["", row(title, ["sent/s", "tgt tok/s", "BLEU"])]
    for name, d in result.decode.items():
        bleu = f"{d['bleu']:.2f}" if "bleu" in d else "-"
        lines.append(row(name, [f"{d['sentences_per_s']:,.1f}", f"{d['tgt_tokens_per_s']:,.0f}", bleu]))
    lines.append("")
    for name, value in result.memory.items():
        lines.append(row(name.replace("_", " "), [f"{value:,.1f}"]))
    return "\n".join(lines)


@dataclass(frozen=True)
class BenchInputs:
    data: Path | None
    checkpoint: Path | None
    source: Path | None
    reference: Path | None


def recipe_inputs(
    recipe: Path,
    cfg: Config,
    data: Path | None = None,
    checkpoint: Path | None = None,
    source: Path | None = None,
    reference: Path | None = None,
) -> BenchInputs:
    """What `bench RECIPE` measures unless told: the recipe's run directory (`runs/NAME`, laid out as
    `RunFiles` says) for data and best checkpoint, and the recipe's text test split for decoding."""
    from seq2seq.rundir import RunFiles

    run = RunFiles(Path("runs") / recipe.stem)
    if checkpoint is None and run.best.is_file():
        checkpoint = run.best
    if source is None and cfg.data.format == "text" and cfg.data.test:
        source = Path(f"{cfg.data.test}.{cfg.data.src_lang}")
        reference = reference or Path(f"{cfg.data.test}.{cfg.data.tgt_lang}")
    return BenchInputs(data or run.dir / "data", checkpoint, source, reference)


def run_bench(
    cfg: Config | None,
    data_dir: Path | None,
    checkpoint: Path | None,
    source: Path | None,
    reference: Path | None = None,
    warmup: int = 5,
    steps: int = 30,
    batch_tokens: int | None = None,
    device: str = "auto",
    log: Any = print,
) -> BenchResult:
    """Measure training (recipe corpus or generated Multi30k-shaped data) and decoding (with a checkpoint)."""
    if steps < 1 or warmup < 0:
        raise Seq2SeqError("--steps must be at least 1 and --warmup at least 0")
    if checkpoint is not None and source is None:
        raise Seq2SeqError("--model needs --src FILE (sentences to decode)")
    dev = resolve_device(device)
    if cfg is not None and cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    with_bf16 = native_bf16(dev) and (cfg is None or cfg.train.bf16)
    precisions = ["fp32", "bf16"] if with_bf16 else ["fp32"]
    log(f"measuring the {' and '.join(precisions)} matmul peak on {dev} ({torch.get_num_threads()} threads)")
    peaks = {name: matmul_peak_gflops(dtype=DTYPES[name], device=dev) for name in precisions}
    if cfg is None:
        cfg = reference_config()
        corpus = generated_corpus(29000, REFERENCE_VOCAB)
        vocab = (REFERENCE_VOCAB, REFERENCE_VOCAB)
        tokens = batch_tokens or 1100  # about 64 Multi30k sentences a batch
    else:
        from seq2seq.data import load_prepared, preprocess

        assert data_dir is not None
        preprocess(cfg, data_dir, log=log)
        prepared = load_prepared(data_dir)
        corpus = ParallelCorpus.from_dataset(prepared.splits["train"])
        vocab = (prepared.tokenizer.src_vocab_size, prepared.tokenizer.tgt_vocab_size)
        tokens = batch_tokens or cfg.train.batch_tokens
    result = BenchResult()
    for name in precisions:
        log(f"training in {name}: {warmup} warm-up + {steps} measured updates")
        result.train[name], result.model = bench_training(
            cfg, corpus, vocab, warmup, steps, tokens, dev, bf16=name == "bf16"
        )
    if checkpoint is not None and source is not None:
        log(f"decoding {source} with {checkpoint}")
        result.decode = bench_decoding(checkpoint, source, dev, reference)
    result.machine = machine_info(dev, peaks)
    result.memory = peak_memory(dev)
    return result

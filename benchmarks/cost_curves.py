"""Cost curves: training target tokens/s against batch size and sentence length, decoding time against beam
size and sentence length, and the peak memory of each point.

    python benchmarks/cost_curves.py train --vary batch --values 16 32 64 128 256 [--length 15]
    python benchmarks/cost_curves.py train --vary length --values 10 20 40 70 100 [--batch 64]
    python benchmarks/cost_curves.py decode CKPT SRC --vary beam --values 1 2 4 8 12 [--length 15]
    python benchmarks/cost_curves.py decode CKPT SRC --vary length --values 10 20 40 70 100 [--beam 5]

Training runs the `seq2seq bench` reference model (bi-LSTM 2x128, LSTM 256, general attention, input
feeding, 8k vocabulary) in fp32 on generated batches in which every source and target sentence has
exactly `--length` subwords, `--updates` timed updates after two warm-up updates. Decoding translates
`--sentences` sources of exactly `--length` subwords, cut from the subword ids of SRC (its lines encoded
with the checkpoint's tokenizer and concatenated, so the text stays natural), at the checkpoint's decode
settings; the fastest of `--repeats` runs after a warm-up. Each point runs in its own process, so its
peak RSS is its own: `rss_start_mib` is the process after loading the model and data, `peak_rss_mib` the
peak over the whole point. Prints one Markdown table; `--json FILE` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_point(batch: int, length: int, updates: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from seq2seq.bench import REFERENCE_VOCAB, reference_config
    from seq2seq.data.batching import FlatSequences, ParallelCorpus
    from seq2seq.model import build_model
    from seq2seq.runtime import tune_allocator
    from seq2seq.update import accumulate_gradients, clip_and_step, make_optimizer

    tune_allocator()
    cfg = reference_config()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pairs = batch * (updates + 2)
    lengths = np.full(pairs, length, dtype=np.int64)

    def side() -> FlatSequences:
        return FlatSequences(rng.integers(4, REFERENCE_VOCAB, pairs * length), lengths)

    corpus = ParallelCorpus(side(), side())
    model = build_model(cfg.model, REFERENCE_VOCAB, REFERENCE_VOCAB).train()
    optimizer = make_optimizer(cfg, model)
    batches = [corpus.batch(np.arange(i * batch, (i + 1) * batch)) for i in range(updates + 2)]
    device = torch.device("cpu")
    start_rss = rss_mib()
    tokens, start = 0, 0.0
    for i, b in enumerate(batches):
        if i == 2:
            tokens, start = 0, time.perf_counter()
        _, n = accumulate_gradients(model, [b], 0.1, 0.0, device, False)
        clip_and_step(model, optimizer, cfg)
        tokens += n
    seconds = time.perf_counter() - start
    return {
        "batch": batch,
        "length": length,
        "tgt_tokens_per_s": round(tokens / seconds),
        "ms_per_update": round(1000 * seconds / updates, 1),
        "rss_start_mib": round(start_rss),
        "peak_rss_mib": round(peak_rss_mib()),
    }


def decode_point(
    checkpoint: Path, source: Path, beam: int, length: int, sentences: int, repeats: int
) -> dict[str, Any]:
    import numpy as np

    from seq2seq import Translator
    from seq2seq.data.batching import FlatSequences
    from seq2seq.runtime import tune_allocator
    from seq2seq.textio import read_lines
    from seq2seq.translate import decode_ids

    tune_allocator()
    translator = Translator.from_checkpoint(checkpoint, "cpu")
    ids = [
        t for row in translator.tokenizer.encode_src(read_lines(source, replace_invalid=True)) for t in row
    ]
    needed = sentences * length
    stream = np.resize(np.asarray(ids, dtype=np.int64), needed)  # repeats SRC if it is too short
    src = FlatSequences(stream, np.full(sentences, length, dtype=np.int64))
    opts = translator.options(beam=beam)
    batch_tokens = translator.cfg.decode.batch_tokens
    device = translator.device
    start_rss = rss_mib()
    decode_ids(translator.model, FlatSequences(stream[: 8 * length], np.full(8, length)), opts, batch_tokens,
               device)  # fmt: skip
    best, generated = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        hyps = decode_ids(translator.model, src, opts, batch_tokens, device)
        best = min(best, time.perf_counter() - start)
        generated = sum(len(h[0].tokens) for h in hyps if h)
    return {
        "beam": beam,
        "length": length,
        "seconds": round(best, 3),
        "ms_per_sentence": round(1000 * best / sentences, 2),
        "tgt_tokens_per_s": round(generated / best),
        "rss_start_mib": round(start_rss),
        "peak_rss_mib": round(peak_rss_mib()),
    }


def table(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(f"{r[k]:,}" if isinstance(r[k], int) else str(r[k]) for k in keys) + " |"
              for r in rows]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--point", help=argparse.SUPPRESS)  # internal: one point, as JSON, in this process
    sub = parser.add_subparsers(dest="path")
    train = sub.add_parser("train")
    train.add_argument("--vary", choices=["batch", "length"], required=True)
    train.add_argument("--values", type=int, nargs="+", required=True)
    train.add_argument("--batch", type=int, default=64, help="sentences a batch when --vary length")
    train.add_argument("--length", type=int, default=15, help="subwords a sentence when --vary batch")
    train.add_argument("--updates", type=int, default=6)
    decode = sub.add_parser("decode")
    decode.add_argument("checkpoint", type=Path)
    decode.add_argument("source", type=Path)
    decode.add_argument("--vary", choices=["beam", "length"], required=True)
    decode.add_argument("--values", type=int, nargs="+", required=True)
    decode.add_argument("--beam", type=int, default=5, help="beam size when --vary length")
    decode.add_argument("--length", type=int, default=15, help="source subwords when --vary beam")
    decode.add_argument("--sentences", type=int, default=200)
    decode.add_argument("--repeats", type=int, default=2)
    for p in (train, decode):
        p.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.point:
        kind, kwargs = json.loads(args.point)
        if kind == "decode":
            kwargs["checkpoint"], kwargs["source"] = Path(kwargs["checkpoint"]), Path(kwargs["source"])
        print(json.dumps(train_point(**kwargs) if kind == "train" else decode_point(**kwargs)))
        return
    if args.path is None:
        parser.error("give train or decode")
    rows = []
    for value in args.values:
        if args.path == "train":
            point: dict[str, Any] = {"batch": args.batch, "length": args.length, "updates": args.updates}
        else:
            point = {"checkpoint": str(args.checkpoint), "source": str(args.source), "beam": args.beam,
                     "length": args.length, "sentences": args.sentences, "repeats": args.repeats}  # fmt: skip
        point[args.vary] = value
        out = subprocess.run([sys.executable, __file__, "--point", json.dumps([args.path, point])],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

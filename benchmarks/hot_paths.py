"""Before/after timing of the two hot paths, for A/B comparisons of a change on a noisy machine.

    python benchmarks/hot_paths.py train [--bf16] [--rounds 4] [--updates 25]
    python benchmarks/hot_paths.py decode CKPT SRC [--beam 5 1] [--bf16 | --quantize int8] [--batch-tokens N]
                                         [--shortlist auto|on|off|both] [--stop recipe|exact|early|both]
                                         [--decoders 1] [--ref REF]

`train` runs the `seq2seq bench` reference model (8.1M parameters) on generated Multi30k-shaped data,
~59 sentences a batch, and prints target tokens/s for each round of `--updates` updates after one
warm-up round, with the median and best, and (fp32) the median's fraction of the fp32 matmul peak
measured just before (FLOPs counted as `seq2seq bench` counts them). `decode` translates SRC with
the checkpoint and prints the fastest of `--repeats` runs for each beam and variant, the variants
alternately (`--shortlist both`: with and without the checkpoint's vocabulary shortlist; `--stop both`:
beam search's exact and early stopping), with BLEU against `--ref`. It searches in `--decoders`
processes (1: one search in this process, with torch's threads; 0: one per core, as `translate` does).
Both apply the allocator setting the CLI applies.

For a fair before/after, run the old and new code alternately (e.g. with `git stash`) several times and
compare medians: absolute figures on shared machines drift by 5-10% within an hour.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from seq2seq import Translator
from seq2seq.bench import (
    REFERENCE_VOCAB,
    generated_corpus,
    matmul_peak_gflops,
    reference_config,
    train_flops_per_token,
)
from seq2seq.config import Stop
from seq2seq.evaluate import score_corpus
from seq2seq.model import build_model
from seq2seq.runtime import tune_allocator
from seq2seq.search_processes import default_decoders
from seq2seq.textio import read_lines
from seq2seq.update import accumulate_gradients, clip_and_step, make_optimizer


def bench_train(bf16: bool, rounds: int, updates: int) -> None:
    cfg = reference_config()
    torch.manual_seed(0)
    corpus = generated_corpus(29000, REFERENCE_VOCAB)
    model = build_model(cfg.model, REFERENCE_VOCAB, REFERENCE_VOCAB).train()
    optimizer = make_optimizer(cfg, model)
    batches = corpus.batches(1100, 0, 0)[:updates]
    device = torch.device("cpu")
    src_tokens = sum(int(corpus.src.lengths[idx].sum()) + len(idx) for idx in batches)
    tgt_tokens = sum(int(corpus.tgt.lengths[idx].sum()) + len(idx) for idx in batches)
    sentences = sum(len(idx) for idx in batches)
    flops = train_flops_per_token(cfg.model, REFERENCE_VOCAB, src_tokens / tgt_tokens, src_tokens / sentences)

    def one_round() -> float:
        tokens, start = 0, time.perf_counter()
        for idx in batches:
            _, n = accumulate_gradients(model, [corpus.batch(idx)], 0.1, 0.0, device, bf16)
            clip_and_step(model, optimizer, cfg)
            tokens += n
        return tokens / (time.perf_counter() - start)

    peak = 0.0 if bf16 else matmul_peak_gflops()
    one_round()  # warm-up
    speeds = [one_round() for _ in range(rounds)]
    print(f"train {'bf16' if bf16 else 'fp32'}: target tokens/s per round {[round(s) for s in speeds]}")
    median = statistics.median(speeds)
    print(f"median {median:,.0f}  best {max(speeds):,.0f}")
    if peak:
        achieved = flops * median / 1e9
        print(
            f"median {achieved:.1f} GFLOP/s = {achieved / peak:.1%} of the {peak:.1f} GFLOP/s fp32 matmul "
            "peak"
        )


def bench_decode(
    checkpoint: Path, source: Path, beams: list[int], bf16: bool, quantize: str, batch_tokens: int | None,
    repeats: int, shortlist: str, stop: str, decoders: int, ref: Path | None,
) -> None:  # fmt: skip
    translator = Translator.from_checkpoint(checkpoint, "cpu", quantize, bf16)
    translator.decoders = decoders or default_decoders(torch.device("cpu"))
    lines = read_lines(source, replace_invalid=True)
    refs = read_lines(ref) if ref is not None else None
    shortlists: dict[str, list[bool | None]] = {"auto": [None], "on": [True], "off": [False]}
    shortlists["both"] = [True, False]
    stops: dict[str, list[Stop | None]] = {"recipe": [None], "exact": ["exact"], "early": ["early"]}
    stops["both"] = ["exact", "early"]
    try:
        for beam in beams:
            variants = [translator.options(beam=beam, shortlist=use, stop=rule)
                        for use in shortlists[shortlist] for rule in stops[stop]]  # fmt: skip
            best = [float("inf")] * len(variants)
            outputs: list[list[str]] = [[] for _ in variants]
            for opts in variants:
                translator.translate_batch(lines[:50], opts, batch_tokens)  # warm-up
            for _ in range(repeats):
                for i, opts in enumerate(variants):  # alternately, so drift hits all alike
                    start = time.perf_counter()
                    outputs[i] = [t.text for t in translator.translate_batch(lines, opts, batch_tokens)]
                    best[i] = min(best[i], time.perf_counter() - start)
            for opts, seconds, out in zip(variants, best, outputs, strict=True):
                listed = translator.shortlist_for(opts) is not None
                bleu = "" if refs is None else f", BLEU {score_corpus(out, refs, ['bleu'])[0].score:.2f}"
                print(f"beam {beam}, {'shortlist' if listed else 'full vocabulary'}, stop {opts.stop}: "
                      f"{seconds:.2f} s, {len(lines) / seconds:,.0f} sentences/s (fastest of {repeats}, "
                      f"{translator.decoders} decoder(s)){bleu}")  # fmt: skip
    finally:
        translator.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="path", required=True)
    train = sub.add_parser("train")
    train.add_argument("--bf16", action="store_true")
    train.add_argument("--rounds", type=int, default=4)
    train.add_argument("--updates", type=int, default=25)
    decode = sub.add_parser("decode")
    decode.add_argument("checkpoint", type=Path)
    decode.add_argument("source", type=Path)
    decode.add_argument("--beam", type=int, nargs="+", default=[5, 1])
    decode.add_argument("--bf16", action="store_true")
    decode.add_argument("--quantize", default="")
    decode.add_argument("--batch-tokens", type=int)
    decode.add_argument("--repeats", type=int, default=2)
    decode.add_argument("--shortlist", choices=["auto", "on", "off", "both"], default="auto")
    decode.add_argument("--stop", choices=["recipe", "exact", "early", "both"], default="recipe")
    decode.add_argument("--decoders", type=int, default=1, help="search processes (0: one per core)")
    decode.add_argument("--ref", type=Path, help="reference: also print each variant's BLEU")
    args = parser.parse_args()
    tune_allocator()
    if args.path == "train":
        bench_train(args.bf16, args.rounds, args.updates)
    else:
        bench_decode(args.checkpoint, args.source, args.beam, args.bf16, args.quantize, args.batch_tokens,
                     args.repeats, args.shortlist, args.stop, args.decoders, args.ref)  # fmt: skip


if __name__ == "__main__":
    main()

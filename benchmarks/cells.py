"""RNN against GRU against LSTM on a long-range dependency: exact-match accuracy by sequence length.

Trains `recipes/parity-{rnn,gru,lstm}.yaml` (equal parameter counts, equal number of updates) on the
built-in `parity` corpus, scores every test sentence, buckets by source length, prints a Markdown table,
and writes the `--gradients` inspect page of one long test sentence per cell (‖∂loss/∂C_t‖, ‖∂loss/∂h_t‖
per source position: how far back the error signal reaches):

    python benchmarks/cells.py --out runs/cells                     # the recipes as they are
    python benchmarks/cells.py --out /tmp/cells --steps 30 --train-size 500 --eval-size 60   # smoke test
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seq2seq import Translator
from seq2seq.config import load_config
from seq2seq.inspect.report import write_inspection
from seq2seq.model import build_model, count_parameters
from seq2seq.textio import read_lines
from seq2seq.train import train

CELLS = ("rnn", "gru", "lstm")
BUCKETS = ((2, 10), (11, 20), (21, 30), (31, 40))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="one run directory per cell under here")
    parser.add_argument("--steps", type=int, help="updates per cell [default: the recipes' max_steps]")
    parser.add_argument("--train-size", type=int, help="training pairs [default: the recipes']")
    parser.add_argument("--eval-size", type=int, help="validation and test pairs [default: the recipes']")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    rows = []
    for cell in CELLS:
        overrides = [f"train.threads={args.threads}"]
        if args.steps:
            overrides += [f"train.max_steps={args.steps}", f"train.valid_every={args.steps}"]
        if args.train_size:
            overrides.append(f"data.builtin_train_size={args.train_size}")
        if args.eval_size:
            overrides.append(f"data.builtin_eval_size={args.eval_size}")
        cfg = load_config(Path(__file__).parent.parent / "recipes" / f"parity-{cell}.yaml", overrides)
        run = args.out / cell
        result = train(cfg, run, log=lambda line: None, show_progress=False)
        translator = Translator.from_checkpoint(result.best_checkpoint, "cpu")
        sources = read_lines(run / "data" / "corpus" / "test.src")
        refs = read_lines(run / "data" / "corpus" / "test.tgt")
        hyps = translator.translate(sources, beam=1)
        accuracy = []
        for low, high in BUCKETS:
            pairs = [
                (h, r) for s, h, r in zip(sources, hyps, refs, strict=True) if low <= len(s.split()) <= high
            ]
            accuracy.append(sum(h == r for h, r in pairs) / len(pairs) if pairs else float("nan"))
        tok = translator.tokenizer
        params = count_parameters(build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size))
        longest = max(range(len(sources)), key=lambda i: len(sources[i].split()))
        page = write_inspection(
            translator, [sources[longest]], args.out / f"inspect-{cell}", [refs[longest]], gradients=True,
            title=f"parity, {cell}",
        )  # fmt: skip
        rows.append((cell, params, result.steps, accuracy, page.index))

    print("| cell | parameters | updates | " + " | ".join(f"length {lo}-{hi}" for lo, hi in BUCKETS) + " |")
    print("|---|---:|---:|" + "---:|" * len(BUCKETS))
    for cell, params, steps, accuracy, _ in rows:
        print(f"| {cell} | {params:,} | {steps} | " + " | ".join(f"{a:.1%}" for a in accuracy) + " |")
    for cell, *_, index in rows:
        print(f"{cell}: gradients per source position in {index} ({index.parent}/s1-gradients.png)")


if __name__ == "__main__":
    main()

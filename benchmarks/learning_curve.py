"""Test BLEU against wall-clock training minutes, from a run directory's kept checkpoints.

Train with `train.keep_last` large enough to keep a checkpoint per validation, then:

    python benchmarks/learning_curve.py runs/multi30k-en-de --src TEST.en --ref TEST.de --beam 5

Each `checkpoints/step-N.pt` is matched with its validation record in `metrics.jsonl` (wall-clock minutes
since the start of training, validation included) and scored on the test set with sacrebleu.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seq2seq import Translator
from seq2seq.evaluate import bleu
from seq2seq.textio import read_lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--ref", type=Path, required=True)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--every", type=int, default=1, help="score every N-th checkpoint (and the last)")
    parser.add_argument("--json", type=Path, help="also write the curve here")
    args = parser.parse_args()

    records = [json.loads(line) for line in (args.run / "metrics.jsonl").read_text().splitlines()]
    minutes = {r["step"]: r["minutes"] for r in records if r["type"] == "valid"}
    valid_bleu = {r["step"]: r["bleu"] for r in records if r["type"] == "valid"}
    sources, refs = read_lines(args.src), read_lines(args.ref)
    checkpoints = sorted(args.run.glob("checkpoints/step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    checkpoints = [p for i, p in enumerate(checkpoints) if i % args.every == 0 or i == len(checkpoints) - 1]
    curve = []
    print(f"{'minutes':>8} {'update':>7} {'valid BLEU':>11} {f'test BLEU (beam {args.beam})':>22}")
    for path in checkpoints:
        step = int(path.stem.split("-")[1])
        translator = Translator.from_checkpoint(path, device="cpu")
        score = bleu(translator.translate(sources, beam=args.beam), refs)
        row = {"minutes": minutes.get(step), "step": step, "valid_bleu": valid_bleu.get(step),
               "test_bleu": round(score.score, 2), "signature": score.signature}  # fmt: skip
        curve.append(row)
        print(f"{row['minutes'] or float('nan'):>8.1f} {step:>7} {row['valid_bleu'] or float('nan'):>11.2f} "
              f"{row['test_bleu']:>22.2f}")  # fmt: skip
    if curve:
        print(f"signature: {curve[-1]['signature']}")
    if args.json:
        args.json.write_text(json.dumps(curve, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

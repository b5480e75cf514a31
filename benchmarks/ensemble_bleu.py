"""Test BLEU of an ensemble of runs against the best single run and against weight averaging.

    python benchmarks/ensemble_bleu.py runs/a/checkpoints/best.pt runs/b/checkpoints/best.pt \\
        --src TEST.en --ref TEST.de --beam 5 [--average runs/a/checkpoints/step-*.pt]

Prints a Markdown table: every single checkpoint, the ensemble of all of them (the mean of their
probabilities at every step, `translate --model A --model B`), and `seq2seq average` of the
`--average` checkpoints (default: the ensemble's checkpoints; averaging needs checkpoints of one
run, i.e. the same config, so across seeds that row says why it is missing). BLEU is sacreBLEU's
default (13a, cased) with its signature.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from seq2seq import Seq2SeqError, Translator
from seq2seq.checkpoint import average_checkpoints, save_checkpoint
from seq2seq.evaluate import translate_and_score


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--ref", type=Path, required=True)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--average", nargs="*", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    rows: list[tuple[str, str, str]] = []
    signature = ""

    def score(name: str, models: list[Path]) -> None:
        nonlocal signature
        translator = Translator.from_checkpoint(models, device=args.device)
        result = translate_and_score(
            translator, args.src, args.ref, ("bleu",), translator.options(beam=args.beam)
        )
        signature = result.scores[0].signature
        rows.append((name, f"{result.scores[0].score:.2f}", ", ".join(map(str, models))))
        print(f"{name}: BLEU {result.scores[0].score:.2f}", flush=True)

    for ckpt in args.checkpoints:
        score(f"single {ckpt.parent.parent.name or ckpt.stem}", [ckpt])
    if len(args.checkpoints) > 1:
        score(f"ensemble of {len(args.checkpoints)}", list(args.checkpoints))
    to_average = args.average if args.average else args.checkpoints
    if len(to_average) > 1:
        try:
            payload = average_checkpoints(list(to_average))
        except Seq2SeqError as exc:
            rows.append((f"average of {len(to_average)}", "n/a", str(exc)))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                averaged = Path(tmp) / "averaged.pt"
                save_checkpoint(averaged, payload)
                score(f"average of {len(to_average)}", [averaged])
                rows[-1] = (rows[-1][0], rows[-1][1], ", ".join(map(str, to_average)))
    print(f"\n| model | test BLEU (beam {args.beam}) | checkpoints |\n|---|---:|---|")
    for name, bleu, what in rows:
        print(f"| {name} | {bleu} | {what} |")
    print(f"\nsignature: {signature}")


if __name__ == "__main__":
    main()

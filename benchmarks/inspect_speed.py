"""Speed of `seq2seq inspect`: one sentence traced and rendered (the page and the PNGs of `--png summary`,
the default, and of `--png all`), and corpus statistics (the page and the corpus PNGs).

    python benchmarks/inspect_speed.py --model runs/multi30k-en-de/checkpoints/best.pt \\
        --input ../shared/data/multi30k/test_2016_flickr.en --lines 1000

Targets (issue 11): a 30-token sentence traced and rendered in under 2 s; corpus statistics over 1,000
Multi30k sentences in under a minute on 2 cores. Run it on an idle machine: timings on a shared one mean
nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from seq2seq import Translator
from seq2seq.inspect.report import write_inspection
from seq2seq.textio import read_lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--input", type=Path, required=True, help="source sentences, one per line")
    parser.add_argument("--lines", type=int, default=1000, help="corpus size for the statistics")
    parser.add_argument("--tokens", type=int, default=30, help="length of the single sentence (subwords)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    translator = Translator.from_checkpoint(args.model, "cpu")
    lines = [line for line in read_lines(args.input) if line.strip()]
    lengths = [len(translator.tokenizer.encode_src([line])[0]) for line in lines]
    one = min(range(len(lines)), key=lambda i: abs(lengths[i] - args.tokens))
    with tempfile.TemporaryDirectory() as tmp:
        write_inspection(translator, [lines[one]], Path(tmp) / "warm")  # imports, first-call costs
        for png in ("summary", "all"):
            times = []
            for k in range(args.repeats):
                start = time.perf_counter()
                report = write_inspection(translator, [lines[one]], Path(tmp) / f"{png}-{k}", png=png)
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            pngs = sum(name.endswith(".png") for name in report.files)
            print(
                f"one sentence ({lengths[one]} subwords) traced and rendered with --png {png} ({pngs} PNGs): "
                f"median {median:.2f} s"
            )
        corpus = lines[: args.lines]
        start = time.perf_counter()
        write_inspection(translator, corpus, Path(tmp) / "corpus", figures=0)
        print(f"corpus statistics over {len(corpus)} sentences: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

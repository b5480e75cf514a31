"""Peak memory of preprocessing and of training as the corpus grows (issue #10: from 500k to 5M pairs).

    python benchmarks/scale_rss.py [--pairs 500000 5000000] [--updates 20] [--work DIR] [--reuse]
                                   [--json FILE]

For each size: generate a corpus (`benchmarks/preprocess.py generated`: random 3-20 word sentences, the
target each word reversed in reverse order; kept under --work and reused), preprocess it in streaming
mode in a child process (as `benchmarks/preprocess.py` does; with --reuse, a corpus already
preprocessed under --work is kept with the figures measured then, in WORK/out/NAME.prep.json), build
its vocabulary shortlist in another child (the step training starts with, `corpus_shortlist` with the
default sizes), then train a small model (64-dim embeddings, 2 x 64-unit encoder and 128-unit decoder
GRUs, 2,000-token batches, 1 thread) for a fixed number of updates in a third child, and print one row
per size. Peak RSS is the child's VmHWM (the kernel's peak resident set, `ru_maxrss`: it includes pages
of the memory-mapped Arrow files the child touched, which the kernel can drop at any time); peak anon is
the largest RssAnon sampled every 10 ms (memory that must fit in RAM; for preprocessing, summed over
the `map` workers). Train seconds run from the `train` call to its return: opening the data, building
the shortlist, length-bucketing an epoch, the updates and one validation (1,000 pairs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import preprocess as preprocess_bench  # benchmarks/preprocess.py

MODEL = {"emb_size": 64, "enc_hidden": 64, "dec_hidden": 128, "cell": "gru"}


class PeakAnon:
    """Samples this process's RssAnon every 10 ms on a thread; `peak_mb` is the largest seen."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_kb = max(self.peak_kb, preprocess_bench._status(os.getpid()).get("RssAnon", 0))

    @property
    def peak_mb(self) -> int:
        self._stop.set()
        self._thread.join()
        return round(self.peak_kb / 1024)


def train_child(job: dict[str, Any]) -> None:
    """Inside the child: train `updates` updates on the preprocessed corpus, report time and memory."""
    peak = PeakAnon()
    from seq2seq.config import config_from_dict
    from seq2seq.train import train

    recipe = job["recipe"]
    cfg = config_from_dict(
        {**recipe, "model": MODEL, "train": {"batch_tokens": 2000, "max_steps": job["updates"],
         "valid_every": job["updates"], "log_every": job["updates"], "threads": 1, "keep_best": 0,
         "keep_last": 0, "max_epochs": 1}},
        "scale-rss",
    )  # fmt: skip
    lines: list[str] = []
    start = time.perf_counter()
    run, data = Path(job["run"]), Path(job["out"])
    result = train(cfg, run, data, restart=True, log=lines.append, show_progress=False)
    seconds = time.perf_counter() - start
    if any(line.startswith("cleaning report") for line in lines):
        sys.exit("train preprocessed the corpus again: its recipe differs from the preprocessing one")
    print(
        json.dumps(
            {
                "updates": result.steps,
                "train_s": round(seconds, 1),
                "train_peak_rss_mb": round(preprocess_bench._status(os.getpid())["VmHWM"] / 1024),
                "train_peak_anon_mb": peak.peak_mb,
                "batches_line": next(line for line in lines if "batches per epoch" in line),
            }
        )
    )


def shortlist_child(job: dict[str, Any]) -> None:
    """Inside the child: build the training split's shortlist as `train` does, report time and memory."""
    peak = PeakAnon()
    from seq2seq.config import DecodeConfig
    from seq2seq.data import ParallelCorpus, load_prepared
    from seq2seq.shortlist import corpus_shortlist

    prepared = load_prepared(Path(job["out"]))
    corpus = ParallelCorpus.from_dataset(prepared.splits["train"])
    start = time.perf_counter()
    corpus_shortlist(corpus, prepared.tokenizer, DecodeConfig())
    seconds = time.perf_counter() - start
    print(json.dumps({"shortlist_s": round(seconds, 1), "shortlist_peak_anon_mb": peak.peak_mb}))


def _child(mode: str, job: dict[str, Any]) -> dict[str, Any]:
    """Run `train_child` or `shortlist_child` in a fresh process; its JSON report."""
    out = subprocess.run(
        [sys.executable, __file__, mode, json.dumps(job)], stdout=subprocess.PIPE, text=True, check=True
    )
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def preprocessed(job: dict[str, Any], reuse: bool) -> dict[str, Any]:
    """Preprocess `job` in a child and record the figures next to its output, or (`reuse`) read the
    figures recorded when an earlier run preprocessed it."""
    record = Path(f"{job['out']}.prep.json")
    if reuse and record.is_file() and (Path(job["out"]) / "manifest.json").is_file():
        print(f"reusing {job['out']} (preprocessing figures from {record})", file=sys.stderr)
        recorded: dict[str, Any] = json.loads(record.read_text())
        return recorded
    prep = preprocess_bench.measure(job)
    record.write_text(json.dumps(prep) + "\n")
    return prep


def measure_size(pairs: int, updates: int, work: Path, reuse: bool) -> dict[str, Any]:
    args = argparse.Namespace(
        corpus="generated", pairs=pairs, format="tsv", streaming=True, sample=200_000, num_proc=1,
        data=preprocess_bench.DATA, work=work,
    )  # fmt: skip
    job = preprocess_bench.job_for(args)
    prep = preprocessed(job, reuse)
    shortlist = _child("_shortlist", job)
    trained = _child("_train", {**job, "run": str(work / "runs" / job["name"]), "updates": updates})
    return {
        "pairs": pairs,
        "kept": prep["kept"],
        "preprocess_s": prep["preprocess_s"],
        "preprocess_peak_rss_mb": prep["peak_rss_mb"],
        "preprocess_peak_anon_mb": prep["peak_anon_mb"],
        **shortlist,
        **trained,
    }


def main() -> None:
    children = {"_train": train_child, "_shortlist": shortlist_child}
    if len(sys.argv) == 3 and sys.argv[1] in children:
        children[sys.argv[1]](json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, nargs="+", default=[500_000, 5_000_000])
    parser.add_argument("--updates", type=int, default=20, help="training updates per size")
    parser.add_argument("--work", type=Path, default=preprocess_bench.WORK, help="corpora and outputs")
    parser.add_argument(
        "--reuse", action="store_true",
        help="keep a corpus already preprocessed under --work, with the figures measured then",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = []
    for pairs in args.pairs:
        rows.append(measure_size(pairs, args.updates, args.work, args.reuse))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    head = ("pairs", "prep s", "prep RSS MB", "prep anon MB", "shortlist s", "shortl. anon MB",
            "train s", "train RSS MB", "train anon MB")  # fmt: skip
    print(" ".join(f"{h:>15}" for h in head))
    for r in rows:
        keys = ("preprocess_s", "preprocess_peak_rss_mb", "preprocess_peak_anon_mb", "shortlist_s",
                "shortlist_peak_anon_mb", "train_s", "train_peak_rss_mb", "train_peak_anon_mb")  # fmt: skip
        cells = (f"{r['pairs']:,}", *(r[k] for k in keys))
        print(" ".join(f"{c:>15}" for c in cells))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

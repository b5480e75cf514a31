"""Training throughput of one process with 2 threads against 2 data-parallel processes with 1 thread each.

    python benchmarks/ddp_throughput.py [RECIPE] [--updates 200] [--set key=value ...] [--json FILE]

Both configurations train RECIPE (default recipes/multi30k-en-de.yaml) from scratch for `--updates`
updates with the same global batch (the recipe's train.batch_tokens: 2 processes take half each) in a
fresh run directory, sharing one preprocessed data directory (built first, not timed). The figure is
the median of the `tgt_tokens_per_s` that `seq2seq train` logs to metrics.jsonl every tenth of the run
(all ranks' target tokens over the wall time of the window's updates: forward, backward, gradient
all-reduce, optimizer step), leaving out the first window, which holds one-off warm-up (the first optimizer
step imports torch's compiler stack); process start-up, preprocessing and validation do not count.
Run it on an otherwise idle machine with at least 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

SEQ2SEQ = [sys.executable, "-m", "seq2seq"]


def run(
    recipe: Path, data: Path, out: Path, updates: int, nproc: int, threads: int, sets: list[str]
) -> dict[str, Any]:
    overrides = [f"train.max_steps={updates}", f"train.valid_every={updates}", f"train.threads={threads}",
                 f"train.log_every={max(1, updates // 10)}", "train.max_epochs=1000", *sets]  # fmt: skip
    cmd = [*SEQ2SEQ, "train", str(recipe), "--out", str(out), "--data", str(data), "--no-progress"]
    cmd += [f"--set={s}" for s in overrides] + (["--nproc", str(nproc)] if nproc > 1 else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["train_state"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["tgt_tokens_per_s"] for r in records if r["type"] == "train"][1:]
    return {
        "processes": nproc,
        "threads_per_process": threads,
        "updates": state["step"],
        "tgt_tokens": state["tgt_tokens"],
        "train_seconds": round(state["train_seconds"], 2),
        "tgt_tokens_per_s": round(statistics.median(speeds), 1) if speeds else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipe", nargs="?", type=Path, default=Path("recipes/multi30k-en-de.yaml"))
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra recipe overrides")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ddp-throughput-"))
    try:
        data = work / "data"
        preprocess = [*SEQ2SEQ, "preprocess", str(args.recipe), "--out", str(data)]
        subprocess.run(
            [*preprocess, *(f"--set={s}" for s in args.sets)], check=True, stdout=subprocess.DEVNULL
        )
        rows = [
            run(args.recipe, data, work / "one", args.updates, 1, 2, args.sets),
            run(args.recipe, data, work / "two", args.updates, 2, 1, args.sets),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'configuration':<26} {'updates':>8} {'tgt tokens':>11} {'seconds':>8} {'tgt tok/s':>10}")
    for r in rows:
        name = f"{r['processes']} process x {r['threads_per_process']} thread"
        speed = r["tgt_tokens_per_s"]
        print(f"{name:<26} {r['updates']:>8} {r['tgt_tokens']:>11} {r['train_seconds']:>8} {speed:>10}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

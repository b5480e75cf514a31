"""Time and memory of `seq2seq preprocess` on the real corpora and on generated ones of any size.

    python benchmarks/preprocess.py multi30k
    python benchmarks/preprocess.py tatoeba [--num-proc 2]
    python benchmarks/preprocess.py generated --pairs 2000000 [--format tsv|text] [--no-streaming]

Each run preprocesses in a fresh child process, while this process samples the memory of the child and
of its own children (the `map` workers) from /proc. Printed (one JSON line): wall seconds of the
`preprocess` call and of the whole child (imports included), the child's peak RSS as the kernel counted it
(VmHWM: it includes pages of the memory-mapped Arrow files, which the kernel can drop at any time) and
the peak anonymous memory of the process tree (RssAnon: what really has to fit in RAM). Corpora and
outputs go under --work (default /tmp/seq2seq-bench), never into the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORK = Path("/tmp/seq2seq-bench")


def _status(pid: int) -> dict[str, int]:
    """kB figures of /proc/PID/status (VmRSS, VmHWM, RssAnon, ...); empty once the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    return {
        k: int(v.split()[0])
        for k, _, v in (line.partition(":") for line in lines)
        if v.strip().endswith("kB")
    }


def _tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            pids += _tree(int(child))
    return pids


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Run `job` in a child process and sample its memory until it ends."""
    child = subprocess.Popen(
        [sys.executable, __file__, "_child", json.dumps(job)], stdout=subprocess.PIPE, text=True
    )
    peak_anon = peak_tree_rss = 0
    while child.poll() is None:
        statuses = [_status(p) for p in _tree(child.pid)]
        peak_anon = max(peak_anon, sum(s.get("RssAnon", 0) for s in statuses))
        peak_tree_rss = max(peak_tree_rss, sum(s.get("VmRSS", 0) for s in statuses))
        time.sleep(0.02)
    out, _ = child.communicate()
    if child.returncode:
        sys.exit(f"preprocess failed (exit {child.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["peak_anon_mb"] = round(peak_anon / 1024)
    result["peak_tree_rss_mb"] = round(peak_tree_rss / 1024)
    return result


def run_child(job: dict[str, Any]) -> None:
    """Inside the child: import, preprocess, report time and the kernel's peak RSS."""
    start = time.perf_counter()
    from seq2seq.config import config_from_dict
    from seq2seq.data import preprocess

    imported = time.perf_counter()
    cfg = config_from_dict(job["recipe"], "benchmark")

    def log(line: str) -> None:
        print(f"{time.perf_counter() - imported:7.1f}s  {line}", file=sys.stderr)

    result = preprocess(cfg, Path(job["out"]), log=log, force=True)
    done = time.perf_counter()
    splits = result.manifest["splits"]
    report = {
        "corpus": job["name"],
        "train_pairs": splits["train"]["read"],
        "kept": splits["train"]["kept"],
        "num_proc": cfg.data.num_proc,
        "streaming": cfg.data.streaming,
        "format": cfg.data.format,
        "preprocess_s": round(done - imported, 1),
        "total_s": round(done - start, 1),
        "import_s": round(imported - start, 1),
        "peak_rss_mb": round(_status(os.getpid())["VmHWM"] / 1024),
        "vocab": result.manifest["vocab"],
    }
    print(json.dumps(report))


def _write_pairs(prefix: Path, pairs: list[tuple[str, str]]) -> str:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for side, lang in ((0, "en"), (1, "de")):
        with open(f"{prefix}.{lang}", "w", encoding="utf-8") as f:
            f.writelines(p[side] + "\n" for p in pairs)
    return str(prefix)


def tatoeba_splits(data: Path, work: Path) -> dict[str, str]:
    """Tatoeba has no split: ~1% of the unique English sentences (with all their translations) go to
    valid, ~1% to test, chosen by hash so that no English sentence is in two splits."""
    en = (data / "tatoeba-deu-eng" / "deu.en").read_text(encoding="utf-8").split("\n")[:-1]
    de = (data / "tatoeba-deu-eng" / "deu.de").read_text(encoding="utf-8").split("\n")[:-1]
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "valid": [], "test": []}
    for pair in zip(en, de, strict=True):
        bucket = int.from_bytes(hashlib.blake2b(pair[0].encode(), digest_size=4).digest(), "little") % 100
        splits["valid" if bucket == 0 else "test" if bucket == 1 else "train"].append(pair)
    return {name: _write_pairs(work / "tatoeba" / name, pairs) for name, pairs in splits.items()}


def _syllable_words(rng: random.Random, n: int) -> list[str]:
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def generate(path: Path, pairs: int, fmt: str, seed: int) -> None:
    """Random sentences of 3-20 words from a 5,000-word vocabulary; the target spells each word
    backwards in reverse order (a deterministic 'translation' with its own subwords)."""
    names = [path] if fmt == "tsv" else [Path(f"{path}.en"), Path(f"{path}.de")]
    if all(p.is_file() for p in names):
        return
    rng = random.Random(seed)
    words = _syllable_words(rng, 5_000)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open(p, "w", encoding="utf-8")) for p in names]
        for _ in range(pairs):
            src = rng.choices(words, k=rng.randint(3, 20))
            tgt = " ".join(w[::-1] for w in reversed(src))
            if fmt == "tsv":
                files[0].write(f"{' '.join(src)}\t{tgt}\n")
            else:
                files[0].write(" ".join(src) + "\n")
                files[1].write(tgt + "\n")


def job_for(args: argparse.Namespace) -> dict[str, Any]:
    data_cfg: dict[str, Any] = {"src_lang": "en", "tgt_lang": "de", "num_proc": args.num_proc}
    tok_cfg: dict[str, Any] = {}
    if args.corpus == "multi30k":
        root = args.data / "multi30k"
        data_cfg |= {"train": f"{root}/train", "valid": f"{root}/val", "test": f"{root}/test_2016_flickr"}
    elif args.corpus == "tatoeba":
        data_cfg |= tatoeba_splits(args.data, args.work)
    else:
        suffix = ".tsv" if args.format == "tsv" else ""
        names = {"train": args.pairs, "valid": 1000, "test": 1000}
        for seed, (split, n) in enumerate(names.items()):
            path = args.work / "generated" / f"{split}-{n}{suffix}"
            generate(path, n, args.format, seed)
            data_cfg[split] = str(path)
        data_cfg |= {"format": args.format, "streaming": args.streaming}
        tok_cfg["input_sentence_size"] = args.sample
    name = args.corpus if args.corpus != "generated" else f"generated-{args.pairs}"
    return {
        "name": name,
        "out": str(args.work / "out" / name),
        "recipe": {"data": data_cfg, "tokenizer": tok_cfg},
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_child":
        run_child(json.loads(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("corpus", choices=["multi30k", "tatoeba", "generated"])
    parser.add_argument("--pairs", type=int, default=200_000, help="generated: training pairs")
    parser.add_argument("--format", choices=["tsv", "text"], default="tsv", help="generated: file format")
    parser.add_argument("--streaming", action=argparse.BooleanOptionalAction, default=True, help="generated")
    parser.add_argument(
        "--sample", type=int, default=200_000, help="generated: tokenizer.input_sentence_size"
    )
    parser.add_argument("--num-proc", type=int, default=1, help="data.num_proc")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    parser.add_argument("--work", type=Path, default=WORK, help="generated corpora and outputs")
    args = parser.parse_args()
    print(json.dumps(measure(job_for(args))))


if __name__ == "__main__":
    main()

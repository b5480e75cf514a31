"""Load test of `seq2seq serve`: concurrent single-sentence clients against the offline batched throughput.

    python benchmarks/serve_load.py --model runs/multi30k-en-de/checkpoints/best.pt \\
        --src ../shared/data/multi30k/test_2016_flickr.en --beam 5 --clients 1 8 32 128

Starts the server on a free loopback port (fp32, CPU), translates the sentences offline once with
`Translator.translate` (same model, same beam: the reference outputs and the offline sentences/s), then for
each concurrency level sends the sentences one per request from that many clients (at most
`--max-sentences` requests and `--max-seconds` per level) and prints sentences/s, p50/p95/p99 latency,
errors, and responses that differ from the offline translation. Loopback only; nothing else is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from seq2seq import Translator
from seq2seq.runtime import tune_allocator
from seq2seq.serve.process import running_server
from seq2seq.textio import read_lines


@dataclass
class Level:
    clients: int
    sentences: int
    seconds: float
    latencies: list[float]
    errors: int
    mismatches: int

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_level(
    url: str, sentences: list[str], expected: list[str], clients: int, beam: int, max_seconds: float
) -> Level:
    queue = list(range(len(sentences)))[::-1]
    latencies: list[float] = []
    errors = mismatches = 0
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, mismatches
        while queue and time.monotonic() < deadline:
            i = queue.pop()
            start = time.monotonic()
            try:
                res = await http.post("/v1/translate", json={"text": sentences[i], "beam": beam})
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append(time.monotonic() - start)
            if res.status_code != 200:
                errors += 1
            elif res.json()["translations"][0]["text"] != expected[i]:
                mismatches += 1

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
        start = time.monotonic()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.monotonic() - start
    return Level(clients, len(latencies), seconds, latencies, errors, mismatches)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="checkpoint (.pt)")
    parser.add_argument("--src", required=True, help="source sentences, one per line")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--max-sentences", type=int, default=1000, help="sentences used (from the top)")
    parser.add_argument("--max-seconds", type=float, default=120, help="time limit per concurrency level")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `seq2seq serve` option")
    args = parser.parse_args()
    tune_allocator()
    sentences = [
        s for s in read_lines(Path(args.src), replace_invalid=True)[: args.max_sentences] if s.strip()
    ]

    translator = Translator.from_checkpoint(args.model, device="cpu")
    translator.translate(sentences[:16], beam=args.beam)  # warm-up
    start = time.perf_counter()
    expected = translator.translate(sentences, beam=args.beam)
    offline = len(sentences) / (time.perf_counter() - start)
    del translator
    print(f"{len(sentences)} sentences, beam {args.beam}; offline Translator.translate: {offline:.1f} sent/s")

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        with running_server([args.model], log, ["--no-access-log", *args.serve_arg]) as server:
            header = f"{'clients':>7} {'sent':>6} {'sent/s':>8} {'% offline':>9} {'p50 ms':>8} {'p95 ms':>8}"
            print(header + f" {'p99 ms':>8} {'errors':>6} {'differ':>6}")
            failed = False
            for clients in args.clients:
                level = asyncio.run(
                    run_level(server.url, sentences, expected, clients, args.beam, args.max_seconds)
                )
                rate = level.sentences / level.seconds if level.seconds else 0.0
                print(
                    f"{clients:>7} {level.sentences:>6} {rate:>8.1f} {100 * rate / offline:>8.0f}% "
                    f"{level.percentile(0.50):>8.1f} {level.percentile(0.95):>8.1f} "
                    f"{level.percentile(0.99):>8.1f} "
                    f"{level.errors:>6} {level.mismatches:>6}",
                    flush=True,
                )
                failed |= bool(level.errors or level.mismatches)
    if failed:
        print(
            "FAIL: some responses were errors or differed from the offline fp32 translation", file=sys.stderr
        )
        sys.exit(1)


if __name__ == "__main__":
    main()

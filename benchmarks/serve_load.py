"""Load test of `seq2seq serve`: concurrent single-sentence clients against the offline batched throughput.

    python benchmarks/serve_load.py --model runs/multi30k-en-de/checkpoints/best.pt \\
        --src ../shared/data/multi30k/test_2016_flickr.en --beam 5 --clients 1 8 32 128

Translates the sentences offline once with `Translator.translate` (same model, same beam, fp32 on CPU: the
reference outputs and the offline sentences/s), starts the server on a free loopback port, then for each
concurrency level sends the sentences one per request from that many clients (at most `--max-sentences`
requests and `--max-seconds` per level) and prints sentences/s, p50/p95/p99 latency, errors, responses
that differ from the offline translation, the mean number of sentences decoded together (from the
server's /metrics), and the CPU seconds the server and the load clients used.

The clients run in their own process, which imports nothing but the standard library: one asyncio task
per client, each a plain HTTP/1.1 keep-alive connection over a raw socket to 127.0.0.1 (no client
library), so that as little of the machine as possible goes to generating the load. Nothing but
127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REQUEST_TIMEOUT_S = 120.0
BROKEN = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError)
"""What a request can fail with on the client side: counted as an error."""
"""A response not complete by then counts as an error (the client reconnects)."""


@dataclass
class Level:
    clients: int
    sentences: int
    seconds: float
    latencies: list[float]
    errors: int
    mismatches: int
    client_cpu_s: float

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Connection:
    """One HTTP/1.1 keep-alive connection: POST a JSON body, read the status and the body."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (path.encode(), HOST.encode(), self.port, len(body))
            + body
        )
        status_line = await self.reader.readuntil(b"\r\n")
        length, close = 0, False
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        payload = await self.reader.readexactly(length)
        if close:
            self.close()
        return int(status_line.split(b" ", 2)[1]), payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_level(
    port: int, sentences: list[str], expected: list[str], clients: int, beam: int, max_seconds: float
) -> Level:
    """Each client sends the next unsent sentence, waits for its answer, and repeats, until every sentence
    was sent or `max_seconds` passed (requests in flight then are still awaited)."""
    todo = list(range(len(sentences)))[::-1]
    latencies: list[float] = []
    errors = mismatches = 0
    deadline = time.monotonic() + max_seconds
    cpu = time.process_time()

    async def client() -> None:
        nonlocal errors, mismatches
        conn = Connection(port)
        try:
            while todo and time.monotonic() < deadline:
                i = todo.pop()
                body = json.dumps({"text": sentences[i], "beam": beam}).encode()
                start = time.monotonic()
                try:
                    post = conn.post("/v1/translate", body)
                    status, payload = await asyncio.wait_for(post, REQUEST_TIMEOUT_S)
                except BROKEN:
                    errors += 1
                    conn.close()
                    continue
                latencies.append(time.monotonic() - start)
                if status != 200:
                    errors += 1
                elif json.loads(payload)["translations"][0]["text"] != expected[i]:
                    mismatches += 1
        finally:
            conn.close()

    start = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.monotonic() - start
    return Level(clients, len(latencies), seconds, latencies, errors, mismatches, time.process_time() - cpu)


def client_process(job: Path, out: Path) -> None:
    """The load clients' side: `job` (JSON) gives the port, sentences, expected outputs and one level."""
    spec = json.loads(job.read_text("utf-8"))
    args = (spec[k] for k in ("port", "sentences", "expected", "clients", "beam", "max_seconds"))
    level = asyncio.run(run_level(*args))
    out.write_text(json.dumps(asdict(level)), "utf-8")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of a process and its live children (the decoder processes of
    `serve --decoders N`; Linux /proc)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # a process that just ended
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def batch_totals(port: int) -> tuple[float, float]:
    """(batches, sentences) decoded so far, from the server's /metrics."""
    from urllib.request import urlopen

    with urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as res:
        text = res.read().decode()
    found = dict(re.findall(r"^seq2seq_batch_sentences_(sum|count)\{[^}]*\} (\S+)$", text, re.M))
    return float(found.get("count", 0)), float(found.get("sum", 0))


def measure(port: int, server_pid: int, spec: dict[str, Any], tmp: Path) -> tuple[Level, float, float]:
    """One level in a fresh client process: the level, server CPU seconds, mean sentences per batch."""
    job, out = tmp / "job.json", tmp / "level.json"
    job.write_text(json.dumps({**spec, "port": port}), "utf-8")
    batches, decoded = batch_totals(port)
    server_cpu = process_cpu_s(server_pid)
    subprocess.run([sys.executable, __file__, "--client-job", str(job), str(out)], check=True)
    server_cpu = process_cpu_s(server_pid) - server_cpu
    batches_after, decoded_after = batch_totals(port)
    level = Level(**json.loads(out.read_text("utf-8")))
    mean_batch = (decoded_after - decoded) / max(1.0, batches_after - batches)
    return level, server_cpu, mean_batch


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--client-job":
        client_process(Path(sys.argv[2]), Path(sys.argv[3]))
        return
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
    parser.add_argument(
        "--server-threads", type=int, default=0, help="torch CPU threads of the server (OMP_NUM_THREADS)"
    )
    args = parser.parse_args()

    from seq2seq import Translator
    from seq2seq.runtime import tune_allocator
    from seq2seq.serve.process import running_server
    from seq2seq.textio import read_lines

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

    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        env = {"OMP_NUM_THREADS": str(args.server_threads)} if args.server_threads else None
        with running_server([args.model], log, ["--no-access-log", *args.serve_arg], env=env) as server:
            header = f"{'clients':>7} {'sent':>6} {'sent/s':>8} {'% offline':>9} {'p50 ms':>8} {'p95 ms':>8}"
            print(
                header + f" {'p99 ms':>8} {'errors':>6} {'differ':>6} {'batch':>6} {'server cpu':>10} "
                f"{'client cpu':>10}"
            )
            for clients in args.clients:
                spec = {"sentences": sentences, "expected": expected, "clients": clients, "beam": args.beam,
                        "max_seconds": args.max_seconds}  # fmt: skip
                level, server_cpu, mean_batch = measure(server.port, server.process.pid, spec, Path(tmp))
                rate = level.sentences / level.seconds if level.seconds else 0.0
                print(
                    f"{clients:>7} {level.sentences:>6} {rate:>8.1f} {100 * rate / offline:>8.0f}% "
                    f"{level.percentile(0.50):>8.1f} {level.percentile(0.95):>8.1f} "
                    f"{level.percentile(0.99):>8.1f} {level.errors:>6} {level.mismatches:>6} "
                    f"{mean_batch:>6.1f} {server_cpu:>9.1f}s {level.client_cpu_s:>9.1f}s",
                    flush=True,
                )
                failed |= bool(level.errors or level.mismatches)
    print(
        "batch: mean sentences per batched search; cpu: seconds used by the server and by the load clients "
        "(a separate process) during the level"
    )
    if failed:
        print(
            "FAIL: some responses were errors or differed from the offline fp32 translation", file=sys.stderr
        )
        sys.exit(1)


if __name__ == "__main__":
    main()

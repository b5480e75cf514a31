"""`seq2seq serve` as a child process on a free loopback port, yielded once ready (for tests, benchmarks and
anyone embedding the server in a larger program)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from seq2seq.errors import Seq2SeqError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    def rss_kib(self) -> int:
        """Resident memory of the server process (Linux /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


def seq2seq_command() -> list[str]:
    script = Path(sys.executable).with_name("seq2seq")
    return [str(script)] if script.exists() else [sys.executable, "-m", "seq2seq"]


@contextmanager
def running_server(
    models: Sequence[str],
    log: Path,
    args: Sequence[str] = (),
    start_s: float = 120,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """`seq2seq serve --model ... --port FREE`, yielded once GET /health is 200; killed if alive at exit.
    `env` adds to (or overrides) this process's environment, e.g. `{"OMP_NUM_THREADS": "1"}`."""
    port = free_port()
    cmd = [*seq2seq_command(), "serve", *(a for m in models for a in ("--model", m)), "--port", str(port),
           "--device", "cpu", *args]  # fmt: skip
    with open(log, "wb") as sink:
        environ = {**os.environ, **(env or {})}
        process = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=environ)
    server = Server(process, f"http://127.0.0.1:{port}", port, log)
    try:
        end = time.monotonic() + start_s
        while True:
            if process.poll() is not None:
                raise Seq2SeqError(f"seq2seq serve exited {process.returncode}: {log.read_text()[-2000:]}")
            try:
                with urlopen(f"{server.url}/health", timeout=2) as res:
                    if res.status == 200:
                        break
            except (URLError, OSError):  # not listening yet, or 503 while loading
                pass
            if time.monotonic() > end:
                raise Seq2SeqError(f"seq2seq serve not ready after {start_s} s: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)

"""Loading the models and running the app on uvicorn: `seq2seq serve` without the option parsing.

SIGTERM (or Ctrl-C) stops accepting connections, lets the requests in flight finish, then returns, so the
command exits 0.
"""

from __future__ import annotations

import importlib.util
import re
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

import uvicorn

from seq2seq.errors import Seq2SeqError
from seq2seq.search_processes import default_decoders as default_decoders_on
from seq2seq.serve.app import create_app
from seq2seq.serve.options import ServeOptions
from seq2seq.translate import Translator

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def parse_model_specs(specs: Sequence[str]) -> dict[str, Path]:
    """`NAME=CKPT` or `CKPT` (named after its run directory, runs/NAME/checkpoints/best.pt -> NAME)."""
    models: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            ckpt = Path(spec)
            name = ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else ckpt.stem
        if not NAME.fullmatch(name):
            raise Seq2SeqError(
                f"--model {spec}: model name {name!r} must be letters, digits, '.', '_' or '-'"
            )
        if name in models:
            raise Seq2SeqError(f"--model {spec}: a model named {name!r} is already given; use NAME=CKPT")
        if not Path(path).is_file():
            raise Seq2SeqError(f"--model {spec}: checkpoint {path} not found")
        models[name] = Path(path)
    if not models:
        raise Seq2SeqError("--model: give at least one checkpoint (--model CKPT or --model NAME=CKPT)")
    return models


def load_translators(
    models: dict[str, Path], device: str = "auto", quantize: str = "", bf16: bool = False
) -> dict[str, Translator]:
    return {name: Translator.from_checkpoint(path, device, quantize, bf16) for name, path in models.items()}


def default_decoders(translators: Iterable[Translator]) -> int:
    """Batched searches side by side per model: one per CPU thread torch uses (one per core by default)
    when every model is on the CPU, one on a GPU (its kernels queue behind each other anyway)."""
    return min((default_decoders_on(t.device) for t in translators), default=1)


def http_stack() -> tuple[str, str]:
    """uvicorn's (event loop, HTTP parser): uvloop and httptools, the C implementations the `serve` extra
    installs, else asyncio and the pure-Python h11. With them, 32 concurrent single-sentence clients got
    213, 209 and 207 sentences/s against 203, 186 and 204 with asyncio and h11 (benchmarks/serve_load.py,
    alternated, alone on 2 cores)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def run_server(
    translators: dict[str, Translator],
    host: str = "127.0.0.1",
    port: int = 8000,
    opts: ServeOptions | None = None,
    access_log: TextIO | None = sys.stderr,
) -> None:
    """Serve until SIGTERM/SIGINT; returns normally after a graceful shutdown."""
    app = create_app(translators, opts, access_log)
    loop, http = http_stack()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=loop,
        http=http,
        access_log=False,
        log_level="warning",
        lifespan="on",
        server_header=False,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal it caught once it has shut down; with this handler in place that ends
    # the process normally (exit 0) instead of by the signal
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise Seq2SeqError(f"serve: could not start on {host}:{port} (port in use, or the warm-up failed)")

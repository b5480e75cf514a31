"""`seq2seq serve`: an HTTP translation server with dynamic batching (needs the `serve` extra).

    from seq2seq.serve import create_app, ServeOptions
    app = create_app({"numbers-de": Translator.from_checkpoint("runs/numbers-de/checkpoints/best.pt")})

`create_app` is a Starlette ASGI app (run it with any ASGI server); `run_server` runs it on uvicorn.
"""

from __future__ import annotations

from seq2seq.serve.app import create_app
from seq2seq.serve.options import ServeOptions
from seq2seq.serve.server import default_decoders, load_translators, parse_model_specs, run_server

__all__ = [
    "ServeOptions",
    "create_app",
    "default_decoders",
    "load_translators",
    "parse_model_specs",
    "run_server",
]

"""The server's limits and batching settings, in one frozen dataclass with the defaults of `seq2seq serve`."""

from __future__ import annotations

from dataclasses import dataclass, fields

from seq2seq.errors import Seq2SeqError


@dataclass(frozen=True)
class ServeOptions:
    """Every bound the server enforces; each has a `seq2seq serve --OPTION` of the same name."""

    max_body_bytes: int = 1 << 20
    """Request body size (413 above it)."""
    max_lines: int = 256
    """Lines (sentences) per request (422 above it)."""
    max_line_chars: int = 2000
    """Characters per line (422 above it)."""
    max_beam: int = 16
    """Largest `beam` a request may ask for (422 above it)."""
    max_queue: int = 256
    """Requests waiting per model; a full queue answers 503 with Retry-After."""
    batch_tokens: int = 4000
    """Token budget of one batched search: source tokens x beam summed over the requests taken together."""
    decoders: int = 1
    """Batched searches of one model that run side by side: on the CPU each in a process of its own with
    one torch thread (`seq2seq.serve.workers`), on a GPU in threads. `seq2seq serve` picks one per CPU
    core on the CPU, one on a GPU (`default_decoders`)."""
    max_wait_ms: float = 5.0
    """How long the worker waits for more requests to join a batch once one is waiting."""
    request_timeout_s: float = 30.0
    """A request not answered by then (queued + decoding) gets 504."""
    body_timeout_s: float = 10.0
    """A client that has not sent its whole body by then gets 408 (slow clients)."""
    api_key: str = ""
    """When set, every endpoint but /health needs `Authorization: Bearer <api_key>` (401 otherwise)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "api_key" and value <= 0:
                raise Seq2SeqError(f"--{f.name.replace('_', '-')}: must be positive, got {value}")

"""The ASGI application: routes, request limits, API-key check, metrics and the JSON-lines access log.

`create_app(translators)` serves already-loaded `Translator`s (one `Batcher` each); `seq2seq.serve.server`
loads checkpoints and runs it on uvicorn. Every error answer is JSON `{"error": {"code", "message",
"limit"?}}`; bad input is always a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from typing import Any, TextIO

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seq2seq.errors import Seq2SeqError
from seq2seq.inspect.sentence import Trace
from seq2seq.search import SearchOptions
from seq2seq.serve.batcher import Batcher, Result
from seq2seq.serve.errors import HTTPError
from seq2seq.serve.languages import language_list
from seq2seq.serve.metrics import Metrics
from seq2seq.serve.options import ServeOptions
from seq2seq.serve.payload import parse_inspect, parse_libre, parse_onmt, parse_translate
from seq2seq.translate import Candidate, Translation, Translator

log = logging.getLogger("seq2seq.serve")

WARM_UP = "1"
"""The line each model translates once before /health says ready."""


@dataclass
class ServerState:
    batchers: dict[str, Batcher]
    opts: ServeOptions
    metrics: Metrics = field(default_factory=Metrics)
    ready: bool = False

    @property
    def default(self) -> str:
        return next(iter(self.batchers))

    def batcher(self, name: str | None) -> Batcher:
        if name is None:
            name = self.default
        if name not in self.batchers:
            raise HTTPError(404, f"model {name!r} not found (serving: {', '.join(self.batchers)})")
        return self.batchers[name]


def _error(exc: HTTPError) -> JSONResponse:
    return JSONResponse(exc.body(), exc.status, headers=exc.headers)


async def read_body(request: Request, opts: ServeOptions) -> bytes:
    """The body, at most `max_body_bytes` (413) and within `body_timeout_s` (408)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > opts.max_body_bytes:
        raise HTTPError(413, _body_limit(opts), "max_body_bytes")
    chunks: list[bytes] = []
    size = 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > opts.max_body_bytes:
                raise HTTPError(413, _body_limit(opts), "max_body_bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), opts.body_timeout_s)
    except TimeoutError:
        raise HTTPError(408, f"body not received within body_timeout_s ({opts.body_timeout_s:g} s)") from None
    return b"".join(chunks)


def _body_limit(opts: ServeOptions) -> str:
    return f"body: larger than max_body_bytes ({opts.max_body_bytes} bytes)"


def _search(batcher: Batcher, settings: dict[str, Any]) -> SearchOptions:
    try:
        return batcher.translator.options(**settings)
    except Seq2SeqError as exc:
        raise HTTPError(422, str(exc)) from None


def translation_json(t: Translation, opts: SearchOptions) -> dict[str, Any]:
    """One line's result: text and score; the n-best list and the attention matrix when asked for."""
    best = t.candidates[0] if t.candidates else None
    out: dict[str, Any] = {
        "text": t.text,
        "score": round(best.score, 4) if best else None,
        "log_prob": round(best.log_prob, 4) if best else None,
    }
    if opts.n_best > 1:
        out["n_best"] = [
            {"text": c.text, "score": round(c.score, 4), "log_prob": round(c.log_prob, 4)}
            for c in t.candidates
        ]
    if opts.return_attention:
        weights = best.attention.tolist() if best is not None and best.attention is not None else []
        out["attention"] = {
            "source_tokens": [*t.source_tokens, "</s>"] if best else [],
            "target_tokens": [*best.tokens, "</s>"] if best else [],
            "weights": [[round(w, 4) for w in row] for row in weights],
        }
    return out


def trace_json(trace: Trace, translation: str, digits: int = 4) -> dict[str, Any]:
    """A `Trace` as JSON: tokens (EOS included), the translation and every named array as nested lists,
    floats rounded to `digits` decimals to keep the body small."""
    return {
        "src_tokens": trace.src_tokens,
        "tgt_tokens": trace.tgt_tokens,
        "translation": translation,
        "cell": trace.cell,
        "forced": trace.forced,
        "truncated": trace.truncated,
        "arrays": {name: np.round(a.astype(np.float64), digits).tolist() for name, a in trace.arrays.items()},
    }


def _inspect(
    translator: Translator, sentence: str, target: str | None, beam: int | None, grads: bool
) -> tuple[Trace, str]:
    try:
        trace = translator.inspect(sentence, target, beam, grads)
    except Seq2SeqError as exc:  # an ensemble, a quantized model: the tracer says why
        raise HTTPError(422, str(exc)) from None
    return trace, translator.tokenizer.tgt.decode_pieces(trace.tgt_tokens[:-1])


def _timing(result: Result, start: float) -> dict[str, float]:
    return {
        "queue": round(result.queue_ms, 3),
        "decode": round(result.decode_ms, 3),
        "total": round(1000 * (time.monotonic() - start), 3),
    }


def create_app(
    translators: Mapping[str, Translator], opts: ServeOptions | None = None, access_log: TextIO | None = None
) -> Starlette:
    """An ASGI app serving `translators` (name -> Translator; the first is the default model)."""
    if not translators:
        raise Seq2SeqError("serve: give at least one model")
    opts = opts or ServeOptions()
    metrics = Metrics()
    state = ServerState({n: Batcher(n, t, opts, metrics) for n, t in translators.items()}, opts, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for batcher in state.batchers.values():
            batcher.start()
        for batcher in state.batchers.values():
            await batcher.submit([WARM_UP], batcher.translator.options())
        state.ready = True
        yield
        state.ready = False
        for batcher in state.batchers.values():
            await batcher.stop()

    async def page(request: Request) -> Response:
        return HTMLResponse(resources.files("seq2seq.serve").joinpath("page.html").read_text("utf-8"))

    async def health(request: Request) -> Response:
        if not state.ready:
            return JSONResponse({"status": "loading"}, 503, headers={"Retry-After": "1"})
        return JSONResponse({"status": "ready", "models": list(state.batchers)})

    async def models(request: Request) -> Response:
        listed = []
        for name, b in state.batchers.items():
            t = b.translator
            listed.append(
                {
                    "name": name,
                    "source": t.cfg.data.src_lang,
                    "target": t.cfg.data.tgt_lang,
                    "default_beam": t.cfg.decode.beam,
                    "device": str(t.device),
                    "precision": "bf16" if t.bf16 else "fp32",
                    "queue_depth": b.depth(),
                }
            )
        return JSONResponse({"models": listed, "default": state.default})

    async def languages(request: Request) -> Response:
        return JSONResponse(language_list(_pair(b) for b in state.batchers.values()))

    async def prometheus(request: Request) -> Response:
        depth = {n: b.depth() for n, b in state.batchers.items()}
        text = metrics.render(depth, lambda: state.ready)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def translate(request: Request) -> Response:
        start = time.monotonic()
        req = parse_translate(await read_body(request, opts), opts)
        batcher = state.batcher(req.model)
        search = _search(batcher, req.search)
        result = await batcher.submit(req.lines, search)
        return JSONResponse(
            {
                "translations": [translation_json(t, search) for t in result.translations],
                "model": batcher.name,
                "timing_ms": _timing(result, start),
            }
        )

    async def inspect(request: Request) -> Response:
        start = time.monotonic()
        req = parse_inspect(await read_body(request, opts), opts)
        batcher = state.batcher(req.model)
        trace, text = await batcher.exclusive(
            lambda: _inspect(batcher.translator, req.sentence, req.target, req.beam, req.gradients)
        )
        return JSONResponse(
            {
                "model": batcher.name,
                **trace_json(trace, text),
                "timing_ms": {"total": round(1000 * (time.monotonic() - start), 3)},
            }
        )

    async def libre(request: Request) -> Response:
        req = parse_libre(await read_body(request, opts), opts)
        batcher = _libre_model(state, req.source, req.target)
        result = await batcher.submit(req.lines, batcher.translator.options())
        texts = [t.text for t in result.translations]
        return JSONResponse({"translatedText": texts if req.as_list else "\n".join(texts)})

    async def onmt(request: Request) -> Response:
        items = parse_onmt(await read_body(request, opts), opts)
        model_id = items[0].model_id  # like OpenNMT-py's server: the first item's id picks the model
        names = list(state.batchers)
        if isinstance(model_id, int):
            if not 0 <= model_id < len(names):
                raise HTTPError(
                    404, f"model id {model_id} not found (ids 0..{len(names) - 1}: {', '.join(names)})"
                )
            model_id = names[model_id]
        batcher = state.batcher(model_id)
        search = batcher.translator.options()
        result = await batcher.submit([item.src for item in items], search)
        return JSONResponse(
            [
                [
                    {"src": item.src, "tgt": c.text, "n_best": search.n_best, "pred_score": round(c.score, 4)}
                    for item, t in zip(items, result.translations, strict=True)
                    for c in (t.candidates or [_EMPTY])
                ]
            ]
        )

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/languages", languages, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/v1/translate", _guard(translate), methods=["POST"]),
        Route("/v1/inspect", _guard(inspect), methods=["POST"]),
        Route("/translate", _guard(libre), methods=["POST"]),
        Route("/translator/translate", _guard(onmt), methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _starlette_error},  # type: ignore[dict-item]
        middleware=[Middleware(Gate, state=state, known={r.path for r in routes}, access_log=access_log)],
    )
    app.state.server = state
    return app


_EMPTY = Candidate("", 0.0, 0.0, [])
"""What OpenNMT-py answers for an empty line."""


def _guard(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except HTTPError as exc:
            return _error(exc)

    return guarded


async def _starlette_error(request: Request, exc: HTTPException) -> Response:
    message = {404: f"{request.url.path}: no such endpoint", 405: f"{request.method} not allowed here"}
    return _error(
        HTTPError(
            exc.status_code, message.get(exc.status_code, str(exc.detail)), headers=dict(exc.headers or {})
        )
    )


def _pair(batcher: Batcher) -> tuple[str, str]:
    """The model's (source, target) language codes: its recipe's `data.src_lang`, `data.tgt_lang`."""
    data = batcher.translator.cfg.data
    return data.src_lang, data.tgt_lang


def _libre_model(state: ServerState, source: str, target: str) -> Batcher:
    """The model named `source-target`, else the one whose languages match ("auto" matches any source)."""
    named = state.batchers.get(f"{source}-{target}")
    if named is not None:
        return named
    for batcher in state.batchers.values():
        src, tgt = _pair(batcher)
        if source in ("auto", src) and target in ("auto", tgt):
            return batcher
    served = ", ".join("-".join(_pair(b)) for b in state.batchers.values())
    raise HTTPError(400, f"{source}-{target}: no model for this language pair (serving: {served})")


class Gate:
    """Outermost layer: API-key check, a JSON 500 for bugs, metrics and one access-log line per request."""

    def __init__(self, app: ASGIApp, state: ServerState, known: set[str], access_log: TextIO | None) -> None:
        self.app, self.state, self.known, self.access_log = app, state, known, access_log
        self.key = state.opts.api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        status = 0
        path = scope.get("path", "")

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self.key and path != "/health" and not self._authorized(scope):
                error = HTTPError(401, "missing or wrong API key: send Authorization: Bearer <key>")
                error.headers["WWW-Authenticate"] = "Bearer"
                await _error(error)(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        except Exception:  # a bug, not bad input: log it, answer in JSON, keep serving
            log.exception("error while answering %s %s", scope.get("method"), path)
            if status == 0:
                await _error(HTTPError(500, "internal error (see the server log)"))(
                    scope, receive, send_status
                )
        finally:
            seconds = time.monotonic() - start
            self.state.metrics.request(path if path in self.known else "other", status, seconds)
            if self.access_log is not None:
                self._log(scope, path, status, seconds)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)
        return False

    def _log(self, scope: Scope, path: str, status: int, seconds: float) -> None:
        client = scope.get("client")
        record = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "client": f"{client[0]}:{client[1]}" if client else None,
            "method": scope.get("method"),
            "path": path,
            "status": status,
            "duration_ms": round(1000 * seconds, 3),
        }
        assert self.access_log is not None
        self.access_log.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.access_log.flush()

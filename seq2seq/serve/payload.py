"""Request bodies -> validated values: JSON, the line rules of `seq2seq translate`, types and limits.

Every problem is an `HTTPError` naming the field (or the limit): 400 for malformed JSON and wrong types,
422 for values out of range and requests over a per-request limit. Nothing here touches a model.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

from seq2seq.serve.errors import HTTPError
from seq2seq.serve.options import ServeOptions
from seq2seq.textio import iter_lines, single_line

SEARCH_FIELDS: dict[str, tuple[type, ...]] = {
    "beam": (int,),
    "n_best": (int,),
    "length_penalty": (int, float),
    "penalty": (str,),
    "stop": (str,),
    "max_len_a": (int, float),
    "max_len_b": (int,),
    "min_len": (int,),
    "no_unk": (bool,),
    "attention": (bool,),
}
"""Search settings a request may give, with the JSON types each accepts (booleans are not numbers)."""

SEARCH_MAXIMA: dict[str, float] = {
    "length_penalty": 10.0,
    "max_len_a": 10.0,
    "max_len_b": 1024,
    "min_len": 1024,
}
"""Upper bounds that keep one request from holding a worker for long (beam and n_best: `max_beam`)."""


@dataclass(frozen=True)
class TranslateRequest:
    lines: list[str]
    model: str | None = None
    search: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for `Translator.options` (only those the request gave)."""


def parse_json(body: bytes) -> Any:
    """The decoded body; invalid UTF-8, malformed JSON or NaN/Infinity are 400."""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise HTTPError(400, f"body: invalid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise HTTPError(
            400, f"body: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise HTTPError(400, "body: JSON nested too deeply") from None


def _reject_constant(name: str) -> Any:
    raise HTTPError(400, f"body: {name} is not valid JSON")


def _is(value: Any, types: tuple[type, ...]) -> bool:
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def text_lines(value: Any, name: str, opts: ServeOptions) -> list[str]:
    """A string is split into lines exactly as `seq2seq translate` reads a file (on "\\n" only, a trailing
    "\\r" dropped; "" is one empty line); a list holds one sentence per item, line breaks inside an item
    becoming spaces. Either way one result comes back per line, in order."""
    if isinstance(value, str):
        lines = list(iter_lines(io.BytesIO(_utf8(value, name)), name)) or [""]
    elif isinstance(value, list):
        if not value:
            raise HTTPError(422, f"{name}: empty list; give at least one sentence")
        if len(value) > opts.max_lines:
            raise HTTPError(422, _too_many(name, len(value), opts), "max_lines")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise HTTPError(400, f"{name}[{i}]: expected a string, got {_json_type(item)}")
            _utf8(item, f"{name}[{i}]")
        lines = [single_line(item) for item in value]
    else:
        raise HTTPError(400, f"{name}: expected a string or a list of strings, got {_json_type(value)}")
    if len(lines) > opts.max_lines:
        raise HTTPError(422, _too_many(name, len(lines), opts), "max_lines")
    for i, line in enumerate(lines):
        if len(line) > opts.max_line_chars:
            raise HTTPError(
                422,
                f"{name}: line {i + 1} has {len(line)} characters, more than max_line_chars "
                f"({opts.max_line_chars}); split it",
                "max_line_chars",
            )
    return lines


def _too_many(name: str, count: int, opts: ServeOptions) -> str:
    return f"{name}: {count} lines, more than max_lines ({opts.max_lines}); send them in several requests"


def _utf8(text: str, name: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPError(
            400, f"{name}: contains a lone surrogate (\\ud800-\\udfff), not valid Unicode"
        ) from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}.get(
        type(value), "an object"
    )


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HTTPError(400, f"{name}: expected a JSON object, got {_json_type(value)}")
    return value


def search_settings(obj: dict[str, Any], opts: ServeOptions) -> dict[str, Any]:
    """`Translator.options` keywords from the request's search fields (type-checked, beam bounded)."""
    settings: dict[str, Any] = {}
    for name, types in SEARCH_FIELDS.items():
        if name not in obj or obj[name] is None:
            continue
        value = obj[name]
        if not _is(value, types):
            raise HTTPError(400, f"{name}: expected {_type_names(types)}, got {_json_type(value)}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value < 0:
                raise HTTPError(422, f"{name}: must not be negative, got {value}")
            if name in SEARCH_MAXIMA and value > SEARCH_MAXIMA[name]:
                raise HTTPError(
                    422, f"{name}: {value} is more than the server allows ({SEARCH_MAXIMA[name]:g})"
                )
        settings["block_unk" if name == "no_unk" else name] = value
    for name in ("beam", "n_best"):
        if settings.get(name, 1) < 1:
            raise HTTPError(422, f"{name}: must be at least 1, got {settings[name]}")
    if settings.get("beam", 1) > opts.max_beam:
        raise HTTPError(422, f"beam: {settings['beam']} is more than max_beam ({opts.max_beam})", "max_beam")
    if settings.get("n_best", 1) > opts.max_beam:
        raise HTTPError(
            422, f"n_best: {settings['n_best']} is more than max_beam ({opts.max_beam})", "max_beam"
        )
    return settings


def _type_names(types: tuple[type, ...]) -> str:
    names = {int: "an integer", str: "a string", bool: "a boolean"}
    return "a number" if float in types else names[types[0]]


def _model_name(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise HTTPError(400, f"{key}: expected a model name (string), got {_json_type(value)}")
    return value


def parse_translate(body: bytes, opts: ServeOptions) -> TranslateRequest:
    """`POST /v1/translate`: `{"text": str | [str], "model"?: str, "beam"?: int, ...}`."""
    obj = _object(parse_json(body), "body")
    unknown = sorted(set(obj) - {"text", "model", *SEARCH_FIELDS})
    if unknown:
        allowed = ", ".join(["text", "model", *SEARCH_FIELDS])
        raise HTTPError(400, f"{unknown[0]}: unknown field (allowed: {allowed})")
    if "text" not in obj:
        raise HTTPError(400, 'text: missing; send {"text": "a sentence"} or {"text": ["one", "two"]}')
    return TranslateRequest(
        text_lines(obj["text"], "text", opts), _model_name(obj, "model"), search_settings(obj, opts)
    )


@dataclass(frozen=True)
class LibreRequest:
    lines: list[str]
    as_list: bool
    """`q` was a list: `translatedText` is a list too."""
    source: str
    target: str


def parse_libre(body: bytes, opts: ServeOptions) -> LibreRequest:
    """LibreTranslate's `POST /translate`: `{"q": str | [str], "source": lang|"auto", "target": lang}`.
    Its `format` and `api_key` fields are accepted (text only; the key is checked by the header)."""
    obj = _object(parse_json(body), "body")
    if "q" not in obj:
        raise HTTPError(400, "q: missing; send the text to translate as q")
    langs = []
    for key in ("source", "target"):
        value = obj.get(key, "auto")
        if not isinstance(value, str):
            raise HTTPError(400, f"{key}: expected a language code (string), got {_json_type(value)}")
        langs.append(value)
    if obj.get("format", "text") not in ("text",):
        raise HTTPError(422, "format: only 'text' is supported")
    q = obj["q"]
    lines = text_lines(q, "q", opts)
    return LibreRequest(lines, isinstance(q, list), langs[0], langs[1])


@dataclass(frozen=True)
class OnmtItem:
    src: str
    model_id: int | str | None


def parse_onmt(body: bytes, opts: ServeOptions) -> list[OnmtItem]:
    """OpenNMT-py's `POST /translator/translate`: `[{"src": str, "id": model id}, ...]`."""
    items = parse_json(body)
    if not isinstance(items, list):
        raise HTTPError(
            400, f'body: expected a list like [{{"src": "...", "id": 0}}], got {_json_type(items)}'
        )
    if not items:
        raise HTTPError(422, 'body: empty list; give at least one {"src": ...}')
    if len(items) > opts.max_lines:
        raise HTTPError(422, _too_many("body", len(items), opts), "max_lines")
    out = []
    for i, raw in enumerate(items):
        item = _object(raw, f"[{i}]")
        if not isinstance(item.get("src"), str):
            raise HTTPError(400, f"[{i}].src: expected a string, got {_json_type(item.get('src'))}")
        model_id = item.get("id")
        if model_id is not None and not _is(model_id, (int, str)):
            raise HTTPError(
                400, f"[{i}].id: expected a model id (integer or name), got {_json_type(model_id)}"
            )
        (line,) = text_lines([item["src"]], f"[{i}].src", opts)
        out.append(OnmtItem(line, model_id))
    return out


@dataclass(frozen=True)
class InspectRequest:
    sentence: str
    target: str | None = None
    model: str | None = None
    beam: int | None = None
    gradients: bool = False


INSPECT_FIELDS = ("text", "target", "model", "beam", "gradients")


def _one_sentence(obj: dict[str, Any], name: str, opts: ServeOptions) -> str:
    value = obj[name]
    if not isinstance(value, str):
        raise HTTPError(400, f"{name}: expected one sentence (a string), got {_json_type(value)}")
    lines = text_lines(value, name, opts)
    if len(lines) != 1:
        raise HTTPError(422, f"{name}: {len(lines)} lines; inspect traces one sentence, send one line")
    return lines[0]


def parse_inspect(body: bytes, opts: ServeOptions) -> InspectRequest:
    """`POST /v1/inspect`: `{"text": str, "target"?: str, "model"?: str, "beam"?: int, "gradients"?: bool}`
    (one sentence)."""
    obj = _object(parse_json(body), "body")
    unknown = sorted(set(obj) - set(INSPECT_FIELDS))
    if unknown:
        raise HTTPError(400, f"{unknown[0]}: unknown field (allowed: {', '.join(INSPECT_FIELDS)})")
    if "text" not in obj:
        raise HTTPError(400, 'text: missing; send {"text": "a sentence"}')
    sentence = _one_sentence(obj, "text", opts)
    if not sentence.strip():
        raise HTTPError(422, "text: empty sentence; there is nothing to inspect")
    target = _one_sentence(obj, "target", opts) if obj.get("target") is not None else None
    gradients = obj.get("gradients", False)
    if gradients is None:
        gradients = False
    if not isinstance(gradients, bool):
        raise HTTPError(400, f"gradients: expected a boolean, got {_json_type(gradients)}")
    beam = search_settings({"beam": obj.get("beam")}, opts).get("beam")
    return InspectRequest(sentence, target, _model_name(obj, "model"), beam, gradients)

"""The server in-process (Starlette's TestClient): every endpoint, every error, batching equivalence."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient

from seq2seq.errors import Seq2SeqError
from seq2seq.search import SearchOptions
from seq2seq.serve import ServeOptions, create_app, parse_model_specs
from seq2seq.serve.errors import HTTPError
from seq2seq.serve.languages import language_list
from seq2seq.serve.payload import text_lines
from seq2seq.translate import Translation, Translator


@pytest.fixture(scope="module")
def translator(checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(checkpoint, device="cpu")


def make_client(translator: Translator, **options: Any) -> TestClient:
    opts = ServeOptions(**{"max_wait_ms": 20.0, **options})
    return TestClient(
        create_app({"tiny": translator, "second": translator}, opts), raise_server_exceptions=True
    )


@pytest.fixture(scope="module")
def client(translator: Translator) -> Iterator[TestClient]:
    with make_client(translator, max_lines=8, max_line_chars=50, max_body_bytes=4096) as c:
        yield c


def offline(translator: Translator, lines: list[str], **opts: Any) -> list[str]:
    return translator.translate(lines, **opts)


def test_health_models_and_page(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ready", "models": ["tiny", "second"]}
    models = client.get("/v1/models").json()
    assert models["default"] == "tiny"
    assert [m["name"] for m in models["models"]] == ["tiny", "second"]
    assert {"source", "target", "default_beam", "device", "precision"} <= set(models["models"][0])
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/translate" in page.text and not re.search(r"(src|href)=\"https?://", page.text)


def test_translate_matches_offline_line_by_line(client: TestClient, translator: Translator) -> None:
    lines = ["123", "", "4721", "7"]
    res = client.post("/v1/translate", json={"text": lines, "beam": 3})
    assert res.status_code == 200
    body = res.json()
    assert body["model"] == "tiny" and set(body["timing_ms"]) == {"queue", "decode", "total"}
    assert [t["text"] for t in body["translations"]] == offline(translator, lines, beam=3)
    assert body["translations"][1] == {"text": "", "score": None, "log_prob": None}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12\n34", ["12", "34"]),
        ("12\r\n34\n", ["12", "34"]),
        ("", [""]),
        ("12\u2028 34", ["12\u2028 34"]),  # only "\n" ends a line, as in seq2seq translate
        (["12\n34", "5"], ["12 34", "5"]),  # a list item is one sentence
    ],
)
def test_line_rules(text: Any, expected: list[str]) -> None:
    assert text_lines(text, "text", ServeOptions()) == expected


def test_string_text_gives_one_result_per_line(client: TestClient, translator: Translator) -> None:
    res = client.post("/v1/translate", json={"text": "12\n\n34\n"}).json()
    assert [t["text"] for t in res["translations"]] == offline(translator, ["12", "", "34"])


def test_n_best_and_attention(client: TestClient) -> None:
    res = client.post("/v1/translate", json={"text": "4721", "beam": 3, "n_best": 3, "attention": True})
    (t,) = res.json()["translations"]
    assert len(t["n_best"]) == 3 and t["n_best"][0]["text"] == t["text"]
    scores = [c["score"] for c in t["n_best"]]
    assert scores == sorted(scores, reverse=True)
    att = t["attention"]
    assert len(att["weights"]) == len(att["target_tokens"]) and att["target_tokens"][-1] == "</s>"
    assert all(len(row) == len(att["source_tokens"]) for row in att["weights"])
    assert all(abs(sum(row) - 1) < 1e-2 for row in att["weights"])


def test_second_model_by_name(client: TestClient) -> None:
    assert client.post("/v1/translate", json={"text": "5", "model": "second"}).json()["model"] == "second"


def test_libretranslate_shape(client: TestClient, translator: Translator) -> None:
    res = client.post("/translate", json={"q": "4721", "source": "auto", "target": "tgt"})
    assert res.json() == {"translatedText": offline(translator, ["4721"])[0]}
    res = client.post("/translate", json={"q": ["1", "2"], "source": "src", "target": "tgt"})
    assert res.json() == {"translatedText": offline(translator, ["1", "2"])}
    res = client.post("/translate", json={"q": "1", "source": "fr", "target": "tgt"})
    assert res.status_code == 400 and "fr-tgt" in res.json()["error"]["message"]


def test_opennmt_shape(client: TestClient, translator: Translator) -> None:
    res = client.post("/translator/translate", json=[{"src": "12", "id": 0}, {"src": "", "id": 0}])
    assert res.status_code == 200
    (group,) = res.json()
    assert [g["tgt"] for g in group] == offline(translator, ["12", ""])
    assert group[0]["src"] == "12" and group[0]["n_best"] == 1 and isinstance(group[0]["pred_score"], float)
    assert client.post("/translator/translate", json=[{"src": "1", "id": 7}]).status_code == 404
    assert client.post("/translator/translate", json=[{"src": "1", "id": "second"}]).status_code == 200


def test_metrics_count_requests_batches_and_tokens(client: TestClient) -> None:
    client.post("/v1/translate", json={"text": "99"})
    client.post("/v1/translate", json={"text": 5})
    text = client.get("/metrics").text
    assert re.search(r'seq2seq_requests_total\{endpoint="/v1/translate",status="200"\} [1-9]', text)
    assert re.search(r'seq2seq_requests_total\{endpoint="/v1/translate",status="400"\} [1-9]', text)
    assert 'seq2seq_request_duration_seconds_bucket{endpoint="/v1/translate",le="+Inf"}' in text
    assert re.search(r'seq2seq_batch_sentences_count\{model="tiny"\} [1-9]', text)
    assert re.search(r'seq2seq_tokens_translated_total\{model="tiny",side="src"\} [1-9]', text)
    assert 'seq2seq_queue_depth{model="tiny"} 0' in text and "seq2seq_ready 1" in text


def test_languages_in_libretranslate_shape(client: TestClient) -> None:
    # both served models are the tiny src -> tgt model: each language once, a target-only one with no targets
    assert client.get("/languages").json() == [
        {"code": "src", "name": "src", "targets": ["tgt"]},
        {"code": "tgt", "name": "tgt", "targets": []},
    ]


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], []),
        ([("en", "de")], [("en", "English", ["de"]), ("de", "German", [])]),
        (
            [("en", "de"), ("en", "fr"), ("de", "en"), ("en", "de")],
            [("en", "English", ["de", "fr"]), ("de", "German", ["en"]), ("fr", "French", [])],
        ),
        ([("xx", "en")], [("xx", "xx", ["en"]), ("en", "English", [])]),
    ],
)
def test_language_list(pairs: list[tuple[str, str]], expected: list[tuple[str, str, list[str]]]) -> None:
    assert language_list(pairs) == [{"code": c, "name": n, "targets": t} for c, n, t in expected]


def test_metrics_count_inspect_requests(client: TestClient) -> None:
    assert client.post("/v1/inspect", json={"text": "12"}).status_code == 200
    assert client.post("/v1/inspect", json={"text": ""}).status_code == 422
    text = client.get("/metrics").text
    assert re.search(r'seq2seq_requests_total\{endpoint="/v1/inspect",status="200"\} [1-9]', text)
    assert re.search(r'seq2seq_requests_total\{endpoint="/v1/inspect",status="422"\} [1-9]', text)
    observed = re.search(r'seq2seq_request_duration_seconds_count\{endpoint="/v1/inspect"\} (\d+)', text)
    assert observed is not None and int(observed.group(1)) >= 2
    client.get("/languages")
    text = client.get("/metrics").text
    assert re.search(r'seq2seq_requests_total\{endpoint="/languages",status="200"\} [1-9]', text)


ERRORS: list[tuple[str, Any, int, str]] = [
    # (path, body: bytes sent raw or an object sent as JSON, status, text in the message or the limit)
    ("/v1/translate", b"{", 400, "malformed JSON"),
    ("/v1/translate", b"\xff\xfe{}", 400, "invalid UTF-8"),
    ("/v1/translate", b'{"text": NaN}', 400, "NaN"),
    ("/v1/translate", b"[" * 100000 + b"]" * 100000, 413, "max_body_bytes"),
    ("/v1/translate", [1, 2], 400, "expected a JSON object"),
    ("/v1/translate", {}, 400, "text: missing"),
    ("/v1/translate", {"text": 5}, 400, "text: expected a string or a list"),
    ("/v1/translate", {"text": [1]}, 400, "text[0]: expected a string"),
    ("/v1/translate", {"text": "1", "beam": "5"}, 400, "beam: expected an integer"),
    ("/v1/translate", {"text": "1", "beam": True}, 400, "beam: expected an integer"),
    ("/v1/translate", {"text": "1", "attention": 1}, 400, "attention: expected a boolean"),
    ("/v1/translate", {"text": "1", "model": 3}, 400, "model: expected a model name"),
    ("/v1/translate", {"text": "1", "bean": 3}, 400, "bean: unknown field"),
    ("/v1/translate", b'{"text": "\\ud800"}', 400, "lone surrogate"),
    ("/v1/translate", {"text": []}, 422, "empty list"),
    ("/v1/translate", {"text": ["1"] * 9}, 422, "max_lines"),
    ("/v1/translate", {"text": "1\n" * 9}, 422, "max_lines"),
    ("/v1/translate", {"text": "1" * 51}, 422, "max_line_chars"),
    ("/v1/translate", {"text": "1", "beam": 0}, 422, "beam: must be at least 1"),
    ("/v1/translate", {"text": "1", "beam": 17}, 422, "max_beam"),
    ("/v1/translate", {"text": "1", "beam": 2, "n_best": 3}, 422, "n_best <= beam"),
    ("/v1/translate", {"text": "1", "min_len": -1}, 422, "must not be negative"),
    ("/v1/translate", {"text": "1", "penalty": "x"}, 422, "penalty"),
    ("/v1/translate", {"text": "1", "stop": "never"}, 422, "--stop: 'never' is not one of"),
    ("/v1/translate", {"text": "1", "stop": 1}, 400, "stop: expected a string"),
    ("/v1/translate", {"text": "1", "max_len_b": 10**40}, 422, "max_len_b: 1"),
    ("/v1/translate", {"text": "1", "max_len_a": 11.5}, 422, "max_len_a: 11.5 is more than"),
    ("/v1/translate", {"text": "1", "model": "nope"}, 404, "'nope' not found"),
    ("/translate", {"source": "auto"}, 400, "q: missing"),
    ("/translate", {"q": "1", "target": 5}, 400, "target: expected a language code"),
    ("/translate", {"q": "1", "format": "html"}, 422, "format"),
    ("/translator/translate", {"src": "1"}, 400, "expected a list"),
    ("/translator/translate", [], 422, "empty list"),
    ("/translator/translate", [{"id": 0}], 400, "[0].src: expected a string"),
    ("/translator/translate", [{"src": "1", "id": 1.5}], 400, "[0].id"),
    ("/translator/translate", ["1"], 400, "[0]: expected a JSON object"),
    ("/nowhere", {}, 404, "no such endpoint"),
]


@pytest.mark.parametrize(("path", "body", "status", "says"), ERRORS)
def test_errors_are_json_naming_the_problem(
    client: TestClient, path: str, body: Any, status: int, says: str
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    res = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert res.status_code == status, res.text
    error = res.json()["error"]
    assert error["code"] == status
    assert says in error["message"] or says == error.get("limit")


def test_wrong_method_is_405(client: TestClient) -> None:
    res = client.get("/v1/translate")
    assert res.status_code == 405 and res.json()["error"]["code"] == 405


def test_api_key(translator: Translator) -> None:
    with make_client(translator, api_key="s3cret") as c:
        assert c.get("/health").status_code == 200
        for path in ("/", "/v1/models", "/languages", "/metrics"):
            assert c.get(path).status_code == 401
        assert c.post("/v1/translate", json={"text": "1"}).status_code == 401
        wrong = c.post("/v1/translate", json={"text": "1"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        ok = c.post("/v1/translate", json={"text": "1"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_full_queue_is_503_and_timeout_is_504(translator: Translator) -> None:
    gate, entered = threading.Event(), threading.Event()
    original = translator.translate_batch

    def slow(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        gate.wait(10)
        return original(*args, **kwargs)

    with make_client(translator, max_queue=1, request_timeout_s=0.5, max_wait_ms=1.0) as c:
        translator.translate_batch = slow  # type: ignore[method-assign]
        try:
            results: dict[str, Any] = {}
            first = threading.Thread(
                target=lambda: results.update(a=c.post("/v1/translate", json={"text": "1"}))
            )
            first.start()
            # the first is being decoded (stuck), the second waits in the queue, the third finds it full
            second = threading.Thread(
                target=lambda: results.update(b=c.post("/v1/translate", json={"text": "2"}))
            )
            assert entered.wait(5)
            second.start()
            _wait_until(lambda: c.app.state.server.batchers["tiny"].depth() == 1)  # type: ignore[attr-defined]
            full = c.post("/v1/translate", json={"text": "3"})
            assert full.status_code == 503 and full.headers["retry-after"] == "1"
            assert full.json()["error"]["limit"] == "max_queue"
            first.join()
            second.join()
            assert (
                results["a"].status_code == 504
                and results["a"].json()["error"]["limit"] == "request_timeout_s"
            )
            assert results["b"].status_code == 504
        finally:
            gate.set()
            translator.translate_batch = original  # type: ignore[method-assign]
        assert c.post("/v1/translate", json={"text": "4"}).status_code == 200  # and it recovers


def _wait_until(condition: Any, seconds: float = 5.0) -> None:
    import time

    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def test_concurrent_requests_are_batched_and_match_alone(translator: Translator) -> None:
    """fp32: each sentence's translation is the same alone as batched with others of other lengths."""
    lines = ["7", "4721", "1999", "870516", "21", "40213", "3", "123456"]
    alone = {}
    with make_client(translator, max_wait_ms=1.0) as c:
        for line in lines:
            alone[line] = c.post("/v1/translate", json={"text": line, "n_best": 2, "beam": 3}).json()
    together: dict[str, Any] = {}
    with make_client(translator, max_wait_ms=300.0) as c:
        threads = [
            threading.Thread(
                target=lambda s=line: together.update(
                    {s: c.post("/v1/translate", json={"text": s, "n_best": 2, "beam": 3}).json()}
                )
            )
            for line in lines
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        metrics = c.get("/metrics").text
    for line in lines:
        assert together[line]["translations"] == alone[line]["translations"], line
    # the eight requests were merged: fewer batches than requests (warm-up batch included)
    batches = int(re.search(r'seq2seq_batch_requests_count\{model="tiny"\} (\d+)', metrics).group(1))  # type: ignore[union-attr]
    assert batches < len(lines)


def test_model_specs(tmp_path: Path) -> None:
    ckpt = tmp_path / "runs" / "numbers-de" / "checkpoints" / "best.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    assert parse_model_specs([str(ckpt), f"b={ckpt}"]) == {"numbers-de": ckpt, "b": ckpt}
    for specs, says in (([f"a={ckpt}", f"a={ckpt}"], "already given"), (["x=nope.pt"], "not found"),
                        ([f"bad name={ckpt}"], "model name"), ([], "at least one")):  # fmt: skip
        with pytest.raises(Seq2SeqError, match=says):
            parse_model_specs(specs)


def test_options_must_be_positive() -> None:
    with pytest.raises(Seq2SeqError, match="--max-lines"):
        ServeOptions(max_lines=0)


def test_http_error_body() -> None:
    assert HTTPError(413, "too big", "max_body_bytes").body() == {
        "error": {"code": 413, "message": "too big", "limit": "max_body_bytes"}
    }


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--model", "nope.pt"], "checkpoint nope.pt not found"),
        (["--model", "a b=nope.pt"], "model name"),
        (["--model", "x.pt", "--max-lines", "0"], "--max-lines: must be positive"),
        (["--model", "x.pt", "--decoders", "-1"], "--decoders: must be 0"),
    ],
)
def test_cli_serve_errors_are_one_line(args: list[str], says: str) -> None:
    from typer.testing import CliRunner

    from seq2seq.cli import app

    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2
    assert says in result.output and "Traceback" not in result.output


def test_not_ready_before_warm_up(translator: Translator) -> None:
    """Without the lifespan (no worker, no warm-up) /health is 503 and translations are refused, not hung."""
    c = TestClient(create_app({"tiny": translator}))
    health = c.get("/health")
    assert health.status_code == 503 and health.json() == {"status": "loading"}
    assert c.post("/v1/translate", json={"text": "1"}).status_code == 503
    assert "seq2seq_ready 0" in c.get("/metrics").text


def test_inspect_traces_the_translation(client: TestClient, translator: Translator) -> None:
    res = client.post("/v1/inspect", json={"text": "4721", "gradients": True})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["model"] == "tiny" and body["forced"] is False and "total" in body["timing_ms"]
    assert (
        body["translation"]
        == client.post("/v1/translate", json={"text": "4721"}).json()["translations"][0]["text"]
    )
    s, t = len(body["src_tokens"]), len(body["tgt_tokens"])
    assert body["src_tokens"][-1] == body["tgt_tokens"][-1] == "</s>"
    arrays = body["arrays"]
    assert len(arrays["attention"]) == t and {len(row) for row in arrays["attention"]} == {s}
    assert len(arrays["log_prob"]) == t
    encoder = [n for n in arrays if n.startswith("encoder.") and not n.endswith(("grad_h", "grad_c"))]
    decoder = [n for n in arrays if n.startswith("decoder.")]
    assert encoder and decoder and any(n.endswith("grad_h") for n in arrays)
    assert all(len(arrays[n]) == s for n in encoder) and all(len(arrays[n]) == t for n in decoder)
    for row in arrays["attention"]:
        assert sum(row) == pytest.approx(1.0, abs=1e-3)


def test_inspect_forced_target(client: TestClient) -> None:
    body = client.post("/v1/inspect", json={"text": "12", "target": "zwölf zwölf", "model": "second"}).json()
    assert body["model"] == "second" and body["forced"] is True
    assert len(body["arrays"]["attention"]) == len(body["tgt_tokens"])
    assert body["translation"] == "zwölf zwölf"


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"text": ""}, 422, "text"),
        ({"text": "   "}, 422, "text"),
        ({"text": "1\n2"}, 422, "text"),
        ({"text": ["1"]}, 400, "text"),
        ({"text": "1", "target": 3}, 400, "target"),
        ({"text": "1", "gradients": "yes"}, 400, "gradients"),
        ({"text": "1", "beam": 0}, 422, "beam"),
        ({"text": "1", "model": 1}, 400, "model"),
        ({"target": "1"}, 400, "text"),
        ({"text": "1", "attention": True}, 400, "attention"),
        ({"text": "1" * 51}, 422, "max_line_chars"),
        ({"text": "1", "model": "nope"}, 404, "nope"),
    ],
)
def test_inspect_errors(client: TestClient, payload: dict[str, Any], status: int, field: str) -> None:
    res = client.post("/v1/inspect", json=payload)
    assert res.status_code == status, res.text
    assert field in res.json()["error"]["message"]


def test_inspect_malformed_body_and_api_key(client: TestClient, translator: Translator) -> None:
    res = client.post("/v1/inspect", content=b"{nope")
    assert res.status_code == 400 and "malformed JSON" in res.json()["error"]["message"]
    with make_client(translator, api_key="k") as keyed:
        assert keyed.post("/v1/inspect", json={"text": "1"}).status_code == 401
        ok = keyed.post("/v1/inspect", json={"text": "1"}, headers={"Authorization": "Bearer k"})
        assert ok.status_code == 200


def test_inspect_quantized_model_is_422(checkpoint: Path) -> None:
    quantized = Translator.from_checkpoint(checkpoint, device="cpu", quantize="int8")
    with TestClient(create_app({"q": quantized}, ServeOptions(max_wait_ms=1.0))) as c:
        res = c.post("/v1/inspect", json={"text": "12"})
        assert res.status_code == 422 and "cannot trace this model" in res.json()["error"]["message"]


def test_answered_requests_rejoin_the_waiting_ones(translator: Translator) -> None:
    """Closed-loop clients in two groups (the second arrives while the first is decoded): after a search
    the worker waits for the requests it answered, so both groups share the following batches instead of
    alternating (8 batches of 4)."""
    import asyncio

    from seq2seq.serve.batcher import Batcher
    from seq2seq.serve.metrics import Metrics

    async def run() -> Metrics:
        metrics = Metrics()
        batcher = Batcher("t", translator, ServeOptions(max_wait_ms=1.0), metrics)
        batcher.start()
        opts = translator.options()

        async def client(line: str, delay: float) -> None:
            await asyncio.sleep(delay)
            for _ in range(4):
                await batcher.submit([line], opts)

        await asyncio.gather(*(client(str(i), 0.0 if i < 4 else 0.002) for i in range(8)))
        await batcher.stop()
        return metrics

    metrics = asyncio.run(run())
    assert metrics.batch_requests.totals["t"] <= 5  # 4, then 8, 8, 8, then 4
    assert metrics.sentences["t"] == 32


def test_workers_share_the_waiting_requests_and_decode_side_by_side(translator: Translator) -> None:
    """Two workers, 8 closed-loop clients: on the CPU each worker is a process forked after the parent
    decoded with all its threads (the offline reference), each takes about half of what is waiting or in
    flight, both decode at once, and every answer equals the offline translation."""
    import asyncio
    import threading
    import time

    import torch

    from seq2seq.serve.batcher import Batcher
    from seq2seq.serve.metrics import Metrics
    from seq2seq.serve.server import default_decoders

    assert default_decoders([translator]) == torch.get_num_threads()
    lines = [str(n) for n in range(100, 132)]
    expected = offline(translator, lines)
    running, seen = [0], {"overlap": 0, "sizes": []}
    lock = threading.Lock()

    async def run() -> tuple[Metrics, list[str], Batcher]:
        metrics = Metrics()
        batcher = Batcher("t", translator, ServeOptions(max_wait_ms=5.0, decoders=2), metrics)
        batcher.start()
        assert batcher.processes is not None and len(set(batcher.processes.pids())) == 2
        decode = batcher.processes.translate_batch

        def tracked(sentences: list[str], opts: SearchOptions) -> list[Translation]:
            with lock:
                running[0] += 1
                seen["overlap"] = max(seen["overlap"], running[0])
            seen["sizes"].append(len(sentences))
            time.sleep(0.02)  # long enough for the other worker's search to start meanwhile
            try:
                return decode(sentences, opts)
            finally:
                with lock:
                    running[0] -= 1

        batcher.processes.translate_batch = tracked  # type: ignore[method-assign]
        opts = translator.options()
        answers: dict[str, str] = {}

        async def client(mine: list[str]) -> None:
            for line in mine:
                result = await batcher.submit([line], opts)
                answers[line] = result.translations[0].text

        await asyncio.gather(*(client(lines[i::8]) for i in range(8)))
        await batcher.stop()
        return metrics, [answers[line] for line in lines], batcher

    metrics, answers, batcher = asyncio.run(run())
    assert answers == expected
    assert batcher.processes is None  # stopped
    assert seen["overlap"] == 2
    assert metrics.sentences["t"] == 32 and sum(seen["sizes"]) == 32
    assert max(seen["sizes"]) <= 4  # a worker's share: at most 8 requests waiting or in flight, 2 workers


def test_a_killed_decoder_process_fails_its_batch_and_is_replaced(translator: Translator) -> None:
    import asyncio
    import os
    import signal

    from seq2seq.serve.batcher import Batcher
    from seq2seq.serve.metrics import Metrics

    async def run() -> list[str]:
        batcher = Batcher("t", translator, ServeOptions(max_wait_ms=1.0, decoders=2), Metrics())
        batcher.start()
        assert batcher.processes is not None
        first = batcher.processes.pids()[0]
        assert first is not None
        os.kill(first, signal.SIGKILL)
        outcomes = []
        for line in ["7", "8", "9"]:  # one at a time: the first goes to the killed process
            try:
                result = await batcher.submit([line], translator.options())
                outcomes.append(result.translations[0].text)
            except RuntimeError as exc:
                outcomes.append(str(exc))
        pids = batcher.processes.pids()
        await batcher.stop()
        assert first not in pids and len(set(pids)) == 2
        return outcomes

    outcomes = asyncio.run(run())
    assert (
        "a decoder process ended (exit code -9" in outcomes[0] and "a new one took its place" in outcomes[0]
    )
    assert outcomes[1:] == offline(translator, ["8", "9"])


def test_inspect_never_runs_beside_a_search_on_a_shared_model(
    translator: Translator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the workers are threads sharing one model (a GPU, or no fork), an inspect trace holds every
    worker's slot; beside decoder processes it holds one."""
    import asyncio

    from seq2seq.serve.batcher import Batcher
    from seq2seq.serve.metrics import Metrics

    async def held_while_running(fork: bool) -> tuple[bool, int]:
        methods = ["fork", "spawn"] if fork else ["spawn"]
        monkeypatch.setattr("multiprocessing.get_all_start_methods", lambda: methods)
        batcher = Batcher("t", translator, ServeOptions(decoders=2), Metrics())
        batcher.start()
        try:
            free = await batcher.exclusive(lambda: batcher.model_slots._value)
            return batcher.processes is not None, free
        finally:
            await batcher.stop()

    assert asyncio.run(held_while_running(fork=False)) == (False, 0)
    assert asyncio.run(held_while_running(fork=True)) == (True, 1)

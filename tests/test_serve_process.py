"""`seq2seq serve` as a real process: it answers, SIGTERM lets the request in flight finish, exit 0; and a
fuzz run of hostile requests that all get a 4xx while the server stays up and its memory does not grow."""

from __future__ import annotations

import json
import random
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from seq2seq.serve.process import running_server  # noqa: E402


def test_serves_and_sigterm_finishes_the_request_in_flight(checkpoint: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    # a long max wait keeps the request waiting in the batcher when SIGTERM arrives
    with running_server([f"tiny={checkpoint}"], log, ["--max-wait-ms", "1500"]) as server:
        quick = httpx.post(f"{server.url}/v1/translate", json={"text": ["12", "7"]}, timeout=30)
        assert quick.status_code == 200 and len(quick.json()["translations"]) == 2
        result: dict[str, Any] = {}
        client = threading.Thread(
            target=lambda: result.update(
                r=httpx.post(f"{server.url}/v1/translate", json={"text": "4721"}, timeout=30)
            )
        )
        client.start()
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        client.join(30)
        assert result["r"].status_code == 200 and result["r"].json()["translations"][0]["text"]
        assert server.process.wait(30) == 0
        with pytest.raises(httpx.TransportError):  # no longer accepting
            httpx.get(f"{server.url}/health", timeout=2)
    lines = log.read_text().splitlines()
    access = [json.loads(line) for line in lines if line.startswith("{")]
    assert {"time", "client", "method", "path", "status", "duration_ms"} <= set(access[-1])
    assert [a["status"] for a in access if a["path"] == "/v1/translate"] == [200, 200]
    assert "Traceback" not in log.read_text()


def children(pid: int) -> list[int]:
    """Live child processes of `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def wait_gone(pids: list[int], seconds: float = 10) -> list[int]:
    end = time.monotonic() + seconds
    while (alive := [p for p in pids if Path(f"/proc/{p}").exists()]) and time.monotonic() < end:
        time.sleep(0.1)
    return alive


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_decoder_processes_translate_and_end_with_the_server(
    checkpoint: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    with running_server([f"tiny={checkpoint}"], tmp_path / "serve.log", ["--decoders", "2"]) as server:
        workers = children(server.process.pid)
        assert len(workers) == 2
        res = httpx.post(f"{server.url}/v1/translate", json={"text": ["12", "7"]}, timeout=30)
        assert res.status_code == 200 and len(res.json()["translations"]) == 2
        server.process.send_signal(stop)
        server.process.wait(30)
        assert wait_gone(workers) == []


def hostile_requests(rng: random.Random, count: int) -> list[tuple[str, str, bytes]]:
    """(method, path, body) triples, each wrong in some way; none is a valid translation request."""
    good_fields: dict[str, Any] = {"text": "12", "beam": 2}
    wrong_values: list[Any] = [True, -1, 1.5, 10**40, "x", [], {}, [None], [[1]], {"a": 1}]
    cases = []
    for i in range(count):
        kind = i % 14
        path = rng.choice(["/v1/translate", "/translate", "/translator/translate"])
        if kind == 0:  # random bytes, invalid UTF-8 and NUL bytes included
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
            body = b"\xff" + body
        elif kind == 1:  # truncated JSON
            full = json.dumps({"text": ["1"] * rng.randrange(1, 5), "beam": 2}).encode()
            body = full[: rng.randrange(1, len(full) - 1)]
        elif kind == 2:  # raw NUL and control bytes inside a JSON string
            body = b'{"text": "1\x002", "q": "\x01"}'
        elif kind == 3:  # a wrong type or value for one field
            path = "/v1/translate"
            field = rng.choice(
                ["text", "beam", "n_best", "length_penalty", "max_len_b", "attention", "model"]
            )
            value = rng.choice(
                [
                    v
                    for v in wrong_values
                    if not (field in ("text", "model") and v == "x")
                    and not (field == "length_penalty" and v == 1.5)
                ]
            )
            body = json.dumps({**good_fields, field: value}).encode()
        elif kind == 4:  # empty lists
            body = (
                b'{"text": []}'
                if path == "/v1/translate"
                else b'{"q": []}'
                if path == "/translate"
                else b"[]"
            )
        elif kind == 5:  # 10k lines
            body = json.dumps({"text": "1\n" * 10_000, "q": ["1"] * 10_000}).encode()
            if path == "/translator/translate":
                body = json.dumps([{"src": "1"}] * 10_000).encode()
        elif kind == 6:  # a huge body
            body = b'{"text": "' + b"1" * (2 << 20) + b'"}'
        elif kind == 7:  # deep nesting
            body = b"[" * 50_000 + b"]" * 50_000
        elif kind == 8:  # an over-long line
            body = json.dumps({"text": "1" * 5000, "q": "1" * 5000}).encode()
            if path == "/translator/translate":
                body = json.dumps([{"src": "1" * 5000}]).encode()
        elif kind == 9:  # no such endpoint / wrong method
            return_path = rng.choice(
                ["/v2/translate", "/" + "a" * 1000, "/translate/../etc/passwd", "/v1/models/x"]
            )
            cases.append(("POST", return_path, b"{}"))
            continue
        elif kind == 10:
            cases.append((rng.choice(["PUT", "DELETE", "PATCH"]), path, b"{}"))
            continue
        elif kind == 11:  # NaN, Infinity, lone surrogates
            body = rng.choice([b'{"text": NaN}', b'{"text": "1", "beam": Infinity}', b'{"text": "\\udfff"}'])
            path = "/v1/translate"
        elif kind == 12:  # unknown model / language pair
            body = {"/v1/translate": b'{"text": "1", "model": "nope"}',
                    "/translate": b'{"q": "1", "target": "xx"}',
                    "/translator/translate": b'[{"src": "1", "id": 99}]'}[path]  # fmt: skip
        else:  # wrong top-level shape
            body = rng.choice([b"1", b'"text"', b"null", b"[1, 2]", b'{"src": "1"}', b""])
        cases.append(("POST", path, body))
    return cases


def slow_client(port: int, out: list[bytes]) -> None:
    """Declares a 100-byte body, sends 5 bytes, then nothing: the server must answer 408, not wait forever."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"tex")  # fmt: skip
        out.append(s.recv(4096))


def fuzz(checkpoint: Path, tmp_path: Path, per_round: int, slow_clients: int) -> None:
    """Two rounds of `per_round` hostile requests with `slow_clients` stalled uploads alongside: every answer
    4xx, the stalled ones 408, the server still translating afterwards, RSS not grown by the second round."""
    rng = random.Random(12)
    args = ["--body-timeout", "1", "--no-access-log"]
    with running_server([f"tiny={checkpoint}"], tmp_path / "serve.log", args) as server:
        slow: list[bytes] = []
        slow_threads = [
            threading.Thread(target=slow_client, args=(server.port, slow)) for _ in range(slow_clients)
        ]
        for t in slow_threads:
            t.start()
        statuses: list[int] = []
        rss: list[int] = []
        with httpx.Client(base_url=server.url, timeout=20) as client:
            for _ in range(2):  # the first round warms up allocator pools; the second must not grow memory
                for method, path, body in hostile_requests(rng, per_round):
                    statuses.append(client.request(method, path, content=body).status_code)
                rss.append(server.rss_kib())
            ok = client.post("/v1/translate", json={"text": "12"})
        for t in slow_threads:
            t.join(20)
        assert ok.status_code == 200, "the server still translates"
        bad = [s for s in statuses if not 400 <= s < 500]
        assert len(statuses) == 2 * per_round and not bad, f"non-4xx answers: {sorted(set(bad))}"
        assert len(slow) == slow_clients and all(b.startswith(b"HTTP/1.1 408") for b in slow), slow
        assert rss[1] - rss[0] < 20_000, f"RSS grew from {rss[0]} to {rss[1]} KiB"
        assert server.process.poll() is None
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_fuzz_quick(checkpoint: Path, tmp_path: Path) -> None:
    """Every kind of hostile request, a few of each (the default suite)."""
    fuzz(checkpoint, tmp_path, per_round=84, slow_clients=4)


@pytest.mark.slow
def test_fuzz_1000_hostile_requests(checkpoint: Path, tmp_path: Path) -> None:
    """1,100 hostile requests and 8 stalled uploads (about 30 s on a loaded 2-core machine)."""
    fuzz(checkpoint, tmp_path, per_round=550, slow_clients=8)


def _serve_load() -> Any:
    import importlib.util

    path = Path(__file__).parent.parent / "benchmarks" / "serve_load.py"
    spec = importlib.util.spec_from_file_location("serve_load", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["serve_load"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_load_clients_count_answers_errors_and_differences(checkpoint: Path, tmp_path: Path) -> None:
    """benchmarks/serve_load.py's raw-socket clients, in their own process, against a real server: every
    sentence is sent once; a 4xx answer is an error, an answer unlike the expected text a difference."""
    from seq2seq.translate import Translator

    serve_load = _serve_load()
    sentences = ["12", "7", "4721", "1999", "21", "40213", "3", "123456789012"]  # the last is too long
    expected = Translator.from_checkpoint(checkpoint, device="cpu").translate(sentences, beam=2)
    expected[1] = "not what the model says"
    spec = {"sentences": sentences, "expected": expected, "clients": 3, "beam": 2, "max_seconds": 60}
    with running_server([f"tiny={checkpoint}"], tmp_path / "serve.log", ["--max-line-chars", "10"]) as server:
        level, server_cpu, mean_batch = serve_load.measure(server.port, server.process.pid, spec, tmp_path)
    assert (level.clients, level.sentences, level.errors, level.mismatches) == (3, 8, 1, 1)
    assert len(level.latencies) == 8 and level.percentile(0.99) >= level.percentile(0.5) > 0
    assert server_cpu > 0 and level.client_cpu_s > 0 and 1 <= mean_batch <= 3


def test_the_serve_extra_gives_uvicorn_its_c_event_loop_and_http_parser() -> None:
    from seq2seq.serve.server import http_stack

    assert http_stack() == ("uvloop", "httptools")

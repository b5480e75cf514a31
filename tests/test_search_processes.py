"""Searches side by side in forked processes (`translate --decoders`): same results as one search in
this process, whatever the search, and nothing lost when a process dies."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq import Translator
from seq2seq.search_processes import default_decoders, fork_available
from seq2seq.translate import MIN_PARALLEL_BUDGET, Translation, parallel_budget

pytestmark = pytest.mark.skipif(not fork_available(), reason="search processes are forked (no fork here)")

BATCH_TOKENS = 90
"""Small batches, so that the sentences below make several (and the processes are used)."""


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    rng = random.Random(0)
    lines = [
        " ".join(str(rng.randrange(10 ** rng.randrange(1, 6))) for _ in range(rng.randrange(1, 4)))
        for _ in range(60)
    ]
    return [*lines[:20], "", *lines[20:]]


def translate(translator: Translator, sentences: list[str], **options: object) -> list[Translation]:
    return translator.translate_batch(sentences, translator.options(**options), BATCH_TOKENS)  # type: ignore[arg-type]


def same(a: list[Translation], b: list[Translation]) -> bool:
    """The same candidates; scores and attention equal up to float rounding (the processes cut the
    input into other batches, and a sentence's sums may then add up in another order)."""
    for x, y in zip(a, b, strict=True):
        if [c.text for c in x.candidates] != [c.text for c in y.candidates]:
            return False
        for c, d in zip(x.candidates, y.candidates, strict=True):
            if c.score != pytest.approx(d.score, rel=1e-5) or c.log_prob != pytest.approx(
                d.log_prob, rel=1e-5
            ):
                return False
            if (c.attention is None) != (d.attention is None):
                return False
            if c.attention is not None and not torch.allclose(c.attention, d.attention, atol=1e-5):
                return False
    return True


@pytest.fixture(scope="module")
def pair(checkpoint: Path) -> tuple[Translator, Translator]:
    """One translator searching here, one with two search processes."""
    here = Translator.from_checkpoint(checkpoint, device="cpu")
    side_by_side = Translator.from_checkpoint(checkpoint, device="cpu")
    side_by_side.decoders = 2
    yield here, side_by_side
    side_by_side.close()


@pytest.mark.parametrize(
    "options",
    [
        {"beam": 1},
        {"beam": 3},
        {"beam": 3, "n_best": 3, "attention": True},
        {"beam": 2, "shortlist": False},
        {"beam": 1, "min_len": 2, "block_unk": True},
        {"sample": True, "n_best": 2, "seed": 7},
    ],
    ids=["greedy", "beam", "n-best-attention", "no-shortlist", "constraints", "sampling"],
)
def test_search_processes_give_what_one_search_here_gives(
    pair: tuple[Translator, Translator], sentences: list[str], options: dict[str, object]
) -> None:
    here, side_by_side = pair
    expected = translate(here, sentences, **options)
    got = translate(side_by_side, sentences, **options)
    assert side_by_side._processes is not None and side_by_side._processes.count == 2
    assert os.getpid() not in side_by_side._processes.pids()
    assert [t.source for t in got] == sentences
    assert same(got, expected)


def test_the_processes_really_search(pair: tuple[Translator, Translator], sentences: list[str]) -> None:
    """Stopped processes hold up the translation: the batches went to them, not to this process."""
    _, side_by_side = pair
    translate(side_by_side, sentences, beam=2)
    assert side_by_side._processes is not None
    pids = [p for p in side_by_side._processes.pids() if p is not None]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        done = threading.Event()
        thread = threading.Thread(target=lambda: (translate(side_by_side, sentences, beam=2), done.set()))
        thread.start()
        assert not done.wait(1.0)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    thread.join(30)
    assert done.is_set()


def test_a_process_that_dies_loses_nothing(pair: tuple[Translator, Translator], sentences: list[str]) -> None:
    here, side_by_side = pair
    expected = translate(here, sentences, beam=3)
    translate(side_by_side, sentences, beam=3)  # forked by now
    assert side_by_side._processes is not None
    victim = side_by_side._processes.pids()[0]
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and side_by_side._processes._processes[0].process.is_alive():
        time.sleep(0.01)
    with pytest.warns(RuntimeWarning, match="search process ended between batches"):
        got = translate(side_by_side, sentences, beam=3)
    assert same(got, expected)
    assert victim not in side_by_side._processes.pids() and side_by_side._processes.count == 2
    assert same(translate(side_by_side, sentences, beam=3), expected)  # the new process works


def test_a_process_killed_during_a_batch_loses_nothing(
    pair: tuple[Translator, Translator], sentences: list[str]
) -> None:
    """Both processes are stopped, get their first batch, and one is killed: its batch is searched here."""
    here, side_by_side = pair
    expected = translate(here, sentences, beam=2)
    translate(side_by_side, sentences, beam=2)
    assert side_by_side._processes is not None
    victim, other = side_by_side._processes.pids()
    assert victim is not None and other is not None
    for pid in (victim, other):
        os.kill(pid, signal.SIGSTOP)

    def kill_one() -> None:
        time.sleep(0.5)  # the batches are on their way by now
        os.kill(victim, signal.SIGKILL)
        os.kill(victim, signal.SIGCONT)
        os.kill(other, signal.SIGCONT)

    helper = threading.Thread(target=kill_one)
    helper.start()
    try:
        with pytest.warns(RuntimeWarning, match="its batch of .* was searched again in this process"):
            got = translate(side_by_side, sentences, beam=2)
    finally:
        helper.join()
    assert same(got, expected)
    assert victim not in side_by_side._processes.pids() and side_by_side._processes.count == 2


def test_an_error_in_a_process_is_raised_here_and_the_next_input_gets_new_processes(
    checkpoint: Path, sentences: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import seq2seq.search_processes as processes

    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    translator.decoders = 2
    real = processes.search_batch

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(processes, "search_batch", broken)  # the processes forked next inherit it
    with pytest.raises(RuntimeError, match="a search process failed: ValueError: boom"):
        translate(translator, sentences, beam=2)
    monkeypatch.setattr(processes, "search_batch", real)
    try:
        assert [t.text for t in translate(translator, sentences, beam=2)][:3] == [
            t.text for t in translate(translator, sentences[:3], beam=2)
        ]
    finally:
        translator.close()


def test_one_batch_forks_nothing_and_close_ends_the_processes(checkpoint: Path, sentences: list[str]) -> None:
    translator = Translator.from_checkpoint(checkpoint, device="cpu")
    translator.decoders = 2
    translator.translate(["12 7"], beam=2)
    assert translator._processes is None
    translate(translator, sentences, beam=2)
    processes = translator._processes
    assert processes is not None
    handles = [p.process for p in processes._processes]
    translator.close()
    assert translator._processes is None and not any(h.is_alive() for h in handles)


def test_parallel_budget_gives_each_process_several_batches() -> None:
    lengths = np.full(1000, 14)
    assert parallel_budget(12000, lengths, 2) == 14000 // 8
    assert parallel_budget(500, lengths, 2) == 500  # never larger than asked
    assert parallel_budget(12000, np.array([900, 2]), 4) == 900  # never smaller than the longest sentence
    assert parallel_budget(12000, np.full(100, 10), 8) == MIN_PARALLEL_BUDGET  # nor than this


def test_default_decoders() -> None:
    assert default_decoders(torch.device("cpu")) == torch.get_num_threads()
    assert default_decoders(torch.device("cuda")) == 1


def test_translate_and_eval_commands_with_search_processes(
    checkpoint: Path, sentences: list[str], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from seq2seq.cli import app

    source = tmp_path / "in.txt"
    source.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    outputs = {}
    for decoders in ("1", "2", "0"):
        out = tmp_path / f"out{decoders}.txt"
        args = ["translate", "-m", str(checkpoint), str(source), "-o", str(out), "--batch-tokens", "90"]
        result = CliRunner().invoke(app, [*args, "--decoders", decoders])
        assert result.exit_code == 0, result.output
        outputs[decoders] = out.read_text(encoding="utf-8")
    assert outputs["2"] == outputs["1"] == outputs["0"]
    assert len(outputs["2"].splitlines()) == len(sentences)
    result = CliRunner().invoke(
        app, ["eval", "-m", str(checkpoint), "--src", str(source), "--ref", str(tmp_path / "out1.txt"),
              "--decoders", "2", "--format", "json", "--metrics", "chrf"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"score": 100.0' in result.stdout


def test_a_process_whose_parent_left_mid_batch_ends_quietly(
    pair: tuple[Translator, Translator], capfd: pytest.CaptureFixture[str]
) -> None:
    import pickle

    from seq2seq.search_processes import SearchBatch, SearchProcesses

    here, _ = pair
    processes = SearchProcesses(here.model, here.shortlist, 2, False)
    proc = processes._processes[0]
    assert proc.process.pid is not None
    os.kill(proc.process.pid, signal.SIGSTOP)
    batch = SearchBatch(np.array([[5, 6, 3]]), np.array([3]))
    proc.conn.send_bytes(pickle.dumps((batch, here.options(beam=2), True)))
    proc.conn.close()  # the parent is gone before the answer
    os.kill(proc.process.pid, signal.SIGCONT)
    proc.process.join(20)
    assert proc.process.exitcode == 0
    processes._processes.remove(proc)
    processes.close()
    assert "Traceback" not in capfd.readouterr().err

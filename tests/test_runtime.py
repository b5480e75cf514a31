"""The allocator setting: applied on glibc, skipped on request, and harmless to call twice."""

from __future__ import annotations

import sys

import pytest
import torch

from seq2seq import runtime


def test_opt_out_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQ2SEQ_MALLOC", "system")
    assert runtime.tune_allocator() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is a glibc call")
def test_applies_on_linux_and_large_tensors_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEQ2SEQ_MALLOC", raising=False)
    first = runtime.tune_allocator()
    assert runtime.tune_allocator() == first == runtime.allocator_tuned()
    for _ in range(3):  # 64 MiB blocks come from the heap now and are reused
        big = torch.ones(4096, 4096)
        assert float(big.sum()) == 4096 * 4096
        del big

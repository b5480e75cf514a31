"""The allocator setting: applied on glibc (large blocks come from the heap, not mmap), skipped on request,
harmless to call twice; and device names."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys

import pytest
import torch

from seq2seq import runtime
from seq2seq.errors import Seq2SeqError

_PROBE = """
import ctypes, ctypes.util, sys
from seq2seq import runtime

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
tuned = runtime.tune_allocator()
before = libc.mallinfo2().hblkhd
block = libc.malloc(64 << 20)
mmapped = libc.mallinfo2().hblkhd - before
libc.free(block)
print(tuned, mmapped)
"""


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallinfo2")
    except OSError:
        return False


def _probe(env_value: str | None) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "SEQ2SEQ_MALLOC"}
    if env_value is not None:
        env["SEQ2SEQ_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    tuned, mmapped = out.stdout.split()
    return tuned == "True", int(mmapped)


def test_opt_out_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQ2SEQ_MALLOC", "system")
    assert runtime.tune_allocator() is False


@pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
def test_tuned_allocator_serves_large_blocks_from_the_heap() -> None:
    """glibc maps a 64 MiB block with mmap by default (SEQ2SEQ_MALLOC=system); tuned, the heap serves it."""
    assert _probe("system") == (False, pytest.approx(64 << 20, rel=0.01))
    assert _probe(None) == (True, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is a glibc call")
def test_applies_on_linux_and_large_tensors_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEQ2SEQ_MALLOC", raising=False)
    first = runtime.tune_allocator()
    assert runtime.tune_allocator() == first == runtime.allocator_tuned()
    for _ in range(3):  # 64 MiB blocks come from the heap now and are reused
        big = torch.ones(4096, 4096)
        assert float(big.sum()) == 4096 * 4096
        del big


def test_resolve_device() -> None:
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    assert runtime.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(Seq2SeqError, match="not a device"):
        runtime.resolve_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(Seq2SeqError, match="CUDA is not available"):
            runtime.resolve_device("cuda")

"""Line-exact text reading: a line is what ends in b"\\n", and nothing else.

`str.splitlines` also splits on \\x0b, \\x0c, \\x1c-\\x1e, \\x85, \\u2028 and \\u2029, so a corpus or an input
file containing any of them would gain lines and misalign every translation after it. Here files are
split on b"\\n" only (a trailing \\r is dropped), and invalid UTF-8 is either an error that names the file
and line or replaced and counted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from seq2seq.errors import Seq2SeqError


@dataclass
class LineStats:
    """What reading had to repair, for warnings."""

    lines: int = 0
    invalid_utf8: int = 0


def iter_lines(
    stream: IO[bytes], name: str, replace_invalid: bool = False, stats: LineStats | None = None
) -> Iterator[str]:
    """Yield decoded lines of a binary stream without their line ending.

    `replace_invalid=False`: invalid UTF-8 raises `Seq2SeqError` naming `name` and the line number.
    `replace_invalid=True`: bad bytes become U+FFFD and the line is counted in `stats.invalid_utf8`.
    """
    stats = stats if stats is not None else LineStats()
    while True:
        raw = stream.readline()
        if not raw:
            return
        stats.lines += 1
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if not replace_invalid:
                raise Seq2SeqError(
                    f"{name}:{stats.lines}: invalid UTF-8 at byte {exc.start}; fix or re-encode the file"
                ) from None
            stats.invalid_utf8 += 1
            yield raw.decode("utf-8", errors="replace")


def read_lines(path: Path, replace_invalid: bool = False) -> list[str]:
    """All lines of a file (see `iter_lines`); a missing file is a one-line error."""
    try:
        with open(path, "rb") as stream:
            return list(iter_lines(stream, str(path), replace_invalid))
    except FileNotFoundError:
        raise Seq2SeqError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise Seq2SeqError(f"{path}: is a directory, expected a text file") from None


def count_lines(path: Path) -> int:
    """Lines as `iter_lines` sees them: each b"\\n", plus a last line without one."""
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def single_line(text: str) -> str:
    """Output text with any line break turned into a space, so one input line gives one output line."""
    if "\n" in text or "\r" in text:
        return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return text


def require_parallel(first: Sized, second: Sized, names: tuple[str, str], need: str) -> None:
    """A one-line error when two line-aligned inputs have different line counts; `need` says why."""
    if len(first) != len(second):
        raise Seq2SeqError(f"{names[0]} has {len(first)} lines but {names[1]} has {len(second)}: {need}")

"""Output files that are complete or absent: written to a temporary file beside them, renamed on success.

Every file the `seq2seq` command writes (translations, attention, eval outputs, averaged models, bench
figures) goes through `atomic_output`: a crash, a Ctrl-C or a full disk leaves the previous file (or no
file) rather than a partial one, and a write error names the file (`FILE: No space left on device`)
instead of the temporary name or nothing. `refuse_overwriting_inputs` stops an output that is one of the
command's inputs before anything is read, so `translate x.txt -o x.txt` cannot empty `x.txt`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from seq2seq.errors import Seq2SeqError


def os_error_line(exc: OSError, name: str) -> str:
    """`NAME: reason`, e.g. `out.txt: No space left on device`."""
    return f"{exc.filename or name}: {exc.strerror or exc}"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)  # hard links and symlinks too
    except OSError:  # one of them does not exist (yet): compare where they would be
        return a.resolve() == b.resolve()


def refuse_overwriting_inputs(
    outputs: Iterable[tuple[str, Path | None]], inputs: Iterable[Path | None]
) -> None:
    """A `Seq2SeqError` naming the option when an output file is an input or another output.

    `outputs` are (option, path) pairs such as ("--output", Path("out.txt")); None entries are skipped.
    """
    given = [(option, path) for option, path in outputs if path is not None]
    sources = [path for path in inputs if path is not None and str(path) != "-"]
    for i, (option, path) in enumerate(given):
        for source in sources:
            if _same_file(path, source):
                raise Seq2SeqError(
                    f"{option} {path}: is the input file {source}; write the output to another file"
                )
        for other_option, other in given[:i]:
            if _same_file(path, other):
                raise Seq2SeqError(f"{option} {path}: is also {other_option}; give two different files")
        if path.is_dir():
            raise Seq2SeqError(f"{option} {path}: is a directory, expected a file name")


class NamedWriter:
    """A text or binary stream whose write errors are `Seq2SeqError`s naming `name` (for one-line errors)."""

    def __init__(self, stream: IO[Any], name: str) -> None:
        self.stream, self.name = stream, name

    def write(self, data: Any) -> int:
        try:
            return self.stream.write(data)
        except OSError as exc:
            raise Seq2SeqError(os_error_line(exc, self.name)) from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            raise Seq2SeqError(os_error_line(exc, self.name)) from None


def _default_mode() -> int:
    """What `open(path, "w")` would give a new file: 0o666 less the umask (mkstemp makes 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_output(path: Path, binary: bool = False) -> Iterator[NamedWriter]:
    """Write `path` through a temporary file in its directory, renamed over `path` only on success.

    On any exception (a write error, Ctrl-C, a bug) the temporary file is removed and `path` keeps its
    old contents, if it had any. OS errors become `Seq2SeqError`s naming `path`, never the temporary file.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # /dev/stdout, /dev/null, a FIFO: write it in place
        with _direct_output(path, binary) as writer:
            yield writer
        return
    real = Path(os.path.realpath(path)) if path.is_file() else path  # a symlink stays a link
    try:
        mode = real.stat().st_mode & 0o7777 if real.is_file() else _default_mode()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    except OSError as exc:
        raise Seq2SeqError(f"{path}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    stream = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")
    try:
        yield NamedWriter(stream, str(path))
        try:
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
            os.chmod(tmp, mode)
            os.replace(tmp, real)
        except OSError as exc:
            raise Seq2SeqError(f"{path}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            stream.close()  # closes the descriptor even when the final flush fails
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _direct_output(path: Path, binary: bool) -> Iterator[NamedWriter]:
    try:
        stream = open(path, "wb") if binary else open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise Seq2SeqError(f"{path}: {exc.strerror or exc}") from None
    try:
        yield NamedWriter(stream, str(path))
        try:
            stream.close()
        except OSError as exc:
            raise Seq2SeqError(f"{path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            stream.close()

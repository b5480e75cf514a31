"""Output files are complete or absent, write errors name the file, and an output is never an input."""

import errno
import os
from pathlib import Path
from typing import Any

import pytest

import seq2seq.outputs
from seq2seq.errors import Seq2SeqError
from seq2seq.outputs import atomic_output, refuse_overwriting_inputs


class FullDisk:
    """A file object whose writes fail like a full disk after `room` successful writes."""

    def __init__(self, stream: Any, room: int) -> None:
        self.stream, self.room = stream, room

    def write(self, data: Any) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= 1
        return int(self.stream.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def __enter__(self) -> "FullDisk":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.close()


def fill_disk(monkeypatch: pytest.MonkeyPatch, room: int = 0) -> None:
    """Make every file `atomic_output` opens fail after `room` writes with ENOSPC."""
    real = os.fdopen
    monkeypatch.setattr(seq2seq.outputs.os, "fdopen", lambda *a, **k: FullDisk(real(*a, **k), room))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_success_renames_into_place_with_normal_permissions(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    with atomic_output(path) as out:
        out.write("a\n")
        assert not path.exists()  # nothing visible until the write is complete
    assert path.read_text() == "a\n" and leftovers(tmp_path) == []
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_symlink_stays_a_link_and_a_device_stays_a_device(tmp_path: Path) -> None:
    target, link = tmp_path / "target.txt", tmp_path / "link.txt"
    target.write_text("old\n")
    link.symlink_to(target)
    with atomic_output(link) as out:
        out.write("new\n")
    assert link.is_symlink() and target.read_text() == "new\n" and leftovers(tmp_path) == []
    with atomic_output(Path(os.devnull)) as out:  # e.g. --output /dev/stdout: written in place, never renamed
        out.write("x\n")
    assert Path(os.devnull).is_char_device()


@pytest.mark.parametrize("failure", ["exception", "interrupt", "full disk"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old\n")
    if failure == "full disk":
        fill_disk(monkeypatch, room=1)
    error = {"exception": RuntimeError, "interrupt": KeyboardInterrupt, "full disk": Seq2SeqError}[failure]
    with pytest.raises(error) as info, atomic_output(path) as out:
        out.write("new 1\n")
        out.write("new 2\n")
        if failure == "exception":
            raise RuntimeError("bug")
        if failure == "interrupt":
            raise KeyboardInterrupt
    assert path.read_text() == "old\n" and leftovers(tmp_path) == []
    if failure == "full disk":
        assert str(info.value) == f"{path}: No space left on device"


def test_a_missing_directory_names_the_output(tmp_path: Path) -> None:
    path = tmp_path / "nothere" / "out.txt"
    with pytest.raises(Seq2SeqError, match=f"^{path}: No such file or directory$"), atomic_output(path):
        pass


@pytest.mark.parametrize(
    ("output", "inputs", "message"),
    [
        ("in.txt", ["in.txt"], "--output {tmp}/in.txt: is the input file"),
        ("sub/../in.txt", ["in.txt"], "is the input file"),
        ("link.txt", ["in.txt"], "is the input file"),  # a symlink to the input
        ("hard.txt", ["in.txt"], "is the input file"),  # a hard link to the input
        ("new.txt", ["new.txt"], "is the input file"),  # neither exists yet: compared by path
        ("sub", [], "is a directory"),
        ("out.txt", ["in.txt", "-"], None),
        ("out.txt", [], None),
    ],
)
def test_an_output_that_is_an_input_is_refused(
    tmp_path: Path, output: str, inputs: list[str], message: str | None
) -> None:
    (tmp_path / "in.txt").write_text("a\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.txt").symlink_to(tmp_path / "in.txt")
    os.link(tmp_path / "in.txt", tmp_path / "hard.txt")
    paths = [Path(i) if i == "-" else tmp_path / i for i in inputs]
    if message is None:
        refuse_overwriting_inputs([("--output", tmp_path / output)], paths)
        return
    with pytest.raises(Seq2SeqError, match=None) as info:
        refuse_overwriting_inputs([("--output", tmp_path / output)], paths)
    assert message.format(tmp=tmp_path) in str(info.value)


def test_two_outputs_must_differ(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="--attention .*: is also --output"):
        refuse_overwriting_inputs([("--output", tmp_path / "a"), ("--attention", tmp_path / "a")], [])

"""Files the CLI writes (``wf instances export --output``): whole, or the old file untouched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from wf.cli.exit import CliError
from wf.cli.files import write_atomically


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty folder of the test's own (tmp_path holds the cwd an autouse fixture made)."""
    made = tmp_path / "out"
    made.mkdir()
    return made


def test_a_new_file_is_written_whole_with_the_usual_permissions(folder: Path) -> None:
    target = folder / "history.json"
    write_atomically(target, '{"é": 1}\n')
    assert target.read_bytes() == '{"é": 1}\n'.encode()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in folder.iterdir()] == ["history.json"]


def test_a_failure_while_writing_leaves_the_old_file_and_no_temporary(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = folder / "history.json"
    target.write_text("the old export\n")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CliError, match=r"^cannot write .*history.json: No space left on device$"):
        write_atomically(target, "x" * 100_000)
    assert target.read_text() == "the old export\n"
    assert [p.name for p in folder.iterdir()] == ["history.json"]


def test_an_interrupt_leaves_no_temporary_either(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(folder / "history.json", "{}\n")
    assert list(folder.iterdir()) == []


def test_a_directory_that_does_not_exist_is_one_clear_error(folder: Path) -> None:
    with pytest.raises(CliError, match=r"^cannot write .*/nope/h.json: No such file or directory$"):
        write_atomically(folder / "nope" / "h.json", "{}\n")

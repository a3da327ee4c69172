"""Deploy bundles: what a build includes and leaves out, determinism, the round trip, and
archives built by hand that the server must refuse without writing anything."""

from __future__ import annotations

import errno
import gzip
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

import wf.bundle
from wf.bundle import (
    MAX_COMPRESSED,
    MAX_FILES,
    MAX_UNPACKED,
    BundleError,
    build_bundle,
    bundle_version_id,
    extract_bundle,
)
from wf.cli.init import create_project
from wf.engine.version import version_of_files
from wf.errors import WfError
from wf.project import Project, load_project

MiB = 1024 * 1024
WF_TOML = b'name = "x"\nmain = "workflows.py"\n'


def starter(tmp_path: Path, extra_toml: str = "") -> Project:
    root = tmp_path / "proj"
    create_project(root, "starter")
    if extra_toml:
        config = root / "wf.toml"
        config.write_text(config.read_text() + extra_toml)
    return load_project(root / "wf.toml")


def write(path: Path, data: bytes | str = b"data") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def tree(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# ---- building ------------------------------------------------------------------------------


def test_build_includes_the_project_and_leaves_out_state_envs_caches_secrets_and_links(tmp_path):
    project = starter(tmp_path)
    root = project.root
    write(root / "helpers" / "util.py", "X = 1\n")
    write(root / "data" / "carts.json", "[]")
    write(root / "src" / "deep" / "mod.py", "")
    # left out
    write(root / ".wf" / "wf.db", b"SQLite format 3\x00rest")
    write(root / ".dev.vars", "SECRET=1\n")
    write(root / ".env", "A=1\n")
    write(root / ".hidden" / "x.py", "")
    write(root / "helpers" / ".secret.py", "")
    write(root / ".venv" / "pyvenv.cfg", "home = /usr\n")
    write(root / ".venv" / "lib" / "site.py", "")
    write(root / "myenv" / "pyvenv.cfg", "home = /usr\n")  # a virtualenv under any name
    write(root / "myenv" / "lib" / "site.py", "")
    write(root / "venv" / "lib" / "site.py", "")
    write(root / "__pycache__" / "workflows.cpython-311.pyc", b"\0")
    write(root / "helpers" / "__pycache__" / "util.cpython-311.pyc", b"\0")
    write(root / "stray.pyc", b"\0")
    write(root / "node_modules" / "x.js", "")
    write(root / "build" / "x.py", "")
    write(root / "dist" / "x.whl", "")
    write(root / ".git" / "HEAD", "ref")
    write(root / "state.db", b"")
    write(root / "state.db-wal", b"")
    write(root / "state.db-shm", b"")
    write(root / "other.sqlite3-journal", b"")
    write(root / "cache.bin", b"SQLite format 3\x00" + bytes(100))  # a database by its header
    write(root / "uv.lock", "")
    (root / "link.py").symlink_to(root / "workflows.py")
    (root / "linked").symlink_to(root / "helpers", target_is_directory=True)
    (root / "dangling").symlink_to(root / "missing")
    os.mkfifo(root / "pipe")

    bundle = build_bundle(project)

    assert [name for name, _ in bundle.files] == [
        "README.md",
        "data/carts.json",
        "helpers/util.py",
        "pytest.ini",
        "src/deep/mod.py",
        "wf.toml",
        "workflows.py",
    ]
    assert dict(bundle.files)["workflows.py"] == (root / "workflows.py").stat().st_size
    assert bundle.skipped == (
        ("dangling", "symlink"),
        ("link.py", "symlink"),
        ("linked", "symlink"),
        ("pipe", "not a regular file"),
    )
    assert bundle.size == len(bundle.data)
    assert bundle.unpacked_size == sum(size for _, size in bundle.files)
    with tarfile.open(fileobj=io.BytesIO(bundle.data), mode="r:gz") as tar:
        names = tar.getnames()
    assert names == [name for name, _ in bundle.files]


def test_build_leaves_out_a_custom_state_dir_and_includes_a_main_module_in_a_subfolder(tmp_path):
    root = tmp_path / "proj"
    config = write(
        root / "wf.toml",
        'name = "x"\nmain = "src/app.py"\n\n[[workflows]]\nname = "w"\nbinding = "W"\n'
        'class_name = "W"\n\n[dev]\nstate_dir = "var/state"\n',
    )
    write(root / "src" / "app.py", "")
    write(root / "src" / "lib.py", "")
    write(root / "var" / "state" / "notes.txt", "state")
    write(root / "var" / "keep.txt", "kept")
    bundle = build_bundle(load_project(config))
    assert [name for name, _ in bundle.files] == [
        "src/app.py",
        "src/lib.py",
        "var/keep.txt",
        "wf.toml",
    ]


def test_build_leaves_out_a_serve_state_folder_under_any_name(tmp_path):
    # `wf serve --state var` run in the project folder: its token must never be deployed.
    project = starter(tmp_path)
    write(project.root / "var" / "token", "s3cret-token")
    (project.root / "var" / "bundles").mkdir()
    write(project.root / "var" / "bundles" / "v1" / "wf.toml", "")
    write(project.root / "dev-state" / "wf.db", "")
    write(project.root / "dev-state" / "notes.txt", "state")
    write(project.root / "tokens" / "token", "a file the workflows read")
    names = [name for name, _ in build_bundle(project).files]
    assert not [name for name in names if name.startswith(("var/", "dev-state/"))]
    assert "tokens/token" in names


def test_build_is_deterministic(tmp_path):
    project = starter(tmp_path)
    write(project.root / "helpers" / "util.py", "X = 1\n")
    first = build_bundle(project)
    for path in project.root.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    (project.root / "workflows.py").chmod(0o755)
    second = build_bundle(project)
    assert second.data == first.data
    assert second.sha256 == first.sha256
    assert len(first.sha256) == 64
    assert first.data[4:8] == b"\0\0\0\0"  # no gzip timestamp
    with tarfile.open(fileobj=io.BytesIO(first.data), mode="r:gz") as tar:
        for member in tar:
            assert member.isreg()
            assert (member.mtime, member.uid, member.gid) == (0, 0, 0)
            assert (member.uname, member.gname, member.mode) == ("", "", 0o644)


def test_build_then_extract_gives_the_same_files_and_version(tmp_path):
    project = starter(tmp_path)
    write(project.root / "helpers" / "util.py", "X = 'é'\n")
    write(project.root / "données" / "café.json", "{}")
    write(project.root / "big.bin", os.urandom(300_000))
    (project.root / "helpers" / "util.py").chmod(0o755)
    bundle = build_bundle(project)

    dest = tmp_path / "server" / "versions" / "v1"
    written = extract_bundle(bundle.data, dest)

    assert written == [name for name, _ in bundle.files]
    sources = {name: (project.root / name).read_bytes() for name in written}
    assert tree(dest) == sources
    for name in written:
        assert stat.S_IMODE((dest / name).stat().st_mode) == 0o644
    expected = version_of_files([project.root / name for name in written], project.root)
    assert bundle_version_id(dest) == expected
    # The same code unpacked elsewhere has the same id; a change gives another.
    again = tmp_path / "again"
    extract_bundle(build_bundle(project).data, again)
    assert bundle_version_id(again) == bundle_version_id(dest)
    write(project.root / "helpers" / "util.py", "X = 2\n")
    changed = tmp_path / "changed"
    extract_bundle(build_bundle(project).data, changed)
    assert bundle_version_id(changed) != bundle_version_id(dest)


def test_build_refuses_a_main_module_outside_the_project_folder(tmp_path):
    write(tmp_path / "shared" / "app.py", "")
    config = write(
        tmp_path / "proj" / "wf.toml",
        'name = "x"\nmain = "../shared/app.py"\n\n[[workflows]]\nname = "w"\nbinding = "W"\n'
        'class_name = "W"\n',
    )
    with pytest.raises(BundleError, match=r"outside the project folder") as caught:
        build_bundle(load_project(config))
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, WfError)
    assert caught.value.code == "bundle.invalid"


def test_build_refuses_a_file_name_the_server_would_refuse(tmp_path):
    project = starter(tmp_path)
    write(project.root / "data" / "a\\b.txt")
    with pytest.raises(BundleError, match=r'"data/a\\b.txt".*backslash'):
        build_bundle(project)


def test_build_limits(tmp_path):
    project = starter(tmp_path)
    assert MAX_FILES == 2_000
    assert MAX_COMPRESSED == 33_554_432  # 32 MiB
    assert MAX_UNPACKED == 134_217_728  # 128 MiB
    # With wf.toml, workflows.py, README.md and pytest.ini (its tests/ are not bundled): 2,001
    for index in range(MAX_FILES - 3):
        write(project.root / "many" / f"{index:04}.txt", b"")
    with pytest.raises(BundleError, match=r"more files than the bundle limit of 2,000 files"):
        build_bundle(project)
    (project.root / "many" / "0000.txt").unlink()
    assert len(build_bundle(project).files) == MAX_FILES

    shutil.rmtree(project.root / "many")
    write(project.root / "noise.bin", os.urandom(20_000))
    with pytest.raises(BundleError, match=r"over the limit of 10 KiB unpacked"):
        build_bundle(project, max_unpacked=10 * 1024)
    with pytest.raises(BundleError, match=r"over the limit of 5 KiB compressed"):
        build_bundle(project, max_compressed=5 * 1024)


# ---- archives built by hand ----------------------------------------------------------------

Adder = Callable[[tarfile.TarFile], None]


def gz_tar(*adders: Adder, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
        tarfile.open(
            fileobj=compressed, mode="w|", format=fmt, encoding="utf-8", errors="surrogateescape"
        ) as tar,
    ):
        for add in adders:
            add(tar)
    return buffer.getvalue()


def file(name: str, data: bytes = b"x = 1\n", mode: int = 0o644) -> Adder:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        tar.addfile(info, io.BytesIO(data))

    return add


def entry(name: str, kind: bytes, linkname: str = "") -> Adder:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        tar.addfile(info)

    return add


def many(count: int) -> Adder:
    def add(tar: tarfile.TarFile) -> None:
        for index in range(count):
            file(f"f/{index:05}.py", b"")(tar)

    return add


CONFIG = file("wf.toml", WF_TOML)

MALICIOUS: dict[str, tuple[list[Adder], str]] = {
    "zip-slip": ([CONFIG, file("../evil.py")], r'"../evil.py" has a ".." component'),
    "zip-slip-inside": ([CONFIG, file("a/../../evil.py")], r'".." component'),
    "absolute": ([CONFIG, file("/etc/x")], r'"/etc/x" has an absolute path'),
    "symlink": (
        [CONFIG, entry("link.py", tarfile.SYMTYPE, "/etc/passwd")],
        r'"link.py" is a symbolic link \(to "/etc/passwd"\); only regular files',
    ),
    "symlink-then-file-through-it": (
        [CONFIG, entry("d", tarfile.SYMTYPE, "/tmp"), file("d/evil.py")],
        r'"d" is a symbolic link',
    ),
    "hardlink": (
        [CONFIG, entry("hard.py", tarfile.LNKTYPE, "wf.toml")],
        r'"hard.py" is a hard link',
    ),
    "fifo": ([CONFIG, entry("pipe", tarfile.FIFOTYPE)], r'"pipe" is a FIFO'),
    "char-device": ([CONFIG, entry("null", tarfile.CHRTYPE)], r'"null" is a character device'),
    "block-device": ([CONFIG, entry("sda", tarfile.BLKTYPE)], r'"sda" is a block device'),
    "contiguous": ([CONFIG, entry("c", tarfile.CONTTYPE)], r'"c" is an entry of unsupported'),
    "backslash": ([CONFIG, file("a\\b.py")], r"backslash"),
    "backslash-slip": ([CONFIG, file("..\\evil.py")], r"backslash"),
    "nul": ([CONFIG, file("a" * 101 + "\0b.py")], r"NUL character"),
    "control-character": ([CONFIG, file("a\nb.py")], r'"a\\nb.py" has a control character'),
    "empty-name": ([CONFIG, file("")], r'"" has an empty name'),
    "empty-component": ([CONFIG, file("a//b.py")], r"empty or \".\" component"),
    "component-too-long": ([CONFIG, file("a" * 256)], r"component longer than 255 bytes"),
    "path-too-long": ([CONFIG, file("/".join(["a" * 200] * 6))], r"longer than 1024 bytes"),
    "not-utf8": ([CONFIG, file("caf\udce9.py")], r'"caf\\xe9.py" has a name that is not UTF-8'),
    "not-utf8-gnu": ([CONFIG, file("caf\udce9.py")], r"not UTF-8"),
    "duplicate": ([CONFIG, file("a.py"), file("a.py", b"other")], r'"a.py" appears twice'),
    "duplicate-via-dot": ([CONFIG, file("a.py"), file("./a.py")], r"appears twice"),
    "duplicate-config": ([CONFIG, CONFIG], r'"wf.toml" appears twice'),
    "file-then-folder": ([CONFIG, file("a"), file("a/b.py")], r'"a/b.py" is inside "a", a file'),
    "folder-then-file": ([CONFIG, file("a/b.py"), file("a")], r'"a" is both a file and a folder'),
    "dir-over-file": (
        [CONFIG, file("a"), entry("a", tarfile.DIRTYPE)],
        r'"a" is both a file and a folder',
    ),
    "too-many-files": ([CONFIG, many(MAX_FILES)], r"more than 2,000 files"),
    "missing-config": ([file("workflows.py")], r"no wf.toml at its top"),
    "config-not-at-top": ([file("sub/wf.toml", WF_TOML)], r"no wf.toml at its top"),
    "config-is-a-folder": ([entry("wf.toml", tarfile.DIRTYPE)], r"no wf.toml at its top"),
    "empty-archive": ([], r"tar data is invalid|no wf.toml"),
}


def assert_nothing_written(dest: Path, existed: bool) -> None:
    if existed:
        assert list(dest.iterdir()) == []
    else:
        assert not dest.exists()
        assert list(dest.parent.iterdir()) == []


@pytest.mark.parametrize("existed", [False, True], ids=["new-dest", "empty-dest"])
@pytest.mark.parametrize("case", list(MALICIOUS))
def test_malicious_archives_are_refused_with_nothing_written(tmp_path, case, existed):
    adders, message = MALICIOUS[case]
    fmt = tarfile.GNU_FORMAT if case.endswith("-gnu") else tarfile.PAX_FORMAT
    data = gz_tar(*adders, fmt=fmt)
    dest = tmp_path / "out" / "v1"
    dest.mkdir(parents=True) if existed else dest.parent.mkdir()
    with pytest.raises(BundleError, match=message) as caught:
        extract_bundle(data, dest)
    assert "\n" not in str(caught.value)
    assert_nothing_written(dest, existed)


def corrupt(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


GOOD = gz_tar(CONFIG, file("workflows.py", os.urandom(20_000)))

BAD_BYTES: dict[str, tuple[bytes, str]] = {
    "zip": (b"PK\x03\x04" + bytes(100), r"not a gzip-compressed tar archive"),
    "empty": (b"", r"not a gzip-compressed tar archive"),
    "plain-tar": (gzip.decompress(GOOD), r"not a gzip-compressed tar archive"),
    "gzip-of-text": (gzip.compress(b"hello " * 1000), r"not a gzip-compressed tar archive"),
    "truncated": (GOOD[: len(GOOD) // 2], r"truncated"),
    "truncated-trailer": (GOOD[:-4], r"truncated"),
    "corrupt": (corrupt(GOOD), r"corrupt|invalid|truncated|CRC"),
    "bad-gzip-method": (GOOD[:2] + b"\x07" + GOOD[3:], r"not a gzip-compressed tar archive"),
}


@pytest.mark.parametrize("case", list(BAD_BYTES))
def test_bytes_that_are_not_a_good_archive_are_refused(tmp_path, case):
    data, message = BAD_BYTES[case]
    dest = tmp_path / "out"
    with pytest.raises(BundleError, match=message) as caught:
        extract_bundle(data, dest)
    assert "\n" not in str(caught.value)
    assert not dest.exists()


def test_the_good_archive_used_above_is_accepted(tmp_path):
    assert extract_bundle(GOOD, tmp_path / "out") == ["wf.toml", "workflows.py"]


def test_an_upload_over_32_mib_is_refused_before_reading_it(tmp_path):
    data = gzip.compress(b"") + bytes(MAX_COMPRESSED)  # 32 MiB and a bit
    with pytest.raises(BundleError, match=r"over the limit of 32 MiB compressed"):
        extract_bundle(data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


class Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


def bomb(size: int, *, declared: bool) -> bytes:
    """A small upload that unpacks to ``size`` bytes of zeros: as one file that declares its size,
    or after the end of an otherwise valid archive (the tar headers then declare very little)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=1, mtime=0) as compressed:
        if declared:
            with tarfile.open(fileobj=compressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                CONFIG(tar)
                info = tarfile.TarInfo("zeros.bin")
                info.size = size
                tar.addfile(info, Zeros(size))
        else:
            compressed.write(gzip.decompress(gz_tar(CONFIG)))
            zeros = bytes(MiB)
            for _ in range(size // MiB):
                compressed.write(zeros)
    return buffer.getvalue()


def test_a_gzip_bomb_declaring_its_size_is_refused_from_its_header(tmp_path):
    data = bomb(200 * MiB, declared=True)
    assert len(data) < 2 * MiB
    with pytest.raises(BundleError, match=r'"zeros.bin" \(200 MiB\).*over the limit of 128 MiB'):
        extract_bundle(data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_gzip_bomb_hidden_after_the_archive_stops_being_read_at_the_limit(tmp_path):
    data = bomb(200 * MiB, declared=False)
    with pytest.raises(BundleError, match=r"unpacks to more than 128 MiB"):
        extract_bundle(data, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_huge_pax_header_stops_being_read_at_the_limit(tmp_path):
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 50 * MiB
    raw = header.tobuf(tarfile.USTAR_FORMAT) + bytes(header.size)
    data = gzip.compress(raw, compresslevel=1)
    with pytest.raises(BundleError, match=r"unpacks to more than 1 MiB"):
        extract_bundle(data, tmp_path / "out", max_unpacked=MiB)
    assert not (tmp_path / "out").exists()


def test_the_declared_unpacked_size_is_summed_over_files(tmp_path):
    data = gz_tar(CONFIG, file("a.bin", bytes(600_000)), file("b.bin", bytes(600_000)))
    with pytest.raises(BundleError, match=r'"b.bin" \(585.9 KiB\) takes the unpacked size over'):
        extract_bundle(data, tmp_path / "out", max_unpacked=MiB)
    assert not (tmp_path / "out").exists()
    assert extract_bundle(data, tmp_path / "ok", max_unpacked=2 * MiB) == [
        "a.bin",
        "b.bin",
        "wf.toml",
    ]


def test_exactly_2000_files_are_accepted(tmp_path):
    written = extract_bundle(gz_tar(CONFIG, many(MAX_FILES - 1)), tmp_path / "out")
    assert len(written) == MAX_FILES


def test_a_destination_with_files_is_refused_and_left_alone(tmp_path):
    dest = write(tmp_path / "out" / "keep.txt", "mine").parent
    with pytest.raises(BundleError, match=r"not empty"):
        extract_bundle(GOOD, dest)
    assert tree(dest) == {"keep.txt": b"mine"}
    hidden = write(tmp_path / "out2" / ".x", "").parent
    with pytest.raises(BundleError, match=r"not empty"):
        extract_bundle(GOOD, hidden)
    target = write(tmp_path / "a-file", "mine")
    with pytest.raises(BundleError, match=r"not a folder"):
        extract_bundle(GOOD, target)
    assert target.read_text() == "mine"


def test_a_tar_of_a_folder_with_folder_entries_and_dot_slash_names_is_accepted(tmp_path):
    source = tmp_path / "src"
    write(source / "wf.toml", WF_TOML)
    write(source / "pkg" / "mod.py", "y = 2\n").chmod(0o4755)
    write(source / "pkg" / "sub" / "data.txt", "d")
    (source / "empty").mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source, arcname=".")
    with tarfile.open(fileobj=io.BytesIO(buffer.getvalue())) as tar:
        names = tar.getnames()
    assert "." in names and "./pkg" in names and "./wf.toml" in names

    dest = tmp_path / "out"
    written = extract_bundle(buffer.getvalue(), dest)

    assert written == ["pkg/mod.py", "pkg/sub/data.txt", "wf.toml"]
    assert tree(dest) == tree(source)
    assert not (dest / "empty").exists()  # folders only as parents of files
    assert stat.S_IMODE((dest / "pkg" / "mod.py").stat().st_mode) == 0o644


@pytest.mark.parametrize("existed", [False, True], ids=["new-dest", "empty-dest"])
def test_a_failure_while_writing_removes_what_was_written(tmp_path, monkeypatch, existed):
    real = wf.bundle._write_file
    calls = []

    def disk_fills_up(source, target, size, shown):
        calls.append(target)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(source, target, size, shown)

    monkeypatch.setattr(wf.bundle, "_write_file", disk_fills_up)
    data = gz_tar(CONFIG, file("a/one.py"), file("b/two.py"), file("c/three.py"))
    dest = tmp_path / "out" / "v1"
    dest.mkdir(parents=True) if existed else dest.parent.mkdir()
    with pytest.raises(BundleError, match=r'cannot write bundle entry "b/two.py": No space left'):
        extract_bundle(data, dest)
    assert len(calls) == 3
    assert_nothing_written(dest, existed)

"""Deploy bundles: a project's files as a deterministic gzip-compressed tar archive.

The client builds one with ``build_bundle`` (what ``wf deploy`` uploads); the server checks and
unpacks one with ``extract_bundle``, which trusts nothing in the archive: every entry is checked
before anything is written, only regular files are written, and sizes are capped while
decompressing so that a gzip bomb cannot fill memory or the disk. ``bundle_version_id`` names the
unpacked code the way the server does.

Standard library only (plus wf): no CLI or server imports.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from wf.engine.version import version_of_files
from wf.errors import WfError
from wf.project import CONFIG_NAME, DEV_VARS_NAME, IGNORED_DIRS, Project

MAX_FILES = 2_000
MAX_COMPRESSED = 32 * 1024 * 1024  # bytes of gzip data (the upload)
MAX_UNPACKED = 128 * 1024 * 1024  # bytes of file data once unpacked
MAX_NAME_PART = 255  # bytes (UTF-8) in one path component
MAX_NAME = 1024  # bytes (UTF-8) in a whole path

# Never bundled: compiled Python, lock files, SQLite databases and their side files.
_EXCLUDED_SUFFIXES = frozenset({".pyc", ".pyo", ".lock", ".db", ".sqlite", ".sqlite3", ".db3"})
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_GZIP_MAGIC = b"\x1f\x8b"
_COMPRESS_LEVEL = 6
_CHUNK = 1024 * 1024
_FILE_MODE = 0o644


class BundleError(WfError):
    """A bundle cannot be built or is refused; one line naming the file or entry and the problem."""

    code = "bundle.invalid"


@dataclass(frozen=True)
class Bundle:
    """A built bundle: ``data`` is the gzip-compressed tar archive that ``wf deploy`` uploads."""

    files: tuple[tuple[str, int], ...]  # (relative posix path, size in bytes), sorted by path
    data: bytes
    sha256: str  # hex digest of ``data``
    skipped: tuple[tuple[str, str], ...] = ()  # (relative path, reason): symlinks, special files

    @property
    def size(self) -> int:
        """Compressed size (what is uploaded)."""
        return len(self.data)

    @property
    def unpacked_size(self) -> int:
        return sum(size for _, size in self.files)


def format_size(size: int) -> str:
    """``532 bytes``, ``4.2 KiB``, ``32 MiB``."""
    if size < 1024:
        return f"{size} byte" if size == 1 else f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} {unit}"


def _show(name: str) -> str:
    """An entry name for a one-line message: control characters and undecodable bytes escaped."""
    return '"' + "".join(_escape(char) for char in name) + '"'


def _escape(char: str) -> str:
    if char.isprintable():
        return char
    if 0xDC80 <= ord(char) <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{ord(char) - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii")


def _name_problem(name: str) -> str | None:
    """Why ``name`` (a relative posix path) cannot be in a bundle, or None."""
    if not name:
        return "has an empty name"
    if "\0" in name:
        return "has a NUL character in its name"
    if "\\" in name:
        return "has a backslash in its name (paths use /)"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        return "has a control character in its name"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "has a name that is not UTF-8"
    if name.startswith("/"):
        return "has an absolute path"
    parts = name.split("/")
    if ".." in parts:
        return 'has a ".." component in its path'
    if any(part in ("", ".") for part in parts):
        return 'has an empty or "." component in its path'
    if any(len(part.encode("utf-8")) > MAX_NAME_PART for part in parts):
        return f"has a path component longer than {MAX_NAME_PART} bytes"
    if len(encoded) > MAX_NAME:
        return f"has a path longer than {MAX_NAME} bytes"
    return None


# ---- building (client side) ------------------------------------------------------------------


def _excluded_file(name: str) -> bool:
    if name.startswith(".") or name == DEV_VARS_NAME:
        return True
    lowered = name.lower()
    if lowered.endswith(_SQLITE_SIDE_FILES):
        return True
    return os.path.splitext(lowered)[1] in _EXCLUDED_SUFFIXES


def _excluded_dir(name: str, path: str) -> bool:
    if name.startswith(".") or name in IGNORED_DIRS:
        return True
    if _is_wf_state(path):
        return True
    return os.path.isfile(os.path.join(path, "pyvenv.cfg"))  # a virtualenv under any name


def _is_wf_state(path: str) -> bool:
    """A state folder of wf dev or wf serve under any name (``wf serve --state var``): its
    database and bundles are no code, and a serve folder's ``token`` file is a secret."""
    if os.path.isfile(os.path.join(path, "wf.db")):
        return True
    token = os.path.join(path, "token")
    return os.path.isfile(token) and os.path.isdir(os.path.join(path, "bundles"))


class _Collector:
    """Walks folders (never following symlinks) and keeps what belongs in the bundle."""

    def __init__(self, root: Path, state_dir: Path, max_files: int) -> None:
        self.root = root
        self.state_dir = state_dir
        self.max_files = max_files
        self.files: dict[str, Path] = {}
        self.skipped: dict[str, str] = {}
        self.walked: set[Path] = set()

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def add(self, relative: str, path: Path) -> None:
        problem = _name_problem(relative)
        if problem is not None:
            raise BundleError(f"cannot bundle {_show(relative)}: it {problem}; rename it")
        self.files.setdefault(relative, path)
        if len(self.files) > self.max_files:  # stop early: the root may be a huge folder
            raise _files_error(self.max_files)

    def walk(self, folder: Path) -> None:
        if folder in self.walked:
            return
        self.walked.add(folder)
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as exc:
            raise BundleError(f"cannot read the folder {folder}: {exc.strerror or exc}") from None
        for entry in entries:
            path = Path(entry.path)
            relative = self.relative(path)
            if relative == CONFIG_NAME:
                continue  # added explicitly
            if entry.name.startswith(".") or entry.name in IGNORED_DIRS:
                continue
            if entry.is_symlink():
                self.skipped[relative] = "symlink"
                continue
            if entry.is_dir(follow_symlinks=False):
                if path == self.state_dir or _excluded_dir(entry.name, entry.path):
                    continue
                self.walk(path)
            elif _excluded_file(entry.name):
                continue
            elif entry.is_file(follow_symlinks=False):
                if not _is_sqlite(path):
                    self.add(relative, path)
            else:
                self.skipped[relative] = "not a regular file"


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC
    except OSError:
        return False


def _read_regular(path: Path, relative: str) -> bytes:
    """The bytes of a regular file, refusing anything else (even if it changed since the walk)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise BundleError(f"cannot read {_show(relative)}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BundleError(f"cannot bundle {_show(relative)}: it is not a regular file")
        return file.read()


class _CappedBuffer(io.BytesIO):
    """Collects compressed output; past ``limit`` it only counts (``over`` tells)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.over = False

    def write(self, data: Any) -> int:
        size = len(data)
        if self.over or self.tell() + size > self.limit:
            self.over = True
            return size
        return super().write(data)


def _files_error(limit: int) -> BundleError:
    return BundleError(
        f"the project has more files than the bundle limit of {limit:,} files; leave out what "
        "the workflows do not need (hidden folders, virtualenvs, build and dist already are)"
    )


def _unpacked_error(size: int, limit: int) -> BundleError:
    return BundleError(
        f"the bundle's files add up to {format_size(size)}, over the limit of "
        f"{format_size(limit)} unpacked"
    )


def build_bundle(
    project: Project,
    *,
    max_files: int = MAX_FILES,
    max_compressed: int = MAX_COMPRESSED,
    max_unpacked: int = MAX_UNPACKED,
) -> Bundle:
    """Bundle wf.toml, the main module and the project's files (see the module docstring).

    Paths are relative to the folder of wf.toml. The result is deterministic: the same files give
    the same bytes (sorted entries, mtime 0, owner 0, mode 0644, no gzip timestamp or name).
    """
    root = project.root.resolve()
    main = project.main.resolve()
    try:
        main_relative = main.relative_to(root).as_posix()
    except ValueError:
        raise BundleError(
            f"the main module {main} is outside the project folder {root} (the folder of "
            f"{CONFIG_NAME}); move it into that folder to deploy"
        ) from None
    collector = _Collector(root, (root / project.dev.state_dir).resolve(), max_files)
    collector.add(CONFIG_NAME, project.config_path)
    collector.walk(root)
    if main.parent != root:
        collector.walk(main.parent)  # in case its folder is one the walk of the root skips
    collector.add(main_relative, main)

    files = sorted(collector.files.items())
    declared = 0
    for _, path in files:
        with contextlib.suppress(OSError):  # reported by _read_regular below
            declared += path.stat().st_size
    if declared > max_unpacked:
        raise _unpacked_error(declared, max_unpacked)

    listing: list[tuple[str, int]] = []
    total = 0
    buffer = _CappedBuffer(max_compressed)
    with (
        gzip.GzipFile(
            filename="", mode="wb", fileobj=buffer, compresslevel=_COMPRESS_LEVEL, mtime=0
        ) as compressed,
        tarfile.open(
            fileobj=compressed, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8"
        ) as tar,
    ):
        for relative, path in files:
            content = _read_regular(path, relative)
            total += len(content)
            if total > max_unpacked:
                raise _unpacked_error(total, max_unpacked)
            info = tarfile.TarInfo(relative)
            info.type = tarfile.REGTYPE
            info.size = len(content)
            info.mtime = 0
            info.mode = _FILE_MODE
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
            listing.append((relative, len(content)))
            if buffer.over:
                break
    if buffer.over:
        raise BundleError(
            f"the bundle is over the limit of {format_size(max_compressed)} compressed; leave "
            "out large files the workflows do not need"
        )
    data = buffer.getvalue()
    return Bundle(
        files=tuple(listing),
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        skipped=tuple(sorted(collector.skipped.items())),
    )


# ---- checking and unpacking (server side) ----------------------------------------------------


class _CappedReader(io.RawIOBase):
    """Decompressed bytes of the gzip data, refusing to produce more than ``limit``."""

    def __init__(self, data: bytes, limit: int, max_unpacked: int) -> None:
        super().__init__()
        self._source = gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb")
        self._limit = limit
        self._max_unpacked = max_unpacked
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self._source.read(min(len(view), _CHUNK))
        self.count += len(chunk)
        if self.count > self._limit:
            raise BundleError(
                f"the archive unpacks to more than {format_size(self._max_unpacked)} (the limit); "
                "refused"
            )
        view[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._source.close()
        super().close()

    def drain(self) -> None:
        """Read to the end, so that the gzip checksum and length are verified."""
        while self.read(_CHUNK):
            pass


def _stream_limit(max_unpacked: int, max_files: int) -> int:
    # File data plus generous room for headers (a PAX header and two 512-byte blocks per entry)
    # and tar's end-of-archive padding.
    return max_unpacked + 2 * max_files * 4096 + 64 * 1024


@dataclass
class _Plan:
    files: dict[str, int] = field(default_factory=dict)  # name -> declared size
    dirs: set[str] = field(default_factory=set)  # folders, explicit or implied
    entries: int = 0
    total: int = 0  # declared bytes of file data


def _normalize(name: str) -> str:
    """Strip the leading ``./`` some tar tools write (``tar -C dir .``)."""
    while name.startswith("./"):
        name = name[2:]
    return name


def _entry_kind(member: tarfile.TarInfo) -> str | None:
    """What a non-regular, non-directory entry is, for the message (None: allowed)."""
    if member.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and member.sparse is None:
        return None
    if member.isdir():
        return None
    if member.issym():
        return f"a symbolic link (to {_show(member.linkname)})"
    if member.islnk():
        return f"a hard link (to {_show(member.linkname)})"
    if member.ischr():
        return "a character device"
    if member.isblk():
        return "a block device"
    if member.isfifo():
        return "a FIFO"
    if member.sparse is not None or member.type == tarfile.GNUTYPE_SPARSE:
        return "a sparse file"
    return f"an entry of unsupported type {member.type!r}"


def _members(
    reader: _CappedReader,
) -> Generator[tuple[tarfile.TarFile, tarfile.TarInfo], None, None]:
    try:
        with tarfile.open(
            fileobj=reader, mode="r|", encoding="utf-8", errors="surrogateescape"
        ) as tar:
            for member in tar:
                yield tar, member
    except BundleError:
        raise
    except tarfile.ReadError as exc:
        text = str(exc)
        if "unexpected end" in text or "truncated" in text.lower():
            raise BundleError("the archive is truncated (the tar data ends early)") from None
        raise BundleError(
            f"not a gzip-compressed tar archive: the tar data is invalid ({text})"
        ) from None
    except (EOFError, zlib.error, gzip.BadGzipFile, tarfile.TarError, OSError) as exc:
        raise _stream_error(exc) from None


def _stream_error(exc: BaseException) -> BundleError:
    if isinstance(exc, EOFError):
        return BundleError("the archive is truncated (the gzip data ends early)")
    if isinstance(exc, gzip.BadGzipFile):
        return BundleError(f"not a gzip-compressed tar archive: {exc}")
    if isinstance(exc, zlib.error):
        return BundleError(f"the archive's gzip data is corrupt ({exc})")
    return BundleError(f"the archive cannot be read ({exc})")


def _check(data: bytes, *, max_files: int, max_unpacked: int, limit: int) -> _Plan:
    """First pass: read every header (and skip the data) without writing anything."""
    plan = _Plan()
    with contextlib.closing(_CappedReader(data, limit, max_unpacked)) as reader:
        with contextlib.closing(_members(reader)) as members:
            for _, member in members:
                _check_member(member, plan, max_files=max_files, max_unpacked=max_unpacked)
        try:
            reader.drain()  # the rest of the gzip data: checks its CRC, caps trailing data
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
            raise _stream_error(exc) from None
    if CONFIG_NAME not in plan.files:
        raise BundleError(f"the archive has no {CONFIG_NAME} at its top; refused")
    return plan


def _check_member(
    member: tarfile.TarInfo, plan: _Plan, *, max_files: int, max_unpacked: int
) -> None:
    plan.entries += 1
    if plan.entries > 2 * max_files:
        raise BundleError(f"the archive has more than {2 * max_files:,} entries; refused")
    raw = member.name
    kind = _entry_kind(member)
    if kind is not None:
        raise BundleError(f"bundle entry {_show(raw)} is {kind}; only regular files are allowed")
    name = _normalize(raw)
    if member.isdir() and name in ("", "."):
        return  # the archive's own top folder
    problem = _name_problem(name)
    if problem is not None:
        raise BundleError(f"bundle entry {_show(raw)} {problem}")
    parts = name.split("/")
    parents = ["/".join(parts[:index]) for index in range(1, len(parts))]
    for parent in parents:
        if parent in plan.files:
            raise BundleError(f"bundle entry {_show(raw)} is inside {_show(parent)}, a file")
    if member.isdir():
        if name in plan.files:
            raise BundleError(f"bundle entry {_show(raw)} is both a file and a folder")
        plan.dirs.add(name)
        plan.dirs.update(parents)
        return
    if name in plan.files:
        raise BundleError(f"bundle entry {_show(raw)} appears twice (duplicate name)")
    if name in plan.dirs:
        raise BundleError(f"bundle entry {_show(raw)} is both a file and a folder")
    if len(plan.files) >= max_files:
        raise BundleError(
            f"the archive has more than {max_files:,} files (the limit); refused at "
            f"entry {_show(raw)}"
        )
    plan.total += member.size
    if plan.total > max_unpacked:
        raise BundleError(
            f"bundle entry {_show(raw)} ({format_size(member.size)}) takes the unpacked size "
            f"over the limit of {format_size(max_unpacked)}"
        )
    plan.files[name] = member.size
    plan.dirs.update(parents)


def _check_destination(dest: Path) -> None:
    if dest.is_dir():
        try:
            occupied = any(dest.iterdir())
        except OSError as exc:
            raise BundleError(f"cannot read {dest}: {exc.strerror or exc}") from None
        if occupied:
            raise BundleError(f"cannot unpack the bundle into {dest}: the folder is not empty")
    elif dest.exists() or dest.is_symlink():
        raise BundleError(f"cannot unpack the bundle into {dest}: it exists and is not a folder")


def _remove_contents(dest: Path, created: bool) -> None:
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    try:
        children = list(dest.iterdir())
    except OSError:
        return
    for child in children:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError):
        return False
    return True


def _write_file(source: IO[bytes], target: Path, size: int, shown: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, _FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _FILE_MODE)  # whatever the umask or the archive says
        written = 0
        while chunk := source.read(min(_CHUNK, size - written + 1)):
            written += len(chunk)
            if written > size:
                raise BundleError(f"bundle entry {shown} has more data than its declared size")
            out.write(chunk)
    if written != size:
        raise BundleError(f"bundle entry {shown} is truncated")


def _unpack(data: bytes, root: Path, plan: _Plan, limit: int, max_unpacked: int) -> list[str]:
    """Second pass: write the regular files the first pass accepted."""
    written: set[str] = set()
    with (
        contextlib.closing(_CappedReader(data, limit, max_unpacked)) as reader,
        contextlib.closing(_members(reader)) as members,
    ):
        for tar, member in members:
            if member.isdir():
                continue
            name = _normalize(member.name)
            shown = _show(member.name)
            if plan.files.get(name) != member.size or name in written:
                raise BundleError(f"bundle entry {shown} changed between two reads of the archive")
            target = root.joinpath(*name.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            if not _inside(target.parent, root):
                raise BundleError(f"bundle entry {shown} would be written outside the folder")
            source = tar.extractfile(member)
            if source is None:  # pragma: no cover - the first pass accepts regular files only
                raise BundleError(f"bundle entry {shown} is not a regular file")
            try:
                _write_file(source, target, member.size, shown)
            except OSError as exc:
                raise BundleError(
                    f"cannot write bundle entry {shown}: {exc.strerror or exc}"
                ) from None
            if not _inside(target, root):
                raise BundleError(f"bundle entry {shown} was written outside the folder")
            written.add(name)
    if len(written) != len(plan.files):
        raise BundleError("the archive changed between two reads; refused")
    return sorted(written)


def extract_bundle(
    data: bytes,
    dest: Path,
    *,
    max_files: int = MAX_FILES,
    max_compressed: int = MAX_COMPRESSED,
    max_unpacked: int = MAX_UNPACKED,
) -> list[str]:
    """Check a bundle and unpack it into ``dest``; returns the files written (posix paths, sorted).

    Every entry is checked before anything is written. ``dest`` must not exist or be an empty
    folder; it is created. On any error ``dest`` is left as it was (removed if it was created)
    and ``BundleError`` names the entry and the problem.
    """
    if len(data) > max_compressed:
        raise BundleError(
            f"the bundle is {format_size(len(data))}, over the limit of "
            f"{format_size(max_compressed)} compressed"
        )
    if not data.startswith(_GZIP_MAGIC):
        raise BundleError(
            "not a gzip-compressed tar archive (the data does not start with gzip's signature)"
        )
    _check_destination(dest)
    limit = _stream_limit(max_unpacked, max_files)
    plan = _check(data, max_files=max_files, max_unpacked=max_unpacked, limit=limit)
    created = not dest.is_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
    except OSError as exc:
        raise BundleError(f"cannot create {dest}: {exc.strerror or exc}") from None
    try:
        return _unpack(data, root, plan, limit, max_unpacked)
    except BaseException as exc:
        _remove_contents(dest, created)
        if isinstance(exc, Exception) and not isinstance(exc, BundleError):
            raise BundleError(f"cannot unpack the bundle: {exc}") from None
        raise


def bundle_files(files_dir: Path) -> list[Path]:
    """Every regular file under ``files_dir`` (symlinks are not followed), sorted."""
    found: list[Path] = []
    for folder, dirs, names in os.walk(files_dir):
        dirs.sort()
        base = Path(folder)
        found.extend(base / name for name in names if stat.S_ISREG(os.lstat(base / name).st_mode))
    return sorted(found)


def bundle_version_id(files_dir: Path) -> str:
    """The version id of unpacked bundle files: the same code gives the same id."""
    return version_of_files(bundle_files(files_dir), files_dir)

"""Version ids: a hash of the workflow sources, shaped like a UUID as Cloudflare's are."""

from __future__ import annotations

import hashlib
import inspect
import uuid
from collections.abc import Iterable
from pathlib import Path


def version_of_files(files: Iterable[Path], root: Path | None = None) -> str:
    digest = hashlib.sha256()
    for path in sorted(set(files)):
        name = str(path.relative_to(root)) if root is not None else path.name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return str(uuid.UUID(bytes=digest.digest()[:16], version=4))


def version_of_classes(classes: Iterable[type]) -> str:
    """Hash the source files that define these classes (for engines built without a project)."""
    files: set[Path] = set()
    for cls in classes:
        try:
            source = inspect.getsourcefile(cls)
        except TypeError:
            source = None
        if source is not None and Path(source).is_file():
            files.add(Path(source))
    return version_of_files(files)

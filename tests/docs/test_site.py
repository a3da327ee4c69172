"""The documentation site builds with MkDocs in strict mode: a broken link, a missing page or a
reference to an API that is gone fails the build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.runner import REPO

pytestmark = pytest.mark.slow


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    assert (site / "index.html").is_file()
    assert (site / "reference" / "python" / "index.html").is_file()

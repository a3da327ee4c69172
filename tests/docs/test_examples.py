"""Every page of docs/ runs: its files written, its scripts and commands run, their output shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.pages import pages, read_page
from tests.docs.runner import REPO, PageRun

DOCS = REPO / "docs"
PAGES = [*pages(DOCS), REPO / "README.md"]  # the README is the front door: it runs too

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)  # a page may start servers and run pytest several times
@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_page_examples_run(path: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    page = read_page(path)
    if page.skip:
        pytest.skip(page.skip)
    project = tmp_path / "project"
    project.mkdir()
    run = PageRun(page, project)
    if page.postgres:
        run.database_url = request.getfixturevalue("pg_url")
    run.run()


def test_every_skip_gives_a_reason_and_most_examples_run() -> None:
    blocks = [block for path in PAGES for block in read_page(path).blocks]
    runnable = [
        b
        for b in blocks
        if b.title is None and b.lang in ("python", "py", "console", "sh", "bash", "shell")
    ]
    skipped = [b for b in runnable if b.skip is not None]
    assert all(b.skip and b.skip.strip() for b in skipped)
    assert len(runnable) - len(skipped) >= 0.8 * len(runnable), (
        f"{len(skipped)} of {len(runnable)} Python and shell examples are skipped"
    )

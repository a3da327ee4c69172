"""The fuzzed API: one project and one real engine per module, served on a real port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.helpers import LiveApi, forget_project, start_live_api, write_project


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    config = write_project(tmp_path_factory.mktemp("fuzz") / "project")
    api = start_live_api(config)
    try:
        yield api
    finally:
        api.stop()
        forget_project(api.project)

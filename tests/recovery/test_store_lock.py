"""One live process per database: a second one is refused, naming the holder, until it dies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.recovery.helpers import Child, children

pytestmark = pytest.mark.slow


def test_second_process_gets_store_locked_until_the_holder_is_killed(tmp_path: Path) -> None:
    db, marker = tmp_path / "wf.db", tmp_path / "marks.tsv"
    with children() as started:
        holder = Child("hold", db, marker)
        started.append(holder)
        holder.line("started")

        refused = Child("open", db, marker)
        started.append(refused)
        assert refused.finish() == 3, refused.describe()
        message = refused.line("locked")
        assert message.startswith("locked StoreLocked: ")
        assert f"pid {holder.pid}" in message
        assert str(db) in message

        assert holder.kill() == -9
        opened = Child("open", db, marker)
        started.append(opened)
        assert opened.finish() == 0, opened.describe()
        assert opened.line("opened") == "opened"

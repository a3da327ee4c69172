"""The API a reloaded ``wf dev`` answers through before its engine starts (``Standby``): the
same answers as the engine about its workflows, so what it creates is what the engine would."""

from __future__ import annotations

from pathlib import Path

from wf import WorkflowEntrypoint
from wf.devserver.standby import Standby
from wf.engine import Engine, WorkflowSpec
from wf.engine.controller import Controller
from wf.engine.retention import Retention
from wf.engine.store.sqlite import SqliteStore


class Flow(WorkflowEntrypoint):
    async def run(self, event, step):
        return None


KEPT = Retention(success=3600.0, error=7200.0)
SPECS = [WorkflowSpec("flow", Flow, "FLOW", default_retention=KEPT, schedules=("0 * * * *",))]


def test_the_standby_answers_every_question_the_engine_answers() -> None:
    """Each hook of Controller that the engine overrides (what a workflow is, its version, its
    default_retention, its schedules…), the standby passes on to the engine."""
    hooks = {
        name
        for name, member in vars(Controller).items()
        if callable(member) and name in vars(Engine) and not name.startswith("_")
    }
    assert "default_retention" in hooks and "workflow_schedules" in hooks
    missing = sorted(name for name in hooks if name not in vars(Standby))
    assert missing == [], f"Standby does not pass on {missing}"


async def test_an_instance_created_through_the_standby_gets_the_default_retention(
    tmp_path: Path,
) -> None:
    engine = Engine(SqliteStore(tmp_path / "wf.db", durability="os"), SPECS)
    store = SqliteStore(tmp_path / "wf.db", durability="os")
    await store.open()
    try:
        standby = Standby(engine, store, None)
        await standby.create("flow", "during-reload")
        details = await standby.details("flow", "during-reload")
        assert details["retention"] == {
            "success_retention": "1 hour",
            "error_retention": "2 hours",
        }
    finally:
        await store.close()

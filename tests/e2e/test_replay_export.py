"""A history recorded by a real ``wf dev`` run, exported with the CLI as a user does, replayed
with ``wf.testing.replay`` against the same module and against changed ones."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import pytest

from tests.e2e.helpers import dev_server, wf
from tests.e2e.test_export import NAME, WORKFLOW, project, run_cart_1  # noqa: F401
from wf import NonDeterminismError, WorkflowEntrypoint
from wf.testing import History, replay

pytestmark = pytest.mark.slow

_modules = itertools.count()


def workflow_class(folder: Path, source: str) -> type[WorkflowEntrypoint]:
    """``MyWorkflow`` from ``source``, imported as a module of its own."""
    path = folder / f"changed_{next(_modules)}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls: type[WorkflowEntrypoint] = module.MyWorkflow
    return cls


@pytest.fixture
def exported(project: Path) -> Path:  # noqa: F811 - the fixture imported above
    with dev_server(project) as server:
        url = ["--url", server.url]
        run_cart_1(project, server.url)
        wf("instances", "export", NAME, "cart-1", "-o", "history.json", *url, cwd=project)
    return project / "history.json"


async def test_a_history_from_wf_dev_replays_against_the_module_it_ran(
    exported: Path, tmp_path: Path
) -> None:
    history = History.load(exported)
    assert [step.name for step in history.steps] == [
        "charge card",
        "cool off",
        "shipped",
        "send receipt",
    ]
    result = await replay(workflow_class(tmp_path, WORKFLOW), history)
    assert result.complete and result.new_steps == 0
    assert result.output == {"paid": "p1", "carrier": "DHL"}


async def test_a_renamed_step_fails_naming_it(exported: Path, tmp_path: Path) -> None:
    renamed = WORKFLOW.replace('step.do("charge card"', 'step.do("charge the card"')
    with pytest.raises(NonDeterminismError) as mismatch:
        await replay(workflow_class(tmp_path, renamed), History.load(exported))
    message = str(mismatch.value)
    assert '"charge the card"' in message and '"charge card"' in message
    assert mismatch.value.index == 0


async def test_a_wait_for_another_event_type_fails(exported: Path, tmp_path: Path) -> None:
    changed = WORKFLOW.replace('type="shipped"', 'type="delivered"')
    with pytest.raises(NonDeterminismError, match="delivered"):
        await replay(workflow_class(tmp_path, changed), History.load(exported))


async def test_an_added_final_step_passes(exported: Path, tmp_path: Path) -> None:
    head, last_return, tail = WORKFLOW.rpartition("        return {")
    added = (
        head
        + '        await step.do("thank the customer", lambda: "thanked")\n'
        + last_return
        + tail
    )
    result = await replay(workflow_class(tmp_path, added), History.load(exported))
    assert result.replayed == 4 and result.new_steps == 1

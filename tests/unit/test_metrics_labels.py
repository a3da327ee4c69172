"""/metrics label cardinality: step names made from data (``f"charge {order}"``) must not grow a
series per name without end (memory in a long-lived server, series in Prometheus)."""

from __future__ import annotations

from collections.abc import Mapping

from wf.devserver.metrics import MAX_STEP_LABELS, OTHER_STEPS, Metrics
from wf.engine.runner import Notice


async def _no_statuses() -> Mapping[str, Mapping[str, int]]:
    return {}


def _attempts(text: str) -> dict[tuple[str, str], float]:
    """wf_step_attempts_total by (workflow, step) label."""
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("wf_step_attempts_total{"):
            labels, value = line.rsplit(" ", 1)
            workflow = labels.split('workflow="', 1)[1].split('"', 1)[0]
            step = labels.split('step="', 1)[1].split('"', 1)[0]
            found[(workflow, step)] = float(value)
    return found


async def test_step_labels_are_capped_per_workflow() -> None:
    metrics = Metrics(_no_statuses, lambda: None)
    names = MAX_STEP_LABELS + 50
    for i in range(names):
        for workflow in ("a", "b"):
            metrics.observe(Notice("step_done", workflow, f"i{i}", f"item {i}-1", {"ms": 1.0}))
    metrics.observe(Notice("step_done", "a", "again", "item 0-2", {"ms": 1.0}))
    text = (await metrics.render()).decode()
    by_step = _attempts(text)
    assert len(by_step) == 2 * (MAX_STEP_LABELS + 1)  # the first names, then one for the rest
    assert by_step[("a", "item 0")] == 2 and by_step[("b", "item 0")] == 1
    assert by_step[("a", OTHER_STEPS)] == by_step[("b", OTHER_STEPS)] == 50
    assert sum(by_step.values()) == 2 * names + 1  # every attempt still counted

"""The test kit drives cron schedules with its clock: ``advance`` fires each firing on its way,
at its own time, and what it creates runs before the next one fires."""

from __future__ import annotations

from pathlib import Path

from wf.testing import WorkflowTestEnv

MODULE = """
from wf import WorkflowEntrypoint


class Digest(WorkflowEntrypoint):
    async def run(self, event, step):
        sent = await step.do("send digest", lambda: event.schedule.scheduled_time.isoformat())
        return {"cron": event.schedule.cron, "sent": sent}
"""

CONFIG = """
name = "digests"
main = "digests.py"

[[workflows]]
name = "digest"
binding = "DIGEST"
class_name = "Digest"
schedules = ["*/15 * * * *"]
"""


def project(tmp_path: Path) -> Path:
    (tmp_path / "digests.py").write_text(MODULE)
    (tmp_path / "wf.toml").write_text(CONFIG)
    return tmp_path


async def test_advancing_an_hour_fires_a_quarter_hourly_schedule_four_times(
    tmp_path: Path,
) -> None:
    async with WorkflowTestEnv(project(tmp_path), time="manual", schedules=True) as env:
        start = env.now().timestamp()
        assert await env.instances("digest") == []
        await env.advance("1 hour")
        fired = await env.instances("digest")
        assert len(fired) == 4
        outputs = [await instance.result() for instance in fired]
        assert {o["cron"] for o in outputs} == {"*/15 * * * *"}
        minutes = sorted(o["sent"][14:16] for o in outputs)
        assert minutes == ["00", "15", "30", "45"]
        for instance in fired:
            assert instance.id.startswith("*/15 * * * *-")
        await env.advance("14 minutes")
        quarters_by_then = int((start + 74 * 60) // 900) - int(start // 900)
        assert len(await env.instances("digest")) == quarters_by_then
        created = [n for n in env.notices if n.kind == "queued"]
        assert all(n.detail["trigger"] == "cron" for n in created)


async def test_schedules_do_not_fire_in_a_test_unless_asked(tmp_path: Path) -> None:
    async with WorkflowTestEnv(project(tmp_path), time="manual") as env:
        await env.advance("1 hour")
        assert await env.instances("digest") == []

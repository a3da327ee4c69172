"""Cron schedules as data: wf.toml's ``schedules`` (one line naming the entry and the bad
expression), the firing times (UTC, Debian cron's rules through cronsim), the make-up rule, and
the ids firings get."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.test_project import WORKFLOWS_PY
from wf.engine.cron import Cron, check_schedules, schedule_of
from wf.errors import ValidationError
from wf.project import ProjectError, load_project, load_workflows

ENTRY = """
name = "shop"
main = "workflows.py"

[[workflows]]
name = "purchase"
binding = "PURCHASE"
class_name = "Purchase"

[[workflows]]
name = "refund"
binding = "REFUND"
class_name = "Refund"
schedules = {schedules}
"""


def project_with(tmp_path: Path, schedules: str) -> Path:
    (tmp_path / "workflows.py").write_text(WORKFLOWS_PY)
    config = tmp_path / "wf.toml"
    config.write_text(ENTRY.replace("{schedules}", schedules))
    return config


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ('"*/15 * * * *"', ("*/15 * * * *",)),
        ('["*/15 * * * *", "0 9 * * MON-FRI"]', ("*/15 * * * *", "0 9 * * MON-FRI")),
        ('["  0   9 * *  mon-fri "]', ("0 9 * * mon-fri",)),  # spaces normalised
    ],
)
def test_schedules_are_a_string_or_a_list(
    tmp_path: Path, given: str, expected: tuple[str, ...]
) -> None:
    project = load_project(project_with(tmp_path, given))
    assert project.workflows[0].schedules == ()
    assert project.workflows[1].schedules == expected
    specs = load_workflows(project)
    assert specs[1].schedules == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            '"0 25 * * *"',
            'wf.toml: workflows[1].schedules (workflow "refund") "0 25 * * *" is not a valid '
            "cron expression (bad hour)",
        ),
        (
            '["*/15 * * * *", "60 * * * *"]',
            'wf.toml: workflows[1].schedules[1] (workflow "refund") "60 * * * *" is not a '
            "valid cron expression (bad minute)",
        ),
        (
            '["* * * *"]',
            'wf.toml: workflows[1].schedules[0] (workflow "refund") "* * * *" has 4 field(s); a '
            "cron expression has 5: minute hour day-of-month month day-of-week",
        ),
        (
            '"0 0 * * * *"',
            'wf.toml: workflows[1].schedules (workflow "refund") "0 0 * * * *" has 6 field(s); a '
            "cron expression has 5: minute hour day-of-month month day-of-week",
        ),
        (
            '"@hourly"',
            'wf.toml: workflows[1].schedules (workflow "refund") "@hourly" has 1 field(s); a '
            "cron expression has 5: minute hour day-of-month month day-of-week",
        ),
        (
            '"0 0 ? * *"',
            'wf.toml: workflows[1].schedules (workflow "refund") "0 0 ? * *" may only contain '
            "letters, digits, spaces and , * / # - _",
        ),
        (
            '"0 0 30 2 *"',
            'wf.toml: workflows[1].schedules (workflow "refund") "0 0 30 2 *" is not a valid '
            "cron expression (bad day-of-month)",
        ),
        (
            '["0 * * * *", "0  * * * *"]',
            'wf.toml: workflows[1].schedules[1] (workflow "refund") "0 * * * *" is listed twice',
        ),
        (
            "[]",
            'wf.toml: workflows[1].schedules (workflow "refund") must not be an empty list '
            "(leave it out instead)",
        ),
        (
            '[""]',
            'wf.toml: workflows[1].schedules[0] (workflow "refund") must not be empty',
        ),
        (
            "15",
            'wf.toml: workflows[1].schedules (workflow "refund") must be a cron expression or a '
            'list of them, such as ["*/15 * * * *"], got int',
        ),
        (
            "[15]",
            'wf.toml: workflows[1].schedules[0] (workflow "refund") must be a cron expression (a '
            "string), got int",
        ),
        (
            '"' + "1," * 130 + '1 * * * *"',
            'wf.toml: workflows[1].schedules (workflow "refund") "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,'
            '1,1,1,1,1,…" is 269 characters long; the limit is 256',
        ),
    ],
)
def test_a_bad_schedule_is_one_line_naming_the_entry(
    tmp_path: Path, given: str, message: str
) -> None:
    with pytest.raises(ProjectError) as caught:
        load_project(project_with(tmp_path, given))
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_next_and_latest_firing_times_are_utc() -> None:
    cron = Cron.parse("0 9 * * MON-FRI")
    friday = utc("2026-07-03T08:59:59.5")
    assert cron.next_after(friday) == utc("2026-07-03T09:00:00")
    assert cron.next_after(utc("2026-07-03T09:00:00")) == utc("2026-07-06T09:00:00")  # Monday
    assert cron.latest_until(utc("2026-07-05T12:00:00")) == utc("2026-07-03T09:00:00")
    assert cron.latest_until(utc("2026-07-06T09:00:00")) == utc("2026-07-06T09:00:00")


def test_due_is_the_latest_missed_firing_or_none() -> None:
    cron = Cron.parse("*/15 * * * *")
    last = utc("2026-07-03T10:00:00")
    assert cron.due(last, utc("2026-07-03T10:14:59")) is None
    assert cron.due(last, utc("2026-07-03T10:15:00")) == utc("2026-07-03T10:15:00")
    assert cron.due(last, utc("2026-07-03T13:07:00")) == utc("2026-07-03T13:00:00")


def test_day_of_month_or_day_of_week_as_debian_cron_has_it() -> None:
    # Both restricted: either matches (the 13th, or any Friday).
    cron = Cron.parse("0 0 13 * FRI")
    assert cron.next_after(utc("2026-07-01T00:00:00")) == utc("2026-07-03T00:00:00")  # a Friday
    assert cron.next_after(utc("2026-07-11T00:00:00")) == utc("2026-07-13T00:00:00")  # the 13th


def test_a_firing_id_and_what_event_schedule_says_of_it() -> None:
    cron = Cron.parse("*/30 * * * *")
    instance_id = cron.instance_id(1786001400.0)
    assert instance_id == "*/30 * * * *-1786001400000"  # Cloudflare's own example
    schedule = schedule_of("cron", instance_id)
    assert schedule is not None
    assert schedule.cron == "*/30 * * * *"
    assert schedule.scheduled_time == datetime(2026, 8, 6, 7, 30, tzinfo=timezone.utc)
    assert schedule["scheduledTime"] == 1786001400000
    assert schedule["scheduled_time"] == schedule.scheduled_time
    assert schedule["cron"] == schedule.cron
    with pytest.raises(KeyError):
        schedule["other"]
    assert schedule_of("api", instance_id) is None
    assert schedule_of("cron", "no-time-here") is None


def test_a_schedule_that_never_fires_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"never fires|not a valid cron"):
        check_schedules(["0 0 31 2 *"])

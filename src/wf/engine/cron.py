"""Cron schedules: validating an expression, its firing times (UTC), and the instance id of a
firing. Parsing and matching are cronsim's (Debian cron's rules); this module adds wf's rules.

A firing's instance id is Cloudflare's: ``"<cron>-<scheduled time in ms>"``, e.g.
``"*/15 * * * *-1786001400000"``. Creating by that id is what makes a firing happen once: a
second node or a restarted process creating the same firing finds the id taken and skips it.
Such ids are only ever made here (users' ids keep the usual, narrower pattern).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cronsim import CronSim, CronSimError

from wf.engine.details import iso
from wf.engine.model import WorkflowSchedule
from wf.errors import ValidationError, quote

MAX_CRON_LENGTH = 256  # Cloudflare's limit
# What Cloudflare allows in an id made from a cron (letters: MON-FRI, JAN, L, W).
_CRON_CHARACTERS = re.compile(r"[a-zA-Z0-9, */#_-]+")
_CRON_ID = re.compile(r"(.+)-([0-9]{1,15})")
# The shape of a firing's instance id: a cron's characters, then "-" and the time in ms.
FIRING_ID_PATTERN = re.compile(r"[a-zA-Z0-9, */#_-]{1,256}-[0-9]{1,15}")
_UTC = timezone.utc


@dataclass(frozen=True)
class Cron:
    """A checked cron expression, its fields separated by single spaces."""

    expression: str

    @classmethod
    def parse(cls, text: object) -> Cron:
        """The cron ``text`` means, or ``ValidationError`` saying what is wrong with it."""
        if not isinstance(text, str):
            raise ValidationError(
                f"must be a cron expression (a string), got {type(text).__name__}"
            )
        expression = " ".join(text.split())
        if not expression:
            raise ValidationError("must not be empty")
        if len(expression) > MAX_CRON_LENGTH:
            raise ValidationError(
                f"{quote(text, 40)} is {len(expression)} characters long; "
                f"the limit is {MAX_CRON_LENGTH}"
            )
        fields = expression.split(" ")
        if len(fields) != 5:
            raise ValidationError(
                f"{quote(text)} has {len(fields)} field(s); a cron expression has 5: "
                "minute hour day-of-month month day-of-week"
            )
        if not _CRON_CHARACTERS.fullmatch(expression):
            raise ValidationError(
                f"{quote(text)} may only contain letters, digits, spaces and , * / # - _"
            )
        try:
            CronSim(expression, datetime.now(_UTC))
        except CronSimError as exc:
            reason = str(exc).lower() or "not understood"
            raise ValidationError(
                f"{quote(text)} is not a valid cron expression ({reason})"
            ) from None
        cron = cls(expression)
        if cron.next_after(datetime.now(_UTC).timestamp()) is None:
            raise ValidationError(f"{quote(text)} never fires")
        return cron

    def next_after(self, moment: float) -> float | None:
        """The first firing time strictly after ``moment`` (epoch seconds); None if there is
        none within 50 years."""
        start = datetime.fromtimestamp(moment, _UTC)
        try:
            return next(CronSim(self.expression, start)).timestamp()
        except StopIteration:
            return None

    def latest_until(self, moment: float) -> float | None:
        """The last firing time at or before ``moment``; None if there is none within 50 years."""
        # cronsim's reverse iteration yields times strictly before its start: start a second on.
        start = datetime.fromtimestamp(int(moment // 1), _UTC) + timedelta(seconds=1)
        try:
            return next(CronSim(self.expression, start, reverse=True)).timestamp()
        except StopIteration:
            return None

    def due(self, last: float, now: float) -> float | None:
        """The firing to make now, given that every firing up to ``last`` was made: the latest
        one in (last, now], or None. Several missed firings are made up once, as the latest."""
        first = self.next_after(last)
        if first is None or first > now:
            return None
        latest = self.latest_until(now)
        return latest if latest is not None and latest > last else first

    def instance_id(self, scheduled: float) -> str:
        """The id of the instance firing at ``scheduled`` creates."""
        return f"{self.expression}-{round(scheduled * 1000)}"

    def explain(self) -> str:
        """The schedule in words ("At every 15th minute"), as cronsim puts it."""
        try:
            return CronSim(self.expression, datetime.now(_UTC)).explain()
        except Exception:  # an explanation is a nicety: never a reason to fail
            return ""


class BadSchedule(ValidationError):
    """A workflow's ``schedules`` are wrong: ``problem`` says how, ``index`` which element (None:
    the value as a whole)."""

    def __init__(self, problem: str, index: int | None = None) -> None:
        super().__init__(problem if index is None else f"[{index}] {problem}")
        self.problem = problem
        self.index = index


def check_schedules(value: object) -> tuple[Cron, ...]:
    """``schedules`` of a workflow: one cron expression or a list of them, each checked, none
    twice; ``BadSchedule`` otherwise."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise BadSchedule(
            'must be a cron expression or a list of them, such as ["*/15 * * * *"], '
            f"got {type(value).__name__}"
        )
    if not items:
        raise BadSchedule("must not be an empty list (leave it out instead)")
    crons: list[Cron] = []
    for index, item in enumerate(items):
        where = None if isinstance(value, str) else index
        try:
            cron = Cron.parse(item)
        except ValidationError as exc:
            raise BadSchedule(str(exc), where) from None
        if cron in crons:
            raise BadSchedule(f'"{cron.expression}" is listed twice', where)
        crons.append(cron)
    return tuple(crons)


def is_firing_id(value: object) -> bool:
    """True for what may be the id a firing gives its instance (``"<cron>-<ms>"``): no user's
    id looks like it (a cron has spaces, ``*`` and ``/``), but it names an instance all the
    same. Checked by its shape only (``FIRING_ID_PATTERN``, as the OpenAPI document says)."""
    return isinstance(value, str) and FIRING_ID_PATTERN.fullmatch(value) is not None


def schedule_of(trigger: str, instance_id: str) -> WorkflowSchedule | None:
    """What ``event.schedule`` says for an instance: its cron and firing time when a schedule
    created it (its id says both), else None."""
    if trigger != "cron":
        return None
    match = _CRON_ID.fullmatch(instance_id)
    if match is None:
        return None
    scheduled = datetime.fromtimestamp(int(match.group(2)) / 1000, _UTC)
    return WorkflowSchedule(cron=match.group(1), scheduled_time=scheduled)


def schedules_json(expressions: Sequence[str], now: float) -> list[dict[str, Any]]:
    """A workflow's schedules as the REST API shows them: each cron, its next firing after
    ``now`` (ISO 8601, UTC) and what it means in words."""
    shown = []
    for expression in expressions:
        cron = Cron(expression)
        shown.append(
            {
                "cron": expression,
                "next": iso(cron.next_after(now)),
                "description": cron.explain(),
            }
        )
    return shown

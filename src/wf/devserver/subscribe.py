"""``GET .../instances/{id}/subscribe``: one instance's progress as server-sent events.

The stream replays the instance's retained history first, then what changes, and ends once the
instance is complete, errored or terminated. It is made by polling the store (the instance's
details every ``POLL_SECONDS``) and sending the differences, so it works the same for ``wf dev``,
``wf serve`` and a cluster of nodes, whichever node ran the steps.

Events (``data:`` is one JSON object):

* ``step``: a step started or finished: ``{index, name, type, state, attempt, start, end, error,
  wake_at, timeout_at, retries_at, event_type}`` (``state``: running, succeeded, failed,
  finished; ``name`` as in the details, ``"charge-1"``).
* ``attempt``: an attempt of a ``do`` (or rollback) step failed: ``{index, name, attempt, start,
  end, error, retries_at}``.
* ``status``: the instance's status, at the first poll and whenever it changes:
  ``{status, error}``.
* ``end``: the instance finished (the last event): ``{status, error}``; or ``{status: null,
  deleted: true}`` when it was deleted meanwhile.

Each ``step``/``attempt`` event has an ``id`` naming it in the history (events are in the order
they happened); a ``status`` or ``end`` event repeats the id of the last one before it (``0``
before any). ``Last-Event-ID`` (or ``?cursor=``) resumes after that event; an id the history no
longer holds (a restart began it anew) replays it all. ``retry:`` is sent first, and a ``: ping``
comment every ``PING_SECONDS`` of silence. The server ends the stream without ``end`` when it
stops or reloads: clients reconnect.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from wf.engine.controller import Controller
from wf.errors import InstanceNotFound, StoreUnavailable, WfError

POLL_SECONDS = 0.2
PING_SECONDS = 15.0
RETRY_MS = 1000
FINISHED = frozenset({"complete", "errored", "terminated"})
EVENT_TYPES = ("step", "attempt", "status", "end")
START = "0"  # the id before the first event


@dataclass(frozen=True)
class Fact:
    """One thing the history says happened, with a stable id."""

    id: str
    event: str
    data: dict[str, Any]


class Streams:
    """The open streams of an app, to end them all when the server stops or reloads (so that
    the drain of connections never waits on them)."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.open = 0  # streams being served now

    def close_all(self) -> None:
        self.closing.set()


STREAMS_KEY = web.AppKey("wf_streams", Streams)


def install(app: web.Application) -> Streams:
    streams = Streams()
    app[STREAMS_KEY] = streams

    async def on_shutdown(app: web.Application) -> None:
        streams.close_all()

    app.on_shutdown.append(on_shutdown)  # any runner's cleanup; wf dev and serve close earlier
    return streams


def close_streams(app: web.Application) -> None:
    """End every open stream of ``app`` now (their clients reconnect)."""
    streams = app.get(STREAMS_KEY)
    if streams is not None:
        streams.close_all()


# ---- the facts of a history -------------------------------------------------------------------


def run_of(details: dict[str, Any]) -> str:
    """Which run of the instance ``details`` shows: a restart begins a new one."""
    restarted = details.get("restarted") or {}
    return f"{details.get('created')}/{restarted.get('at')}"


def facts(details: dict[str, Any]) -> list[Fact]:
    """The history in ``details`` (the instance's Cloudflare-shaped details) as events, in the
    order they happened (steps may run in parallel). Ids are stable within a run."""
    run = run_of(details)
    found: list[tuple[str, int, Fact]] = []

    def add(at: Any, key: str, event: str, data: dict[str, Any]) -> None:
        digest = hashlib.sha1(f"{run}/{key}".encode()).hexdigest()[:12]
        found.append((str(at or ""), len(found), Fact(digest, event, data)))

    for index, step in enumerate(details.get("steps") or []):
        kind = step.get("type")
        if kind == "termination":
            continue
        name = str(step.get("name"))
        common = {"index": index, "name": name, "type": kind}
        add(
            step.get("start"),
            f"{index}/start",
            "step",
            {**common, "state": "running", **_waits(step)},
        )
        attempts = step.get("attempts") or []
        for number, attempt in enumerate(attempts, start=1):
            if attempt.get("end") is None or attempt.get("success") is not False:
                continue
            if number == len(attempts) and step.get("success") is False:
                continue  # the step's own "failed" says it
            add(
                attempt.get("end"),
                f"{index}/attempt/{number}",
                "attempt",
                {
                    **common,
                    "attempt": number,
                    "start": attempt.get("start"),
                    "end": attempt.get("end"),
                    "error": attempt.get("error"),
                    "retries_at": step.get("retries_at") if number == len(attempts) else None,
                },
            )
        state = _end_state(step)
        if state is not None:
            add(
                step.get("end"),
                f"{index}/end",
                "step",
                {
                    **common,
                    "state": state,
                    "attempt": len(attempts) or None,
                    "start": step.get("start"),
                    "end": step.get("end"),
                    "error": step.get("error"),
                    **({"event_type": step["event_type"]} if step.get("event_type") else {}),
                },
            )
    found.sort(key=lambda entry: (entry[0], entry[1]))  # ISO times in UTC sort as text
    return [fact for _, _, fact in found]


def _waits(step: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {"start": step.get("start")}
    for key in ("wake_at", "timeout_at", "event_type"):
        if step.get(key) is not None:
            shown[key] = step[key]
    return shown


def _end_state(step: dict[str, Any]) -> str | None:
    if step.get("type") in ("step", "rollback"):
        success = step.get("success")
        return None if success is None else ("succeeded" if success else "failed")
    if not step.get("finished"):
        return None
    return "failed" if step.get("error") else "finished"


# ---- the stream -------------------------------------------------------------------------------


def _frame(event: str, data: dict[str, Any], event_id: str) -> bytes:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event_id}\nevent: {event}\ndata: {text}\n\n".encode()


class _Subscription:
    """What one client has been sent: the ids of the current run's facts, and the status."""

    def __init__(self, cursor: str | None):
        self.cursor = cursor or START  # the id of the last fact sent (or the client's)
        self.run: str | None = None
        self.sent: set[str] = set()
        self.status: str | None = None

    def changes(self, details: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
        found = facts(details)
        run = run_of(details)
        if run != self.run:
            if self.run is not None:
                self.cursor = START  # a restart: the history begins anew
            self.run, self.sent = run, set()
            ids = [fact.id for fact in found]
            if self.cursor in ids:  # a client resuming: what it had stays unsent
                self.sent.update(ids[: ids.index(self.cursor) + 1])
        for fact in found:
            if fact.id not in self.sent:
                self.sent.add(fact.id)
                self.cursor = fact.id
                yield fact.event, fact.data, fact.id
        status = details.get("status")
        if status != self.status:
            self.status = status
            yield "status", {"status": status, "error": details.get("error")}, self.cursor


async def subscribe(request: web.Request, reads: Controller) -> web.StreamResponse:
    name, instance_id = request.match_info["name"], request.match_info["id"]
    cursor = request.headers.get("Last-Event-ID") or request.query.get("cursor")
    details = await reads.details(name, instance_id)  # 404 before the stream begins
    streams = request.app[STREAMS_KEY]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    streams.open += 1
    try:
        await _stream(request, response, reads, details, _Subscription(cursor), streams)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away
    finally:
        streams.open -= 1
    return response


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    reads: Controller,
    details: dict[str, Any],
    subscription: _Subscription,
    streams: Streams,
) -> None:
    """Send the changes of ``details`` until the instance finishes, the client goes or the
    server closes its streams."""
    name, instance_id = request.match_info["name"], request.match_info["id"]
    loop = asyncio.get_running_loop()
    await response.write(f"retry: {RETRY_MS}\n\n".encode())
    last_write = loop.time()
    while True:
        frames = b"".join(_frame(*change) for change in subscription.changes(details))
        if subscription.status in FINISHED:
            end = {"status": subscription.status, "error": details.get("error")}
            await response.write(frames + _frame("end", end, subscription.cursor))
            break
        if frames:
            await response.write(frames)
            last_write = loop.time()
        elif loop.time() - last_write >= PING_SECONDS:
            await response.write(b": ping\n\n")
            last_write = loop.time()
        if await _closing(streams, POLL_SECONDS):
            break
        transport = request.transport
        if transport is None or transport.is_closing():
            break  # the client went away: no need to wait for a write to fail
        try:
            details = await reads.details(name, instance_id)
        except InstanceNotFound:
            gone = {"status": None, "deleted": True}
            await response.write(_frame("end", gone, subscription.cursor))
            break
        except StoreUnavailable:
            continue  # the database went away: the next poll tries again
        except WfError:
            break  # said in the log by whoever raised it; the client reconnects


async def _closing(streams: Streams, seconds: float) -> bool:
    """Wait ``seconds``; True at once if the server is closing its streams."""
    try:
        await asyncio.wait_for(streams.closing.wait(), seconds)
    except TimeoutError:
        return False
    return True

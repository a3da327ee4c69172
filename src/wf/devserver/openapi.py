"""The OpenAPI 3.1 document of the REST API, served at ``/api/openapi.json``.

A test walks the app's router and checks that every route is here and nothing else is.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import Any

from wf import __version__
from wf.devserver.cloudflare_paths import CLIENT_PREFIX, MIRRORED, SLASHED, cloudflare_path
from wf.durations import positive_text_pattern
from wf.engine.cron import FIRING_ID_PATTERN
from wf.engine.limits import ID_PATTERN
from wf.engine.model import Status

Schema = dict[str, Any]

STATUSES = [s.value for s in Status]
UNFINISHED_STATUSES = [s.value for s in Status if not s.finished]
ID_REGEX = f"^{ID_PATTERN.pattern}$"


def _status_is(action: str) -> Schema:
    """A status change asking for ``action`` (as "status", or as "action")."""
    return {
        "anyOf": [
            {"required": ["status"], "properties": {"status": {"const": action}}},
            {"required": ["action"], "properties": {"action": {"const": action}}},
        ]
    }


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


ISO: Schema = {
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601 UTC, e.g. 2025-01-01T00:00:00.000Z",
}
ANY: Schema = {"description": "any JSON value"}
_WORKFLOW_ID: Schema = {
    "type": "string",
    "description": "the workflow's id: wf identifies a workflow by its name (Cloudflare by a UUID)",
}


def _object(
    properties: dict[str, Schema], required: list[str] | None = None, **extra: Any
) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    schema.update(extra)
    return schema


_STEP_CONFIG = _object(
    {
        "retries": _object(
            {
                "limit": {"type": "integer"},
                "delay": {
                    "type": ["number", "string"],
                    "description": '"[dynamic]" when a function decides it',
                },
                "backoff": {"enum": ["constant", "linear", "exponential"]},
            }
        ),
        "timeout": {"type": ["number", "string"]},
        "sensitive": {
            "const": "output",
            "description": 'the step\'s output is shown as "[REDACTED]"',
        },
    },
    required=["retries", "timeout"],
)
_STEP_STATE: Schema = {"enum": ["running", "succeeded", "failed"]}
_DURATION_MS: Schema = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "pattern": positive_text_pattern()},
        {"type": "null"},
    ],
    "description": 'milliseconds, or a duration such as "7 days"; longer than zero (null: '
    "the default)",
}


def _history_step(kind: str, properties: dict[str, Schema]) -> Schema:
    """A step of a history: its identity (kind, name, count) and times, then its kind's own."""
    return _object(
        {
            "kind": {"const": kind},
            "name": {"type": "string"},
            "count": {"type": "integer", "minimum": 1, "description": "per kind and name, from 1"},
            "state": _STEP_STATE,
            "start": ISO,
            "end": _nullable(ISO),
            **properties,
        }
    )


# The history export (format "wf-history"): a record for programs (``wf.testing`` replays it).
_HISTORY_SCHEMAS: dict[str, Schema] = {
    "HistoryAttempt": _object(
        {
            "number": {"type": "integer", "minimum": 1},
            "start": ISO,
            "end": _nullable(ISO),
            "success": _nullable({"type": "boolean"}),
            "error": _nullable(_ref("ErrorInfo")),
            "uncounted": {
                "type": "boolean",
                "description": "cut short by a graceful stop: it did not use up a retry",
            },
        }
    ),
    "HistoryStepDo": _history_step(
        "do",
        {
            "output": ANY,
            "error": _nullable(_ref("ErrorInfo")),
            "config": _nullable(_STEP_CONFIG),
            "attempts": {"type": "array", "items": _ref("HistoryAttempt")},
        },
    ),
    "HistoryStepRollback": _history_step(
        "rollback",
        {
            "output": ANY,
            "error": _nullable(_ref("ErrorInfo")),
            "config": _nullable(_STEP_CONFIG),
            "attempts": {"type": "array", "items": _ref("HistoryAttempt")},
        },
    )
    | {"description": "a do step's rollback handler, run as a step of its own"},
    "HistoryStepSleep": _history_step(
        "sleep",
        {
            "duration": _nullable(
                {"type": "number", "description": "seconds asked for (null: a sleep_until)"}
            ),
            "wake_at": _nullable(ISO | {"description": "its end; null once it finished"}),
        },
    ),
    "HistoryStepWait": _history_step(
        "wait",
        {
            "event_type": _nullable({"type": "string"}),
            "timeout": _nullable({"type": "number", "description": "seconds"}),
            "wake_at": _nullable(ISO | {"description": "its deadline; null once it finished"}),
            "output": ANY | {"description": "the payload of the event received"},
            "event_time": _nullable(ISO | {"description": "when that event was sent"}),
            "error": _nullable(_ref("ErrorInfo")),
        },
    ),
    "HistoryStep": {
        "oneOf": [
            _ref("HistoryStepDo"),
            _ref("HistoryStepSleep"),
            _ref("HistoryStepWait"),
            _ref("HistoryStepRollback"),
        ],
        "discriminator": {
            "propertyName": "kind",
            "mapping": {
                "do": "#/components/schemas/HistoryStepDo",
                "rollback": "#/components/schemas/HistoryStepRollback",
                "sleep": "#/components/schemas/HistoryStepSleep",
                "wait": "#/components/schemas/HistoryStepWait",
            },
        },
    },
    "HistoryEvent": _object(
        {
            "type": {"type": "string"},
            "payload": ANY,
            "received": ISO,
            "consumed_by": _nullable(
                {"type": "string", "description": "name-count of the wait that received it"}
            ),
        }
    ),
    "History": _object(
        {
            "format": {"const": "wf-history"},
            "format_version": {"const": 1},
            "workflow": {"type": "string"},
            "id": {"type": "string"},
            "version": {"type": "string", "description": "the version the instance runs under"},
            "status": _ref("InstanceStatus"),
            "trigger": {"type": "string", "description": "as recorded: api, cli, binding…"},
            "params": ANY,
            "created": ISO,
            "start": _nullable(ISO),
            "end": _nullable(ISO),
            "output": ANY,
            "error": _nullable(_ref("ErrorInfo")),
            "rollback": _nullable(_ref("Rollback")),
            "steps": {"type": "array", "items": _ref("HistoryStep")},
            "events": {"type": "array", "items": _ref("HistoryEvent")},
        }
    ),
}

# The events of GET .../subscribe (wf.devserver.subscribe): each one's "data:" line.
_STEP_NAME: Schema = {
    "type": "string",
    "description": 'the step as the details name it, "charge-1"',
}
_STEP_TYPE: Schema = {"enum": ["step", "sleep", "waitForEvent", "rollback", "runWorkflow"]}
_STREAM_SCHEMAS: dict[str, Schema] = {
    "StreamStep": _object(
        {
            "index": {"type": "integer", "description": "the step's place in the details' steps"},
            "name": _STEP_NAME,
            "type": _STEP_TYPE,
            "state": {"enum": ["running", "succeeded", "failed", "finished"]},
            "attempt": _nullable({"type": "integer"}),
            "start": _nullable(ISO),
            "end": _nullable(ISO),
            "error": _nullable(_ref("ErrorInfo")),
            "wake_at": ISO,
            "timeout_at": ISO,
            "event_type": {"type": "string"},
        },
        required=["index", "name", "type", "state", "start"],
        description=(
            'event "step": a step started (state running; a sleep says wake_at, a wait its '
            "event_type and timeout_at) or finished (succeeded or failed for a do or rollback "
            "step, finished or failed for a sleep or wait)"
        ),
    ),
    "StreamAttempt": _object(
        {
            "index": {"type": "integer"},
            "name": _STEP_NAME,
            "type": _STEP_TYPE,
            "attempt": {"type": "integer", "minimum": 1},
            "start": _nullable(ISO),
            "end": _nullable(ISO),
            "error": _nullable(_ref("ErrorInfo")),
            "retries_at": _nullable(ISO),
        },
        description='event "attempt": an attempt of a step failed and the step will retry',
    ),
    "StreamStatus": _object(
        {"status": _ref("InstanceStatus"), "error": _nullable(_ref("ErrorInfo"))},
        description='event "status": the status, first and whenever it changes',
    ),
    "StreamEnd": _object(
        {
            "status": _nullable(_ref("InstanceStatus")),
            "error": _nullable(_ref("ErrorInfo")),
            "deleted": {"const": True},
        },
        required=["status"],
        description=(
            'event "end", the last: the instance finished (complete, errored or terminated), '
            "or was deleted (status null, deleted true)"
        ),
    ),
}


_MS: Schema = _nullable({"type": "number", "minimum": 0})  # milliseconds; null: nothing measured
# GET /api/stats (wf stats): a summary per workflow over a window.
_STATS_SCHEMAS: dict[str, Schema] = {
    "Stats": _object(
        {
            "since": ISO,
            "until": ISO,
            "window_seconds": {"type": "number"},
            "workflows": {"type": "array", "items": _ref("WorkflowStats")},
        }
    ),
    "WorkflowStats": _object(
        {
            "workflow": {"type": "string"},
            "counts": _ref("InstanceCounts"),
            "finished": _object(
                {
                    k: {"type": "integer", "minimum": 0}
                    for k in ("total", "complete", "errored", "terminated")
                }
            ),
            "throughput_per_minute": {"type": "number", "description": "finished per minute"},
            "duration_ms": _object(
                {"count": {"type": "integer"}, "p50_ms": _MS, "p95_ms": _MS, "p99_ms": _MS},
                description="from creation to end, of the instances finished in the window",
            ),
            "attempts": _object(
                {
                    "total": {"type": "integer"},
                    "failed": {"type": "integer"},
                    "wall_ms": _MS,
                    "cpu_ms": _MS | {"description": "null while CPU time is not recorded"},
                }
            ),
            "slowest_steps": {"type": "array", "items": _ref("SlowStep"), "maxItems": 5},
            "failing_steps": {"type": "array", "items": _ref("FailingStep"), "maxItems": 5},
        },
        description="counts: by status, the instances created, finished or unfinished in the "
        "window",
    ),
    "SlowStep": _object(
        {
            "step": {"type": "string"},
            "attempts": {"type": "integer"},
            "p50_ms": _MS,
            "p95_ms": _MS,
            "max_ms": _MS,
            "cpu_p95_ms": _MS,
        }
    ),
    "FailingStep": _object(
        {
            "step": {"type": "string"},
            "failures": {"type": "integer"},
            "attempts": {"type": "integer"},
            "last_error": _nullable(_ref("ErrorInfo")),
            "last_failed": ISO,
        }
    ),
}

_SCHEMAS: dict[str, Schema] = {
    "Error": _object(
        {"code": {"type": "integer", "examples": [10200]}, "message": {"type": "string"}}
    ),
    "ResultInfo": _object(
        {
            "page": {"type": "integer", "minimum": 1},
            "per_page": {"type": "integer", "minimum": 1, "maximum": 1000},
            "count": {"type": "integer", "description": "items on this page"},
            "total_count": {"type": "integer", "description": "items on every page"},
        }
    ),
    "Envelope": _object(
        {
            "success": {"type": "boolean"},
            "errors": {"type": "array", "items": _ref("Error")},
            "messages": {"type": "array", "items": {}},
            "result": ANY,
            "result_info": _ref("ResultInfo"),
        },
        required=["success", "errors", "messages", "result"],
    ),
    "ErrorEnvelope": {
        "allOf": [
            _ref("Envelope"),
            _object(
                {
                    "success": {"const": False},
                    "errors": {
                        "type": "array",
                        "items": _ref("Error"),
                        "minItems": 1,
                        "maxItems": 1,
                    },
                    "result": {"type": "null"},
                }
            ),
        ]
    },
    "ErrorInfo": _object({"name": {"type": "string"}, "message": {"type": "string"}}),
    "Health": _object(
        {
            "status": {"enum": ["ok", "error"]},
            "project": {"type": "string"},
            "version_id": _nullable({"type": "string"}),
            "workflows": {"type": "array", "items": {"type": "string"}},
            "error": _nullable(
                {"type": "string", "description": "why the project failed to load (file and line)"}
            ),
            "node": {
                "type": "string",
                "description": "wf serve only: the node that answered (random per start)",
            },
            "nodes": {
                "type": "integer",
                "minimum": 1,
                "description": "wf serve only: the nodes sharing the database (with a live lease)",
            },
            "database": {
                "enum": ["sqlite", "postgresql"],
                "description": "wf serve only: the kind of database",
            },
        },
        required=["status", "project", "version_id", "workflows", "error"],
    ),
    "InstanceCounts": _object({s: {"type": "integer", "minimum": 0} for s in STATUSES}),
    "WorkflowUpdate": _object(
        {
            "class_name": {"type": "string"},
            "script_name": {"type": "string", "description": "the project's name (wf.toml)"},
            "concurrency": {"description": "set in wf.toml: giving it is a 409"},
            "default_retention": {"description": "set in wf.toml: giving it is a 409"},
            "limits": {"description": "set in wf.toml: giving it is a 409"},
            "schedules": {"description": "set in wf.toml: giving it is a 409"},
        },
        required=["class_name", "script_name"],
    ),
    "UpdatedWorkflow": {
        "allOf": [
            _ref("Workflow"),
            _object({"is_deleted": {"type": "integer"}, "terminator_running": {"type": "integer"}}),
        ]
    },
    "Workflow": _object(
        {
            "id": _WORKFLOW_ID,
            "name": {"type": "string"},
            "binding": _nullable({"type": "string"}),
            "class_name": {"type": "string"},
            "script_name": {"type": "string", "description": "the project's name"},
            "version_id": _nullable({"type": "string"}),
            "created_on": ISO
            | {"description": "oldest instance's creation (none yet: when the code loaded)"},
            "modified_on": ISO
            | {"description": "latest instance modification (none yet: when the code loaded)"},
            "triggered_on": _nullable(ISO | {"description": "newest instance's creation"}),
            "instances": _ref("InstanceCounts"),
            "schedules": {
                "type": "array",
                "items": _ref("Schedule"),
                "description": "its cron schedules (wf.toml's schedules), UTC",
            },
        }
    ),
    "Schedule": _object(
        {
            "cron": {"type": "string", "examples": ["*/15 * * * *"]},
            "next": _nullable(ISO | {"description": "the next firing (null: none in 50 years)"}),
            "description": {"type": "string", "description": "the schedule in words"},
        },
        required=["cron", "next"],
    ),
    "DeletedWorkflow": _object(
        {"status": {"const": "ok"}, "name": {"type": "string"}, "deleted": {"type": "integer"}}
    ),
    "InstanceStatus": {"enum": STATUSES},
    "Trigger": {
        "enum": ["api", "binding", "event", "cron", "unknown"],
        "description": "Cloudflare's trigger sources; wf's own CLI triggers are api",
    },
    "InstanceTrigger": _object(
        {
            "source": _ref("Trigger"),
            "via": {
                "enum": ["cli", "parent"],
                "description": "wf's CLI asked (an api call to Cloudflare), or a parent "
                "workflow's step.run_workflow (or the parent's termination)",
            },
        },
        required=["source"],
    ),
    "InstanceSummary": _object(
        {
            "id": {"type": "string"},
            "status": _ref("InstanceStatus"),
            "version_id": {"type": "string"},
            "workflow_id": _WORKFLOW_ID,
            "workflow": {"type": "string"},
            "created_on": ISO,
            "modified_on": ISO,
            "started_on": _nullable(ISO),
            "ended_on": _nullable(ISO),
            "trigger": _ref("Trigger"),
            "trigger_source": _ref("Trigger"),
        }
    ),
    "NewInstance": _object(
        {
            "id": {"type": "string", "pattern": ID_REGEX, "maxLength": 100},
            "instance_id": {
                "type": "string",
                "pattern": ID_REGEX,
                "maxLength": 100,
                "description": "Cloudflare's name for id",
            },
            "params": ANY | {"description": "the instance's params (at most 1 MiB as JSON)"},
            "instance_retention": _ref("Retention"),
            "priority": {
                "type": "integer",
                "minimum": -1_000_000,
                "maximum": 1_000_000,
                "description": "wf only: higher is claimed first among ready instances (default 0)",
            },
        },
        required=[],
        additionalProperties=False,
        # One name for the id, not both.
        **{"not": {"required": ["id", "instance_id"]}},
    ),
    "Retention": _object(
        {
            "success_retention": _DURATION_MS,
            "error_retention": _DURATION_MS
            | {"description": "for errored and terminated instances"},
        },
        required=[],
        additionalProperties=False,
        description="how long the instance is kept once finished (default: the workflow's "
        "default_retention, then the server's retention); its id stays taken meanwhile",
    ),
    "RestartFrom": _object(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 256},
            "count": {"type": "integer", "minimum": 1, "description": "1-based; default 1"},
            "type": {
                "enum": ["do", "sleep", "waitForEvent", "runWorkflow"],
                "description": "default do",
            },
        },
        required=["name"],
        additionalProperties=False,
    ),
    "Restarted": _object(
        {
            "at": ISO,
            "from": _nullable(_ref("RestartFrom")),
            "new_params": {"type": "boolean"},
        },
        description="wf only: the instance's latest restart",
    ),
    "CreateBatchObject": {
        "oneOf": [
            _object(
                {
                    "count": {"type": "integer", "minimum": 1, "maximum": 100},
                    "params": ANY,
                    "instance_retention": _ref("Retention"),
                },
                required=["count"],
                additionalProperties=False,
            ),
            _object(
                {
                    "instances": {
                        "type": "array",
                        "items": _ref("NewInstance"),
                        "minItems": 1,
                        "maxItems": 100,
                    }
                },
                additionalProperties=False,
            ),
        ]
    },
    "BatchError": _object(
        {
            "index": {"type": "integer"},
            "id": {"type": "string"},
            "code": {"type": "integer"},
            "message": {"type": "string"},
        }
    ),
    "BatchCreated": _object(
        {
            "created": {"type": "array", "items": _ref("CreatedInstance")},
            "errors": {"type": "array", "items": _ref("BatchError")},
        }
    ),
    "TerminatedInstances": _object(
        {"status": {"const": "ok"}, "terminated": {"type": "integer", "minimum": 0}}
    ),
    "DeletedInstance": _object({"id": {"type": "string"}, "deleted": {"const": True}}),
    "DeleteBatch": _object(
        {
            "instances": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"type": "string", "pattern": ID_REGEX, "maxLength": 100},
                        {  # the id a cron firing gave its instance
                            "type": "string",
                            "pattern": f"^{FIRING_ID_PATTERN.pattern}$",
                        },
                    ]
                },
                "minItems": 1,
                "maxItems": 100,
            }
        },
        additionalProperties=False,
    ),
    "BatchDeleted": _object(
        {
            "deleted": {"type": "array", "items": _object({"id": {"type": "string"}})},
            "errors": {
                "type": "array",
                "items": _object(
                    {
                        "id": {"type": "string"},
                        "code": {"type": "integer"},
                        "message": {"type": "string"},
                    }
                ),
            },
        }
    ),
    "CreatedInstance": _object(
        {
            "id": {"type": "string"},
            "status": {"const": "queued"},
            "version_id": {"type": "string"},
            "workflow_id": _WORKFLOW_ID,
            "workflow": {"type": "string"},
            "trigger_source": _ref("Trigger"),
        }
    ),
    "Attempt": _object(
        {
            "start": ISO,
            "end": _nullable(ISO),
            "success": _nullable({"type": "boolean"}),
            "error": _nullable(_ref("ErrorInfo")),
            "cpu": {
                **_nullable({"type": "number", "minimum": 0}),
                "description": "CPU seconds the body used (null: not measured, e.g. cut short "
                "or timed out in a thread)",
            },
        }
    ),
    "StepDo": _object(
        {
            "type": {"const": "step"},
            "name": {"type": "string", "description": "name-count"},
            "start": ISO,
            "end": _nullable(ISO),
            "success": _nullable({"type": "boolean"}),
            "output": ANY,
            "error": _nullable(_ref("ErrorInfo")),
            "config": _nullable(_STEP_CONFIG),
            "attempts": {"type": "array", "items": _ref("Attempt")},
            "retries_at": ISO | {"description": "when the next attempt starts"},
        },
        required=[
            "type",
            "name",
            "start",
            "end",
            "success",
            "output",
            "error",
            "config",
            "attempts",
        ],
    ),
    "StepRollback": _object(
        {
            "type": {"const": "rollback"},
            "name": {"type": "string", "description": "name-count of the step it rolls back"},
            "start": ISO,
            "end": _nullable(ISO),
            "success": _nullable({"type": "boolean"}),
            "output": ANY,
            "error": _nullable(_ref("ErrorInfo")),
            "config": _nullable(_STEP_CONFIG),
            "attempts": {"type": "array", "items": _ref("Attempt")},
            "retries_at": ISO | {"description": "when the next attempt starts"},
        },
        required=[
            "type",
            "name",
            "start",
            "end",
            "success",
            "output",
            "error",
            "config",
            "attempts",
        ],
    ),
    "Rollback": _object(
        {
            "outcome": {"enum": ["complete", "failed"]},
            "error": _nullable(_ref("ErrorInfo")),
        },
        description="how the rollback handlers went once the instance ended (null: none ran)",
    ),
    "StepSleep": _object(
        {
            "type": {"const": "sleep"},
            "name": {"type": "string"},
            "start": ISO,
            "end": _nullable(ISO),
            "finished": {"type": "boolean"},
            "wake_at": ISO,
        },
        required=["type", "name", "start", "end", "finished"],
    ),
    "StepWaitForEvent": _object(
        {
            "type": {"const": "waitForEvent"},
            "name": {"type": "string"},
            "start": ISO,
            "end": _nullable(ISO),
            "finished": {"type": "boolean"},
            "error": _nullable(_ref("ErrorInfo")),
            "output": ANY,
            "event_type": {"type": "string"},
            "timeout_at": ISO,
        },
        required=["type", "name", "start", "end", "finished", "error", "output", "event_type"],
    ),
    "StepRunWorkflow": _object(
        {
            "type": {"const": "runWorkflow"},
            "name": {"type": "string"},
            "start": ISO,
            "end": _nullable(ISO),
            "finished": {"type": "boolean"},
            "success": _nullable({"type": "boolean"}),
            "error": _nullable(_ref("ErrorInfo")),
            "output": ANY,
            "child": _object(
                {"workflow": {"type": "string"}, "id": _nullable({"type": "string"})},
                description="the child instance (id null when it could not be created)",
            ),
        },
        required=["type", "name", "start", "end", "finished", "success", "error", "child"],
        description="wf only: step.run_workflow, a child instance waited for",
    ),
    "StepTermination": _object(
        {"type": {"const": "termination"}, "trigger": _ref("InstanceTrigger")}
    ),
    "Step": {
        "oneOf": [
            _ref("StepDo"),
            _ref("StepSleep"),
            _ref("StepWaitForEvent"),
            _ref("StepTermination"),
            _ref("StepRollback"),
            _ref("StepRunWorkflow"),
        ],
        "discriminator": {
            "propertyName": "type",
            "mapping": {
                "step": "#/components/schemas/StepDo",
                "rollback": "#/components/schemas/StepRollback",
                "sleep": "#/components/schemas/StepSleep",
                "waitForEvent": "#/components/schemas/StepWaitForEvent",
                "termination": "#/components/schemas/StepTermination",
                "runWorkflow": "#/components/schemas/StepRunWorkflow",
            },
        },
    },
    "InstanceDetails": _object(
        {
            "id": {"type": "string"},
            "workflow": {"type": "string"},
            "status": _ref("InstanceStatus"),
            "params": ANY,
            "trigger": _ref("InstanceTrigger"),
            "versionId": {"type": "string"},
            "created": ISO,
            "queued": ISO,
            "start": _nullable(ISO),
            "end": _nullable(ISO),
            "success": _nullable({"type": "boolean"}),
            "error": _nullable(_ref("ErrorInfo")),
            "output": ANY,
            "rollback": _nullable(_ref("Rollback")),
            "step_count": {"type": "integer"},
            "steps": {"type": "array", "items": _ref("Step")},
            "restarted": _ref("Restarted"),
            "parent": _object(
                {
                    "workflow": {"type": "string"},
                    "id": {"type": "string"},
                    "step": {"type": "string"},
                },
                description="wf only: the parent whose step.run_workflow created this instance",
            ),
            "retention": _object(
                {
                    "success_retention": _nullable({"type": "string"}),
                    "error_retention": _nullable({"type": "string"}),
                },
                description="wf only: the retention the instance set (durations in words)",
            ),
        },
        required=[
            "id",
            "workflow",
            "status",
            "params",
            "trigger",
            "versionId",
            "created",
            "queued",
            "start",
            "end",
            "success",
            "error",
            "output",
            "step_count",
            "steps",
        ],
    ),
    "StatusChange": {
        "type": "object",
        "description": 'one of "status" or "action" (Cloudflare\'s local-dev name)',
        "properties": {
            "status": {"enum": ["pause", "resume", "terminate", "restart"]},
            "action": {"enum": ["pause", "resume", "terminate", "restart"]},
            "from": _ref("RestartFrom")
            | {
                "description": "restart only: start again from this step; earlier steps keep "
                "their results (unknown step: 409, nothing changes)"
            },
            "params": ANY
            | {"description": "restart only (wf, beyond Cloudflare): new params for the run"},
            "rollback": {
                "type": "boolean",
                "description": "with terminate: run the rollback handlers first",
            },
        },
        "oneOf": [{"required": ["status"]}, {"required": ["action"]}],
        # "from" and "params" go with a restart only, "rollback": true with a terminate only.
        "allOf": [
            {
                "if": {"anyOf": [{"required": ["from"]}, {"required": ["params"]}]},
                "then": _status_is("restart"),
            },
            {
                "if": {"required": ["rollback"], "properties": {"rollback": {"const": True}}},
                "then": _status_is("terminate"),
            },
        ],
        "additionalProperties": False,
    },
    "StatusChanged": _object({"status": _ref("InstanceStatus"), "timestamp": ISO}),
    **_STREAM_SCHEMAS,
    "EventSent": _object(
        {
            "type": {"type": "string"},
            "instance_id": {"type": "string"},
            "instanceId": {"type": "string", "description": "the same, as Cloudflare names it"},
            "timestamp": ISO,
        }
    ),
    "Version": _object(
        {
            "id": {"type": "string"},
            "workflow_id": _WORKFLOW_ID,
            "workflow": {"type": "string"},
            "created_on": ISO,
            "modified_on": ISO,
            "active": {"type": "boolean"},
            "class_name": _nullable({"type": "string"}),
            "has_dag": {"const": False},
            "language": {"const": "python"},
            "loaded": {"type": "boolean", "description": "wf serve: a worker process runs it"},
            "unfinished": {
                "type": "integer",
                "description": "wf serve: its instances not finished yet",
            },
        },
        required=[
            "id",
            "workflow_id",
            "created_on",
            "modified_on",
            "active",
            "class_name",
            "has_dag",
            "language",
        ],
    ),
    **_HISTORY_SCHEMAS,
    **_STATS_SCHEMAS,
}


def _ok(result: Schema, *, info: bool = False) -> Schema:
    properties: dict[str, Schema] = {"success": {"const": True}, "result": result}
    required = ["result"]
    if info:
        properties["result_info"] = _ref("ResultInfo")
        required.append("result_info")
    return {"allOf": [_ref("Envelope"), _object(properties, required=required)]}


def _reply(description: str, result: Schema, *, info: bool = False) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ok(result, info=info)}},
    }


_ERRORS: dict[str, tuple[str, str]] = {
    "BadRequest": (
        "400",
        "bad body or parameter, or a request that is not valid HTTP (10002), or an instance "
        "with that id already exists (10405)",
    ),
    "Unauthorized": ("401", "missing or wrong API token (10006; only when the server has one)"),
    "Forbidden": ("403", "Host header or cross-origin write refused (10005)"),
    "NotFound": ("404", "workflow (10200) or instance (10400) not found"),
    "Conflict": ("409", "invalid transition, e.g. the instance already finished (10406)"),
    "TooLarge": (
        "413",
        "body over 1 MiB plus a small allowance, or a batch's over that for each of 100 "
        "instances (10003)",
    ),
    "Internal": ("500", "internal error (10001)"),
    "ProjectBroken": (
        "503",
        "the project failed to load (10004); message is the load error. Reads answer from the "
        "database all the same unless wf.toml itself is what fails",
    ),
}


def _error_responses() -> dict[str, Schema]:
    return {
        name: {
            "description": description,
            "content": {"application/json": {"schema": _ref("ErrorEnvelope")}},
        }
        for name, (_, description) in _ERRORS.items()
    }


def _errors(*names: str) -> dict[str, Schema]:
    every = ("Unauthorized", "Forbidden", "Internal", *names)
    return {
        _ERRORS[n][0]: {"$ref": f"#/components/responses/{n}"}
        for n in sorted(set(every), key=lambda n: _ERRORS[n][0])
    }


def _param(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


_PARAMETERS: dict[str, Schema] = {
    "cursor": {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "resume after the event with this id (as Last-Event-ID)",
        "schema": {"type": "string"},
    },
    "last_event_id": {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "resume after the event with this id (browsers send it on reconnecting)",
        "schema": {"type": "string"},
    },
    "name": {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "workflow name (from wf.toml)",
        "schema": {"type": "string"},
    },
    "account_id": {
        "name": "account_id",
        "in": "path",
        "required": True,
        "description": "any account id, or the one wf serve was given (--account-id)",
        "schema": {"type": "string"},
    },
    "version_id": {
        "name": "version_id",
        "in": "path",
        "required": True,
        "description": "a version's id",
        "schema": {"type": "string"},
    },
    "date_start": {
        "name": "date_start",
        "in": "query",
        "required": False,
        "description": "only instances created at or after this ISO 8601 date (UTC)",
        "schema": {"type": "string", "format": "date-time"},
    },
    "date_end": {
        "name": "date_end",
        "in": "query",
        "required": False,
        "description": "only instances created before this ISO 8601 date (UTC)",
        "schema": {"type": "string", "format": "date-time"},
    },
    "id": {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "instance id",
        "schema": {"type": "string"},
    },
    "type": {
        "name": "type",
        "in": "path",
        "required": True,
        "description": "event type (letters, digits, - and _)",
        "schema": {"type": "string", "pattern": ID_REGEX, "maxLength": 100},
    },
    "page": {
        "name": "page",
        "in": "query",
        "description": "page number, from 1",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000_000, "default": 1},
    },
    "per_page": {
        "name": "per_page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 25},
    },
    "status": {
        "name": "status",
        "in": "query",
        "description": "only instances in this status",
        "schema": _ref("InstanceStatus"),
    },
    "terminate_status": {
        "name": "status",
        "in": "query",
        "description": "only instances in this status (all unfinished ones if absent)",
        "schema": {"enum": UNFINISHED_STATUSES},
    },
    "search": {
        "name": "search",
        "in": "query",
        "description": "only workflows whose name contains this text (ignoring case)",
        "schema": {"type": "string"},
    },
    "reverse": {
        "name": "reverse",
        "in": "query",
        "description": "oldest first (the default is newest first)",
        "schema": {"type": "boolean", "default": False},
    },
    "traceparent": {
        "name": "traceparent",
        "in": "header",
        "required": False,
        "description": (
            "W3C trace context of the caller: stored with the instances created, whose spans "
            "(when the server traces: the docs' how-to/observability) join this trace; a "
            "malformed one is ignored"
        ),
        "schema": {"type": "string"},
    },
    "stats_workflow": {
        "name": "workflow",
        "in": "query",
        "required": False,
        "description": "only this workflow (default: every workflow)",
        "schema": {"type": "string"},
    },
    "since": {
        "name": "since",
        "in": "query",
        "required": False,
        "description": 'the window: the last "1h", "30 minutes", "7d"… (default 1h)',
        "schema": {"type": "string", "pattern": positive_text_pattern(), "default": "1h"},
    },
    "trigger": {
        "name": "X-WF-Trigger",
        "in": "header",
        "description": (
            "who asked: api (default) or cli; recorded for the server's terminal, shown as api "
            "in the REST API (Cloudflare's trigger sources)"
        ),
        "schema": {"enum": ["api", "cli"], "default": "api"},
    },
}

_NAME = [_param("name")]
_INSTANCE = [_param("name"), _param("id")]


def _json_body(schema: Schema, description: str, required: bool = False) -> Schema:
    return {
        "description": description,
        "required": required,
        "content": {"application/json": {"schema": schema}},
    }


_PATHS: dict[str, dict[str, Schema]] = {
    "/api/health": {
        "get": {
            "operationId": "health",
            "summary": "Is the server up, and did the project load?",
            "description": "200 even when the project failed to load (status error).",
            "responses": {
                "200": _reply("the server's state", _ref("Health")),
                **_errors(),
            },
        }
    },
    "/api/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document (not wrapped in the envelope)",
            "responses": {
                "200": {
                    "description": "the OpenAPI 3.1 document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **_errors(),
            },
        }
    },
    "/api/stats": {
        "get": {
            "operationId": "getStats",
            "summary": (
                "wf stats: per workflow over a window, counts by status, throughput, instance "
                "duration percentiles, the slowest and the most failing steps"
            ),
            "parameters": [_param("stats_workflow"), _param("since")],
            "responses": {
                "200": _reply("the summary", _ref("Stats")),
                **_errors("BadRequest", "NotFound", "ProjectBroken"),
            },
        }
    },
    "/api/workflows": {
        "get": {
            "operationId": "listWorkflows",
            "summary": "The project's workflows",
            "parameters": [_param("search"), _param("page"), _param("per_page")],
            "responses": {
                "200": _reply(
                    "one page of workflows", {"type": "array", "items": _ref("Workflow")}, info=True
                ),
                **_errors("BadRequest", "ProjectBroken"),
            },
        }
    },
    "/api/workflows/{name}": {
        "get": {
            "operationId": "getWorkflow",
            "summary": "One workflow with its instance counts",
            "parameters": _NAME,
            "responses": {
                "200": _reply("the workflow", _ref("Workflow")),
                **_errors("NotFound", "ProjectBroken"),
            },
        },
        "put": {
            "operationId": "updateWorkflow",
            "summary": (
                "Cloudflare's create-or-update: answers the workflow when class_name and "
                "script_name match the project; 409 for any change (wf.toml and wf deploy "
                "define workflows)"
            ),
            "parameters": _NAME,
            "requestBody": _json_body(_ref("WorkflowUpdate"), "the workflow", required=True),
            "responses": {
                "200": _reply("the workflow, unchanged", _ref("UpdatedWorkflow")),
                **_errors("BadRequest", "NotFound", "Conflict", "TooLarge", "ProjectBroken"),
            },
        },
        "delete": {
            "operationId": "deleteWorkflow",
            "summary": "Delete every instance of a workflow (the workflow stays in wf.toml)",
            "parameters": _NAME,
            "responses": {
                "200": _reply("how many instances were deleted", _ref("DeletedWorkflow")),
                **_errors("NotFound", "ProjectBroken"),
            },
        },
    },
    "/api/workflows/{name}/instances": {
        "get": {
            "operationId": "listInstances",
            "summary": "A workflow's instances, newest first",
            "parameters": [
                *_NAME,
                _param("status"),
                _param("page"),
                _param("per_page"),
                _param("reverse"),
                _param("date_start"),
                _param("date_end"),
            ],
            "responses": {
                "200": _reply(
                    "one page of instances",
                    {"type": "array", "items": _ref("InstanceSummary")},
                    info=True,
                ),
                **_errors("BadRequest", "NotFound", "ProjectBroken"),
            },
        },
        "post": {
            "operationId": "createInstance",
            "summary": "Create (queue) an instance",
            "parameters": [*_NAME, _param("trigger"), _param("traceparent")],
            "requestBody": _json_body(_ref("NewInstance"), "id and params; an empty body is {}"),
            "responses": {
                "201": _reply("the instance was queued", _ref("CreatedInstance")),
                **_errors("BadRequest", "NotFound", "TooLarge", "ProjectBroken"),
            },
        },
    },
    "/api/workflows/{name}/instances/batch": {
        "post": {
            "operationId": "createInstances",
            "summary": (
                "Create up to 100 instances at once, each with up to 1 MiB of params; existing "
                "ids are skipped; a refused batch creates nothing"
            ),
            "parameters": [*_NAME, _param("trigger"), _param("traceparent")],
            "requestBody": _json_body(
                {
                    "oneOf": [
                        {
                            "type": "array",
                            "items": _ref("NewInstance"),
                            "minItems": 1,
                            "maxItems": 100,
                        },
                        _ref("CreateBatchObject"),
                    ]
                },
                "the instances to create: an array (existing ids skipped), or the object form "
                '{"count", "params"} / {"instances": [...]} (existing or repeated ids are errors)',
                required=True,
            ),
            "responses": {
                "201": _reply(
                    "array form: the instances created (existing ids left out); object form: "
                    "{created, errors}",
                    {
                        "oneOf": [
                            {"type": "array", "items": _ref("CreatedInstance")},
                            _ref("BatchCreated"),
                        ]
                    },
                ),
                "200": _reply(
                    "object form, nothing created: {created: [], errors}", _ref("BatchCreated")
                ),
                **_errors("BadRequest", "NotFound", "TooLarge", "ProjectBroken"),
            },
        }
    },
    "/api/workflows/{name}/instances/batch/delete": {
        "post": {
            "operationId": "deleteInstances",
            "summary": (
                "Delete up to 100 instances with their histories; running ones stop without "
                "rollbacks; one result per id given"
            ),
            "parameters": _NAME,
            "requestBody": _json_body(_ref("DeleteBatch"), "the ids", required=True),
            "responses": {
                "200": _reply("what was deleted, and the ids not found", _ref("BatchDeleted")),
                **_errors("BadRequest", "NotFound", "TooLarge", "ProjectBroken"),
            },
        }
    },
    "/api/workflows/{name}/instances/terminate": {
        "put": {
            "operationId": "terminateInstances",
            "summary": (
                "Terminate every unfinished instance, or those in one unfinished status "
                "(wrangler's workflows instances terminate-all); done before the answer"
            ),
            "parameters": [
                *_NAME,
                _param("terminate_status"),
                _param("trigger"),
            ],
            "responses": {
                "200": _reply("how many were terminated", _ref("TerminatedInstances")),
                **_errors("BadRequest", "NotFound", "ProjectBroken"),
            },
        }
    },
    "/api/workflows/{name}/instances/{id}": {
        "get": {
            "operationId": "getInstance",
            "summary": "An instance's details and steps (Cloudflare's shape)",
            "parameters": _INSTANCE,
            "responses": {
                "200": _reply("the instance", _ref("InstanceDetails")),
                **_errors("NotFound", "ProjectBroken"),
            },
        },
        "delete": {
            "operationId": "deleteInstance",
            "summary": (
                "Delete an instance with its history; a running one stops without rollbacks; "
                "its id can be used again"
            ),
            "parameters": _INSTANCE,
            "responses": {
                "200": _reply("the instance was deleted", _ref("DeletedInstance")),
                **_errors("NotFound", "ProjectBroken"),
            },
        },
    },
    "/api/workflows/{name}/instances/{id}/history": {
        "get": {
            "operationId": "getInstanceHistory",
            "summary": (
                "An instance's full history (format wf-history): params, every step with its "
                "attempts, outputs and errors, and the events sent to it; what wf instances "
                "export writes and wf.testing replays"
            ),
            "parameters": _INSTANCE,
            "responses": {
                "200": _reply("the history", _ref("History")),
                **_errors("NotFound", "ProjectBroken"),
            },
        }
    },
    "/api/workflows/{name}/instances/{id}/subscribe": {
        "get": {
            "operationId": "subscribeInstance",
            "summary": (
                "An instance's progress as server-sent events (Cloudflare's subscribe): its "
                "retained history first, then each change, until it is complete, errored or "
                "terminated"
            ),
            "description": (
                "Events: step, attempt, status, end (their data in StreamStep, StreamAttempt, "
                "StreamStatus, StreamEnd). step and attempt events have an id naming them in "
                "the history, in the order they happened; status and end repeat the last id "
                "(0 before any). Last-Event-ID or cursor resumes after an event; an id the "
                "history no longer holds (after a restart) replays it all. The stream starts "
                "with retry: 1000 and sends a ': ping' comment after 15 s of silence. A server "
                "that stops or reloads ends the stream without an end event: reconnect."
            ),
            "parameters": [*_INSTANCE, _param("cursor"), _param("last_event_id")],
            "responses": {
                "200": {
                    "description": "the event stream",
                    "content": {
                        "text/event-stream": {
                            "schema": {
                                "type": "string",
                                "description": "id:, event: and data: lines (data is JSON)",
                            },
                            "x-events": {
                                "step": _ref("StreamStep"),
                                "attempt": _ref("StreamAttempt"),
                                "status": _ref("StreamStatus"),
                                "end": _ref("StreamEnd"),
                            },
                        }
                    },
                },
                **_errors("NotFound", "ProjectBroken"),
            },
        }
    },
    "/api/workflows/{name}/instances/{id}/status": {
        "patch": {
            "operationId": "changeInstanceStatus",
            "summary": "Pause, resume, terminate or restart an instance",
            "parameters": [*_INSTANCE, _param("trigger")],
            "requestBody": _json_body(_ref("StatusChange"), "what to do", required=True),
            "responses": {
                "200": _reply("the instance's new status", _ref("StatusChanged")),
                **_errors("BadRequest", "NotFound", "Conflict", "TooLarge", "ProjectBroken"),
            },
        }
    },
    "/api/workflows/{name}/versions": {
        "get": {
            "operationId": "listVersions",
            "summary": "The versions of a workflow, newest first (wf dev: its current one)",
            "parameters": [*_NAME, _param("page"), _param("per_page")],
            "responses": {
                "200": _reply(
                    "the versions", {"type": "array", "items": _ref("Version")}, info=True
                ),
                **_errors("BadRequest", "NotFound"),
            },
        }
    },
    "/api/workflows/{name}/versions/{version_id}": {
        "get": {
            "operationId": "getVersion",
            "summary": "One version of a workflow",
            "parameters": [*_NAME, _param("version_id")],
            "responses": {
                "200": _reply("the version", _ref("Version")),
                **_errors("NotFound"),
            },
        }
    },
    "/api/workflows/{name}/instances/{id}/events/{type}": {
        "post": {
            "operationId": "sendEvent",
            "summary": "Send an event to an instance (wakes its wait_for_event of that type)",
            "parameters": [*_INSTANCE, _param("type")],
            "requestBody": _json_body(ANY, "the event payload (any JSON; empty body = null)"),
            "responses": {
                "200": _reply("the event was stored", _ref("EventSent")),
                **_errors("BadRequest", "NotFound", "Conflict", "TooLarge", "ProjectBroken"),
            },
        }
    },
}


# What only `wf serve` has (deploys, versions, upgrades, secrets).
_SERVE_SCHEMAS: dict[str, Schema] = {
    "Deployed": _object(
        {
            "version_id": {"type": "string"},
            "created_on": ISO,
            "workflows": {
                "type": "array",
                "items": _object(
                    {
                        "name": {"type": "string"},
                        "binding": {"type": "string"},
                        "class_name": {"type": "string"},
                        "script_name": {
                            "type": "string",
                            "description": "the project's name in its wf.toml",
                        },
                        "schedules": {"type": "array", "items": {"type": "string"}},
                    },
                    required=["name", "binding", "class_name"],
                ),
            },
            "files": {"type": "integer"},
            "size": {"type": "integer", "description": "bytes of file data"},
            "already_active": {"type": "boolean"},
        }
    ),
    "Upgraded": _object(
        {
            "id": {"type": "string"},
            "from_version": {"type": "string"},
            "to_version": {"type": "string"},
            "status": _ref("InstanceStatus"),
        }
    ),
    "Secret": _object({"name": {"type": "string"}, "updated_on": ISO}),
    "SecretDeleted": _object({"name": {"type": "string"}, "deleted": {"const": True}}),
}

_SECRET = [
    {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "secret name (a Python identifier, at most 64 characters)",
        "schema": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"},
    }
]

_SERVE_PATHS: dict[str, dict[str, Schema]] = {
    "/api/deploy": {
        "post": {
            "operationId": "deploy",
            "summary": "Deploy a bundle as the new active version",
            "description": (
                "The bundle is checked (regular files only, no absolute paths, no '..', no "
                "links, sizes), unpacked and imported in a fresh worker process; it becomes "
                "active only if it imports and every class_name resolves (400, 10008 / 10009 "
                "otherwise, and nothing changes)."
            ),
            "parameters": [
                {
                    "name": "X-WF-Bundle-Sha256",
                    "in": "header",
                    "description": "hex sha256 of the body, checked when given",
                    "schema": {"type": "string"},
                }
            ],
            "requestBody": {
                "required": True,
                "description": "a gzip-compressed tar archive, at most 32 MiB",
                "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
            },
            "responses": {
                "201": _reply("the version is active", _ref("Deployed")),
                **_errors("BadRequest", "TooLarge"),
            },
        }
    },
    "/api/workflows/{name}/instances/{id}/upgrade": {
        "post": {
            "operationId": "upgradeInstance",
            "summary": "Move an instance to the active version (its next life replays on it)",
            "parameters": _INSTANCE,
            "responses": {
                "200": _reply("the instance moved", _ref("Upgraded")),
                **_errors("NotFound", "Conflict"),
            },
        }
    },
    "/api/secrets": {
        "get": {
            "operationId": "listSecrets",
            "summary": "The secrets' names (never their values)",
            "responses": {
                "200": _reply("the secrets", {"type": "array", "items": _ref("Secret")}),
                **_errors(),
            },
        }
    },
    "/api/secrets/{name}": {
        "put": {
            "operationId": "putSecret",
            "summary": "Set a secret (the workers restart so env sees it)",
            "parameters": _SECRET,
            "requestBody": _json_body(
                _object({"value": {"type": "string", "minLength": 1}}), "the value", True
            ),
            "responses": {
                "200": _reply("the secret is saved", _ref("Secret")),
                **_errors("BadRequest"),
            },
        },
        "delete": {
            "operationId": "deleteSecret",
            "summary": "Delete a secret",
            "parameters": _SECRET,
            "responses": {
                "200": _reply("the secret is gone", _ref("SecretDeleted")),
                **_errors("BadRequest", "NotFound"),
            },
        },
    },
}


def _under_cloudflare(paths: dict[str, dict[str, Schema]]) -> dict[str, dict[str, Schema]]:
    """The workflows paths again under Cloudflare's /client/v4/accounts/{account_id}, each
    operation's id prefixed with "cloudflare" (wf.devserver.cloudflare_paths)."""
    mirrored: dict[str, dict[str, Schema]] = {}
    for path, item in paths.items():
        if not (path == MIRRORED or path.startswith(MIRRORED + "/")):
            continue
        copied: dict[str, Schema] = {}
        for method, operation in item.items():
            op = copy.deepcopy(operation)
            first, rest = op["operationId"][0], op["operationId"][1:]
            op["operationId"] = f"cloudflare{first.upper()}{rest}"
            op["parameters"] = [_param("account_id"), *op.get("parameters", [])]
            # Another account than wf serve --account-id's is not found, whatever the route.
            op["responses"] = dict(sorted({**op["responses"], **_errors("NotFound")}.items()))
            copied[method] = op
            if (method.upper(), path) in SLASHED:  # served with a trailing slash too
                slashed = copy.deepcopy(op)
                slashed["operationId"] += "Slashed"
                slashed["summary"] += " (the same, as wrangler asks for it: trailing slash)"
                mirrored.setdefault(cloudflare_path(path) + "/", {})[method] = slashed
        mirrored[cloudflare_path(path)] = copied
    return mirrored


def _account_route(operation_id: str, summary: str, result: Schema) -> dict[str, Schema]:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "description": "Answered so Cloudflare's clients (wrangler) find their account: "
            "this server is the one account.",
            "responses": {"200": _reply("the answer", result), **_errors()},
        }
    }


_ACCOUNT = _object({"id": {"type": "string"}, "name": {"type": "string"}}, required=["id"])
_ACCOUNT_PATHS: dict[str, dict[str, Schema]] = {
    CLIENT_PREFIX + "/user/tokens/verify": _account_route(
        "verifyToken",
        "Is the token good (it is: the token check let the request in)",
        _object({"id": {"type": "string"}, "status": {"const": "active"}}),
    ),
    CLIENT_PREFIX + "/accounts": _account_route(
        "listAccounts", "The accounts: this server's one", {"type": "array", "items": _ACCOUNT}
    ),
    CLIENT_PREFIX + "/memberships": _account_route(
        "listMemberships",
        "The token's memberships: this server's one account",
        {"type": "array", "items": _object({"id": {"type": "string"}, "account": _ACCOUNT})},
    ),
    CLIENT_PREFIX + "/user": _account_route(
        "getUser", "The user (a placeholder: wf has no users)", _object({"id": {"type": "string"}})
    ),
}


@cache
def _document(serve: bool = False) -> dict[str, Any]:
    paths = {**_PATHS, **_SERVE_PATHS} if serve else _PATHS
    paths = {**paths, **_under_cloudflare(paths), **_ACCOUNT_PATHS}
    schemas = {**_SCHEMAS, **_SERVE_SCHEMAS} if serve else _SCHEMAS
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wf REST API",
            "version": __version__,
            "description": (
                "Cloudflare Workflows' REST API, served locally by wf. Every response (but this "
                "document) is Cloudflare's v4 envelope: {success, errors: [{code, message}], "
                "messages, result, result_info?}."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": _PARAMETERS,
            "responses": _error_responses(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "only when the server was started with a token (wf serve)",
                }
            },
        },
        "security": [{}, {"bearer": []}],
    }


def document(serve: bool = False) -> dict[str, Any]:
    """A fresh copy of the document (callers may change it); ``serve`` adds wf serve's routes."""
    return copy.deepcopy(_document(serve))


@cache
def document_text(serve: bool = False) -> str:
    """The document as JSON text, built once."""
    return json.dumps(_document(serve), ensure_ascii=False, indent=1)

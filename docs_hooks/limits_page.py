"""The limits reference: each limit's value read from the constant the code enforces, with a
sentence saying what it bounds. tests/docs/test_reference.py checks that every field of
wf.engine.limits.Limits is listed and that every source still exists."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from docs_hooks.markdown import code, duration, size, table, text

Unit = Literal["bytes", "seconds", "count", "characters"]


@dataclass(frozen=True)
class Limit:
    group: str
    what: str
    source: str  # "module:NAME" or "module:NAME.attribute"
    unit: Unit

    def value(self) -> int | float:
        module_name, _, dotted = self.source.partition(":")
        value: object = importlib.import_module(module_name)
        for part in dotted.split("."):
            value = getattr(value, part)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{self.source} is not a number: {value!r}")
        return value

    def shown(self) -> str:
        value = self.value()
        if self.unit == "bytes":
            return size(value)
        if self.unit == "seconds":
            return duration(value)
        suffix = " characters" if self.unit == "characters" else ""
        return f"{value:,g}{suffix}" if isinstance(value, float) else f"{value:,}{suffix}"


_L = "wf.engine.limits:DEFAULT_LIMITS"
LIMITS: tuple[Limit, ...] = (
    # Names and ids
    Limit("Names and ids", "Instance id and event type", f"{_L}.id_length", "characters"),
    Limit("Names and ids", "Workflow name (wf.toml)", f"{_L}.workflow_name_length", "characters"),
    Limit("Names and ids", "Step name", f"{_L}.step_name_length", "characters"),
    Limit(
        "Names and ids",
        "Secret name (wf secret put)",
        "wf.cli.secret:MAX_NAME_LENGTH",
        "characters",
    ),
    Limit("Names and ids", "Cron expression", "wf.engine.cron:MAX_CRON_LENGTH", "characters"),
    # Payloads
    Limit(
        "Payloads",
        "Params of one instance, payload of one event (as JSON)",
        f"{_L}.payload_bytes",
        "bytes",
    ),
    Limit("Payloads", "Output of one step (as JSON)", f"{_L}.step_output_bytes", "bytes"),
    Limit(
        "Payloads",
        "Error message stored for a step or instance (longer ones are cut)",
        "wf.errors:MESSAGE_LIMIT",
        "characters",
    ),
    Limit(
        "Payloads", "Error name stored (longer ones are cut)", "wf.errors:NAME_LIMIT", "characters"
    ),
    # Instances and steps
    Limit(
        "Instances and steps",
        "Steps per instance, by default ([[workflows]] limits.steps)",
        f"{_L}.steps",
        "count",
    ),
    Limit(
        "Instances and steps",
        "Highest limits.steps allowed",
        "wf.engine.engine:MAX_STEP_LIMIT",
        "count",
    ),
    Limit(
        "Instances and steps",
        "Retries of one step (retries.limit)",
        "wf.engine.config:MAX_RETRIES",
        "count",
    ),
    Limit(
        "Instances and steps",
        "Default retries of a step",
        "wf.engine.config:DEFAULT_LIMIT",
        "count",
    ),
    Limit(
        "Instances and steps",
        "Default timeout of one attempt",
        "wf.engine.config:DEFAULT_TIMEOUT",
        "seconds",
    ),
    Limit(
        "Instances and steps",
        "Default delay before a retry",
        "wf.engine.config:DEFAULT_DELAY",
        "seconds",
    ),
    Limit(
        "Instances and steps",
        "Longest delay before a retry (a longer one is cut to it)",
        "wf.engine.config:MAX_RETRY_DELAY",
        "seconds",
    ),
    Limit(
        "Instances and steps",
        "Instances created or deleted by one batch call",
        f"{_L}.batch_size",
        "count",
    ),
    # Time
    Limit("Time", "Longest step.sleep", f"{_L}.sleep_seconds", "seconds"),
    Limit("Time", "Shortest wait_for_event timeout", f"{_L}.event_timeout_min", "seconds"),
    Limit("Time", "Longest wait_for_event timeout", f"{_L}.event_timeout_max", "seconds"),
    Limit("Time", "Shortest [engine] lease", "wf.project:MIN_LEASE", "seconds"),
    Limit("Time", "Longest [engine] lease", "wf.project:MAX_LEASE", "seconds"),
    # Flow control
    Limit(
        "Flow control",
        "Highest concurrency ([engine] or per workflow)",
        "wf.engine.flow:MAX_CONCURRENCY",
        "count",
    ),
    Limit("Flow control", "Priority, either way from 0", "wf.engine.flow:MAX_PRIORITY", "count"),
    Limit(
        "Flow control",
        "concurrency_key / rate_limit key value compared (longer ones are cut)",
        "wf.engine.flow:MAX_KEY_LENGTH",
        "characters",
    ),
    # HTTP API
    Limit(
        "REST API",
        "Request body: 1 MiB of params or payload, plus room for the JSON around it",
        "wf.devserver.api:MAX_BODY",
        "bytes",
    ),
    Limit(
        "REST API",
        "Request body of a batch create: that much for each of 100 instances",
        "wf.devserver.api:MAX_BATCH_BODY",
        "bytes",
    ),
    Limit("REST API", "per_page of a list", "wf.devserver.api:MAX_PER_PAGE", "count"),
    Limit("REST API", "page of a list", "wf.devserver.api:MAX_PAGE", "count"),
    # Projects and deploys
    Limit(
        "Projects and deploys", "wf.toml and .dev.vars size", "wf.project:MAX_CONFIG_BYTES", "bytes"
    ),
    Limit("Projects and deploys", "Files in a deployed bundle", "wf.bundle:MAX_FILES", "count"),
    Limit("Projects and deploys", "Bundle upload (gzip)", "wf.bundle:MAX_COMPRESSED", "bytes"),
    Limit("Projects and deploys", "Bundle once unpacked", "wf.bundle:MAX_UNPACKED", "bytes"),
    Limit("Projects and deploys", "One secret's value", "wf.server.routes:MAX_SECRET", "bytes"),
    Limit(
        "Projects and deploys",
        "All secrets together",
        "wf.server.routes:MAX_SECRETS_TOTAL",
        "bytes",
    ),
)


def render() -> str:
    sections: list[str] = []
    groups = list(dict.fromkeys(limit.group for limit in LIMITS))
    for group in groups:
        rows = [
            (text(limit.what), limit.shown(), code(limit.source.replace(":", ".")))
            for limit in LIMITS
            if limit.group == group
        ]
        sections += [f"## {group}", table(("What", "Limit", "Defined by"), rows)]
    return "\n\n".join(sections)

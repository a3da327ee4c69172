"""The durable engine. Knows nothing of aiohttp, typer, rich or watchfiles."""

from wf.engine.clock import Clock as Clock
from wf.engine.clock import ManualClock as ManualClock
from wf.engine.clock import SystemClock as SystemClock
from wf.engine.engine import Engine as Engine
from wf.engine.engine import EngineSettings as EngineSettings
from wf.engine.engine import WorkflowSpec as WorkflowSpec
from wf.engine.limits import Limits as Limits
from wf.engine.runner import Notice as Notice
from wf.engine.store import open_store as open_store

__all__ = [
    "Clock",
    "Engine",
    "EngineSettings",
    "Limits",
    "ManualClock",
    "Notice",
    "SystemClock",
    "WorkflowSpec",
    "open_store",
]

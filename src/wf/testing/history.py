# PLACEHOLDER (lead's local stub until agent/replay lands)
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class HistoryStep:
    kind: str
    name: str
    count: int
    state: str
    output: Any = None
    error: Any = None
    attempts: list[Any] = field(default_factory=list)


@dataclass
class History:
    workflow: str
    id: str
    steps: list[HistoryStep]

    @classmethod
    def from_json(cls, data: Any) -> History:
        return cls(
            data["workflow"],
            data["id"],
            [
                HistoryStep(
                    s["kind"],
                    s["name"],
                    s["count"],
                    s["state"],
                    s.get("output"),
                    s.get("error"),
                    s.get("attempts", []),
                )
                for s in data["steps"]
            ],
        )

"""Objects that also read as dicts, the way Cloudflare's Python SDK hands them to ``run()``.

Cloudflare gives a Python workflow plain dicts with camelCase keys (``event["instanceId"]``,
``ctx["attempt"]``, ``received["payload"]``); wf gives dataclasses with attributes
(``event.instance_id``). A class that mixes ``ReadsAsDict`` in is read both ways, so a module
written for Cloudflare runs unchanged and wf's own code keeps its attributes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

_CAMEL_HUMP = re.compile(r"_([a-z])")


def camel(name: str) -> str:
    """``instance_id`` → ``instanceId``."""
    return _CAMEL_HUMP.sub(lambda m: m.group(1).upper(), name)


class ReadsAsDict:
    """``obj["instanceId"]`` reads ``obj.instance_id``: the keys are the dataclass's fields in
    camelCase (Cloudflare's spelling); the snake_case field names are accepted too. Read only."""

    __slots__ = ()

    def as_dict(self) -> dict[str, Any]:
        """The object as Cloudflare's SDK would give it: a dict with camelCase keys."""
        return {camel(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        shown = self.as_dict()
        if key in shown:
            return shown[key]
        if camel(key) in shown:
            return shown[camel(key)]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    def keys(self) -> list[str]:
        return list(self.as_dict())

    def values(self) -> list[Any]:
        return list(self.as_dict().values())

    def items(self) -> list[tuple[str, Any]]:
        return list(self.as_dict().items())

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())


_MISSING = object()

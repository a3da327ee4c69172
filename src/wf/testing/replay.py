# PLACEHOLDER
from typing import Any


async def replay(cls: Any, history: Any, *, env: Any = None) -> Any:
    return None

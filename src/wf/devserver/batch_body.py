"""A batch-create body, read one instance at a time.

Cloudflare takes up to 100 instances of 1 MiB of params each in one request. Decoded whole, such
a body can become gigabytes of Python objects (a megabyte of ``[{}, {}, ...]`` is some 20 MB of
dicts); decoded an element at a time, with each instance's params encoded for storage before the
next is read, a request costs its text and one instance's objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, as the json module skips it
_KINDS = {"{": "object", '"': "string", "t": "boolean", "f": "boolean", "n": "null", "-": "number"}


class NotAnArray(ValueError):
    """The body is some other JSON value; ``kind`` names it (object, string, ...)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"got {kind}")
        self.kind = kind


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def array_items(text: str) -> Iterator[Any]:
    """The elements of the JSON array ``text``, decoded one at a time as the caller asks.

    Raises ``NotAnArray`` when ``text`` holds another value (told by its first character, not
    decoded), ``json.JSONDecodeError`` (with json's messages and positions) where the text stops
    being JSON, ``ValueError`` for NaN or Infinity and ``RecursionError`` for deep nesting; each
    as the reading reaches it, so a caller that wants syntax errors first reads to the end."""
    pos = _skip(text, 0)
    if not text.startswith("[", pos):
        start = text[pos : pos + 1]
        if start in _KINDS or start.isdigit():
            raise NotAnArray(_KINDS.get(start, "number"))
        raise json.JSONDecodeError("Expecting value", text, pos)
    pos = _skip(text, pos + 1)
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            value, pos = _DECODER.raw_decode(text, pos)
            yield value
            pos = _skip(text, pos)
            if text.startswith(",", pos):
                pos = _skip(text, pos + 1)
            elif text.startswith("]", pos):
                pos += 1
                break
            else:
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
    end = _skip(text, pos)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)


def _skip(text: str, pos: int) -> int:
    found = _SPACE.match(text, pos)
    return found.end() if found else pos

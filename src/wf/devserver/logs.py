"""Log lines for the terminal: one line each, never a traceback (unless WF_DEBUG=1 asks)."""

from __future__ import annotations

import logging
import os
import sys

from wf.errors import cut, text_of


class OneLine(logging.Formatter):
    """The message only, on one line; a traceback is left out (the log says what failed)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message = f"{message}: {type(error).__name__}: {cut(text_of(error))}"
        return self._fmt % {"message": " ".join(message.split())} if self._fmt else message

    def formatException(self, ei: object) -> str:
        return ""


def configure(prefix: str) -> None:
    """Warnings and errors of wf and aiohttp go to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("WF_DEBUG"):
        handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    else:
        handler.setFormatter(OneLine(f"{prefix}: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)

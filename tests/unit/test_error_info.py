"""wf.errors: errors as recorded, ``{name, message}``, always text and cut to size."""

from __future__ import annotations

import json

from wf.engine.store.sqlite_rows import load_error
from wf.errors import (
    MESSAGE_LIMIT,
    EscapedBaseException,
    NonRetryableError,
    StepError,
    StepLimitExceeded,
    cut,
    error_info,
    exception_info,
    text_of,
)


class Unprintable:
    def __str__(self) -> str:
        raise ValueError("no")

    __repr__ = __str__


def test_text_of_falls_back_to_the_class_name() -> None:
    assert text_of("plain") == "plain"
    assert text_of(12) == "12"
    assert text_of(Unprintable()) == "Unprintable"
    assert text_of(Unprintable(), repr) == "Unprintable"
    assert type(text_of(type("S", (str,), {})("sub"))) is str


def test_cut_keeps_short_text_and_marks_what_it_cut() -> None:
    assert cut("short") == "short"
    assert cut("x" * MESSAGE_LIMIT) == "x" * MESSAGE_LIMIT
    long = cut("y" * 2_000_000)
    assert len(long) == MESSAGE_LIMIT
    assert long.endswith("y … [truncated, 2,000,000 characters in all]")
    assert cut(long) == long  # cutting again changes nothing


def test_exception_info_for_each_kind_of_exception() -> None:
    assert exception_info(ValueError("bad")) == {"name": "ValueError", "message": "bad"}
    assert exception_info(NonRetryableError("stop", "Refused")) == {
        "name": "Refused",
        "message": "stop",
    }
    assert exception_info(StepError("s", "TypeError", "m", 3)) == {
        "name": "TypeError",
        "message": "m",
    }
    assert exception_info(StepLimitExceeded("too many")) == {
        "name": "WorkflowFatalError",
        "message": "too many",
    }
    escaped = EscapedBaseException(SystemExit(3))
    assert exception_info(escaped) == {"name": "SystemExit", "message": "sys.exit(3) was called"}
    assert error_info(None, b"x") == {"name": "None", "message": "b'x'"}


def test_an_error_stored_by_an_older_wf_comes_back_cut_and_as_text() -> None:
    huge = json.dumps({"name": "ValueError", "message": "z" * 100_000})
    loaded = load_error(huge)
    assert loaded is not None
    assert len(loaded["message"]) == MESSAGE_LIMIT
    assert load_error(json.dumps({"name": "E", "message": {"a": 1}})) == {
        "name": "E",
        "message": "{'a': 1}",
    }

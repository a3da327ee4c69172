"""wf.testing.history: reading, checking and writing wf-history files."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.testing.histories import do, document, sleep, wait
from wf.engine.model import StepKind, StepState
from wf.testing.history import History, HistoryFormatError, describe_step, ordinal


def sample() -> dict[str, Any]:
    return document(
        do("charge card", {"paymentId": "p1"}, attempts=2),
        sleep("cool off"),
        wait("shipped", "shipped", {"carrier": "DHL"}),
        do("send receipt", state="failed", error={"name": "ValueError", "message": "smtp"}),
        output={"shipped": True},
    )


def test_reads_every_field_of_the_schema() -> None:
    history = History.from_json(sample())
    assert (history.workflow, history.id, history.version) == ("checkout", "cart-1", "v-1")
    assert history.status == "complete"
    assert history.params == {"cartId": "cart-1"}
    assert history.created == datetime(2026, 12, 3, 10, tzinfo=timezone.utc)
    assert history.created.tzinfo is timezone.utc
    assert history.output == {"shipped": True}
    assert history.error is None
    charge, cool, shipped, receipt = history.steps
    assert charge.identity == (StepKind.DO, "charge card", 1)
    assert charge.kind == "do" and charge.state is StepState.SUCCEEDED
    assert charge.output == {"paymentId": "p1"}
    assert [a.number for a in charge.attempts] == [1, 2]
    assert [a.success for a in charge.attempts] == [False, True]
    assert charge.config == {"retries": {"limit": 5, "delay": 10.0, "backoff": "exponential"}}
    assert cool.kind is StepKind.SLEEP and cool.duration == 60.0
    assert shipped.event_type == "shipped" and shipped.output == {"carrier": "DHL"}
    assert shipped.duration == 86400.0  # its timeout
    assert shipped.event_time == datetime(2026, 12, 3, 10, 0, 3, tzinfo=timezone.utc)
    assert receipt.state is StepState.FAILED
    assert receipt.error == {"name": "ValueError", "message": "smtp"}
    assert receipt.label == 'do "send receipt" (1st)'
    assert history.step("shipped", kind="wait") is shipped
    with pytest.raises(KeyError, match=r'no do "shipped" \(1st\)'):
        history.step("shipped")


def test_unknown_keys_are_ignored_and_kept() -> None:
    doc = sample()
    doc["added_later"] = {"x": 1}
    doc["steps"][0]["flavour"] = "new"
    history = History.from_json(doc)
    assert history.steps[0].raw["flavour"] == "new"
    assert json.loads(history.to_json())["added_later"] == {"x": 1}


def test_from_json_copies_the_dict_it_is_given() -> None:
    doc = sample()
    history = History.from_json(doc)
    doc["steps"][0]["output"]["paymentId"] = "changed"
    assert history.steps[0].output == {"paymentId": "p1"}


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    history = History.from_json(json.dumps(sample()))
    path = tmp_path / "cart-1.json"
    history.dump(path)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and not text.endswith("\n\n")
    loaded = History.load(path)
    assert loaded == history
    assert loaded.path == path
    assert str(loaded) == "cart-1.json"
    assert str(history) == "checkout/cart-1"
    assert "cart-1.json" in repr(loaded) and "4 steps" in repr(loaded)
    assert History.from_json(loaded.to_json()) == history
    assert History.from_json(text.encode()) == history


def test_glob_sorts_by_path_and_names_each_by_its_file(tmp_path: Path) -> None:
    for name in ("b.json", "a.json", "sub/c.json"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        History.from_json(document(id=name.split("/")[-1][0])).dump(tmp_path / name)
    found = History.glob(tmp_path / "**" / "*.json")
    assert [str(h) for h in found] == ["a.json", "b.json", "c.json"]
    assert [h.id for h in found] == ["a", "b", "c"]
    with pytest.raises(FileNotFoundError, match=r"no history file matches .*nothing"):
        History.glob(tmp_path / "nothing*.json")


def test_glob_refuses_a_bad_file_among_good_ones(tmp_path: Path) -> None:
    History.from_json(document()).dump(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{", encoding="utf-8")
    with pytest.raises(HistoryFormatError, match=r"b\.json: is not JSON"):
        History.glob(tmp_path / "*.json")


def test_ordinals() -> None:
    numbers = (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111, 112)
    expected = [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "101st",
        "111th",
        "112th",
    ]
    assert [ordinal(n) for n in numbers] == expected
    assert describe_step("wait", 'a "b"\n', 2) == 'wait "a \\"b\\"\\n" (2nd)'


def changed(edit: Any) -> str:
    doc = sample()
    edit(doc)
    return json.dumps(doc)


def _del(obj: dict[str, Any], key: str) -> None:
    del obj[key]


BAD_FILES: list[tuple[str, str | bytes, str]] = [
    ("empty", "", "is not JSON: Expecting value at line 1 column 1"),
    ("truncated", '{"format": "wf-history",', "is not JSON: Expecting property name"),
    ("nan", '{"format": NaN}', "is not JSON: NaN is not JSON"),
    ("latin-1", b'{"id": "caf\xe9"}', "is not UTF-8 text"),
    ("array", "[]", "is not a wf history: it is an array, not an object"),
    ("no format", '{"id": "x"}', 'is not a wf history: it has no format key, expected "format"'),
    ("other format", '{"format": "har"}', 'is not a wf history: its format is "har"'),
    (
        "newer",
        changed(lambda d: d.update(format_version=2)),
        "has format_version 2, written by a newer wf; this wf reads format_version 1",
    ),
    ("version text", changed(lambda d: d.update(format_version="1")), "format_version must be an"),
    ("no steps", changed(lambda d: _del(d, "steps")), "steps is missing"),
    ("steps object", changed(lambda d: d.update(steps={})), "steps must be an array, got an obj"),
    ("no kind", changed(lambda d: _del(d["steps"][2], "kind")), "steps[2].kind is missing"),
    (
        "bad kind",
        changed(lambda d: d["steps"][0].update(kind="run")),
        'steps[0].kind must be one of do, sleep, wait, rollback, child, got "run"',
    ),
    (
        "count text",
        changed(lambda d: d["steps"][1].update(count="1")),
        "steps[1].count must be an integer, got a string",
    ),
    (
        "count bool",
        changed(lambda d: d["steps"][1].update(count=True)),
        "steps[1].count must be an integer, got a boolean",
    ),
    ("count 0", changed(lambda d: d["steps"][1].update(count=0)), "steps[1].count must be 1 or"),
    (
        "bad state",
        changed(lambda d: d["steps"][3].update(state="done")),
        "steps[3].state must be one of running, succeeded, failed",
    ),
    ("step null", changed(lambda d: d["steps"].append(None)), "steps[4] must be an object, got"),
    ("name empty", changed(lambda d: d["steps"][0].update(name="")), "steps[0].name must not be"),
    (
        "wait without type",
        changed(lambda d: _del(d["steps"][2], "event_type")),
        "steps[2].event_type is missing",
    ),
    (
        "error message",
        changed(lambda d: _del(d["steps"][3]["error"], "message")),
        "steps[3].error.message is missing",
    ),
    (
        "attempt number",
        changed(lambda d: d["steps"][0]["attempts"][1].update(number=None)),
        "steps[0].attempts[1].number must be an integer, got null",
    ),
    (
        "naive created",
        changed(lambda d: d.update(created="2026-12-03T10:00:00")),
        'created has no timezone: "2026-12-03T10:00:00"',
    ),
    (
        "garbage time",
        changed(lambda d: d["steps"][2].update(event_time="yesterday")),
        'steps[2].event_time must be an ISO-8601 time such as "2026-12-03T10:00:00.000Z", got '
        '"yesterday"',
    ),
    ("created null", changed(lambda d: d.update(created=None)), "created must not be null"),
    ("no id", changed(lambda d: _del(d, "id")), "id is missing"),
    ("workflow number", changed(lambda d: d.update(workflow=3)), "workflow must be a string, got"),
    (
        "duplicate",
        changed(lambda d: d["steps"].append(dict(d["steps"][0]))),
        'steps[4] is do "charge card" (1st) again (steps[0] is too)',
    ),
    (
        "event type",
        changed(lambda d: d.update(events=[{"payload": 1}])),
        "events[0].type is missing",
    ),
]


@pytest.mark.parametrize(
    ("content", "problem"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_a_bad_file_is_refused_with_one_line_naming_it(
    tmp_path: Path, content: str | bytes, problem: str
) -> None:
    path = tmp_path / "cart-1.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(HistoryFormatError) as caught:
        History.load(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert caught.value.source == str(path)
    assert isinstance(caught.value, ValueError)


def test_a_file_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(HistoryFormatError, match=r"missing\.json: cannot read it: No such file"):
        History.load(tmp_path / "missing.json")
    with pytest.raises(HistoryFormatError, match=r": cannot read it: Is a directory"):
        History.load(tmp_path)


def test_a_value_that_is_not_json_is_refused() -> None:
    with pytest.raises(HistoryFormatError, match=r"^history: is not JSON data: .*set"):
        History.from_json({**document(), "params": {1, 2}})
    with pytest.raises(HistoryFormatError, match=r"^history: steps\[0\]\.kind is missing$"):
        History.from_json(document({"name": "x", "count": 1, "state": "running"}))
    with pytest.raises(HistoryFormatError, match=r"^history: must be JSON text or a dict, got int"):
        History.from_json(3)  # type: ignore[arg-type]

"""Malformed and oversized wf.toml and .dev.vars.

``load_project``, ``read_dev_vars`` and ``parse_dotenv`` either load the project or raise
``ProjectError`` with one line naming the file; never another exception. ``wf dev`` and
``wf workflows list`` on such a project print one line and never a traceback.
"""

from __future__ import annotations

import json
import math
import random
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.helpers import fuzz, one_line
from tests.fuzz.strategies import unicode_text
from wf.errors import quote
from wf.project import Project, ProjectError, load_project, parse_dotenv, read_dev_vars

MAIN = "flows.py"
FLOWS = """
from wf import WorkflowEntrypoint


class Flow(WorkflowEntrypoint):
    async def run(self, event, step):
        return None
"""
BASE: dict[str, Any] = {
    "name": "fuzzed",
    "main": MAIN,
    "workflows": [{"name": "flow", "binding": "FLOW", "class_name": "Flow"}],
    "vars": {"GREETING": "hello"},
    "dev": {"port": 8787, "host": "127.0.0.1", "state_dir": ".wf"},
    "engine": {"concurrency": 10, "retention": "30 days", "durability": "os"},
}
FIFTY_MB = 50 * 1024 * 1024


# ---- writing TOML --------------------------------------------------------------------------


def toml_key(key: str) -> str:
    return json.dumps(key, ensure_ascii=False)


def toml_value(value: Any) -> str:
    """TOML for a value (inline forms only; json's string escapes are TOML's too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(type(value))


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in data.items())


toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    unicode_text(max_size=30).filter(lambda s: "\x7f" not in s),
    st.sampled_from(("", " ", "flows.py", "../flows.py", "/etc/passwd", "x.py", "fsync", "0")),
    st.datetimes(timezones=st.just(timezone.utc)),
    st.dates(),
    st.times(),
)
toml_keys = unicode_text(max_size=8).filter(lambda s: "\x7f" not in s)
toml_values = st.recursive(
    toml_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            unicode_text(max_size=8).filter(lambda s: "\x7f" not in s), children, max_size=3
        ),
    ),
    max_leaves=8,
)
KEY_PATHS: tuple[tuple[str | int, ...], ...] = (
    ("name",),
    ("main",),
    ("workflows",),
    ("workflows", 0),
    ("workflows", 0, "name"),
    ("workflows", 0, "binding"),
    ("workflows", 0, "class_name"),
    ("workflows", 0, "limits"),
    ("workflows", 0, "limits", "steps"),
    ("vars",),
    ("dev",),
    ("dev", "port"),
    ("dev", "host"),
    ("dev", "state_dir"),
    ("engine",),
    ("engine", "concurrency"),
    ("engine", "retention"),
    ("engine", "durability"),
)
# where an unknown key can go, and the name the error gives that place
TABLES: tuple[tuple[tuple[str | int, ...], str], ...] = (
    ((), ""),
    (("workflows", 0), "workflows[0]."),
    (("dev",), "dev."),
    (("engine",), "engine."),
)


KNOWN_KEYS = (
    *("name", "main", "workflows", "vars", "dev", "engine", "binding", "class_name", "limits"),
    *("port", "host", "state_dir", "concurrency", "retention", "durability"),
)


def _place(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _with(data: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A deep copy of ``data`` with ``path`` set to ``value`` (tables made on the way)."""
    copy = json.loads(json.dumps(data))
    target = copy
    for part in path[:-1]:
        if isinstance(part, str) and part not in target:
            target[part] = {}
        target = target[part]
    target[path[-1]] = value
    return copy


def _project_folder(tmp: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / MAIN).write_text(FLOWS, encoding="utf-8")
    return tmp / "wf.toml"


def load(config: Path) -> Project | ProjectError:
    """Load, letting nothing but ProjectError through (anything else fails the test)."""
    try:
        return load_project(config)
    except ProjectError as exc:
        return exc


def assert_names_the_file(error: ProjectError, name: str = "wf.toml") -> None:
    assert name in str(error), str(error)
    assert "Traceback" not in str(error)


def test_the_base_project_loads(tmp_path: Path) -> None:
    config = _project_folder(tmp_path)
    config.write_text(toml_document(BASE), encoding="utf-8")
    project = load_project(config)
    assert project.name == "fuzzed" and project.workflows[0].name == "flow"


# ---- wf.toml: wrong types, unknown keys, random bytes ---------------------------------------


@fuzz(500)
@given(path=st.sampled_from(KEY_PATHS), value=toml_values)
def test_any_value_for_any_key_loads_or_names_the_key(
    tmp_path: Path, path: tuple[str | int, ...], value: Any
) -> None:
    config = _project_folder(tmp_path)
    config.write_text(toml_document(_with(BASE, path, value)), encoding="utf-8")
    result = load(config)
    if isinstance(result, ProjectError):
        assert_names_the_file(result)
        place = _place(path)
        assert place in str(result) or (path == ("workflows",) and "[[workflows]]" in str(result))


@fuzz(300)
@given(table=st.sampled_from(TABLES), key=unicode_text(max_size=20), value=toml_values)
def test_unknown_keys_in_any_table_are_named(
    tmp_path: Path, table: tuple[tuple[str | int, ...], str], key: str, value: Any
) -> None:
    where, prefix = table
    if key in KNOWN_KEYS or "\x7f" in key:
        return
    config = _project_folder(tmp_path)
    config.write_text(toml_document(_with(BASE, (*where, key), value)), encoding="utf-8")
    result = load(config)
    assert isinstance(result, ProjectError)
    assert_names_the_file(result)
    place = f"{prefix}{key}"
    if not place.isprintable():  # an invisible character is shown escaped, on one line
        place = quote(place)[1:-1]
    assert f"{place} is not a known key" in str(result)


@fuzz(300)
@given(path=st.sampled_from(KEY_PATHS), value=toml_values)
def test_project_errors_are_one_line(
    tmp_path: Path, path: tuple[str | int, ...], value: Any
) -> None:
    config = _project_folder(tmp_path)
    config.write_text(toml_document(_with(BASE, path, value)), encoding="utf-8")
    try:
        load_project(config)
    except ProjectError as exc:
        assert one_line(str(exc)), str(exc)
    except Exception:
        pass


@fuzz(300)
@given(data=st.binary(max_size=400))
def test_random_bytes_are_a_project_error(tmp_path: Path, data: bytes) -> None:
    config = _project_folder(tmp_path)
    config.write_bytes(data)
    result = load(config)
    assert isinstance(result, ProjectError)
    assert_names_the_file(result)
    assert one_line(str(result)), str(result)


TOML_TOKENS = st.sampled_from(
    [
        "[",
        "]",
        "[[",
        "]]",
        "{",
        "}",
        "=",
        ".",
        ",",
        '"',
        "'",
        '"""',
        "\n",
        " ",
        "#",
        "name",
        "main",
        "workflows",
        "dev",
        "engine",
        "vars",
        "port",
        "1",
        "1e400",
        "nan",
        "true",
        "1979-05-27",
        "é",
        "\\u0000",
        "\\",
        "\x00",
        "\r\n",
        "0x_",
        "+inf",
    ]
)


@fuzz(300)
@given(tokens=st.lists(TOML_TOKENS, max_size=40))
def test_toml_like_text_is_a_project_error(tmp_path: Path, tokens: list[str]) -> None:
    config = _project_folder(tmp_path)
    config.write_text("".join(tokens), encoding="utf-8")
    result = load(config)
    assert isinstance(result, ProjectError)
    assert_names_the_file(result)
    assert one_line(str(result)), str(result)


NESTING = 100_000
LOADABLE = ("byte order mark", "CR line ends", "NUL in the name")  # loading them is fine too


ODD_FILES = [
    ("nested arrays", "vars = { A = " + "[" * NESTING + "]" * NESTING + " }\n"),
    ("unclosed nested arrays", "name = " + "[" * NESTING),
    ("nested inline tables", "vars = " + "{ a = " * NESTING + "1" + " }" * NESTING + "\n"),
    ("unclosed nested inline tables", "name = " + "{ a = " * NESTING),
    ("deep dotted key", "a" + ".a" * 2000 + " = 1\n"),
    ("deep table header", "[" + "a." * 5000 + "a]\n"),
    ("deep array of tables", "[[" + "a." * 5000 + "a]]\n"),
    ("integer of 5000 digits", 'name = "x"\nmain = "flows.py"\n[dev]\nport = ' + "9" * 5000),
    ("float of 5000 digits", "[engine]\nretention = 1" + "0" * 5000 + ".5\n"),
    (
        "NUL in the name",
        'name = "a\\u0000b"\n' + toml_document(BASE)[len('name = "fuzzed"\n') :],
    ),
    ("NUL in main", 'name = "x"\nmain = "fl\\u0000ows.py"\n'),
    ("byte order mark", "\ufeff" + toml_document(BASE)),
    ("only a comment", "# nothing here\n"),
    ("empty", ""),
    ("CR line ends", toml_document(BASE).replace("\n", "\r")),
    ("unicode keys", '"名前" = "x"\n"\u202e" = 1\n' + toml_document(BASE)),
    ("duplicate keys", toml_document(BASE) + 'name = "again"\n'),
]


@pytest.mark.parametrize(("label", "text"), ODD_FILES, ids=[label for label, _ in ODD_FILES])
def test_deep_and_odd_files_are_a_project_error(tmp_path: Path, label: str, text: str) -> None:
    config = _project_folder(tmp_path)
    config.write_text(text, encoding="utf-8")
    result = load(config)
    if label in LOADABLE and isinstance(result, Project):
        return
    assert isinstance(result, ProjectError), label
    assert_names_the_file(result)
    assert one_line(str(result)), str(result)


def test_invalid_utf8_is_a_project_error(tmp_path: Path) -> None:
    config = _project_folder(tmp_path)
    for data in (b'name = "\xff"\n', b"\xc3\x28", b"\xed\xa0\x80 = 1", b"\x80" * 10):
        config.write_bytes(data)
        result = load(config)
        assert isinstance(result, ProjectError)
        assert str(result) == "wf.toml: is not UTF-8 text"


def test_fifty_megabytes_of_random_bytes(tmp_path: Path) -> None:
    config = _project_folder(tmp_path)
    config.write_bytes(random.Random(5).randbytes(FIFTY_MB))
    result = load(config)
    assert isinstance(result, ProjectError)
    assert_names_the_file(result)
    assert len(str(result)) < 1000


def test_fifty_megabytes_of_toml(tmp_path: Path) -> None:
    config = _project_folder(tmp_path)
    filler = "# " + "x" * 1000 + "\n"
    with config.open("w", encoding="utf-8") as out:
        out.write(toml_document({k: v for k, v in BASE.items() if k != "name"}))
        out.write(filler * (FIFTY_MB // len(filler)))
    result = load(config)
    assert isinstance(result, ProjectError)
    # Refused by its size, before the parser sees it (a deep enough file exhausts memory).
    assert str(result) == f"wf.toml: is {config.stat().st_size} bytes; the limit is 65536 bytes"


def test_a_folder_named_wf_toml(tmp_path: Path) -> None:
    config = _project_folder(tmp_path)
    config.mkdir()
    result = load(config)
    assert isinstance(result, ProjectError)
    assert_names_the_file(result)
    assert "cannot be read" in str(result)


def test_a_dangling_or_looping_wf_toml_symlink(tmp_path: Path) -> None:
    config = _project_folder(tmp_path)
    config.symlink_to(tmp_path / "nowhere.toml")
    assert isinstance(load(config), ProjectError)
    config.unlink()
    config.symlink_to(config)  # a loop
    result = load(config)
    assert isinstance(result, ProjectError)
    assert_names_the_file(result)


# ---- .dev.vars -------------------------------------------------------------------------------

DOTENV_TOKENS = st.sampled_from(
    [
        "KEY",
        "_K1",
        "export ",
        "=",
        "==",
        " ",
        "\t",
        "#",
        " #",
        '"',
        "'",
        "\\n",
        '\\"',
        "\n",
        "\r\n",
        "é",
        "名",
        "\x00",
        "\x0b",
        "\x1c",
        "\u2028",
        "\x85",
        "value",
        "1",
        "-",
        ".",
    ]
)


@fuzz(500)
@given(
    text=st.one_of(unicode_text(max_size=200), st.lists(DOTENV_TOKENS, max_size=40).map("".join))
)
def test_any_dotenv_text_parses_or_names_the_file_and_line(text: str) -> None:
    try:
        values = parse_dotenv(text, ".dev.vars")
    except ProjectError as exc:
        message = str(exc)
        assert message.startswith(".dev.vars:"), message
        line = int(message.split(":")[1])
        assert 1 <= line <= max(1, len(text.splitlines()))
        assert one_line(message), message
    else:
        for key, value in values.items():
            assert key.isidentifier()
            assert isinstance(value, str)


def _dev_vars_project(tmp_path: Path) -> Project:
    config = _project_folder(tmp_path)
    config.write_text(toml_document(BASE), encoding="utf-8")
    return load_project(config)


@pytest.mark.parametrize(
    "data",
    [
        b"TOKEN=\xff\xfe\n",
        b"\xc3\x28=1\n",
        b"OK=1\nSECRET=\xed\xa0\x80\n",
    ],
)
def test_dev_vars_that_are_not_utf8_are_a_project_error(tmp_path: Path, data: bytes) -> None:
    project = _dev_vars_project(tmp_path)
    (tmp_path / ".dev.vars").write_bytes(data)
    with pytest.raises(ProjectError) as refused:
        read_dev_vars(project)
    assert_names_the_file(refused.value, ".dev.vars")
    assert one_line(str(refused.value))


def test_fifty_megabytes_of_dev_vars(tmp_path: Path) -> None:
    project = _dev_vars_project(tmp_path)
    line = "K" + "x" * 100 + "=" + "v" * 900 + "\n"
    with (tmp_path / ".dev.vars").open("w", encoding="utf-8") as out:
        out.write(line * (FIFTY_MB // len(line)))
        out.write("not a pair\n")
    with pytest.raises(ProjectError) as refused:
        read_dev_vars(project)
    message = str(refused.value)
    size = (tmp_path / ".dev.vars").stat().st_size
    assert message == f".dev.vars: is {size} bytes; the limit is 65536 bytes"
    assert one_line(message)


def test_fifty_megabytes_of_random_dev_vars(tmp_path: Path) -> None:
    project = _dev_vars_project(tmp_path)
    (tmp_path / ".dev.vars").write_bytes(random.Random(7).randbytes(FIFTY_MB))
    with pytest.raises(ProjectError) as refused:
        read_dev_vars(project)
    assert_names_the_file(refused.value, ".dev.vars")
    assert len(str(refused.value)) < 1000


def test_a_folder_named_dev_vars_is_ignored_or_refused(tmp_path: Path) -> None:
    project = _dev_vars_project(tmp_path)
    (tmp_path / ".dev.vars").mkdir()
    try:
        assert read_dev_vars(project) == {}
    except ProjectError as exc:
        assert_names_the_file(exc, ".dev.vars")

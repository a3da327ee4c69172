"""wf.toml: finding, validating (one line naming file, key and expectation), loading the module."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from wf.project import (
    ModuleLoadError,
    ProjectError,
    find_config,
    import_main,
    load_project,
    load_workflows,
    parse_dotenv,
    read_dev_vars,
)

WORKFLOWS_PY = """
from wf import WorkflowEntrypoint


class Purchase(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("charge", lambda: "ok")


class Refund(WorkflowEntrypoint):
    async def run(self, event, step):
        return None
"""

WF_TOML = """
name = "shop"
main = "workflows.py"

[[workflows]]
name = "purchase"
binding = "PURCHASE"
class_name = "Purchase"
limits = { steps = 500 }

[vars]
CURRENCY = "EUR"

[dev]
port = 9999
"""


def make_project(tmp_path: Path, toml: str = WF_TOML, code: str = WORKFLOWS_PY) -> Path:
    (tmp_path / "workflows.py").write_text(textwrap.dedent(code))
    config = tmp_path / "wf.toml"
    config.write_text(textwrap.dedent(toml))
    return config


def test_a_valid_project_loads(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path))
    assert project.name == "shop"
    assert project.main == tmp_path / "workflows.py"
    assert [(w.name, w.binding, w.class_name, w.step_limit) for w in project.workflows] == [
        ("purchase", "PURCHASE", "Purchase", 500)
    ]
    assert project.vars == {"CURRENCY": "EUR"}
    assert (project.dev.host, project.dev.port, project.dev.state_dir) == ("127.0.0.1", 9999, ".wf")
    assert project.database == tmp_path / ".wf" / "wf.db"
    specs = load_workflows(project)
    assert specs[0].cls.__name__ == "Purchase" and specs[0].step_limit == 500


def test_find_config_looks_upward(tmp_path: Path) -> None:
    config = make_project(tmp_path)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_config(deep) == config
    assert find_config(tmp_path.parent / "elsewhere-that-does-not-exist-xyz") is None


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("name = 'x'\nmain = 'workflows.py'\n", "wf.toml: needs at least one [[workflows]]"),
        ("main = 'workflows.py'\n[[workflows]]\n", "wf.toml: name is missing"),
        ("name = 'x'\nmain = 'nope.py'\n", 'wf.toml: main "nope.py" does not exist'),
        ("name = 'x'\nmian = 'w.py'\n", 'wf.toml: mian is not a known key (did you mean "main"?)'),
        ("name = [", "wf.toml: is not valid TOML"),
        (
            "name='x'\nmain='workflows.py'\n[[workflows]]\nname='p'\nbinding='P'\nclas_name='C'\n",
            'wf.toml: workflows[0].clas_name is not a known key (did you mean "class_name"?)',
        ),
        (
            "name='x'\nmain='workflows.py'\n[[workflows]]\nname='bad name'\nbinding='P'\n"
            "class_name='Purchase'\n",
            "wf.toml: workflows[0].name is invalid",
        ),
        (
            "name='x'\nmain='workflows.py'\n[[workflows]]\nname='p'\nbinding='not ok'\n"
            "class_name='Purchase'\n",
            'wf.toml: workflows[0].binding "not ok" must be a valid Python identifier',
        ),
        (
            "name='x'\nmain='workflows.py'\n[[workflows]]\nname='p'\nbinding='P'\n"
            "class_name='Purchase'\nlimits={steps=0}\n",
            "wf.toml: workflows[0].limits.steps must be an integer from 1 to 25000, got 0",
        ),
        (
            "name='x'\nmain='workflows.py'\n[[workflows]]\nname='p'\nbinding='P'\n"
            "class_name='Purchase'\n[dev]\nport='8787'\n",
            'wf.toml: dev.port must be an integer from 1 to 65535, got "8787"',
        ),
        (
            "name='x'\nmain='workflows.py'\n[[workflows]]\nname='p'\nbinding='P'\n"
            "class_name='Purchase'\n[engine]\ndurability='fast'\n",
            'wf.toml: engine.durability must be "fsync" or "os", got "fast"',
        ),
        (
            "name='x'\nmain='workflows.py'\n[[workflows]]\nname='p'\nbinding='P'\n"
            "class_name='Purchase'\n[[workflows]]\nname='p'\nbinding='Q'\nclass_name='Refund'\n",
            'wf.toml: workflows[1].name "p" is used by another workflow',
        ),
    ],
)
def test_invalid_configs_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    config = make_project(tmp_path, toml)
    with pytest.raises(ProjectError) as caught:
        load_project(config)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_misspelt_class_name_gets_a_suggestion(tmp_path: Path) -> None:
    config = make_project(tmp_path, WF_TOML.replace('"Purchase"', '"Purchse"'))
    with pytest.raises(ProjectError) as caught:
        load_workflows(load_project(config))
    assert str(caught.value) == (
        'wf.toml: workflows[0].class_name "Purchse" is not defined in workflows.py '
        '(did you mean "Purchase"?)'
    )


def test_a_class_that_is_not_a_workflow_is_refused(tmp_path: Path) -> None:
    code = WORKFLOWS_PY + "\nclass Helper:\n    pass\n"
    config = make_project(tmp_path, WF_TOML.replace('"Purchase"', '"Helper"'), code)
    with pytest.raises(ProjectError, match=r"is not a subclass of wf\.WorkflowEntrypoint"):
        load_workflows(load_project(config))


def test_a_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    config = make_project(tmp_path, code=WORKFLOWS_PY + "\ndef broken(:\n")
    with pytest.raises(ModuleLoadError) as caught:
        import_main(load_project(config))
    assert str(caught.value).startswith("workflows.py:14: SyntaxError:")
    assert caught.value.location == "workflows.py:14"


def test_an_error_at_import_names_the_line_in_the_project(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("def boom():\n    raise RuntimeError('no config')\n")
    config = make_project(tmp_path, code="import helpers\nhelpers.boom()\n" + WORKFLOWS_PY)
    with pytest.raises(ModuleLoadError) as caught:
        import_main(load_project(config))
    assert str(caught.value) == "helpers.py:2: RuntimeError: no config"


def test_sibling_modules_are_importable(tmp_path: Path) -> None:
    (tmp_path / "pricing.py").write_text("RATE = 3\n")
    code = "from pricing import RATE\n" + WORKFLOWS_PY
    specs = load_workflows(load_project(make_project(tmp_path, code=code)))
    assert specs[0].name == "purchase"


def test_version_id_changes_with_the_sources(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path))
    first = project.version_id()
    assert project.version_id() == first
    (tmp_path / ".wf").mkdir()
    (tmp_path / ".wf" / "ignored.py").write_text("x = 1\n")  # state is not source
    assert project.version_id() == first
    (tmp_path / "workflows.py").write_text(WORKFLOWS_PY + "\n# edited\n")
    assert project.version_id() != first


def test_dev_vars_are_read_as_dotenv(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path))
    assert read_dev_vars(project) == {}
    (tmp_path / ".dev.vars").write_text(
        '# secrets\nAPI_KEY=abc123\nexport TOKEN="quoted value"\nEMPTY=\nNOTE=x # comment\n'
    )
    assert read_dev_vars(project) == {
        "API_KEY": "abc123",
        "TOKEN": "quoted value",
        "EMPTY": "",
        "NOTE": "x",
    }
    with pytest.raises(ProjectError, match=r"\.dev\.vars:2: expected KEY=VALUE"):
        parse_dotenv("A=1\nnot a pair\n", ".dev.vars")


def with_database(value: str) -> str:
    return f"{WF_TOML}\n[engine]\ndatabase = {value}\n"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ('"data/wf.db"', "{root}/data/wf.db"),
        ('"sqlite:///data/wf.db"', "{root}/data/wf.db"),
        ('"sqlite:////var/tmp/wf.db"', "/var/tmp/wf.db"),
        (
            '"postgresql://app:secret@db.example:5432/app"',
            "postgresql://app:secret@db.example:5432/app",
        ),
        (
            '"postgres://db.example/app?sslmode=require"',
            "postgres://db.example/app?sslmode=require",
        ),
    ],
)
def test_engine_database_is_a_sqlite_path_of_the_project_or_a_postgresql_url(
    tmp_path: Path, given: str, expected: str
) -> None:
    project = load_project(make_project(tmp_path, with_database(given)))
    assert project.engine.database == expected.format(root=tmp_path)
    assert project.store_location() == expected.format(root=tmp_path)
    # --database or WF_DATABASE_URL come first; without any, the state folder's file.
    assert project.store_location("/elsewhere/wf.db") == "/elsewhere/wf.db"
    assert load_project(make_project(tmp_path)).store_location() == str(tmp_path / ".wf/wf.db")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ('""', "wf.toml: engine.database must be a non-empty string"),
        ("5432", "wf.toml: engine.database must be a non-empty string, got 5432 (int)"),
        (
            '"mysql://app:secret@db/app"',
            'wf.toml: engine.database "mysql://app:***@db/app" uses the scheme "mysql"; expected a '
            "postgresql:// URL, or the path of a SQLite file (or sqlite:///path)",
        ),
        (
            '"postgresql://app:secret@db:port/app"',
            'wf.toml: engine.database "postgresql://app:***@db:port/app" is not a valid '
            "PostgreSQL URL (Port could not be cast to integer value as 'port')",
        ),
        (
            '"host=db password=secret dbname=app"',
            'wf.toml: engine.database "host=db password=*** dbname=app" is a key=value connection '
            "string; write it as postgresql://user:password@host:5432/database",
        ),
        (
            '"postgresql://app:se%cret@db/app"',
            'wf.toml: engine.database "postgresql://app:***@db/app" has a % that does not start '
            "an escape such as %25 (write a % in a password as %25)",
        ),
        ('"sqlite:///"', 'wf.toml: engine.database "sqlite:///" names no file'),
        ('"."', 'wf.toml: engine.database "." is a folder; name the database file in it'),
    ],
)
def test_a_wrong_engine_database_is_one_line_without_its_password(
    tmp_path: Path, given: str, message: str
) -> None:
    with pytest.raises(ProjectError) as caught:
        load_project(make_project(tmp_path, with_database(given)))
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value) and "secret" not in str(caught.value)


@pytest.mark.parametrize(("given", "seconds"), [('"5 seconds"', 5.0), ("90", 90.0), (None, 30.0)])
def test_engine_lease_is_a_duration(tmp_path: Path, given: str | None, seconds: float) -> None:
    toml = WF_TOML if given is None else f"{WF_TOML}\n[engine]\nlease = {given}\n"
    project = load_project(make_project(tmp_path, toml))
    assert project.engine.lease == seconds
    assert project.engine_settings().lease == seconds


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("0", "wf.toml: engine.lease must be from 1 second to 1 hour, got 0 (int)"),
        ('"2 hours"', 'wf.toml: engine.lease must be from 1 second to 1 hour, got "2 hours"'),
        ('"soon"', 'wf.toml: engine.lease is invalid: lease "soon" is not a duration'),
    ],
)
def test_a_wrong_engine_lease_is_refused(tmp_path: Path, given: str, message: str) -> None:
    with pytest.raises(ProjectError) as caught:
        load_project(make_project(tmp_path, f"{WF_TOML}\n[engine]\nlease = {given}\n"))
    assert str(caught.value).startswith(message)

"""Which database ``wf dev`` runs on: ``--database``, else ``WF_DATABASE_URL``, else wf.toml's
``[engine] database``, else ``.wf/wf.db``; a wrong one is one line, its password hidden."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.helpers import dev_server, wait_until, wf

pytestmark = pytest.mark.slow

NAME = "workflows-starter"


def instances_in(database: Path) -> list[str]:
    if not database.exists():
        return []
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM instances ORDER BY id")]


def recorded(database: Path, instance_id: str) -> bool:
    return instance_id in instances_in(database)


def test_the_option_comes_before_the_variable_before_wf_toml_before_the_state_folder(
    tmp_path: Path,
) -> None:
    wf("init", "proj", cwd=tmp_path)
    project = tmp_path / "proj"
    files = {
        "state": project / ".wf" / "wf.db",
        "toml": project / "data" / "toml.db",
        "variable": tmp_path / "variable.db",
        "option": project / "option.db",
    }
    runs = [
        ("state", {}, ()),
        ("toml", {}, ()),
        ("variable", {"WF_DATABASE_URL": f"sqlite:///{files['variable']}"}, ()),
        ("option", {"WF_DATABASE_URL": str(files["variable"])}, ("--database", "option.db")),
    ]
    for name, env, args in runs:
        if name == "toml":  # relative to the project's folder
            with (project / "wf.toml").open("a") as config:
                config.write('\n[engine]\ndatabase = "data/toml.db"\n')
        with dev_server(project, env=env, args=args) as server:
            wf("trigger", NAME, "--id", name, "--url", server.url, cwd=project)
            wait_until(functools.partial(recorded, files[name], name), what=f"{name} recorded")
        shown = {
            "state": None,
            "toml": "data/toml.db",
            "variable": str(files["variable"]),
            "option": "option.db",
        }[name]
        banner = [line for line in server.output().splitlines() if "Database:" in line]
        assert banner == ([] if shown is None else [f"  ➜ Database:  {shown}"]), server.output()
    assert {name: instances_in(path) for name, path in files.items()} == {
        name: [name] for name in files
    }


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (
            ("--database", "mysql://app:secret@db/app"),
            {},
            'wf: --database: "mysql://app:***@db/app" uses the scheme "mysql"; expected a '
            "postgresql:// URL, or the path of a SQLite file (or sqlite:///path)",
        ),
        (
            (),
            {"WF_DATABASE_URL": "postgresql://app:secret@db:port/app"},
            'wf: WF_DATABASE_URL: "postgresql://app:***@db:port/app" is not a valid PostgreSQL '
            "URL (Port could not be cast to integer value as 'port')",
        ),
        (
            ("--database", "host=db password=secret"),
            {"WF_DATABASE_URL": "ignored.db"},
            'wf: --database: "host=db password=***" is a key=value connection string; write it '
            "as postgresql://user:password@host:5432/database",
        ),
    ],
)
@pytest.mark.parametrize("command", ["dev", "serve"])
def test_a_wrong_database_is_one_line_without_its_password(
    tmp_path: Path, command: str, args: tuple[str, ...], env: dict[str, str], error: str
) -> None:
    wf("init", "proj", cwd=tmp_path)
    done = wf(command, "--port", "0", *args, cwd=tmp_path / "proj", check=False, env=env)
    assert (done.returncode, done.stderr, done.stdout) == (1, error + "\n", "")

"""`wf init`: copies a template, never overwrites a file, and says what it did."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from wf.cli.init import TEMPLATES, project_name, render, target_name
from wf.cli.main import app

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

STARTER_FILES = {
    ".dev.vars.example",
    ".gitignore",
    "README.md",
    "pytest.ini",
    "tests/test_workflows.py",
    "wf.toml",
    "workflows.py",
}
CART_FILES = STARTER_FILES | {"carts.json"}


def wf_init(*args: str) -> Result:
    return CliRunner().invoke(app, ["init", *args])


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_starter_is_the_default(tmp_path: Path) -> None:
    target = tmp_path / "hello-workflows"
    result = wf_init(str(target))
    assert result.exit_code == 0, result.output
    assert files_in(target) == STARTER_FILES
    for name in STARTER_FILES:
        assert f"  created  {name}\n" in result.stdout
    config = tomllib.loads((target / "wf.toml").read_text(encoding="utf-8"))
    assert config["name"] == "hello-workflows"
    assert config["main"] == "workflows.py"
    assert config["workflows"] == [
        {"name": "workflows-starter", "binding": "MY_WORKFLOW", "class_name": "MyWorkflow"}
    ]
    assert config["dev"]["port"] == 8787
    assert (target / "README.md").read_text(encoding="utf-8").startswith("# hello-workflows\n")
    assert result.stderr == ""


def test_next_steps_name_the_folder_and_the_commands(tmp_path: Path) -> None:
    target = tmp_path / "my app"
    result = wf_init(str(target))
    assert result.exit_code == 0
    next_steps = result.stdout.split("Next steps:\n", 1)[1]
    assert f"  cd '{target}'\n" in next_steps
    assert "  wf dev\n" in next_steps
    assert "  wf trigger workflows-starter\n" in next_steps
    assert "  wf instances describe workflows-starter latest\n" in next_steps
    assert "--type approval" in next_steps


def test_cart_reminder_template(tmp_path: Path) -> None:
    target = tmp_path / "shop"
    result = wf_init(str(target), "--template", "cart-reminder")
    assert result.exit_code == 0, result.output
    assert files_in(target) == CART_FILES
    config = tomllib.loads((target / "wf.toml").read_text(encoding="utf-8"))
    assert config["name"] == "shop"
    assert config["workflows"][0]["name"] == "cart-reminder"
    assert config["vars"]["REMINDER_WAIT"] == "3 days"
    carts = json.loads((target / "carts.json").read_text(encoding="utf-8"))
    assert {"cart-1", "cart-2"} <= set(carts)
    assert "wf trigger cart-reminder" in result.stdout
    assert "outbox.jsonl" in (target / ".gitignore").read_text(encoding="utf-8")


def test_short_template_option(tmp_path: Path) -> None:
    result = wf_init(str(tmp_path / "p"), "-t", "cart-reminder")
    assert result.exit_code == 0
    assert (tmp_path / "p" / "carts.json").is_file()


def test_default_folder_is_the_current_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "Current Folder"
    folder.mkdir()
    monkeypatch.chdir(folder)
    result = wf_init()
    assert result.exit_code == 0, result.output
    assert files_in(folder) == STARTER_FILES
    assert "in the current folder" in result.stdout
    assert "  cd " not in result.stdout  # nowhere to go
    name = tomllib.loads((folder / "wf.toml").read_text(encoding="utf-8"))["name"]
    assert name == "current-folder"


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    assert wf_init(str(target)).exit_code == 0
    assert (target / "wf.toml").is_file()


def test_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "project"
    target.mkdir()
    mine = "# my own readme\n"
    (target / "README.md").write_text(mine, encoding="utf-8")
    (target / "wf.toml").write_bytes(b"not even toml \xff")
    result = wf_init(str(target))
    assert result.exit_code == 0, result.output
    assert (target / "README.md").read_text(encoding="utf-8") == mine
    assert (target / "wf.toml").read_bytes() == b"not even toml \xff"
    assert files_in(target) == STARTER_FILES
    assert "  skipped  README.md (it exists already; left unchanged)\n" in result.stdout
    assert "  skipped  wf.toml (it exists already; left unchanged)\n" in result.stdout
    assert "  created  workflows.py\n" in result.stdout
    assert "  created  README.md" not in result.stdout


def test_a_symlink_in_the_way_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "project"
    target.mkdir()
    elsewhere = tmp_path / "elsewhere.txt"
    (target / "README.md").symlink_to(elsewhere)  # dangling
    result = wf_init(str(target))
    assert result.exit_code == 0
    assert not elsewhere.exists()
    assert "  skipped  README.md" in result.stdout


def test_second_run_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "project"
    assert wf_init(str(target)).exit_code == 0
    before = {name: (target / name).read_bytes() for name in STARTER_FILES}
    result = wf_init(str(target))
    assert result.exit_code == 0
    assert "Nothing was written" in result.stdout
    assert "created" not in result.stdout
    assert "Next steps" not in result.stdout
    assert {name: (target / name).read_bytes() for name in STARTER_FILES} == before


def test_unknown_template_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "project"
    result = wf_init(str(target), "--template", "nope")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert '"nope"' in result.stderr
    for name in TEMPLATES:
        assert name in result.stderr
    assert not target.exists()


def test_a_file_where_the_folder_should_be(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("a file", encoding="utf-8")
    result = wf_init(str(target))
    assert result.exit_code == 1
    assert result.stderr.startswith("wf init: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert target.read_text(encoding="utf-8") == "a file"


def test_json_output(tmp_path: Path) -> None:
    target = tmp_path / "project"
    (tmp_path / "project").mkdir()
    (target / ".gitignore").write_text("mine\n", encoding="utf-8")
    result = wf_init(str(target), "--json", "-t", "cart-reminder")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload == {
        "directory": str(target.resolve()),
        "template": "cart-reminder",
        "name": "project",
        "created": sorted(CART_FILES - {".gitignore"}, key=str.lower),
        "skipped": [".gitignore"],
    }


def test_help_lists_the_templates() -> None:
    result = CliRunner().invoke(app, ["init", "--help"])
    assert result.exit_code == 0
    for name in TEMPLATES:
        assert name in result.stdout


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        ("my-project", "my-project"),
        ("My Project!", "my-project"),
        ("shop_v2", "shop_v2"),
        ("--", "my-workflows"),
        ("Ünïcode Café", "unicode-cafe"),
    ],
)
def test_project_name_from_the_folder(folder: str, name: str) -> None:
    assert project_name(Path("/somewhere") / folder) == name


def test_file_names_and_substitution() -> None:
    assert target_name("dot-gitignore") == ".gitignore"
    assert target_name("dot-dev.vars.example") == ".dev.vars.example"
    assert target_name("workflows.py.tmpl") == "workflows.py"
    assert target_name("carts.json") == "carts.json"
    text = "name = ${name}; keep $STORAGE and ${unknown} and $$"
    assert render(text, {"name": "x"}) == "name = x; keep $STORAGE and ${unknown} and $$"

"""The generated reference pages list everything the code defines: every CLI command and option,
every REST route, every wf.toml key, error code and limit, every public Python name."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import typer
import typer.main
from docs_hooks import cli_page, config_page, errors_page, hook, limits_page, rest_page

from tests.docs.runner import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

REFERENCE = REPO / "docs" / "reference"


def _section(markdown: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of any level."""
    start = markdown.index(heading + "\n")
    rest = markdown[start + len(heading) + 1 :]
    following = re.search(r"^#{1,4} ", rest, re.M)
    return rest[: following.start()] if following else rest


# ---- the hook --------------------------------------------------------------------------------


def test_every_reference_page_has_its_marker_and_every_marker_a_generator() -> None:
    for name in hook.GENERATORS:
        page = REFERENCE / f"{name}.md"
        assert f"<!-- generated: {name} -->" in page.read_text(encoding="utf-8"), page
    filled = hook.fill("# T\n\n<!-- generated: limits -->\n")
    assert "<!-- generated" not in filled and "| What | Limit |" in filled
    with pytest.raises(hook.UnknownMarker):
        hook.fill("<!-- generated: nothing -->")


def test_the_site_ships_the_openapi_document() -> None:
    from mkdocs.config import load_config
    from mkdocs.structure.files import Files

    config = load_config(str(REPO / "mkdocs.yml"))
    config.plugins._current_plugin = None  # as during a build, outside any plugin's event
    files = hook.on_files(Files([]), config)
    shipped = files.get_file_from_path(rest_page.SHIPPED_PATH)
    assert shipped is not None
    assert shipped.content_string == rest_page.document_text()
    assert "(openapi.json)" in (REFERENCE / "rest.md").read_text(encoding="utf-8")


# ---- CLI -------------------------------------------------------------------------------------


def _walk(command: object, path: str) -> dict[str, set[str]]:
    """Every command path of a Click tree with the flags of its options (walked here, not by the
    generator, so a command the generator skips is caught)."""
    params = command.params  # type: ignore[attr-defined]
    flags = {f for p in params for f in (*p.opts, *p.secondary_opts) if f.startswith("-")}
    arguments = {p.name for p in params if not p.opts[0].startswith("-")}
    found = {path: flags | {f"argument {len(arguments)}"}}
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            found.update(_walk(sub, f"{path} {name}"))
    return found


def _section_table_rows(section: str, header: str) -> int:
    if f"| {header} |" not in section:
        return 0
    table = section.split(f"| {header} |", 1)[1].split("\n\n", 1)[0]
    return len(table.strip().splitlines()) - 2  # less the rest of the header and |---|


def test_the_cli_page_lists_every_command_and_option() -> None:
    from wf.cli.main import app

    rendered = cli_page.render()
    expected = _walk(typer.main.get_command(app), "wf")
    assert len(expected) > 20
    for path, flags in expected.items():
        heading = "#" * min(path.count(" ") + 2, 4) + " " + path
        section = _section(rendered, heading)
        assert f"```text\n{path}" in section, path
        arguments = next(f for f in flags if f.startswith("argument "))
        rows = _section_table_rows(section, "Argument")
        assert rows == int(arguments.split()[1]), (path, rows)
        for flag in flags - {"--help", arguments}:
            assert re.search(rf"`[^`]*{re.escape(flag)}\b", section), (path, flag)


def test_the_cli_page_shows_defaults_env_vars_and_exit_codes() -> None:
    rendered = cli_page.render()
    serve = _section(rendered, "## wf serve")
    assert "default: 8788" in serve
    assert "env var: WF_URL" in _section(rendered, "## wf trigger")
    codes = _section(rendered, "## Exit codes")
    for number in (0, 1, 2, 130):
        assert f"| {number} |" in codes


def test_the_cli_generator_follows_the_app_it_is_given() -> None:
    app = typer.Typer()
    group = typer.Typer(help="Group help.")
    app.add_typer(group, name="things")

    @group.command("make")
    def make(name: str, count: int = typer.Option(3, help="How many.")) -> None:
        """Make things."""

    @app.command("other")
    def other() -> None:
        """Something else."""

    commands = {c.path: c for c in cli_page.commands(app)}
    assert set(commands) == {"wf", "wf things", "wf things make", "wf other"}
    made = commands["wf things make"]
    assert made.help == "Make things."
    option = next(p for p in made.params if "--count" in p.flags)
    assert option.help == "How many." and "default: 3" in option.details


# ---- REST ------------------------------------------------------------------------------------


def test_the_rest_page_lists_every_route_parameter_and_schema() -> None:
    doc = rest_page.document()
    rendered = rest_page.render()
    routes = list(rest_page.operations(doc))
    assert len(routes) > 30
    for path, method, operation in routes:
        line = f"`{method.upper()} {path}`"
        if path.startswith("/client/v4/"):
            assert line in rendered, line
            continue
        heading = f"### {method.upper()} {path} {{#{operation['operationId']}}}"
        section = _section(rendered, heading)
        for param in operation.get("parameters", []):
            name = param["$ref"].rsplit("/", 1)[-1] if "$ref" in param else param["name"]
            shown = doc["components"]["parameters"].get(name, param)["name"]
            assert f"`{shown}`" in section, (path, method, shown)
        for status in operation["responses"]:
            assert f"| {status} |" in section, (path, method, status)
    for name in doc["components"]["schemas"]:
        assert f"{{#{rest_page.schema_anchor(name)}}}" in rendered, name
    assert "Only on `wf serve`." in _section(rendered, "### POST /api/deploy {#deploy}")


# ---- wf.toml ---------------------------------------------------------------------------------


def _accepted_keys() -> dict[str, tuple[str, ...]]:
    """The keys wf.project accepts, table by table (its own tuples, so a new key shows here)."""
    from wf import project
    from wf.engine import flow

    return {
        "": tuple(k for k in project._TOP_KEYS if k not in ("workflows", "vars", "dev", "engine")),
        "workflows": project._WORKFLOW_KEYS,
        "dev": project._DEV_KEYS,
        "engine": project._ENGINE_KEYS,
        "workflows.limits": ("steps",),
        "workflows.default_retention": ("success_retention", "error_retention"),
        "workflows.rate_limit": flow._RATE_KEYS,
    }


def missing_keys(source: str) -> list[str]:
    """Keys the parser accepts that the annotated example does not document."""
    documented = {t.name: {k.name for k in t.keys if k.about} for t in config_page.tables(source)}
    data = tomllib.loads(source)
    missing = []
    for where, keys in _accepted_keys().items():
        table, _, inner = where.partition(".")
        for key in keys:
            if inner:
                if key not in data[table][0].get(inner, {}):
                    missing.append(f"{where}.{key}")
            elif key not in documented.get(table, set()):
                missing.append(f"{where}.{key}" if where else key)
    return missing


def test_the_example_documents_every_key_the_parser_accepts() -> None:
    source = config_page.EXAMPLE.read_text(encoding="utf-8")
    assert missing_keys(source) == []
    rendered = config_page.render()
    for key in _accepted_keys()["engine"]:
        assert f"| `{key}` |" in _section(rendered, "## [engine]"), key


def test_a_key_left_out_of_the_example_is_caught() -> None:
    source = config_page.EXAMPLE.read_text(encoding="utf-8")
    without_lease = re.sub(r"^lease = .*$", "", source, flags=re.M)
    assert missing_keys(without_lease) == ["engine.lease"]
    without_steps = source.replace("limits = { steps = 10000 }", "limits = {}")
    assert missing_keys(without_steps) == ["workflows.limits.steps"]


def test_the_example_is_a_valid_wf_toml(tmp_path: Path) -> None:
    from wf.project import load_project

    shutil.copy(config_page.EXAMPLE, tmp_path / "wf.toml")
    (tmp_path / "workflows.py").write_text("", encoding="utf-8")
    project = load_project(tmp_path / "wf.toml")
    assert [w.name for w in project.workflows] == ["my-workflow", "send-emails"]


# ---- errors and limits -----------------------------------------------------------------------


def test_the_errors_page_lists_every_api_code_and_error_class() -> None:
    from wf.devserver import envelope

    codes = {
        value
        for name, value in vars(envelope).items()
        if name.isupper() and isinstance(value, int) and 10000 <= value < 11000
    }
    listed = {c.code for c in errors_page.api_codes()}
    assert listed == codes and len(codes) >= 12
    assert all(c.note for c in errors_page.api_codes())  # each code says what it means
    rendered = errors_page.render()
    for code in codes:
        assert f"| {code} |" in rendered
    classes = errors_page.error_classes()
    for kind, _, _ in envelope.WF_ERRORS:
        assert kind in classes
    import wf
    import wf.testing

    for module in (wf, wf.testing):
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, BaseException):
                assert value in classes, name


def test_every_wf_error_is_listed() -> None:
    import wf.cli.main
    import wf.server.main  # noqa: F401
    from wf.errors import WfError

    def subclasses(cls: type) -> set[type]:
        found: set[type] = set(cls.__subclasses__())
        for sub in list(found):
            found |= subclasses(sub)
        return found

    public = {c for c in subclasses(WfError) if not c.__name__.startswith("_")}
    assert public <= set(errors_page.error_classes()), public - set(errors_page.error_classes())


def test_the_limits_page_lists_every_limit_with_its_value() -> None:
    from dataclasses import fields

    from wf.engine.limits import DEFAULT_LIMITS, Limits

    sources = {limit.source for limit in limits_page.LIMITS}
    for field in fields(Limits):
        assert f"wf.engine.limits:DEFAULT_LIMITS.{field.name}" in sources, field.name
    rendered = limits_page.render()
    for limit in limits_page.LIMITS:
        limit.value()  # the constant still exists and is a number
    assert DEFAULT_LIMITS.steps == 10_000 and "| 10,000 |" in rendered
    assert "| 1 MiB |" in rendered and "| 365 days |" in rendered


# ---- Python API ------------------------------------------------------------------------------


def test_the_python_page_documents_every_public_name() -> None:
    import wf
    import wf.testing

    page = (REFERENCE / "python.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: (\S+)$", page, re.M))
    for name in wf.__all__:
        if name != "__version__":
            assert f"wf.{name}" in documented, name
    for name in wf.testing.__all__:
        if name == "replay":
            assert "wf.testing.replay.replay" in documented
        elif name == "NonDeterminismError":
            assert "wf.NonDeterminismError" in documented  # the same class, re-exported
        else:
            assert f"wf.testing.{name}" in documented, name

"""``wf workflows list | describe NAME | delete NAME``."""

from __future__ import annotations

from typing import Annotated

import typer

from wf.cli.exit import exits
from wf.cli.options import JsonOption, TokenOption, UrlOption, make_client, print_json

app = typer.Typer(
    help="List and describe the workflows of the project, or delete their instances.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

NameArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="Name of the workflow.", show_default=False)
]


@app.command("list")
@exits
def list_(
    page: Annotated[int, typer.Option("--page", min=1, help="Page to show.")] = 1,
    per_page: Annotated[int, typer.Option("--per-page", min=1, help="Workflows per page.")] = 25,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the workflows of the project, with their instances by status."""
    workflows, _ = make_client(url, token).list_workflows(page=page, per_page=per_page)
    if json_output:
        print_json(workflows)
        return
    if not workflows:
        if page > 1:
            typer.echo(f"No workflows found on page {page}. Please try a smaller page number.")
        else:
            typer.echo("There are no workflows in this project")
        return
    from wf.cli import render

    render.print_workflows(workflows, page)


@app.command("describe")
@exits
def describe(
    name: NameArgument,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Describe a workflow: its binding, class, version and instance counts."""
    workflow = make_client(url, token).get_workflow(name)
    if json_output:
        print_json(workflow)
        return
    from wf.cli import render

    render.print_workflow(workflow)


@app.command("delete")
@exits
def delete(
    name: NameArgument,
    url: UrlOption = None,
    token: TokenOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete every instance of a workflow (the workflow itself is defined in wf.toml)."""
    result = make_client(url, token).delete_workflow(name)
    if json_output:
        print_json(result)
        return
    deleted = result.get("deleted", 0)
    typer.echo(f'✅ Workflow "{result.get("name", name)}" removed successfully.')
    typer.echo(f"   {deleted} instance{'' if deleted == 1 else 's'} removed.")

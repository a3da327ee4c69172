"""The `wf init` templates, the example projects and wrangler-like.toml.example.

Each one must be a valid project that loads, is clean Python, and runs to completion on a
real engine (a real SQLite file). A manual clock skips the sleeps. Each one's own tests (its
tests/, using wf.testing) pass with a plain `pytest` in its folder, and leave it as it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Harness, wait_for, wait_status
from tests.e2e.helpers import wf
from wf.cli.init import TEMPLATES, create_project
from wf.engine import Engine, ManualClock, WorkflowSpec
from wf.project import (
    _DEV_KEYS,
    _ENGINE_KEYS,
    _TOP_KEYS,
    _WORKFLOW_KEYS,
    Project,
    import_main,
    load_project,
    load_workflows,
    parse_dotenv,
    read_dev_vars,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(path.parent.name for path in (REPO / "examples").glob("*/wf.toml"))
FLAKY_STEP = "make a call to write that could maybe, just might, fail"


@pytest.fixture(autouse=True)
def _isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Loading a project puts its folder on sys.path and its main module in sys.modules."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    sys.modules.pop("workflows", None)


def new_project(tmp_path: Path, template: str) -> Path:
    root = tmp_path / "my-project"
    result = create_project(root, template)
    assert result.created and not result.skipped
    return root


def example(tmp_path: Path, name: str) -> Path:
    """A copy of an example, so that running it writes nothing into the repository."""
    root = tmp_path / name
    shutil.copytree(REPO / "examples" / name, root, ignore=shutil.ignore_patterns(".wf"))
    return root


def load(root: Path) -> tuple[Project, list[WorkflowSpec]]:
    project = load_project(root / "wf.toml")
    return project, load_workflows(project)


async def start(harness: Harness, root: Path, clock: ManualClock) -> Engine:
    """An engine for the project, set up as the dev server sets it up."""
    project, specs = load(root)
    variables = {**project.vars, **read_dev_vars(project)}
    return await harness.start(specs, clock=clock, vars=variables)


async def step_started(engine: Engine, workflow: str, instance_id: str, step: str) -> None:
    """Wait until the instance has reached the step named ``step`` (as "name-count")."""

    async def reached() -> bool:
        details = await engine.details(workflow, instance_id)
        return any(s.get("name") == step for s in details["steps"])

    await wait_for(reached)


def jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by relative path, with its bytes."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def run_project_tests(folder: Path) -> None:
    """``pytest`` in a project's folder as its user runs it (this interpreter has wf and the
    kit installed): every test in its tests/ passes, with no warning, and the folder is left
    as it was (Python's own __pycache__ aside, which this run does not write)."""
    defined = sum(
        len(re.findall(r"^async def test_|^def test_", path.read_text(encoding="utf-8"), re.M))
        for path in (folder / "tests").glob("test_*.py")
    )
    assert defined >= 3
    before = snapshot(folder)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "WF_"))}
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    summary = result.stdout.strip().splitlines()[-1]
    # "N passed in 0.52s": no failure, no skip, no warning, and every test ran.
    assert re.fullmatch(rf"{defined} passed in [\d.]+s", summary), output
    assert snapshot(folder) == before, "the tests changed files in the project folder"


def ruff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# ---- the templates as files -------------------------------------------------------------------


def test_every_template_folder_is_offered_by_wf_init() -> None:
    package = files("wf.templates")
    folders = {e.name for e in package.iterdir() if e.is_dir() and e.name != "__pycache__"}
    assert folders == set(TEMPLATES)


def test_template_sources_are_not_python_modules() -> None:
    # The repository's ruff, mypy and pytest must not take the templates for its own code.
    package = Path(str(files("wf.templates")))
    modules = [p.relative_to(package) for p in package.rglob("*.py")]
    assert modules == [Path("__init__.py")]
    assert list(package.rglob("*.py.tmpl"))


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_generated_project_loads(tmp_path: Path, template: str) -> None:
    root = new_project(tmp_path, template)
    project, specs = load(root)
    assert project.name == "my-project"
    assert project.main == root / "workflows.py"
    assert project.dev.port == 8787
    assert specs and all(spec.binding for spec in specs)
    for path in root.rglob("*"):
        if path.is_file():
            assert "${" not in path.read_text(encoding="utf-8"), path
    ignored = (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".wf/" in ignored and ".dev.vars" in ignored
    example_vars = root / ".dev.vars.example"
    assert parse_dotenv(example_vars.read_text(encoding="utf-8"), example_vars.name) == {}
    assert "wf dev" in (root / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_generated_python_compiles_and_is_lint_clean(tmp_path: Path, template: str) -> None:
    root = new_project(tmp_path, template)
    for path in root.rglob("*.py"):
        py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)
    # At 88 columns (ruff's and black's default), so that a user's own linter is content.
    rules = "--select=E,W,F,I,B,UP,C4,PIE,RUF,SIM,ASYNC,DTZ,N"
    checked = ruff("check", "--isolated", "--target-version=py310", rules, ".", cwd=root)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    formatted = ruff("format", "--isolated", "--check", ".", cwd=root)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_starter_matches_cloudflares_starter(tmp_path: Path) -> None:
    root = new_project(tmp_path, "starter")
    project, _ = load(root)
    [workflow] = project.workflows
    assert (workflow.name, workflow.binding, workflow.class_name) == (
        "workflows-starter",
        "MY_WORKFLOW",
        "MyWorkflow",
    )
    module = sys.modules["workflows"]
    assert module.DEFAULT_FAILURE_RATE == 0.5  # tests pass failureRate; users get 50%
    readme = (root / "README.md").read_text(encoding="utf-8")
    for command in (
        "wf trigger workflows-starter",
        "wf instances describe workflows-starter latest",
        "wf instances send-event workflows-starter <id> --type approval --payload "
        """'{"approved": true}'""",
    ):
        assert command in readme


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_loads_and_is_lint_clean(tmp_path: Path, name: str) -> None:
    project, specs = load(example(tmp_path, name))
    assert len(specs) == len(project.workflows) >= 1
    # With the repository's own ruff settings.
    checked = ruff("check", f"examples/{name}", cwd=REPO)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    formatted = ruff("format", "--check", f"examples/{name}", cwd=REPO)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_there_is_an_example() -> None:
    assert "shop" in EXAMPLES


# ---- wrangler-like.toml.example ---------------------------------------------------------------


def test_wrangler_like_example_is_a_valid_wf_toml(tmp_path: Path) -> None:
    shutil.copy(REPO / "wrangler-like.toml.example", tmp_path / "wf.toml")
    (tmp_path / "workflows.py").write_text(
        "from wf import WorkflowEntrypoint\n\n"
        "class MyWorkflow(WorkflowEntrypoint):\n"
        "    async def run(self, event, step):\n        return None\n\n"
        "class SendEmails(WorkflowEntrypoint):\n"
        "    async def run(self, event, step):\n        return None\n",
        encoding="utf-8",
    )
    project, specs = load(tmp_path)
    assert [spec.binding for spec in specs] == ["MY_WORKFLOW", "EMAILS"]
    assert project.dev.port == 8787 and project.engine.durability == "fsync"


def test_wrangler_like_example_documents_every_key() -> None:
    text = (REPO / "wrangler-like.toml.example").read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines()]
    for key in (*_TOP_KEYS, *_WORKFLOW_KEYS, *_DEV_KEYS, *_ENGINE_KEYS):
        assert any(line.startswith((f"{key} =", f"[{key}]", f"[[{key}]]")) for line in lines), key
    assert ".dev.vars" in text


@pytest.mark.slow
@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_generated_projects_tests_pass_with_pytest(tmp_path: Path, template: str) -> None:
    wf("init", "proj", "--template", template, cwd=tmp_path)
    project = tmp_path / "proj"
    assert (project / "pytest.ini").is_file() and (project / "tests").is_dir()
    run_project_tests(project)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_tests_pass_with_pytest_and_leave_the_folder_clean(
    tmp_path: Path, name: str
) -> None:
    run_project_tests(example(tmp_path, name))


# ---- the templates run ------------------------------------------------------------------------


async def test_starter_runs_to_completion_when_approved(
    tmp_path: Path, harness: Harness, clock: ManualClock
) -> None:
    engine = await start(harness, new_project(tmp_path, "starter"), clock)
    inst = await engine.create("workflows-starter", params={"failureRate": 0})
    await wait_status(engine, "workflows-starter", inst.id, "waiting")
    await inst.send_event("approval", {"approved": True})
    await step_started(engine, "workflows-starter", inst.id, "wait on something-1")
    clock.advance(60)

    status = await wait_status(engine, "workflows-starter", inst.id)
    assert status["status"] == "complete", status
    assert status["output"]["approved"] is True
    assert status["output"]["written"] == 8
    details = await engine.details("workflows-starter", inst.id)
    assert [s["name"] for s in details["steps"]] == [
        "my first step-1",
        "request-approval-1",
        "some other step-1",
        "wait on something-1",
        f"{FLAKY_STEP}-1",
    ]
    first = details["steps"][0]["output"]
    assert first["inputParams"]["instanceId"] == inst.id
    assert len(first["files"]) == 8
    assert details["steps"][-1]["config"]["retries"]["limit"] == 5


async def test_starter_completes_unapproved_when_the_wait_times_out(
    tmp_path: Path, harness: Harness, clock: ManualClock
) -> None:
    engine = await start(harness, new_project(tmp_path, "starter"), clock)
    inst = await engine.create("workflows-starter", params={"failureRate": 0})
    await wait_status(engine, "workflows-starter", inst.id, "waiting")
    clock.advance(60)
    status = await wait_status(engine, "workflows-starter", inst.id)
    assert status["status"] == "complete"
    assert status["output"] == {"approved": False, "reason": "nobody approved within 1 minute"}


async def test_starter_stops_when_rejected(
    tmp_path: Path, harness: Harness, clock: ManualClock
) -> None:
    engine = await start(harness, new_project(tmp_path, "starter"), clock)
    inst = await engine.create("workflows-starter")
    await inst.send_event("approval", {"approved": False})
    status = await wait_status(engine, "workflows-starter", inst.id)
    assert status["output"] == {"approved": False, "reason": "rejected"}


async def test_starter_flaky_step_errors_after_its_retries(
    tmp_path: Path, harness: Harness, clock: ManualClock
) -> None:
    engine = await start(harness, new_project(tmp_path, "starter"), clock)
    inst = await engine.create("workflows-starter", params={"failureRate": 1})
    await inst.send_event("approval")  # an event without a payload approves
    await step_started(engine, "workflows-starter", inst.id, "wait on something-1")
    clock.advance(60)

    async def finished() -> bool:
        wake = clock.next_wake
        # Each retry delay (5, 10, 20, 40, 80 s) is moved to its end; the timeout of an attempt
        # still running (15 minutes) never is, or the attempt would time out instead of failing.
        if wake is not None and wake - clock.now() <= 100:
            clock.set(wake)
        return (await inst.status())["status"] in ("complete", "errored")

    await wait_for(finished)
    status = await inst.status()
    assert status["status"] == "errored"
    assert "API call to $STORAGE_SYSTEM failed" in status["error"]["message"]
    flaky = (await engine.details("workflows-starter", inst.id))["steps"][-1]
    assert flaky["name"] == f"{FLAKY_STEP}-1"
    assert len(flaky["attempts"]) == 6


async def test_cart_reminder_emails_a_cart_that_was_not_checked_out(
    tmp_path: Path, harness: Harness, clock: ManualClock
) -> None:
    root = new_project(tmp_path, "cart-reminder")
    engine = await start(harness, root, clock)
    inst = await engine.create("cart-reminder", params={"cartId": "cart-1", "wait": "10 seconds"})
    await step_started(engine, "cart-reminder", inst.id, "wait before reminding-1")
    clock.advance(10)
    await step_started(engine, "cart-reminder", inst.id, "wait for checkout-1")
    [email] = jsonl(root / "outbox.jsonl")
    assert email["to"] == "ada@example.com"
    assert email["key"] == f"{inst.id}/reminder"
    assert email["items"] == ["Mechanical keyboard", "Wireless mouse"]

    await inst.send_event("checked-out", {"orderId": "order-1"})
    status = await wait_status(engine, "cart-reminder", inst.id)
    assert status["output"] == {
        "cartId": "cart-1",
        "reminded": True,
        "email": "ada@example.com",
        "followedUp": False,
    }
    assert len(jsonl(root / "outbox.jsonl")) == 1


async def test_cart_reminder_waits_three_days_then_two_more_before_following_up(
    tmp_path: Path, harness: Harness, clock: ManualClock
) -> None:
    root = new_project(tmp_path, "cart-reminder")
    engine = await start(harness, root, clock)
    inst = await engine.create("cart-reminder", params={"cartId": "cart-3"})
    await step_started(engine, "cart-reminder", inst.id, "wait before reminding-1")
    clock.advance(3 * 86400 - 1)
    await asyncio.sleep(0.1)
    assert (await inst.status())["status"] == "waiting"
    assert not (root / "outbox.jsonl").exists()
    clock.advance(1)
    await step_started(engine, "cart-reminder", inst.id, "wait for checkout-1")
    assert [e["key"] for e in jsonl(root / "outbox.jsonl")] == [f"{inst.id}/reminder"]

    clock.advance(2 * 86400 - 1)
    await asyncio.sleep(0.1)
    assert (await inst.status())["status"] == "waiting"
    clock.advance(1)
    status = await wait_status(engine, "cart-reminder", inst.id)
    assert status["output"]["followedUp"] is True
    follow_up = jsonl(root / "outbox.jsonl")[-1]
    assert follow_up["key"] == f"{inst.id}/follow-up"
    assert follow_up["to"] == "alan@example.com"


async def test_cart_reminder_leaves_a_checked_out_cart_alone(
    tmp_path: Path, harness: Harness, clock: ManualClock
) -> None:
    root = new_project(tmp_path, "cart-reminder")
    engine = await start(harness, root, clock)
    inst = await engine.create("cart-reminder", params={"cartId": "cart-2", "wait": 5})
    await step_started(engine, "cart-reminder", inst.id, "wait before reminding-1")
    clock.advance(5)
    status = await wait_status(engine, "cart-reminder", inst.id)
    assert status["output"] == {"cartId": "cart-2", "reminded": False}
    assert not (root / "outbox.jsonl").exists()


async def test_cart_reminder_fails_at_once_for_an_unknown_cart(
    tmp_path: Path, harness: Harness, clock: ManualClock
) -> None:
    engine = await start(harness, new_project(tmp_path, "cart-reminder"), clock)
    inst = await engine.create("cart-reminder", params={"cartId": "nope", "wait": "1 second"})
    await step_started(engine, "cart-reminder", inst.id, "wait before reminding-1")
    clock.advance(1)
    status = await wait_status(engine, "cart-reminder", inst.id)
    assert status["status"] == "errored"
    assert status["error"]["name"] == "CartNotFound"
    retrieve = (await engine.details("cart-reminder", inst.id))["steps"][-1]
    assert len(retrieve["attempts"]) == 1


def test_cart_reminder_email_is_sent_once_per_key(tmp_path: Path) -> None:
    project = load_project(new_project(tmp_path, "cart-reminder") / "wf.toml")
    module = import_main(project)
    outbox = tmp_path / "outbox.jsonl"
    message = {"key": "instance-1/reminder", "to": "ada@example.com"}
    assert module.send_email(outbox, message) is True
    assert module.send_email(outbox, {**message, "to": "again@example.com"}) is False
    assert jsonl(outbox) == [message]


# ---- the example shop runs --------------------------------------------------------------------


async def test_shop_checkout_cancels_the_reminder_and_ships(
    tmp_path: Path, harness: Harness, clock: ManualClock
) -> None:
    root = example(tmp_path, "shop")
    engine = await start(harness, root, clock)
    first = await engine.create("cart-reminder", id="cart-1", params={"cartId": "cart-1"})
    second = await engine.create("cart-reminder", id="cart-2", params={"cartId": "cart-2"})
    await step_started(engine, "cart-reminder", first.id, "wait before reminding-1")
    await step_started(engine, "cart-reminder", second.id, "wait before reminding-1")

    checkout = await engine.create("checkout", params={"cartId": "cart-1", "failureRate": 0})
    await step_started(engine, "checkout", checkout.id, "wait for shipment-1")
    assert (await first.status())["status"] == "terminated"
    [order] = jsonl(root / "orders.jsonl")
    assert order["cartId"] == "cart-1" and order["amountCents"] == 8900 + 2900

    await checkout.send_event("shipped", {"tracking": "1Z999"})
    status = await wait_status(engine, "checkout", checkout.id)
    assert status["output"] == {
        "orderId": checkout.id,
        "amountCents": 11800,
        "reminder": "cancelled",
        "shipped": True,
        "tracking": "1Z999",
    }

    clock.advance(60)  # REMINDER_WAIT in the example's [vars]
    status = await wait_status(engine, "cart-reminder", second.id)
    assert status["output"] == {"cartId": "cart-2", "reminded": True}
    emails = jsonl(root / "outbox.jsonl")
    assert [e["to"] for e in emails] == ["ada@example.com", "grace@example.com"]
    assert "1Z999" in emails[0]["subject"]
    assert emails[1]["subject"].startswith("The Example Shop:")


async def test_shop_checkout_without_a_reminder(
    tmp_path: Path, harness: Harness, clock: ManualClock
) -> None:
    engine = await start(harness, example(tmp_path, "shop"), clock)
    checkout = await engine.create("checkout", params={"cartId": "cart-3", "failureRate": 0})
    await step_started(engine, "checkout", checkout.id, "wait for shipment-1")
    clock.advance(7 * 86400)
    status = await wait_status(engine, "checkout", checkout.id)
    assert status["output"]["reminder"] == "no reminder"
    assert status["output"]["shipped"] is False

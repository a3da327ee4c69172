"""Cloudflare's official Python SDK (``cloudflare``, pinned in the test extra), unmodified, drives
every method of ``client.workflows`` against wf dev and wf serve through ``base_url=.../client/v4``;
each answer has the types the SDK declares, and the instance does what the call said (read back
with wf's own CLI)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest
from cloudflare.types.workflows import (
    InstanceCreateResponse,
    InstanceListResponse,
    VersionListResponse,
    WorkflowGetResponse,
    WorkflowListResponse,
)
from cloudflare.types.workflows.instances import StatusEditResponse

import cloudflare
from tests.cloudflare_clients.conftest import WORKFLOW, Target

pytestmark = pytest.mark.slow


def _strict(model: object) -> None:
    """The SDK builds its models without validating them: validate each answer against its type."""
    assert isinstance(model, cloudflare.BaseModel)
    type(model).model_validate(model.to_dict())


@pytest.fixture
def client(target: Target) -> Iterator[cloudflare.Cloudflare]:
    with cloudflare.Cloudflare(
        api_token=target.token, base_url=target.base_url, max_retries=0
    ) as made:
        yield made


def test_workflows_list_get(target: Target, client: cloudflare.Cloudflare) -> None:
    listed = list(client.workflows.list(account_id=target.account))
    assert [w.name for w in listed] == [WORKFLOW]
    every: list[WorkflowListResponse | WorkflowGetResponse] = [*listed]
    every.append(client.workflows.get(WORKFLOW, account_id=target.account))
    for found in every:
        _strict(found)
        assert found.class_name == "PinWorkflow" and found.id == WORKFLOW
        assert found.modified_on >= found.created_on  # dates, never null (wrangler sorts them)
    got = client.workflows.get(WORKFLOW, account_id=target.account)
    assert set(got.instances) >= {"queued", "complete"}
    with pytest.raises(cloudflare.NotFoundError):
        client.workflows.get("no-such", account_id=target.account)


def test_versions_list_get(target: Target, client: cloudflare.Cloudflare) -> None:
    versions = list(client.workflows.versions.list(WORKFLOW, account_id=target.account))
    assert len(versions) == 1 and isinstance(versions[0], VersionListResponse)
    _strict(versions[0])
    assert versions[0].language == "python" and versions[0].class_name == "PinWorkflow"
    one = client.workflows.versions.get(
        versions[0].id, account_id=target.account, workflow_name=WORKFLOW
    )
    _strict(one)
    assert one.id == versions[0].id
    created = client.workflows.instances.create(
        WORKFLOW, account_id=target.account, instance_id=f"v-{target.kind}"
    )
    assert created.version_id == one.id
    assert target.wait_finished(created.id) == "complete"
    assert target.instance(created.id)["versionId"] == one.id  # as wf's own CLI shows it
    with pytest.raises(cloudflare.NotFoundError):
        client.workflows.versions.get("nope", account_id=target.account, workflow_name=WORKFLOW)


def test_instances_create_get_list_bulk(target: Target, client: cloudflare.Cloudflare) -> None:
    account, prefix = target.account, f"sdk-{target.kind}"
    created = client.workflows.instances.create(
        WORKFLOW,
        account_id=account,
        instance_id=f"{prefix}-1",
        params={"nap": 0},  # type: ignore[arg-type]  # typed str; Cloudflare takes any JSON
    )
    assert isinstance(created, InstanceCreateResponse)
    _strict(created)
    assert (created.id, created.status, created.workflow_id) == (f"{prefix}-1", "queued", WORKFLOW)
    assert target.wait_finished(created.id) == "complete"
    details = client.workflows.instances.get(created.id, account_id=account, workflow_name=WORKFLOW)
    # Not _strict: the SDK types outputs as strings (Cloudflare sends them JSON-encoded); wf sends
    # the values themselves, as wrangler dev does.
    assert details.status == "complete" and cast(object, details.output) == {"version": "v1"}
    assert details.params == {"nap": 0}

    bulk = list(
        client.workflows.instances.bulk(
            WORKFLOW,
            account_id=account,
            body=[
                {"instance_id": f"{prefix}-b1", "params": {"wait": True}},  # type: ignore[typeddict-item]
                {"instance_id": f"{prefix}-b2", "params": {"wait": True}},  # type: ignore[typeddict-item]
            ],
        )
    )
    assert [b.id for b in bulk] == [f"{prefix}-b1", f"{prefix}-b2"]
    for made in bulk:
        _strict(made)
        assert target.wait_status(made.id, "waiting") == "waiting"

    everything = list(client.workflows.instances.list(WORKFLOW, account_id=account, per_page=1))
    assert {f"{prefix}-1", f"{prefix}-b1", f"{prefix}-b2"} <= {i.id for i in everything}
    for row in everything:
        assert isinstance(row, InstanceListResponse)
        _strict(row)
    page = client.workflows.instances.list(WORKFLOW, account_id=account, per_page=1, page=2)
    assert page.result_info is not None and len(page.result) == 1
    assert (page.result_info.page, page.result_info.per_page) == (2, 1)
    assert page.result[0].id == everything[1].id
    waiting = client.workflows.instances.list(WORKFLOW, account_id=account, status="waiting")
    assert {i.id for i in waiting} >= {f"{prefix}-b1", f"{prefix}-b2"}
    assert all(i.status == "waiting" for i in waiting)
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    assert not list(client.workflows.instances.list(WORKFLOW, account_id=account, date_start=later))
    assert {
        i.id for i in client.workflows.instances.list(WORKFLOW, account_id=account, date_end=later)
    } == {i.id for i in everything}

    for made in bulk:  # let them finish: the "go" event
        sent = client.workflows.instances.events.create(
            "go", account_id=account, workflow_name=WORKFLOW, instance_id=made.id, body={}
        )
        _strict(sent)
        assert sent.instance_id == made.id
        assert target.wait_finished(made.id) == "complete"


def test_status_edit_pause_resume_terminate_restart(
    target: Target, client: cloudflare.Cloudflare
) -> None:
    account, instance_id = target.account, f"st-{target.kind}"
    client.workflows.instances.create(
        WORKFLOW,
        account_id=account,
        instance_id=instance_id,
        params={"wait": True},  # type: ignore[arg-type]  # typed str; Cloudflare takes any JSON
    )
    target.wait_status(instance_id, "waiting")

    def edit(status: str) -> str:
        # One call per literal in the SDK's overloads: call it as untyped code would.
        statuses: Any = client.workflows.instances.status
        done: StatusEditResponse = statuses.edit(
            instance_id, account_id=account, workflow_name=WORKFLOW, status=status
        )
        _strict(done)
        return done.status

    assert edit("pause") in ("paused", "waitingForPause")
    assert target.wait_status(instance_id, "paused") == "paused"
    edit("resume")
    assert target.wait_status(instance_id, "waiting", "running") in ("waiting", "running")
    edit("terminate")
    assert target.wait_finished(instance_id) == "terminated"
    edit("restart")
    assert target.wait_status(instance_id, "waiting") == "waiting"
    client.workflows.instances.events.create(
        "go", account_id=account, workflow_name=WORKFLOW, instance_id=instance_id, body={}
    )
    assert target.wait_finished(instance_id) == "complete"


def test_terminate_with_rollback_and_restart_from_a_step(
    target: Target, client: cloudflare.Cloudflare, tmp_path: Path
) -> None:
    account, instance_id = target.account, f"rb-{target.kind}"
    mark, undo = tmp_path / "mark", tmp_path / "undo"
    client.workflows.instances.create(
        WORKFLOW,
        account_id=account,
        instance_id=instance_id,
        params={"wait": True, "mark": str(mark), "undo": str(undo)},  # type: ignore[arg-type]
    )
    target.wait_status(instance_id, "waiting")
    statuses = client.workflows.instances.status

    ended = statuses.edit(
        instance_id, account_id=account, workflow_name=WORKFLOW, status="terminate", rollback=True
    )
    _strict(ended)
    assert target.wait_finished(instance_id) == "terminated"
    assert undo.read_text() == "Instance terminated during rollback\n"  # the handler ran, once
    assert target.instance(instance_id)["rollback"] == {"outcome": "complete", "error": None}

    again = statuses.edit(
        instance_id,
        account_id=account,
        workflow_name=WORKFLOW,
        status="restart",
        from_={"name": "go", "count": 1, "type": "waitForEvent"},
    )
    _strict(again)
    assert target.wait_status(instance_id, "waiting") == "waiting"
    client.workflows.instances.events.create(
        "go", account_id=account, workflow_name=WORKFLOW, instance_id=instance_id, body={}
    )
    assert target.wait_finished(instance_id) == "complete"
    assert mark.read_text() == "ran\n"  # the step before "go" kept its result: not run again
    steps = [s["name"] for s in target.instance(instance_id)["steps"]]
    assert steps == ["before-1", "go-1", "nap-1", "answer-1"]


def test_workflows_delete(target: Target, client: cloudflare.Cloudflare) -> None:
    client.workflows.instances.create(WORKFLOW, account_id=target.account, instance_id="doomed")
    target.wait_finished("doomed")
    deleted = client.workflows.delete(WORKFLOW, account_id=target.account)
    _strict(deleted)
    assert deleted.status == "ok"
    assert "doomed" not in target.wf("instances", "list", WORKFLOW)


def test_workflows_update(target: Target, client: cloudflare.Cloudflare) -> None:
    # wf.toml and the code define a workflow: an update that matches them answers it...
    script = client.workflows.get(WORKFLOW, account_id=target.account).script_name
    assert script == "pin"  # wf.toml's name, of the project deployed on wf serve
    same = client.workflows.update(
        WORKFLOW, account_id=target.account, class_name="PinWorkflow", script_name=script
    )
    _strict(same)
    assert same.name == WORKFLOW and same.class_name == "PinWorkflow"
    # ...and one that would change them is refused, saying where they are changed.
    with pytest.raises(cloudflare.ConflictError, match=r'class_name is "PinWorkflow"'):
        client.workflows.update(
            WORKFLOW, account_id=target.account, class_name="Other", script_name=script
        )
    with pytest.raises(cloudflare.ConflictError, match=r"concurrency is set in wf\.toml"):
        client.workflows.update(
            WORKFLOW,
            account_id=target.account,
            class_name="PinWorkflow",
            script_name=script,
            concurrency={"limit": 2},
        )
    with pytest.raises(cloudflare.NotFoundError):
        client.workflows.update(
            "no-such", account_id=target.account, class_name="X", script_name=script
        )

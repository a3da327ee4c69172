# Cloudflare's Python Workflows examples, as cf-2026.md §7.4 quotes them (cloudflare/workers-py,
# packages/runtime-sdk/tests/bindings-test/src/worker_workflow.py): the three methods marked
# "verbatim" are Cloudflare's, with only the imports changed (from workers import
# WorkflowEntrypoint, from workers.workflows import NonRetryableError). The dispatch in run() and
# the other methods are wf's, written in the same Cloudflare style. wf dev runs this file as is.
from wf import WorkflowEntrypoint  # noqa: I001 - two lines, as Cloudflare has them
from wf import NonRetryableError


class TestWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        mode = event["payload"].get("mode", "concurrent")
        return await getattr(self, "_" + mode)(event, step)

    # verbatim
    async def _concurrent(self, event, step):
        @step.do()
        async def left():
            return 2

        @step.do()
        async def right():
            return 3

        @step.do(concurrent=True)
        async def combined(left, right):
            return left * right

        return {"combined": await combined()}

    # verbatim
    async def _retry(self, event, step):
        @step.do(
            "retry-step",
            config={"retries": {"limit": 1, "delay": 0, "backoff": "constant"}},
        )
        async def flaky(ctx):
            if int(ctx["attempt"]) < 2:
                raise ValueError("transient failure")
            return {"succeeded_on_attempt": int(ctx["attempt"])}

        return await flaky()

    # verbatim
    async def _wait_for_event(self, event, step):
        received = await step.wait_for_event("await-approval", "approval")
        return {"event_payload": received["payload"]}

    async def _metadata(self, event, step):
        @step.do("read-ctx")
        async def read_ctx(ctx):
            return {
                "name": ctx["step"]["name"],
                "count": ctx["step"]["count"],
                "attempt": ctx["attempt"],
                "config": ctx["config"],
            }

        return {
            "payload": event["payload"],
            "instance_id": event["instanceId"],
            "workflow_name": event["workflowName"],
            "timestamp": event["timestamp"].isoformat(),
            "has_ctx": self.ctx is not None,
            "ctx": await read_ctx(),
        }

    async def _non_retryable(self, event, step):
        @step.do("refuse", config={"retries": {"limit": 3, "delay": 0}})
        async def refuse():
            raise NonRetryableError("do not retry")

        try:
            await refuse()
        except NonRetryableError as exc:
            return {"caught": type(exc).__name__, "message": str(exc)}

    async def _sensitive(self, event, step):
        @step.do(config={"sensitive": "output"})
        async def issue_token():
            return {"token": "s3cr3t-" + event["instanceId"]}

        @step.do()
        async def use_token(issue_token):
            return {"used": issue_token["token"]}

        return await use_token()

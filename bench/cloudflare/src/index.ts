// The Cloudflare Workflows side of wf's benchmark (bench/cf_side.py), run locally by
// `wrangler dev` only. The same workloads as bench/wf_workflows.py:
//   W1:      one instance of n sequential trivial steps, each step.do call timed in the workflow
//   W2-http: instances of a three-step workflow, created and polled over HTTP
import { WorkflowEntrypoint, type WorkflowEvent, type WorkflowStep } from "cloudflare:workers";

interface Env {
  SEQUENTIAL: Workflow<{ n: number }>;
  THREE: Workflow<Record<string, never>>;
}

type Timed = { n: number; loop_ms: number; step_ms: number[] };

// The trivial step: an async function returning a small value.
const trivial = async (): Promise<number> => 1;

export class Sequential extends WorkflowEntrypoint<Env, { n: number }> {
  async run(event: WorkflowEvent<{ n: number }>, step: WorkflowStep): Promise<Timed> {
    const n = event.payload.n;
    const times: number[] = [];
    // workerd's clock moves only across I/O (each step.do writes to the instance's storage).
    const began = performance.now();
    for (let i = 0; i < n; i++) {
      const started = performance.now();
      await step.do(`s${i}`, trivial);
      times.push(performance.now() - started);
    }
    return { n, loop_ms: performance.now() - began, step_ms: times };
  }
}

export class ThreeSteps extends WorkflowEntrypoint<Env, Record<string, never>> {
  async run(_event: WorkflowEvent<Record<string, never>>, step: WorkflowStep): Promise<number> {
    await step.do("one", trivial);
    await step.do("two", trivial);
    await step.do("three", trivial);
    return 3;
  }
}

export default {
  // POST /{sequential|three} {params} -> {id};  GET /{sequential|three}/{id} -> status()
  async fetch(request: Request, env: Env): Promise<Response> {
    const [, name, id] = new URL(request.url).pathname.split("/");
    const binding = name === "sequential" ? env.SEQUENTIAL : name === "three" ? env.THREE : null;
    if (binding === null) {
      return name === "health" ? Response.json({ ok: true }) : new Response("not found", { status: 404 });
    }
    if (request.method === "POST" && !id) {
      const body = (await request.json()) as { params?: { n: number } };
      const instance = await (binding as Workflow<unknown>).create({ params: body.params ?? {} });
      return Response.json({ id: instance.id });
    }
    if (request.method === "GET" && id) {
      return Response.json(await (await binding.get(id)).status());
    }
    return new Response("not found", { status: 404 });
  },
};

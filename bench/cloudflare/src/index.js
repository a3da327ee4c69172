// The same workload as bench/wf_side.py: n sequential trivial steps per instance.
import { WorkflowEntrypoint } from "cloudflare:workers";

export class Steps extends WorkflowEntrypoint {
  async run(event, step) {
    const n = event.payload.n;
    const times = [];
    for (let i = 0; i < n; i++) {
      const started = performance.now();
      await step.do(`s${i}`, async () => 1);
      times.push(performance.now() - started);
    }
    // The latency run asks for its step timings (workerd's clock moves on I/O, which each step does).
    return event.payload.timed ? times : n;
  }
}

const FINISHED = new Set(["complete", "errored", "terminated"]);

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const body = request.method === "POST" ? await request.json() : {};
    if (url.pathname === "/create") {
      // Up to 100 instances in one createBatch, as on the wf side.
      const batch = [];
      for (let i = 0; i < body.count; i++) batch.push({ params: { n: body.n, timed: !!body.timed } });
      const made = await env.STEPS.createBatch(batch);
      return Response.json(made.map((instance) => instance.id));
    }
    if (url.pathname === "/finished") {
      // Which of these ids have finished; stops at `probe` unfinished ones to keep polls cheap.
      const done = [];
      const errored = [];
      let unfinished = 0;
      for (const id of body.ids) {
        const status = await (await env.STEPS.get(id)).status();
        if (FINISHED.has(status.status)) {
          done.push(id);
          if (status.status !== "complete") errored.push(id);
        } else if (++unfinished >= body.probe) {
          break;
        }
      }
      return Response.json({ done, errored });
    }
    if (url.pathname === "/output") {
      const status = await (await env.STEPS.get(body.id)).status();
      return Response.json(status);
    }
    return new Response("not found", { status: 404 });
  },
};

/**
 * Runs the PACT conformance service's own test-run worker (all test cases of one version) in one
 * process together with the service's own callback listener (EventHandler on /auth/token and
 * /3/events), so the asynchronous cases (#13, #14.B) are judged by the official code instead of
 * staying PENDING as they do in the service's CLI, which has no listener.
 *
 * Copied into <service>/src/scripts/ by bench/pact_conformance.py and run with ts-node. Prints one
 * line "CONFORMANCE_RESULTS <json>" with every test result.
 *
 * Environment: CONFORMANCE_API (the listener's base URL, http://127.0.0.1:<port>), PORT, JWT_SECRET,
 * CALLBACK_WAIT_MS (default 30000).
 */
import express from "express";
import { TestRunWorker } from "../services/test-run-worker";
import { ConsoleTestStorage } from "../services/console-test-storage";
import { EventHandler } from "../services/event-handler";
import { ApiVersion, TestCaseResultStatus } from "../services/types";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main() {
  const storage = new ConsoleTestStorage();
  const handler = new EventHandler(storage);
  const app = express();
  app.use(express.json({ type: ["application/json", "application/cloudevents+json"] }));
  const received: string[] = [];
  app.post("/auth/token", async (req, res) => {
    try {
      res.json(await handler.authenticate(handler.parseBasicAuth(req.headers.authorization)));
    } catch (e: any) {
      res.status(e.statusCode ?? 401).json({ error: "invalid_client", error_description: String(e.message) });
    }
  });
  app.post("/3/events", async (req, res) => {
    received.push(String(req.body?.type));
    try {
      await handler.processEvent(req.body, req.url);
      res.status(200).end();
    } catch (e: any) {
      res.status(e.statusCode ?? 400).json({ code: "BadRequest", message: String(e.message) });
    }
  });
  const port = Number(process.env.PORT);
  const server = app.listen(port, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));

  const worker = new TestRunWorker(storage);
  const list = arg("testCases");
  const run = await worker.startTestRun({
    baseUrl: arg("baseUrl")!,
    clientId: arg("clientId")!,
    clientSecret: arg("clientSecret")!,
    version: (arg("version") ?? "V3.0") as ApiVersion,
    organizationName: arg("organizationName") ?? "carbonedge",
    adminEmail: "cli@example.com",
    adminName: "CLI User",
    testCaseNumbers: list ? list.split(",").map(Number) : undefined,
  });
  const deadline = Date.now() + Number(process.env.CALLBACK_WAIT_MS ?? 30000);
  let final = await storage.getTestRunWithResults(run.testRunId);
  while (final.results.some((r) => r.status === TestCaseResultStatus.PENDING) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    final = await storage.getTestRunWithResults(run.testRunId);
  }
  server.close();
  const out = final.results.map((r) => ({ testKey: r.testKey, name: r.name, status: r.status, mandatory: r.mandatory,
                                          errorMessage: r.errorMessage ?? "" }));
  console.log("CONFORMANCE_RESULTS " + JSON.stringify({ results: out, callbacksReceived: received }));
  process.exit(0);
}

main().catch((e) => {
  console.error("conformance runner failed:", e);
  process.exit(2);
});

/**
 * The approval inbox under load: one `catty-server` process with `--sessions` local sessions (50)
 * all asking at once. Each session's program is Claude Code's permission hook itself
 * (agent/attention.ts's PERMISSION_HOOK, the very command Claude Code runs, fed the hook input
 * Claude Code gives it), so what is measured is Catty's part: from the hook's request to the push
 * at a stand-in push service (test/helpers/push-service.ts, which checks the VAPID JWT and decrypts
 * the payload), and from an answer (`POST …/answer`, one at a time while the rest still wait) to
 * the hook having the decision Claude Code reads. The sessions start first; then all ask at once. Times are taken on this machine's one clock: the
 * session writes `date +%s%N` before and after the hook; the bench notes when the push arrived
 * and when it answered.
 *
 *   ./node_modules/.bin/bun bench/inbox.ts [--sessions 50]
 *
 * Prints p50 and p99 of both; targets (issue 27): p50 ≤ 300 ms, p99 ≤ 1 s. About a minute.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PERMISSION_HOOK } from "../agent/attention.ts";
import { startAnthropicStandIn } from "../test/helpers/anthropic.ts";
import { startPushServiceStandIn } from "../test/helpers/push-service.ts";
import { benchTempDir, cleanups, percentile, runBench, startServerProcess } from "./harness.ts";

const { values } = parseArgs({ options: { sessions: { type: "string", default: "50" } } });
const SESSIONS = Number(values.sessions);

/** The session's program: the hook, timed, its decision kept in the workspace. */
const SCRIPT = `while [ ! -e go ]; do sleep 0.02; done; printf '%s' "$(date +%s%N)" > t0; printf '%s' "$2" | sh -c "$1" > decision.json; printf '%s' "$(date +%s%N)" > t3; sleep 600`;

const ms = (n: number): string => `${Math.round(n)} ms`;

async function waitUntil<T>(what: string, timeoutMs: number, f: () => T | null | Promise<T | null>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== null && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

await runBench("inbox", 10 * 60_000, async () => {
  const api = startAnthropicStandIn({ record: false });
  const push = startPushServiceStandIn();
  cleanups.push({ what: "stand-ins", run: () => (api.stop(), push.stop()) });
  const dataDir = benchTempDir("catty-bench-inbox-");
  const server = await startServerProcess(dataDir, { env: { CATTY_ANTHROPIC_API_KEY: "sk-bench", CATTY_ANTHROPIC_UPSTREAM: api.url } });
  const call = (method: string, path: string, body?: unknown): Promise<Response> =>
    fetch(`${server.url}${path}`, { method, headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  const device = push.device();
  if ((await call("POST", "/v1/push/subscriptions", device.subscription)).status !== 201) throw new Error("could not subscribe the device");

  console.log(`starting ${SESSIONS} sessions, each asking once…`);
  const labels = await Promise.all(
    Array.from({ length: SESSIONS }, async (_, i) => {
      const input = JSON.stringify({ hook_event_name: "PermissionRequest", tool_name: "Bash", tool_input: { command: `npm test -- --shard ${i}`, description: "Run the tests" } });
      const res = await call("POST", "/v1/sessions", { command: ["bash", "-c", SCRIPT, "hook", PERMISSION_HOOK, input], cols: 80, rows: 24 });
      if (res.status !== 201) throw new Error(`session ${i}: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { label: string }).label;
    }),
  );
  const workspace = (label: string): string => join(dataDir, "sessions", label, "workspace");
  // All running before any asks: then all at once.
  await waitUntil("every session running", 180_000, async () => {
    const list = (await (await call("GET", "/v1/sessions")).json()) as Array<{ status: string }>;
    return list.filter((s) => s.status === "running").length >= SESSIONS ? true : null;
  });
  await Bun.sleep(2_000);
  for (const l of labels) writeFileSync(join(workspace(l), "go"), "");
  const pushes = await waitUntil(`${SESSIONS} pushes`, 180_000, () => {
    const got = push.messages.filter((m) => m.status === 201);
    return got.length >= SESSIONS ? got : null;
  });
  const bad = push.messages.filter((m) => m.problem);
  if (bad.length > 0) throw new Error(`the push service refused ${bad.length}: ${bad[0]?.problem}`);
  const waiting = (await (await call("GET", "/v1/inbox")).json()) as Array<{ id: string; label: string; createdAt: string }>;
  console.log(`${waiting.length} requests waiting at once`);

  const toPush: number[] = [];
  const toServer: number[] = [];
  for (const m of pushes) {
    const label = (JSON.parse(m.payload ?? "{}") as { request?: { label?: string } }).request?.label ?? "";
    const t0 = Number(readFileSync(join(workspace(label), "t0"), "utf8")) / 1e6;
    toPush.push(m.at - t0);
    const recorded = waiting.find((r) => r.label === label)?.createdAt;
    if (recorded) toServer.push(Date.parse(recorded) - t0);
  }

  const toContinue: number[] = [];
  for (const r of waiting) {
    const t2 = Date.now();
    const res = await call("POST", `/v1/sessions/${r.label}/requests/${r.id}/answer`, { behavior: "allow" });
    if (res.status !== 200) throw new Error(`answer ${r.id}: ${res.status} ${await res.text()}`);
    const t3file = join(workspace(r.label), "t3");
    const t3 = await waitUntil(`${r.label}'s hook to have its decision`, 30_000, () => (existsSync(t3file) && readFileSync(t3file, "utf8").length > 0 ? Number(readFileSync(t3file, "utf8")) / 1e6 : null));
    const decision = readFileSync(join(workspace(r.label), "decision.json"), "utf8");
    if (!decision.includes('"behavior":"allow"')) throw new Error(`${r.label}'s hook printed ${decision}`);
    toContinue.push(t3 - t2);
  }

  const report = (what: string, xs: number[]): void => {
    const s = [...xs].sort((a, b) => a - b);
    const p50 = percentile(s, 50);
    const p99 = percentile(s, 99);
    console.log(`${what}: p50 ${ms(p50)} (≤ 300 ms ${p50 <= 300 ? "✓" : "✗"}), p99 ${ms(p99)} (≤ 1 s ${p99 <= 1000 ? "✓" : "✗"}), max ${ms(s[s.length - 1] ?? 0)}, n=${s.length}`);
  };
  report("request → push at the push service", toPush);
  report("  of which: the hook's start → the server has it", toServer);
  report("answer → the hook has its decision", toContinue);
  for (const l of labels) await call("POST", `/v1/sessions/${l}/stop`, {});
});

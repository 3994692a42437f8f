/**
 * The server's side of forwards (server/tunnels.ts) against a real server and agent: a session
 * takes at most MAX_FORWARDS forwards at once, a bad forward id is refused before any upgrade,
 * and the forwards are listed on the session while they run.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CLOSE } from "../../src/protocol/index.ts";
import { MAX_FORWARDS } from "../../server/tunnels.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";

let server: TestServer;
let label = "";
const auth = (): Record<string, string> => ({ Authorization: `Bearer ${server.ownerToken}` });

beforeAll(async () => {
  server = await startTestServer();
  label = (await server.owner.create({ command: ["sleep", "300"] })).label;
  await waitFor(async () => (await server.owner.get(label)).status === "running", { timeoutMs: 20_000, what: "the session to run" });
}, 30_000);

afterAll(async () => {
  await server.owner.stop(label).catch(() => {});
  await server.stop();
});

function dial(id: string): Promise<{ ws: WebSocket; closed: Promise<{ code: number; reason: string }>; messages: string[] }> {
  const ws = new WebSocket(`${server.url.replace("http", "ws")}/v1/sessions/${label}/forward?id=${id}`, { headers: auth() } as never);
  const messages: string[] = [];
  ws.onmessage = (e) => typeof e.data === "string" && messages.push(e.data);
  const closed = new Promise<{ code: number; reason: string }>((r) => ws.addEventListener("close", (e) => r({ code: e.code, reason: e.reason })));
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve({ ws, closed, messages });
    ws.onerror = () => reject(new Error("dial failed"));
  });
}

describe("forward links", () => {
  test("a missing or bad forward id is a 400, before any upgrade", async () => {
    const res = await fetch(`${server.url}/v1/sessions/${label}/forward?id=short`, { headers: auth() });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toContain("?id=");
    const none = await fetch(`${server.url}/v1/sessions/${label}/forward`, { headers: auth() });
    expect(none.status).toBe(400);
  });

  test(`a session takes ${MAX_FORWARDS} forwards at once; the next is told why and closed`, async () => {
    const open = await Promise.all(Array.from({ length: MAX_FORWARDS }, (_, i) => dial(`forward-number-${String(i).padStart(4, "0")}`)));
    try {
      await waitFor(async () => (await server.owner.get(label)).forwards.length === MAX_FORWARDS, { what: "every forward listed" });
      const extra = await dial("one-forward-too-many");
      const { code } = await extra.closed;
      expect(code).toBe(CLOSE.protocol);
      expect(extra.messages.join("")).toContain(`${MAX_FORWARDS} forwards open already`);
    } finally {
      for (const f of open) f.ws.close(1000, "done");
    }
    await waitFor(async () => (await server.owner.get(label)).forwards.length === 0, { what: "the forwards gone" });
  }, 30_000);
});

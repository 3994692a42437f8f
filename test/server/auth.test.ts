/** Every route needs the right token: none or a wrong one gets 401, an agent token is not a user's, another user's session is 404. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { openStore, createUserToken } from "../../server/startup.ts";
import { readServerConfig } from "../../server/config.ts";
import type { MachineSpec } from "../../server/providers/types.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";

let server: TestServer;
let agentToken = "";
let label = "";
let otherToken = "";

beforeAll(async () => {
  server = await startTestServer({
    wrapProvider: (p) => ({
      ...p,
      start: (spec: MachineSpec) => {
        agentToken = spec.agentToken;
        return p.start(spec);
      },
    }),
  });
  label = (await server.owner.create({ command: ["sleep", "300"] })).label;
  // A second user, created the way `catty-server token create --user` does it (same database file).
  const store = await openStore(readServerConfig({ "data-dir": server.dataDir }));
  otherToken = await createUserToken(store, "mallory");
  store.close();
});

afterAll(async () => {
  await server.owner.stop(label).catch(() => {});
  await server.stop();
});

const routes = (): Array<[string, string]> => [
  ["GET", "/v1/whoami"],
  ["GET", "/v1/sessions"],
  ["POST", "/v1/sessions"],
  ["GET", `/v1/sessions/${label}`],
  ["POST", `/v1/sessions/${label}/stop`],
  ["GET", `/v1/sessions/${label}/attach`],
];

async function call(method: string, path: string, token?: string): Promise<Response> {
  return fetch(`${server.url}${path}`, {
    method,
    headers: token ? { Authorization: `Bearer ${token}` } : {},
    body: method === "POST" ? "{}" : undefined,
  });
}

/** Resolves "open" if a WebSocket upgrade is accepted, "refused" if not. */
function wsOutcome(path: string, token?: string): Promise<"open" | "refused"> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${server.url.replace("http", "ws")}${path}`, {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
    } as never);
    ws.onopen = () => {
      resolve("open");
      ws.close();
    };
    ws.onerror = () => resolve("refused");
    ws.onclose = () => resolve("refused");
  });
}

describe("auth", () => {
  test("healthz is open", async () => {
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  test("no token: 401 on every route", async () => {
    for (const [method, path] of routes()) {
      const res = await call(method, path);
      expect(`${method} ${path} ${res.status}`).toBe(`${method} ${path} 401`);
      expect(((await res.json()) as { code: string }).code).toBe("unauthorized");
    }
  });

  test("a wrong token: 401 on every route", async () => {
    for (const [method, path] of routes()) {
      const res = await call(method, path, "cat_wrong");
      expect(`${method} ${path} ${res.status}`).toBe(`${method} ${path} 401`);
    }
  });

  test("an agent token cannot call user routes", async () => {
    expect(agentToken).toStartWith("agt_");
    for (const [method, path] of routes()) {
      const res = await call(method, path, agentToken);
      expect(`${method} ${path} ${res.status}`).toBe(`${method} ${path} 401`);
    }
    expect(await wsOutcome(`/v1/sessions/${label}/attach`, agentToken)).toBe("refused");
  });

  test("a user token cannot connect as an agent; the agent token can", async () => {
    expect(await wsOutcome("/v1/agent/connect")).toBe("refused");
    expect(await wsOutcome("/v1/agent/connect", server.ownerToken)).toBe("refused");
    expect(await wsOutcome("/v1/agent/connect", "agt_forged")).toBe("refused");
    expect(await wsOutcome("/v1/agent/connect", agentToken)).toBe("open");
  });

  test("another user's session answers 404, as if it did not exist", async () => {
    for (const [method, path] of routes().filter(([, p]) => p.includes(label))) {
      const res = await call(method, path, otherToken);
      expect(`${method} ${path} ${res.status}`).toBe(`${method} ${path} 404`);
    }
    const list = (await (await call("GET", "/v1/sessions", otherToken)).json()) as unknown[];
    expect(list).toEqual([]);
    expect(await wsOutcome(`/v1/sessions/${label}/attach`, otherToken)).toBe("refused");
    // …and the owner still sees it running.
    expect((await server.owner.get(label)).status).not.toBe("stopped");
  });

  test("the owner can reach their session", async () => {
    expect(await wsOutcome(`/v1/sessions/${label}/attach`, server.ownerToken)).toBe("open");
  });

  test("malformed bodies and labels are refused without side effects", async () => {
    const bad = await fetch(`${server.url}/v1/sessions`, {
      method: "POST",
      headers: { Authorization: `Bearer ${server.ownerToken}` },
      body: '{"command": "not-an-array"}',
    });
    expect(bad.status).toBe(400);
    const junk = await fetch(`${server.url}/v1/sessions`, {
      method: "POST",
      headers: { Authorization: `Bearer ${server.ownerToken}` },
      body: "{nope",
    });
    expect(junk.status).toBe(400);
    expect((await call("GET", "/v1/sessions/..%2F..%2Fetc", server.ownerToken)).status).toBe(404);
    expect((await server.owner.list()).length).toBe(1);
  });
});

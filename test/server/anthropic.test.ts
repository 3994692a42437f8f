/**
 * Claude API access through the server, against the Anthropic API stand-in: a session's program
 * gets the proxy's base URL and a token of its own (never the operator's key); requests reach the
 * API with path, query and `anthropic-*` headers intact and the operator's key; streams arrive
 * unbuffered; usage is metered from streams (also cut short) and JSON answers; errors and
 * rate-limit headers pass through; a user over quota gets 402; the token dies with the session.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { BYTES_PER_INPUT_TOKEN, usageMonth, UsageMeter } from "../../server/anthropic.ts";
import { sessionDir } from "../../server/providers/local.ts";
import { openPostgresStore } from "../../server/store/postgres.ts";
import type { Store, User } from "../../server/store/types.ts";
import { formatUsage } from "../../src/commands/usage.ts";
import { createLog } from "../../src/lib/log.ts";
import { startAnthropicStandIn, type AnthropicStandIn } from "../helpers/anthropic.ts";
import { freshDatabase } from "../helpers/postgres.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";

const OPERATOR_KEY = "sk-ant-operator-0123456789";
let api: AnthropicStandIn;
let server: TestServer;

beforeAll(async () => {
  api = startAnthropicStandIn();
  server = await startTestServer({ env: { CATTY_ANTHROPIC_API_KEY: OPERATOR_KEY, CATTY_ANTHROPIC_UPSTREAM: api.url } });
});

afterAll(async () => {
  for (const s of await server.owner.list()) await server.owner.stop(s.label).catch(() => {});
  await server.stop();
  api.stop();
});

/** A session whose program writes its environment to the workspace; resolves to its label, env and proxy access. */
async function apiSession(srv: TestServer = server): Promise<{ label: string; env: Record<string, string>; base: string; token: string }> {
  const s = await srv.owner.create({ command: ["bash", "-c", "env > /tmp/env.$$; mv /tmp/env.$$ env.txt; sleep 300"], cols: 80, rows: 24 });
  const file = join(sessionDir(srv.dataDir, s.label), "workspace", "env.txt");
  const text = await waitFor(() => existsSync(file) && readFileSync(file, "utf8"), { what: "the program's environment" });
  const env = Object.fromEntries(text.trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
  return { label: s.label, env, base: env.ANTHROPIC_BASE_URL as string, token: env.ANTHROPIC_AUTH_TOKEN as string };
}

const streamBody = JSON.stringify({ model: "claude-x", max_tokens: 100, stream: true, messages: [{ role: "user", content: "hi" }] });
const call = (base: string, token: string, path: string, init: RequestInit = {}) =>
  fetch(`${base}${path}`, { ...init, headers: { Authorization: `Bearer ${token}`, "content-type": "application/json", "anthropic-version": "2023-06-01", ...(init.headers as object) } });

let session: Awaited<ReturnType<typeof apiSession>>;

describe("the Claude API proxy", () => {
  test("the program gets the proxy and a token of its own session, never the operator's key", async () => {
    session = await apiSession();
    expect(session.base).toBe(`${server.url}/v1/anthropic`);
    expect(session.token).toMatch(/^apx_/);
    expect(session.env.CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC).toBe("1");
    expect(JSON.stringify(session.env)).not.toContain(OPERATOR_KEY);
    expect(session.env.ANTHROPIC_API_KEY).toBeUndefined();
  });

  test("a streamed answer: headers and query intact upstream with the operator's key; events arrive before the rest exists; usage metered", async () => {
    api.hold = true;
    const res = await call(session.base, session.token, "/v1/messages?beta=true", {
      method: "POST",
      body: streamBody,
      headers: { "anthropic-beta": "interleaved-thinking-2025-05-14" },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    expect(res.headers.get("anthropic-ratelimit-requests-remaining")).toBe("49");
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    // The stand-in holds everything after message_start: this arrived unbuffered.
    expect(first).toContain("message_start");
    api.hold = false;
    api.release();
    let rest = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toContain("message_stop");
    const seen = api.requests.at(-1);
    expect(seen?.path).toBe("/v1/messages");
    expect(seen?.search).toBe("?beta=true");
    expect(seen?.headers["x-api-key"]).toBe(OPERATOR_KEY);
    expect(seen?.headers.authorization).toBeUndefined();
    expect(seen?.headers["anthropic-version"]).toBe("2023-06-01");
    expect(seen?.headers["anthropic-beta"]).toBe("interleaved-thinking-2025-05-14");
    expect(JSON.parse(seen?.body ?? "{}").messages[0].content).toBe("hi");
    const usage = await waitFor(async () => (await server.store().usageOf((await server.ownerUser()).id, usageMonth()))[0], { what: "usage recorded" });
    expect(usage).toMatchObject({ label: session.label, requests: 1, input: 120, output: 6, cacheCreation: 30, cacheRead: 7 });
  });

  test("a JSON answer is metered; count_tokens and models pass through", async () => {
    const before = (await server.store().usageOf((await server.ownerUser()).id, usageMonth()))[0];
    const res = await call(session.base, session.token, "/v1/messages", { method: "POST", body: JSON.stringify({ model: "m", max_tokens: 5, messages: [] }) });
    expect(((await res.json()) as { content: Array<{ text: string }> }).content[0]?.text).toBe(api.reply.text);
    const after = await waitFor(async () => {
      const u = (await server.store().usageOf((await server.ownerUser()).id, usageMonth()))[0];
      return u && u.requests === (before?.requests ?? 0) + 1 ? u : null;
    }, { what: "the second request metered" });
    expect(after.output).toBe((before?.output ?? 0) + 6);
    expect(await (await call(session.base, session.token, "/v1/messages/count_tokens", { method: "POST", body: "{}" })).json()).toEqual({ input_tokens: 42 });
    expect(((await (await call(session.base, session.token, "/v1/models")).json()) as { data: Array<{ id: string }> }).data[0]?.id).toBe("claude-standin");
  });

  test("only what Claude Code calls goes upstream: other endpoints answer 404 and never reach the API with the operator's key", async () => {
    const before = api.requests.length;
    for (const [method, path] of [
      ["GET", "/v1/files"],
      ["POST", "/v1/files"],
      ["POST", "/v1/messages/batches"],
      ["GET", "/v1/messages/batches/msgbatch_1"],
      ["GET", "/v1/organizations/me"],
      ["GET", "/v1/messages"],
      ["POST", "/v1/models"],
      ["DELETE", "/v1/models/claude-standin"],
      ["POST", "/v1/complete"],
      ["GET", "/"],
    ] as const) {
      const res = await call(session.base, session.token, path, { method, ...(method === "POST" ? { body: "{}" } : {}) });
      expect(`${method} ${path} ${res.status}`).toBe(`${method} ${path} 404`);
      const body = (await res.json()) as { type: string; error: { type: string; message: string } };
      expect(body.error.type).toBe("not_found_error");
      expect(body.error.message).toContain("POST /v1/messages/count_tokens");
    }
    expect(api.requests.length).toBe(before);
    // A model by its id is one of the calls (the SDK's models.retrieve).
    expect((await call(session.base, session.token, "/v1/models/claude-standin")).status).toBe(404);
    expect(api.requests.at(-1)?.path).toBe("/v1/models/claude-standin");
  });

  test("only an allow-list of request headers goes upstream: no cookie, no forwarding headers, nothing unknown", async () => {
    await call(session.base, session.token, "/v1/messages/count_tokens", {
      method: "POST",
      body: "{}",
      headers: {
        cookie: "catty_session=dashboard-secret",
        "x-forwarded-for": "10.1.2.3",
        "x-real-ip": "10.1.2.3",
        "x-csrf-token": "csrf-secret",
        "anthropic-workspace-id": "wrkspc_other",
        "x-custom": "1",
        "anthropic-beta": "token-counting-2024-11-01",
        "x-app": "cli",
        "x-stainless-os": "Linux",
        "x-claude-code-session-id": "cc-1",
        "user-agent": "claude-cli/2.1 (external, cli)",
      },
    });
    const seen = api.requests.at(-1);
    expect(seen?.path).toBe("/v1/messages/count_tokens");
    const h = seen?.headers ?? {};
    for (const name of ["cookie", "x-forwarded-for", "x-real-ip", "x-csrf-token", "anthropic-workspace-id", "x-custom", "authorization"]) expect(h[name]).toBeUndefined();
    expect(JSON.stringify(h)).not.toContain("dashboard-secret");
    expect(h).toMatchObject({
      "x-api-key": OPERATOR_KEY,
      "anthropic-version": "2023-06-01",
      "anthropic-beta": "token-counting-2024-11-01",
      "x-app": "cli",
      "x-stainless-os": "Linux",
      "x-claude-code-session-id": "cc-1",
      "user-agent": "claude-cli/2.1 (external, cli)",
    });
  });

  test("a stream the client cuts short is still metered with what was seen", async () => {
    const userId = (await server.ownerUser()).id;
    const before = (await server.store().usageOf(userId, usageMonth()))[0]?.requests ?? 0;
    api.hold = true;
    const ac = new AbortController();
    const res = await call(session.base, session.token, "/v1/messages", { method: "POST", body: streamBody, signal: ac.signal });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain("message_start");
    ac.abort();
    await reader.cancel().catch(() => {});
    const u = await waitFor(async () => {
      const row = (await server.store().usageOf(userId, usageMonth()))[0];
      return row && row.requests === before + 1 ? row : null;
    }, { what: "the cut stream metered" });
    expect(u.requests).toBe(before + 1);
    api.hold = false;
    api.release();
  });

  test("a stream cut after its last content block, before its output count, is charged what it streamed", async () => {
    const userId = (await server.ownerUser()).id;
    const before = (await server.store().usageOf(userId, usageMonth()))[0];
    api.reply = { text: "A whole answer, every word of it streamed, and not one token paid for.", deltas: 5 };
    api.holdEnd = true;
    const res = await call(session.base, session.token, "/v1/messages", { method: "POST", body: streamBody });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let seen = "";
    while (!seen.includes("content_block_stop")) seen += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    const u = await waitFor(async () => {
      const row = (await server.store().usageOf(userId, usageMonth()))[0];
      return row && row.requests === (before?.requests ?? 0) + 1 ? row : null;
    }, { what: "the cut stream charged" });
    api.holdEnd = false;
    api.release();
    // The API would have counted ceil(70 / 4) = 18 output tokens; message_start said 1.
    expect(u.output - (before?.output ?? 0)).toBeGreaterThanOrEqual(Math.ceil(api.reply.text.length / 4));
    expect(u.input - (before?.input ?? 0)).toBe(120);
    api.reply = { text: "Hello from the stand-in.", deltas: 3 };
  });

  test("a JSON answer the client stops reading is read to its end by the proxy and charged in full", async () => {
    const userId = (await server.ownerUser()).id;
    const before = (await server.store().usageOf(userId, usageMonth()))[0];
    api.reply = { text: "x".repeat(2_000_000), deltas: 1 };
    const res = await call(session.base, session.token, "/v1/messages", { method: "POST", body: JSON.stringify({ model: "m", max_tokens: 600_000, messages: [] }) });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    // The content comes first in the body, the usage last: the client has its answer and goes.
    expect(new TextDecoder().decode((await reader.read()).value)).toContain("xxxx");
    await reader.cancel();
    const u = await waitFor(async () => {
      const row = (await server.store().usageOf(userId, usageMonth()))[0];
      return row && row.requests === (before?.requests ?? 0) + 1 ? row : null;
    }, { what: "the JSON answer charged" });
    expect(u.output - (before?.output ?? 0)).toBe(500_000);
    api.reply = { text: "Hello from the stand-in.", deltas: 3 };
  });

  test("a Messages call without a max_tokens is refused before it goes upstream (the hold needs it)", async () => {
    const before = api.requests.length;
    for (const body of ['{"model":"m","messages":[]}', '{"max_tokens":"lots"}', '{"max_tokens":0}', "not json", "[1]"]) {
      const res = await call(session.base, session.token, "/v1/messages", { method: "POST", body });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { type: string; message: string } }).error.message).toContain("max_tokens");
    }
    expect(api.requests.length).toBe(before);
  });

  test("parallel calls against a small quota: only as many go upstream as the quota has room for", async () => {
    await parallelCallsAgainstQuota(server.store(), await server.ownerUser(), session);
  });

  test("an API error passes through as it is, with its headers", async () => {
    api.failNext = { status: 429, type: "rate_limit_error", message: "slow down" };
    const res = await call(session.base, session.token, "/v1/messages", { method: "POST", body: streamBody });
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("7");
    expect(await res.json()).toEqual({ type: "error", error: { type: "rate_limit_error", message: "slow down" } });
  });

  test("over the monthly quota: 402 quota_exceeded; a wrong token or an ended session's: 401", async () => {
    const user = await server.ownerUser();
    await server.store().setTokenQuota(user.id, 10);
    const res = await call(session.base, session.token, "/v1/messages", { method: "POST", body: streamBody });
    expect(res.status).toBe(402);
    const body = (await res.json()) as { type: string; error: { type: string; message: string } };
    expect(body.type).toBe("error");
    expect(body.error.type).toBe("quota_exceeded");
    expect(body.error.message).toContain("of 10 tokens");
    await server.store().setTokenQuota(user.id, null);

    expect((await call(session.base, "apx_wrong", "/v1/models")).status).toBe(401);
    await server.owner.stop(session.label);
    const ended = await call(session.base, session.token, "/v1/models");
    expect(ended.status).toBe(401);
    expect(((await ended.json()) as { error: { type: string } }).error.type).toBe("authentication_error");
  });
});

/**
 * Ten calls at once against a quota with room for three holds (each call holds its max_tokens and
 * its body's estimate until it is settled): three go upstream, seven get 402; once they are
 * settled the quota is over.
 */
async function parallelCallsAgainstQuota(store: Store, user: User, s: { base: string; token: string }): Promise<void> {
  const usedNow = async (): Promise<number> => (await store.usageOf(user.id, usageMonth())).reduce((n, u) => n + u.input + u.output + u.cacheCreation + u.cacheRead, 0);
  const used = await usedNow();
  const hold = 100 + Math.ceil(streamBody.length / BYTES_PER_INPUT_TOKEN);
  await store.setTokenQuota(user.id, used + 2 * hold + 1);
  const before = api.requests.length;
  api.hold = true;
  try {
    const answers = await Promise.all(Array.from({ length: 10 }, () => call(s.base, s.token, "/v1/messages", { method: "POST", body: streamBody })));
    expect(answers.map((r) => r.status).sort()).toEqual([200, 200, 200, 402, 402, 402, 402, 402, 402, 402]);
    expect(api.requests.length - before).toBe(3);
    const refused = (await answers.find((r) => r.status === 402)?.json()) as { error: { message: string } };
    expect(refused.error.message).toMatch(/held by requests still running/);
    api.hold = false;
    api.release();
    for (const r of answers) if (!r.bodyUsed) await r.text();
    // Settled: the holds are gone, what was used is recorded, and the quota is over now.
    await waitFor(async () => (await usedNow()) >= used + 3 * 163, { what: "the three calls recorded" });
    const next = await call(s.base, s.token, "/v1/messages", { method: "POST", body: streamBody });
    expect(next.status).toBe(402);
    expect(((await next.json()) as { error: { message: string } }).error.message).not.toContain("held");
  } finally {
    api.hold = false;
    api.release();
    await store.setTokenQuota(user.id, null);
  }
}

describe("the proxy on PostgreSQL", () => {
  test("parallel calls against a small quota: only as many go upstream as the quota has room for", async () => {
    const url = await freshDatabase();
    // (Quietly: it warns that replicas on PostgreSQL want a bucket; this one has none.)
    await using pg = await startTestServer({
      log: createLog({ scope: "test-server", level: "error" }),
      env: { CATTY_ANTHROPIC_API_KEY: OPERATOR_KEY, CATTY_ANTHROPIC_UPSTREAM: api.url, CATTY_DATABASE_URL: url, CATTY_MASTER_KEY: "5a".repeat(32), CATTY_INTERNAL_KEY: "a5".repeat(32) },
    });
    const store = await openPostgresStore(url);
    try {
      const s = await apiSession(pg);
      await parallelCallsAgainstQuota(store, (await store.userByName("owner")) as User, s);
      await pg.owner.stop(s.label);
    } finally {
      await store.close();
    }
  }, 60_000);
});

describe("the usage meter", () => {
  test("reads usage from events split anywhere across chunks", () => {
    const text = [
      'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":11,"cache_creation_input_tokens":2,"cache_read_input_tokens":3,"output_tokens":1}}}\n\n',
      'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"x"}}\n\n',
      'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":25}}\n\n',
    ].join("");
    const bytes = new TextEncoder().encode(text);
    for (const step of [1, 7, 64, bytes.length]) {
      const m = new UsageMeter(true);
      for (let i = 0; i < bytes.length; i += step) m.feed(bytes.subarray(i, i + step));
      m.end();
      expect(m.tokens).toEqual({ input: 11, output: 25, cacheCreation: 2, cacheRead: 3 });
    }
  });

  test("charges a cut stream at least a token per 3 bytes it generated (text, thinking, tool input); an unreadable JSON answer its hold", () => {
    const estimate = { input: 50, output: 1000, cacheCreation: 0, cacheRead: 0 };
    const ev = (type: string, data: object): string => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    const start = ev("message_start", { message: { usage: { input_tokens: 11, cache_creation_input_tokens: 2, cache_read_input_tokens: 3, output_tokens: 1 } } });
    const deltas = [
      ev("content_block_delta", { index: 0, delta: { type: "thinking_delta", thinking: "é".repeat(30) } }),
      ev("content_block_delta", { index: 1, delta: { type: "text_delta", text: "y".repeat(30) } }),
      ev("content_block_delta", { index: 2, delta: { type: "input_json_delta", partial_json: '{"path":"a"}' } }),
      ev("content_block_delta", { index: 1, delta: { type: "signature_delta", signature: "s".repeat(300) } }),
    ].join("");
    const meter = (text: string, sse = true): UsageMeter => {
      const m = new UsageMeter(sse);
      m.feed(new TextEncoder().encode(text));
      m.end();
      return m;
    };
    // 60 + 30 + 12 bytes generated: 34 tokens at the least, over message_start's 1.
    expect(meter(start + deltas).charge(estimate)).toEqual({ input: 11, output: 34, cacheCreation: 2, cacheRead: 3 });
    // Cut before message_start: the input estimate.
    expect(meter(deltas).charge(estimate)).toEqual({ input: 50, output: 34, cacheCreation: 0, cacheRead: 0 });
    // Whole: the API's count, even when lower than the estimate would be.
    expect(meter(start + deltas + ev("message_delta", { usage: { output_tokens: 20 } })).charge(estimate)).toEqual({ input: 11, output: 20, cacheCreation: 2, cacheRead: 3 });
    // JSON: its usage when it could be read; else the hold.
    expect(meter('{"content":[],"usage":{"input_tokens":7,"output_tokens":9}}', false).charge(estimate)).toMatchObject({ input: 7, output: 9 });
    expect(meter('{"content":[{"type":"text","text":"all of it"}],"usa', false).charge(estimate)).toEqual(estimate);
  });

  test("ignores what is not usage: bad JSON, negative or missing counts", () => {
    const m = new UsageMeter(true);
    m.feed(new TextEncoder().encode('data: {oops\n\ndata: {"type":"message_delta","usage":{"output_tokens":-5}}\n\ndata: [DONE]\n\n'));
    m.end();
    expect(m.seen).toBe(false);
  });
});

describe("usage and quotas", () => {
  test("GET /v1/usage: this month's totals and per-session figures, and catty usage prints them", async () => {
    const report = await server.owner.usage();
    expect(report.month).toBe(usageMonth());
    expect(report.quota).toBeNull();
    const mine = report.sessions.find((s) => s.label === session.label);
    expect(mine?.requests).toBeGreaterThanOrEqual(3);
    expect(report.total.tokens).toBe(report.sessions.reduce((a, s) => a + s.tokens, 0));
    const text = formatUsage(report);
    expect(text).toContain(`Claude API usage in ${usageMonth()}`);
    expect(text).toContain(session.label);
    expect(text).toContain("(no limit)");
    await expect(server.owner.usage("2026-13")).rejects.toThrow("is not a month");
  });

  test("catty-server users set-quota; over it, a new session is refused with 402 unless it brings its own key", async () => {
    const main = join(import.meta.dir, "../../server/main.ts");
    const setQuota = (...args: string[]) => Bun.spawnSync([process.execPath, main, "users", "set-quota", ...args, "--data-dir", server.dataDir]);
    const set = setQuota("owner", "--tokens", "5");
    expect(set.stdout.toString()).toContain("owner: 5 tokens per month");
    expect(setQuota("nobody-here", "--tokens", "5").stderr.toString()).toContain('no user named "nobody-here"');
    expect(setQuota("owner", "--tokens", "lots").exitCode).toBe(1);
    await expect(server.owner.create({ command: ["true"] })).rejects.toMatchObject({ code: "quota_exceeded" });
    expect((await server.owner.usage()).quota).toBe(5);

    const own = await server.owner.create({ command: ["bash", "-c", "env > /tmp/e.$$; mv /tmp/e.$$ env.txt; sleep 300"], ownApiKey: "sk-ant-users-own" });
    const file = join(sessionDir(server.dataDir, own.label), "workspace", "env.txt");
    const env = await waitFor(() => existsSync(file) && readFileSync(file, "utf8"), { what: "the program's environment" });
    expect(env).toContain("ANTHROPIC_API_KEY=sk-ant-users-own");
    expect(env).not.toContain("ANTHROPIC_AUTH_TOKEN");
    expect(env).not.toContain("ANTHROPIC_BASE_URL");
    expect(setQuota("owner", "--unlimited").stdout.toString()).toContain("no monthly token limit");
    await server.owner.stop(own.label);
  });
});

describe("the proxy's limits", () => {
  test("a request body over 32 MiB is refused with 413 before it goes upstream", async () => {
    const s = await apiSession();
    const before = api.requests.length;
    const res = await call(s.base, s.token, "/v1/messages", { method: "POST", body: new Uint8Array(33 * 1024 * 1024) });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe("request_too_large");
    expect(api.requests.length).toBe(before);
    await server.owner.stop(s.label);
  });
});

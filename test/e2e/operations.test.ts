/**
 * Operating a server, through the real binaries: JSON logs at debug level, `/metrics` (behind a
 * token) counting a real session's input, echo, output, Claude API tokens and final save, and no
 * secret in any log line: the owner's token, the operator's API key, the session's proxy and
 * agent tokens, the metrics token and the master key are looked for in the server's and the
 * agent's logs after a session that used them all.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createApiClient, type ApiClient } from "../../src/client/api.ts";
import { startAnthropicStandIn, type AnthropicStandIn } from "../helpers/anthropic.ts";
import { buildBinaries } from "../helpers/binaries.ts";
import { Recorder } from "../helpers/recorder.ts";
import { ServerProcess } from "../helpers/server-process.ts";
import { waitFor } from "../helpers/wait.ts";

const API_KEY = `sk-ant-operator-${crypto.randomUUID()}`;
const METRICS_TOKEN = `metrics-${crypto.randomUUID()}`;
const MASTER_KEY = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex");

let anthropic: AnthropicStandIn;
let server: ServerProcess;
let api: ApiClient;

beforeAll(async () => {
  anthropic = startAnthropicStandIn();
  const bins = await buildBinaries();
  server = new ServerProcess(bins.server, {
    CATTY_LOG_FORMAT: "json",
    CATTY_LOG_LEVEL: "debug",
    CATTY_METRICS_TOKEN: METRICS_TOKEN,
    CATTY_MASTER_KEY: MASTER_KEY,
    CATTY_ANTHROPIC_API_KEY: API_KEY,
    CATTY_ANTHROPIC_UPSTREAM: anthropic.url,
    CATTY_SAVE_FIRST_MS: "300",
    CATTY_SAVE_INTERVAL_MS: "700",
  });
  await server.start();
  api = createApiClient(server.url, server.ownerToken);
}, 60_000);

afterAll(async () => {
  await server?.stop();
  anthropic?.stop();
});

async function metrics(): Promise<string> {
  const res = await fetch(`${server.url}/metrics`, { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
  expect(res.status).toBe(200);
  return res.text();
}

/** The value of one sample (`name{labels}`), or 0 when it is not there. */
function sample(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

describe("operating a server", () => {
  test("metrics count a session's keystrokes, echo, output, API tokens and save; no log line holds a secret", async () => {
    const script = [
      `curl -s -o /dev/null -X POST "$ANTHROPIC_BASE_URL/v1/messages" -H "Authorization: Bearer $ANTHROPIC_AUTH_TOKEN" -H 'content-type: application/json'`,
      `-d '{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'`,
      `; echo "proxy=[$ANTHROPIC_AUTH_TOKEN]"; echo ready; exec cat`,
    ].join(" ");
    const session = await api.create({ command: ["bash", "-c", script], cols: 80, rows: 24 });
    const rec = new Recorder({ url: api.attachUrl(session.label), token: server.ownerToken, offset: 0 });
    try {
      await rec.waitForText((t) => t.includes("ready"), 20_000, "the program");
      const proxyToken = /proxy=\[([^\]]+)\]/.exec(rec.text)?.[1] ?? "";
      expect(proxyToken).toMatch(/^apx_/);
      for (const word of ["one", "two", "three"]) {
        rec.send(`${word}\r`);
        await rec.waitForText((t) => t.split(word).length >= 3, 10_000, `the echo of ${word}`); // cat's echo and its line
      }
      const agentPid = Number(readFileSync(join(server.dataDir, "sessions", session.label, "agent.pid"), "utf8"));
      const agentToken = /CATTY_AGENT_TOKEN=([^\0]+)/.exec(readFileSync(`/proc/${agentPid}/environ`, "latin1"))?.[1] ?? "";
      expect(agentToken.length).toBeGreaterThan(20);

      const live = await metrics();
      expect(sample(live, 'catty_sessions{status="running",provider="local"}')).toBe(1);
      expect(sample(live, 'catty_attached_clients{mode="interactive"}')).toBe(1);
      expect(sample(live, "catty_agent_links")).toBe(1);
      expect(sample(live, 'catty_relay_bytes_total{direction="to_programs"}')).toBe("one\rtwo\rthree\r".length);
      expect(sample(live, 'catty_relay_bytes_total{direction="to_clients"}')).toBeGreaterThan(30);
      expect(sample(live, "catty_keystroke_echo_seconds_count")).toBe(3);
      expect(sample(live, 'catty_keystroke_echo_seconds_bucket{le="1"}')).toBe(3);
      expect(sample(live, 'catty_proxy_tokens_total{kind="input"}')).toBe(anthropic.usage.input_tokens);
      expect(sample(live, 'catty_proxy_tokens_total{kind="cache_read"}')).toBe(anthropic.usage.cache_read_input_tokens);

      expect((await api.stop(session.label)).status).toBe("stopped");
      const ended = await waitFor(async () => {
        const text = await metrics();
        return sample(text, 'catty_sessions_ended_total{status="stopped"}') === 1 ? text : null;
      }, { what: "the ended session counted" });
      expect(sample(ended, 'catty_saves_total{outcome="stored"}')).toBeGreaterThanOrEqual(1);
      expect(sample(ended, "catty_save_duration_seconds_count")).toBeGreaterThanOrEqual(1);
      expect(sample(ended, 'catty_sessions{status="running",provider="local"}')).toBe(0);

      // Every server line is a JSON object; lines about requests carry their id.
      const lines = server.output.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.some((l) => l.level === "debug")).toBe(true);
      expect(lines.find((l) => l.msg === "session created")).toMatchObject({ request: expect.stringMatching(/^[0-9a-f-]{36}$/) });
      const agentLog = readFileSync(join(server.dataDir, "sessions", session.label, "agent.log"), "utf8");
      const logs = [server.output, agentLog, ...readdirSync(join(server.dataDir, "sessions")).map((l) => readFileSync(join(server.dataDir, "sessions", l, "agent.log"), "utf8"))].join("\n");
      const secrets = { ownerToken: server.ownerToken, apiKey: API_KEY, proxyToken, agentToken, metricsToken: METRICS_TOKEN, masterKey: MASTER_KEY };
      for (const [name, value] of Object.entries(secrets)) expect({ name, found: logs.includes(value) }).toEqual({ name, found: false });
    } finally {
      rec.close();
    }
  }, 90_000);
});

/**
 * Ports and forwards of a sandboxed session with a network of its own (bubblewrap and its own
 * namespace): the agent reads the session's listening ports from the program's view, and a
 * forward and a preview link reach the session's port — not the host's, which listens on the same
 * port number at the same time.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startForward } from "../../src/client/forward.ts";
import { createLog } from "../../src/lib/log.ts";
import { freePort } from "../helpers/ports.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";

let server: TestServer;
let host: ReturnType<typeof Bun.serve>;
const port = freePort();

beforeAll(async () => {
  // The host's own server on the very port the session will use.
  host = Bun.serve({ hostname: "127.0.0.1", port, fetch: () => new Response("the host's\n") });
  server = await startTestServer({ env: { CATTY_SANDBOX: "bwrap" } });
}, 60_000);

afterAll(async () => {
  for (const row of (await server?.owner.list()) ?? []) await server.owner.stop(row.label).catch(() => {});
  await server?.stop();
  void host?.stop(true);
});

describe("a sandboxed session's ports", () => {
  test("listed from its own network; a forward and a preview link reach its port, not the host's on the same number", async () => {
    const { label } = await server.owner.create({ command: ["bash", "-c", `echo "the session's" > index.html; exec python3 -m http.server ${port} --bind 127.0.0.1`] });
    const s = await waitFor(async () => {
      const got = await server.owner.get(label);
      return got.ports.length > 0 ? got : null;
    }, { timeoutMs: 30_000, what: "the session's port" });
    expect(s.ports).toEqual([{ port, name: "python3" }]);

    const fwd = await startForward({ api: server.url, token: server.ownerToken, label, specs: [{ remote: port, local: 0, bind: "127.0.0.1" }], log: createLog({ scope: "test", level: "warn" }) });
    try {
      const res = await fetch(`http://127.0.0.1:${fwd.listening[0]?.local}/index.html`);
      expect(await res.text()).toBe("the session's\n");
    } finally {
      await fwd.close();
    }

    const ticket = await fetch(`${server.url}/v1/sessions/${label}/preview/${port}`, { headers: { Authorization: `Bearer ${server.ownerToken}` }, redirect: "manual" });
    const signin = new URL(ticket.headers.get("location") ?? "");
    const previewHost = `${label}-${port}.localhost:${server.port}`;
    const signed = await fetch(`${server.url}${signin.pathname}${signin.search}`, { headers: { Host: previewHost }, redirect: "manual" });
    const cookie = (signed.headers.get("set-cookie") ?? "").split(";")[0] as string;
    const page = await fetch(`${server.url}/index.html`, { headers: { Host: previewHost, Cookie: cookie } });
    expect(await page.text()).toBe("the session's\n");
  }, 60_000);
});

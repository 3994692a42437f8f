/**
 * The agent's bridge into a session's own network namespace (agent/netns.ts), against a real
 * namespace: a connection to a port of the session (an echo server inside the namespace) goes
 * through `connectSessionPort`, half-close included; the program's side of Catty's API answers on
 * the namespace's loopback and relays the Claude API proxy's paths only; the bridge goes with the
 * agent. Needs root and `ip`, `nsenter` (skipped otherwise).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startNetnsBridge, SESSION_API_PORT, type NetnsBridge } from "../../agent/netns.ts";
import { connectSessionPort } from "../../agent/ports.ts";
import { createLog } from "../../src/lib/log.ts";
import { waitFor } from "../helpers/wait.ts";

const can = process.getuid?.() === 0 && !!Bun.which("ip") && !!Bun.which("nsenter");
const ns = `catty-test-bridge-${crypto.randomUUID().slice(0, 6)}`;
const ECHO_PORT = 7777;

describe.skipIf(!can)("the bridge into a session's network namespace", () => {
  let echo: ReturnType<typeof Bun.spawn> | null = null;
  let server: ReturnType<typeof Bun.serve>;
  let bridge: NetnsBridge;

  beforeAll(async () => {
    expect(Bun.spawnSync(["ip", "netns", "add", ns]).exitCode).toBe(0);
    Bun.spawnSync(["ip", "-n", ns, "link", "set", "lo", "up"]);
    const dir = mkdtempSync(join(tmpdir(), "catty-bridge-"));
    const script = join(dir, "echo.cjs");
    writeFileSync(
      script,
      `require("node:net").createServer({ allowHalfOpen: true }, (c) => { c.on("data", (d) => c.write(d)); c.on("end", () => c.end("<eof>")); })` +
        `.listen(${ECHO_PORT}, "127.0.0.1", () => console.log("ready"));`,
    );
    echo = Bun.spawn(["ip", "netns", "exec", ns, process.execPath, script], { stdout: "pipe" });
    const reader = (echo.stdout as ReadableStream<Uint8Array>).getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain("ready");
    reader.releaseLock();
    server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (req) => new Response(`server got ${new URL(req.url).pathname}`) });
    bridge = await startNetnsBridge({ netns: `/run/netns/${ns}`, dir: join(dir, "bridge"), serverUrl: server.url.toString(), log: createLog({ scope: "test", level: "error" }) });
  }, 30_000);

  afterAll(() => {
    bridge?.close();
    echo?.kill();
    void server?.stop(true);
    Bun.spawnSync(["ip", "netns", "delete", ns]);
  });

  test("a session's port through connectSessionPort, both ways and half-closed", async () => {
    const socket = connectSessionPort({ host: "127.0.0.1", port: ECHO_PORT, name: "" }, bridge.portsSocket);
    let got = "";
    socket.on("data", (d) => (got += d.toString()));
    const ended = new Promise<void>((resolve) => socket.on("end", () => resolve()));
    socket.write("hello ");
    socket.end("session");
    await ended;
    expect(got).toBe("hello session<eof>");
  });

  test("nothing listening there: the connection ends, with nothing", async () => {
    const socket = connectSessionPort({ host: "127.0.0.1", port: ECHO_PORT + 1, name: "" }, bridge.portsSocket);
    let got = "";
    socket.on("data", (d) => (got += d.toString()));
    await new Promise<void>((resolve) => socket.on("end", () => resolve()));
    expect(got).toBe("");
    socket.destroy();
  });

  test("the program reaches the Claude API proxy's paths on its own loopback, and nothing else of the server", async () => {
    // Not spawnSync: the relay answering is in this process.
    const curl = (path: string): Promise<string> =>
      new Response(Bun.spawn(["ip", "netns", "exec", ns, "curl", "-s", "-m", "5", "-w", " %{http_code}", `http://127.0.0.1:${SESSION_API_PORT}${path}`]).stdout).text();
    expect(await curl("/v1/anthropic/v1/models")).toBe("server got /v1/anthropic/v1/models 200");
    expect(await curl("/v1/sessions")).toEndWith(" 404");
  });

  test("the bridge goes with the agent, and takes the namespace's name with it (the NAT quits on that)", async () => {
    expect(existsSync(`/run/netns/${ns}`)).toBe(true);
    bridge.close();
    await waitFor(() => !existsSync(`/run/netns/${ns}`), { what: "the namespace's name to go" });
  });
});

/**
 * The agent as wired by `createAgent`, driven through its seams: a fake link (the server's side)
 * and a fake PTY (the program). The workspace, journal, saves and screen mirror are real; saves go
 * to a stand-in storage server.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createAgent, type Agent, type AgentDeps } from "../../agent/agent.ts";
import { readAgentConfig } from "../../agent/config.ts";
import { packToBytes } from "../../src/lib/archive.ts";
import { silentLog, type Log } from "../../src/lib/log.ts";
import { keptLog } from "../helpers/log.ts";
import { PROTOCOL_VERSION } from "../../src/protocol/index.ts";
import { FakeLink } from "../helpers/fake-link.ts";
import { FakePty } from "../helpers/fake-pty.ts";
import { tempDirs, writeTree } from "../helpers/fs.ts";
import { waitFor } from "../helpers/wait.ts";

const temp = tempDirs("catty-agent-");

/** Stand-in server storage: takes the blobs of saves (it lacks every one it is asked about), serves uploads. */
const stored = new Map<string, Uint8Array>();
const storage = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  async fetch(req) {
    const path = new URL(req.url).pathname;
    if (req.method === "POST" && path.endsWith("/missing")) return Response.json({ missing: ((await req.json()) as { hashes: string[] }).hashes });
    if (req.method === "PUT") {
      stored.set(path, new Uint8Array(await req.arrayBuffer()));
      return new Response(null, { status: 200 });
    }
    const body = stored.get(path);
    return body ? new Response(body) : new Response("not found", { status: 404 });
  },
});
afterAll(() => storage.stop(true));
const storageUrl = `http://127.0.0.1:${storage.port}`;

const running: Array<{ link: FakeLink; agent: Agent }> = [];
afterEach(async () => {
  // Whatever a test left running ends the way the server would end it.
  for (const { link } of running.splice(0)) if (!link.closed) link.end("test over");
});

function start(opts: { env?: Record<string, string>; pty?: FakePty; timing?: AgentDeps["timing"]; answerSaves?: boolean; log?: Log } = {}) {
  const root = temp();
  const workspace = join(root, "workspace");
  mkdirSync(workspace);
  const config = readAgentConfig({
    CATTY_SERVER_URL: storageUrl,
    CATTY_AGENT_TOKEN: "agent-token",
    CATTY_WORKSPACE: workspace,
    CATTY_COMMAND: JSON.stringify(["my-shell"]),
    CATTY_COLS: "60",
    CATTY_ROWS: "10",
    CATTY_SAVE_FIRST_MS: "3600000",
    ...opts.env,
  });
  const link = new FakeLink();
  const pty = opts.pty ?? new FakePty();
  if (opts.answerSaves !== false) {
    link.onMessage = (msg) => {
      if (msg.type === "save_request") {
        queueMicrotask(() => link.deliver({ type: "save_target", id: msg.id, url: `/saves/${msg.id}`, error: null }));
      } else if (msg.type === "save_done") {
        queueMicrotask(() => link.deliver({ type: "save_result", id: msg.id, ok: true, error: null }));
      }
    };
  }
  const agent = createAgent({ config, pty: pty.runner, dial: link.dial, log: opts.log ?? silentLog, timing: { stopGraceMs: 50, ...opts.timing } });
  running.push({ link, agent });
  return { agent, link, pty, workspace, root, config };
}

const welcome = (restore: { url: string; size: number | null } | null = null) => ({
  type: "welcome",
  protocol: PROTOCOL_VERSION,
  label: "brave-tiger-1234",
  restore,
});

describe("the agent, wired", () => {
  test("says hello on connect; after welcome starts the program with the typeahead, in order", async () => {
    const { link, pty } = start();
    link.open();
    expect(link.messages("hello")).toEqual([{ type: "hello", protocol: PROTOCOL_VERSION, offset: 0, cols: 60, rows: 10, pid: null }]);
    link.input("echo ");
    link.input("early\r");
    link.deliver(welcome());
    await waitFor(() => pty.procs.length === 1, { what: "the program to start" });
    link.input("later\r");
    expect(pty.proc.spec.argv).toEqual(["my-shell"]);
    expect(pty.proc.spec.cwd).toContain("workspace");
    expect(pty.proc.spec.env.CATTY).toBe("1");
    expect(Object.keys(pty.proc.spec.env).filter((k) => k.startsWith("CATTY_"))).toEqual([]);
    expect(pty.proc.typed).toBe("echo early\rlater\r");
  });

  test("restores the workspace from the welcome's archive before the program starts", async () => {
    const src = writeTree(temp(), { "notes.txt": "from the laptop\n" });
    const { data } = await packToBytes({ root: src, mode: "upload" });
    stored.set("/uploads/u1", data);
    const { link, pty, workspace } = start();
    link.open();
    link.deliver(welcome({ url: "/uploads/u1", size: data.length }));
    expect(await link.next("restored")).toEqual({ type: "restored", files: 1, bytes: 16 });
    await waitFor(() => pty.procs.length === 1, { what: "the program to start" });
    expect(readFileSync(join(workspace, "notes.txt"), "utf8")).toBe("from the laptop\n");
  });

  test("a workspace that cannot be restored fails the session: no program, typeahead dropped; the agent goes when told", async () => {
    const { agent, link, pty } = start();
    link.open();
    link.input("never typed");
    link.deliver(welcome({ url: "/uploads/missing", size: null }));
    const failed = await link.next("restore_failed");
    expect(failed.error).toContain("404");
    link.deliver(welcome()); // a second welcome does not start anything either
    expect(pty.procs).toEqual([]);
    link.deliver({ type: "exit_ack" }); // the server recorded the failure
    expect(await agent.done).toEqual({ kind: "ended", code: null });
    expect(link.closed).toBe(true);
  });

  test("an attaching client with an offset still in the ring gets exactly the missing bytes, then synced", async () => {
    const { link, pty } = start();
    link.open();
    link.deliver(welcome());
    await waitFor(() => pty.procs.length === 1, { what: "the program to start" });
    pty.proc.print("first\r\n");
    pty.proc.print("second\r\n");
    link.clear();
    link.deliver({ type: "attach", clientId: 11, offset: 7, syncBack: null });
    const synced = await link.next("synced");
    expect(synced).toEqual({ type: "synced", clientId: 11, offset: 15 });
    const replay = link.frames().filter((f) => f.clientId === 11);
    expect(replay.map((f) => [f.offset, new TextDecoder().decode(f.data)])).toEqual([[7, "second\r\n"]]);
    expect(link.messages("screen")).toEqual([]);
  });

  test("an attaching client too far behind gets the screen and the tail", async () => {
    const { link, pty } = start({ env: { CATTY_RING_BYTES: "1024" } });
    link.open();
    link.deliver(welcome());
    await waitFor(() => pty.procs.length === 1, { what: "the program to start" });
    for (let i = 0; i < 300; i++) pty.proc.print(`line ${i}\r\n`);
    link.clear();
    link.deliver({ type: "attach", clientId: 12, offset: 0, syncBack: null });
    const synced = await link.next("synced");
    const [screen] = link.messages("screen");
    expect(screen?.data).toContain("line 299");
    const tail = link.frames().filter((f) => f.clientId === 12);
    expect((screen?.offset ?? 0) + tail.reduce((n, f) => n + f.data.length, 0)).toBe(synced.offset);
  });

  test("resize reaches the mirror and the program, once per change", async () => {
    const { link, pty } = start();
    link.open();
    link.deliver(welcome());
    await waitFor(() => pty.procs.length === 1, { what: "the program to start" });
    link.deliver({ type: "resize", cols: 120, rows: 40 });
    link.deliver({ type: "resize", cols: 120, rows: 40 });
    expect(pty.proc.sizes).toEqual([[120, 40]]);
    link.drop();
    link.open();
    expect(link.messages("hello").at(-1)).toMatchObject({ cols: 120, rows: 40, pid: pty.proc.pid });
  });

  test("stop: SIGHUP, then SIGKILL after the grace; the final save and the exit report follow", async () => {
    const pty = new FakePty({ ignoreHangup: true });
    const { link } = start({ pty });
    link.open();
    link.deliver(welcome());
    await waitFor(() => pty.procs.length === 1, { what: "the program to start" });
    link.deliver({ type: "stop", reason: "catty stop" });
    expect(pty.proc.signals).toEqual(["SIGHUP"]);
    const exit = await link.next("exit");
    expect(pty.proc.signals).toEqual(["SIGHUP", "SIGKILL"]);
    expect(exit).toMatchObject({ type: "exit", code: 137, reason: "catty stop", finalSave: "stored" });
    expect(link.messages("save_request").map((m) => m.reason)).toEqual(["final"]);
  });

  test("the exit report is sent again on every reconnect until the server acknowledges it", async () => {
    const { agent, link, pty } = start();
    link.open();
    link.deliver(welcome());
    await waitFor(() => pty.procs.length === 1, { what: "the program to start" });
    pty.proc.print("bye\r\n");
    pty.proc.exit(7);
    const first = await link.next("exit");
    expect(first.code).toBe(7);
    expect(first.screen).toContain("bye");
    link.drop();
    link.open();
    await link.next("exit", { n: 2 });
    link.drop();
    link.open();
    await link.next("exit", { n: 3 });
    link.deliver({ type: "exit_ack" });
    expect(await agent.done).toEqual({ kind: "exited", code: 7 });
    expect(link.closed).toBe(true);
  });

  test("an exit_ack before any exit is ignored", async () => {
    const { link, pty } = start();
    link.open();
    link.deliver(welcome());
    await waitFor(() => pty.procs.length === 1, { what: "the program to start" });
    link.deliver({ type: "exit_ack" });
    expect(link.closed).toBe(false);
    link.deliver({ type: "ping", id: 5 });
    expect(link.messages("pong")).toEqual([{ type: "pong", id: 5 }]);
  });

  test("a save request in flight fails when the link drops, not after a timeout", async () => {
    const { link, pty } = start({ answerSaves: false, timing: { requestTimeoutMs: 60_000 } });
    link.open();
    link.deliver(welcome());
    await waitFor(() => pty.procs.length === 1, { what: "the program to start" });
    pty.proc.exit(0);
    await link.next("save_request");
    link.drop(); // the final save fails at once and is retried (1 s later) on the new link
    link.open();
    const retry = await link.next("save_request", { n: 2, timeoutMs: 5_000 });
    link.deliver({ type: "save_target", id: retry.id, url: `/saves/${retry.id}`, error: null });
    const done = await link.next("save_done");
    link.deliver({ type: "save_result", id: done.id, ok: true, error: null });
    expect((await link.next("exit")).finalSave).toBe("stored");
  });

  test("malformed messages from the server are ignored", async () => {
    const { link } = start();
    link.open();
    link.deliver({ type: "no-such-message" });
    link.deliver({ type: "resize", cols: -1, rows: 5 });
    link.deliver({ type: "ping", id: 1 });
    expect(link.messages("pong")).toEqual([{ type: "pong", id: 1 }]);
  });

  test("the server ends the session: the program is stopped and the agent ends", async () => {
    const { agent, link, pty } = start();
    link.open();
    link.deliver(welcome());
    await waitFor(() => pty.procs.length === 1, { what: "the program to start" });
    link.end("the session was deleted");
    expect(pty.proc.signals).toEqual(["SIGHUP"]);
    expect(await agent.done).toEqual({ kind: "ended", code: 129 });
  });

  describe("without its server", () => {
    test("an agent that never reaches its server gives up after the idle timeout and a last try", async () => {
      const started = Date.now();
      const { agent, link } = start({ env: { CATTY_SESSION_IDLE_MS: "150" }, timing: { lastTryMs: 100 } });
      expect(await agent.done).toEqual({ kind: "orphaned" });
      expect(Date.now() - started).toBeGreaterThanOrEqual(245);
      expect(link.closed).toBe(true);
    });

    test("an agent whose server went away stops the program (SIGHUP, then SIGKILL) and ends without a final save", async () => {
      const pty = new FakePty({ ignoreHangup: true });
      const { agent, link } = start({ pty, env: { CATTY_SESSION_IDLE_MS: "150" }, timing: { lastTryMs: 100 } });
      link.open();
      link.deliver(welcome());
      await waitFor(() => pty.procs.length === 1, { what: "the program to start" });
      link.drop();
      expect(await agent.done).toEqual({ kind: "orphaned" });
      expect(pty.proc.signals).toEqual(["SIGHUP", "SIGKILL"]);
      expect(pty.proc.running).toBe(false);
      expect(link.messages("save_request")).toEqual([]);
    });

    test("a server that comes back in time keeps the agent", async () => {
      const log = keptLog();
      const { agent, link, pty } = start({ env: { CATTY_SESSION_IDLE_MS: "100" }, timing: { lastTryMs: 60_000 }, log });
      link.open();
      link.deliver(welcome());
      await waitFor(() => pty.procs.length === 1, { what: "the program to start" });
      link.drop();
      await waitFor(() => log.lines.some((l) => l.includes("one last try")), { what: "the idle timeout to pass: the last try runs" });
      link.open();
      pty.proc.exit(0);
      await link.next("exit");
      link.deliver({ type: "exit_ack" });
      expect(await agent.done).toEqual({ kind: "exited", code: 0 });
      expect(pty.proc.signals).toEqual([]);
    });
  });
});

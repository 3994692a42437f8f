/**
 * The Docker provider with a real engine: the test run's own `dockerd` (test/helpers/docker.ts)
 * and the session image built by `npm run session-image`'s code. Session containers use the
 * host's network and dial the server on 127.0.0.1; nothing leaves loopback.
 *
 * - the image has the tools the product promises, each answering `--version`;
 * - the attack from the review fails from inside a container, and the session keeps working;
 * - the process and memory limits hold, and the server stays responsive;
 * - a session end to end through the real binaries (type, resize, vim, detach, reconnect, exit
 *   code), the workspace round trip (upload, work, save, download, sync), sync-back;
 * - `kill -9` of the server: sessions keep running and reattach; a restarted server fails a
 *   session whose container is gone, saying so, and removes a container no session owns.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LABELS, serverIdFrom } from "../../server/providers/docker.ts";
import { removeCopy, testEngine, type TestEngine } from "../helpers/docker.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { sessionFlow, shellExitCode } from "../helpers/session-flow.ts";
import { hostTargets, LIMITS_SCRIPT, limitsFound, networkProbes, readAttempts, runSwapAttack } from "../helpers/isolation.ts";
import { startAnthropicStandIn, type AnthropicStandIn } from "../helpers/anthropic.ts";
import { startStandInHosts, type StandInHosts } from "../helpers/stand-in-hosts.ts";
import { waitFor } from "../helpers/wait.ts";
import { workspaceRoundTrip } from "../helpers/workspace-round-trip.ts";
import { startWorkspaceServer, writeTree, type WorkspaceFixture } from "../helpers/workspace.ts";

const MiB = 1024 * 1024;
let engine: TestEngine;
/** In-process server for the attack and limit tests (sessions made through the API). */
let server: TestServer;
/** A real catty-server binary and a user in tmux for the end-to-end tests. */
let fx: WorkspaceFixture;
const copies: string[] = [];

const dockerEnv = (): Record<string, string> => ({
  CATTY_PROVIDER: "docker",
  DOCKER_HOST: engine.host,
  CATTY_DOCKER_IMAGE: engine.image,
  CATTY_DOCKER_NETWORK: "host",
  // The host's network: only "all" holds there (the network tests below use a bridge of their own).
  CATTY_SESSION_EGRESS: "all",
  CATTY_SESSION_PIDS: "128",
  CATTY_SESSION_MEMORY_BYTES: String(512 * MiB),
});

beforeAll(async () => {
  // The first run on a machine makes the image's Debian base (a minute or two); later runs reuse it.
  engine = await testEngine();
  server = await startTestServer({ env: dockerEnv() });
  fx = await startWorkspaceServer(dockerEnv());
  fx.user.copyWorkspace = async (label) => {
    const id = await engine.containerOf(label);
    if (!id) throw new Error(`no container for ${label}`);
    const dir = await engine.copyOut(id, "/workspace");
    copies.push(dir);
    return dir;
  };
}, 900_000);

afterAll(async () => {
  for (const s of (await server?.owner.list().catch(() => [])) ?? []) await server.owner.stop(s.label).catch(() => {});
  await server?.stop();
  await fx?.close();
  for (const dir of copies) removeCopy(dir);
});

/** A session of the in-process server running `script` in bash; resolves to its label and container. */
async function session(script: string): Promise<{ label: string; container: string }> {
  const s = await server.owner.create({ command: ["bash", "-c", script], cols: 80, rows: 24 });
  const container = await waitFor(() => engine.containerOf(s.label), { what: `the container of ${s.label}` });
  return { label: s.label, container };
}

/** The lines the session's script wrote to /workspace/result.txt, once it wrote `done`. */
async function results(container: string): Promise<string[]> {
  const text = await waitFor(
    async () => {
      const t = await engine.readFile(container, "/workspace/result.txt");
      return t?.includes("done\n") ? t : null;
    },
    { timeoutMs: 60_000, what: "the session's results" },
  );
  return text.trim().split("\n");
}

describe("the session image", () => {
  test("has the promised tools, each answering --version, and the unprivileged catty user", async () => {
    const tools = ["node", "npm", "claude", "gh", "git", "python3", "rg", "jq", "vim", "gcc", "make", "curl", "catty-agent"];
    const { code, output } = await engine.run(
      `for t in ${tools.join(" ")}; do printf '%s: ' $t; $t --version 2>&1 | head -1 || exit 1; done; echo "catty: $(id -u catty):$(id -g catty)"`,
    );
    expect(code).toBe(0);
    const line = (tool: string): string => output.split(/\r?\n/).find((l) => l.startsWith(`${tool}: `)) ?? "";
    expect(line("node")).toMatch(/v22\.\d+\.\d+/);
    expect(line("claude")).toContain("Claude Code");
    expect(line("gh")).toContain("gh version");
    expect(line("git")).toContain("git version");
    expect(line("python3")).toContain("Python 3");
    expect(line("rg")).toContain("ripgrep");
    expect(line("jq")).toMatch(/jq-1/);
    expect(line("vim")).toContain("VIM");
    expect(line("gcc")).toContain("gcc");
    expect(line("make")).toContain("GNU Make");
    expect(line("curl")).toContain("curl");
    expect(line("npm")).toMatch(/^npm: \d+\.\d+/);
    // A development build of the agent (a release reports its version).
    expect(line("catty-agent")).toBe("catty-agent: dev");
    expect(line("catty")).toBe("catty: 1000:1000");
  }, 60_000);
});

describe("Docker sessions are isolated", () => {
  test("the attack from the review fails from inside a container, and the session keeps working", async () => {
    const other = await session("echo other-secret > /workspace/secret.txt; sleep 300");
    await waitFor(() => engine.readFile(other.container, "/workspace/secret.txt"), { what: "the other session's secret" });
    // The host's secrets, the agent's state, the engine's socket.
    const targets = [...hostTargets(server.dataDir), "/var/lib/catty-agent/restore.tar.gz", "/var/run/docker.sock"];
    const script = [
      "r=/workspace/result.txt",
      'echo "pwd=$(pwd)" >> $r',
      'echo "user=$(id -un) uid=$(id -u)" >> $r',
      'echo "home=$HOME" >> $r',
      'grep -q "^CapEff:\\s*0*$" /proc/self/status && echo "no capabilities" >> $r',
      'echo x > /tmp/probe && echo "tmp writable" >> $r',
      'echo y > "$HOME/probe" && echo "home writable" >> $r',
      ...readAttempts(targets),
      // The other session's workspace, by its secret, anywhere this container can look.
      'if grep -rqs other-secret / --exclude-dir=proc --exclude-dir=sys 2>/dev/null; then echo "other workspace found" >> $r; else echo "other workspace hidden" >> $r; fi',
      // The agent's token, in any environment or memory this program can read.
      'if grep -qs agt_ /proc/[0-9]*/environ; then echo "token found" >> $r; else echo "token hidden" >> $r; fi',
      'agent=$(pgrep -f /usr/local/bin/catty-agent | head -1)',
      'if head -c 1 /proc/$agent/mem >/dev/null 2>&1; then echo "agent memory read" >> $r; else echo "agent memory denied" >> $r; fi',
      'env | grep -q "^CATTY_" && echo "catty env" >> $r',
      'if kill -TERM "$agent" 2>/dev/null || kill -TERM 1 2>/dev/null; then echo "agent signalled" >> $r; else echo "agent out of reach" >> $r; fi',
      `if exec 3<>/dev/tcp/127.0.0.1/${new URL(server.url).port}; then echo "network ok" >> $r; else echo "no network" >> $r; fi`,
      "echo done >> $r",
      "while :; do date +%s%N > /workspace/alive.txt; sleep 0.2; done",
    ].join("\n");
    const me = await session(script);
    const lines = await results(me.container);
    expect(lines).toContain("pwd=/workspace");
    // The image's catty user, with a host uid of this session's own (not root, not another's).
    const uid = Number(/^user=catty uid=(\d+)$/m.exec(lines.join("\n"))?.[1]);
    expect(uid).toBeGreaterThanOrEqual(200_000);
    expect(lines).toContain("home=/home/catty");
    expect(lines).toContain("no capabilities");
    expect(lines).toContain("tmp writable");
    expect(lines).toContain("home writable");
    for (const f of targets) expect(lines).toContain(`denied ${f}`);
    expect(lines).toContain("other workspace hidden");
    expect(lines).toContain("token hidden");
    expect(lines).toContain("agent memory denied");
    expect(lines).not.toContain("catty env");
    expect(lines).toContain("agent out of reach");
    expect(lines).toContain("network ok");
    // Still working: the file it rewrites keeps changing, and the session is running.
    const first = await engine.readFile(me.container, "/workspace/alive.txt");
    await waitFor(async () => (await engine.readFile(me.container, "/workspace/alive.txt")) !== first, { what: "the session to keep running" });
    expect((await server.owner.get(me.label)).status).toBe("running");
    // The container carries its session's label and this server's.
    const [info] = await engine.client.list([`${LABELS.session}=${me.label}`]);
    expect(info?.Labels?.[LABELS.server]).toBe(serverIdFrom(readFileSync(join(server.dataDir, "server-key"), "utf8").trim()));
    await server.owner.stop(other.label);
    await server.owner.stop(me.label);
    // A stopped session's container is removed.
    await waitFor(async () => (await engine.containerOf(me.label)) === null, { what: "the container to be removed" });
  }, 120_000);

  test("the review's chain against the agent, which is root in the container: symlinks swapped for watched paths to /etc reach neither sync-back nor a save", async () => {
    // What the program cannot read and the agent (root) could: the image's /etc/shadow.
    const shadow = (await engine.run("cat /etc/shadow")).output.split("\n").find((l) => l.startsWith("root:"))?.trim();
    expect(shadow).toBeTruthy();
    const { received, saved } = await runSwapAttack({ api: server.owner, token: server.ownerToken, start: session, results: (s) => results(s.container) }, "/etc", ["shadow", "gshadow"]);
    expect(saved).toContain("own 40");
    expect(received).not.toContain(shadow as string);
    expect(saved).not.toContain(shadow as string);
  }, 120_000);

  test("a handed file goes in as the program's user: .catty-uploads pointed at /etc (root's, in the container) carries no write there", async () => {
    const me = await session("ln -s /etc /workspace/.catty-uploads && echo planted > /workspace/planted; sleep 300");
    await waitFor(() => engine.readFile(me.container, "/workspace/planted"), { what: "the planted symlink" });
    const refused = await fetch(`${server.url}/v1/sessions/${me.label}/files?name=payload.png`, {
      method: "POST",
      headers: { Authorization: `Bearer ${server.ownerToken}` },
      body: new Uint8Array([1, 2, 3]),
    });
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { message: string }).message).toContain("could not take the file");
    expect(await engine.readFile(me.container, "/etc/payload.png")).toBeNull();
    expect((await server.owner.get(me.label)).status).toBe("running");
    await server.owner.stop(me.label);
  }, 90_000);

  test("the process limit stops a fork bomb, the memory limit a runaway allocation; the server stays responsive", async () => {

    const me = await session(LIMITS_SCRIPT);
    const { started, memoryExit } = limitsFound(await results(me.container));
    expect(started).toBeGreaterThan(0);
    expect(started).toBeLessThanOrEqual(128);
    expect(memoryExit).not.toBe(0);
    expect((await fetch(`${server.url}/healthz`)).ok).toBe(true);
    expect((await server.owner.get(me.label)).status).toBe("running");
    await server.owner.stop(me.label);
  }, 120_000);
});

describe("Docker sessions end to end", () => {
  const statusOf = async (label: string): Promise<string | undefined> => (await fx.user.session(label)).status;

  test("type, resize, vim, detach, reconnect, exit code; the container goes with the session", async () => {
    const tmux = fx.user.freshTerminal();
    const label = await sessionFlow(tmux, { statusOf, exitCodeOf: async (l) => (await fx.user.session(l)).exitCode });
    await waitFor(async () => (await engine.containerOf(label)) === null, { what: "the container to be removed" });
  }, 180_000);

  test("workspace round trip: upload, work inside, stop, download, sync", async () => {
    await workspaceRoundTrip(fx.user);
  }, 180_000);

  test("what the program writes comes back to the local directory", async () => {
    const project = mkdtempSync(join(tmpdir(), "catty-docker-sb-"));
    writeTree(project, { "a.txt": "from the host\n" });
    const { label, exitMarker } = await fx.user.newSession(project);
    await fx.user.shell("mkdir -p out && echo made-in-container > out/b.txt && cat a.txt");
    await waitFor(() => existsSync(join(project, "out/b.txt")) && readFileSync(join(project, "out/b.txt"), "utf8") === "made-in-container\n", {
      timeoutMs: 20_000,
      what: "out/b.txt synced back",
    });
    fx.user.tmux.type("exit 0");
    expect(await fx.user.exitCode(exitMarker)).toBe(0);
    await fx.user.waitForStatus(label, ["stopped"]);
  }, 120_000);

  test("kill -9 of the server: sessions run on and reattach; a restart fails a session whose container is gone and removes a stray one", async () => {
    const tmux = fx.user.freshTerminal();
    tmux.type("catty new --no-upload -- bash --norc --noprofile; echo NEW_EXIT=$?");
    const started = await tmux.waitFor(/Session ([a-z]+-[a-z]+-\d{4}) started/, 30_000);
    const label = /Session ([a-z]+-[a-z]+-\d{4}) started/.exec(started)?.[1] as string;
    tmux.type("SURVIVOR=yes-$((1+1)); echo set-$SURVIVOR");
    await tmux.waitFor("set-yes-2", 30_000);
    tmux.keys("C-c");
    tmux.keys("C-c");
    expect(await shellExitCode(tmux, "NEW_EXIT")).toBe(0);
    // A second session, whose container will disappear while the server is down.
    const res = await fx.user.api("POST", "/v1/sessions", { command: ["sleep", "600"], cols: 80, rows: 24 });
    expect(res.status).toBe(201);
    const doomed = ((await res.json()) as { label: string }).label;
    await fx.user.waitForStatus(doomed, ["running"]);

    await fx.server.kill9();
    // While the server is down: the session's container runs on; a stray container of this
    // server appears (as a crashed start would leave one).
    const container = await engine.containerOf(label);
    expect(container).not.toBeNull();
    const serverId = serverIdFrom(readFileSync(join(fx.server.dataDir, "server-key"), "utf8").trim());
    const stray = await engine.client.run(`catty-stray-${Date.now()}`, {
      Image: engine.image,
      Env: [],
      Labels: { [LABELS.server]: serverId, [LABELS.session]: "no-such-session" },
      HostConfig: { NetworkMode: "none" },
    });
    await engine.client.remove((await engine.containerOf(doomed)) as string);
    await fx.server.start();
    await waitFor(async () => (await statusOf(label)) === "running", { what: "session listed as running after restart" });
    await waitFor(async () => (await engine.client.inspect(stray)) === null, { what: "the stray container to be removed" });
    const failed = await fx.user.waitForStatus(doomed, ["failed"]);
    expect(failed.endReason).toContain("no longer exists");

    tmux.type("clear");
    tmux.type(`catty connect ${label}; echo CONNECT_EXIT=$?`);
    tmux.type("echo survivor=$SURVIVOR");
    await tmux.waitFor("survivor=yes-2", 30_000);
    tmux.type("exit 3");
    expect(await shellExitCode(tmux, "CONNECT_EXIT")).toBe(3);
  }, 180_000);
});

/**
 * Docker sessions on a bridge network (the default is `bridge`; here one of the test's own on the
 * test engine, which sets no iptables rules: the host routes it), with the egress policy the agent
 * sets in each container. The server listens on the bridge's host address, where the agents dial
 * it (CATTY_PUBLIC_URL's role); the programs must not reach it. Stand-in hosts as for local sessions.
 */
describe("a Docker session's network", () => {
  let hosts: StandInHosts;
  let anthropic: AnthropicStandIn;
  let hostOnly: ReturnType<typeof Bun.serve>;
  let open: TestServer;
  let closed: TestServer;
  let network = "";
  let gateway = "";

  /** The Engine API, for what the provider's client does not do (networks, addresses). */
  const engineApi = async (method: string, path: string, body?: unknown): Promise<Response> =>
    fetch(`http://docker/v1.41${path}`, {
      method,
      unix: engine.host.slice("unix://".length),
      ...(body ? { body: JSON.stringify(body), headers: { "content-type": "application/json" } } : {}),
    } as RequestInit);

  beforeAll(async () => {
    hosts = await startStandInHosts();
    anthropic = startAnthropicStandIn();
    const n = Math.floor(Math.random() * 200) + 20;
    gateway = `172.29.${n}.1`;
    network = `catty-test-${crypto.randomUUID().slice(0, 6)}`;
    const created = await engineApi("POST", "/networks/create", {
      Name: network,
      Driver: "bridge",
      IPAM: { Config: [{ Subnet: `172.29.${n}.0/24`, Gateway: gateway }] },
      Options: { "com.docker.network.bridge.name": `ctb${network.slice(-6)}` },
    });
    expect(created.status).toBe(201);
    hostOnly = Bun.serve({ hostname: gateway, port: 0, fetch: () => new Response("host only\n") });
    const env = {
      ...dockerEnv(),
      CATTY_DOCKER_NETWORK: network,
      CATTY_HOST: gateway,
      CATTY_ANTHROPIC_API_KEY: "sk-ant-test",
      CATTY_ANTHROPIC_UPSTREAM: anthropic.url,
    };
    delete (env as Record<string, string>).CATTY_SESSION_EGRESS;
    open = await startTestServer({ env: { ...env, CATTY_SESSION_EGRESS_ALLOW: `${hosts.private}:${hosts.ports[0]}` } });
    closed = await startTestServer({ env: { ...env, CATTY_SESSION_EGRESS: "none" } });
  }, 120_000);

  afterAll(async () => {
    for (const s of [open, closed]) {
      if (!s) continue;
      for (const row of await s.owner.list().catch(() => [])) await s.owner.stop(row.label).catch(() => {});
      await s.stop();
    }
    void hostOnly?.stop(true);
    anthropic?.stop();
    if (network) await engineApi("DELETE", `/networks/${network}`).catch(() => {});
    hosts?.dispose();
  });

  const sessionOn = async (s: TestServer, command: string[]): Promise<{ label: string; container: string }> => {
    const row = await s.owner.create({ command, cols: 80, rows: 24 });
    const container = await waitFor(() => engine.containerOf(row.label), { what: `the container of ${row.label}` });
    return { label: row.label, container };
  };

  test("under public: the internet and the allow-list, not the server, the host, another session, private ranges or the metadata service; the proxy works", async () => {
    const [allowed, blocked] = hosts.ports;
    const other = await sessionOn(open, ["bash", "-c", "hostname -I > /workspace/ip; exec python3 -m http.server 8765 --bind 0.0.0.0"]);
    const otherIp = (await waitFor(() => engine.readFile(other.container, "/workspace/ip"), { what: "the other session's address" })).trim().split(/\s+/)[0];
    expect(otherIp).toMatch(/^172\.29\./);
    // It serves (the host, outside the policy, reaches it on the bridge).
    await waitFor(async () => (await fetch(`http://${otherIp}:8765/`, { signal: AbortSignal.timeout(2_000) }).catch(() => null))?.ok, { timeoutMs: 30_000, what: "the other session's server" });
    const before = anthropic.requests.length;
    const me = await sessionOn(
      open,
      ["bash", "-c", networkProbes([
        ["server", `${open.url}/healthz`],
        ["server-loopback", `http://127.0.0.1:${new URL(open.url).port}/healthz`],
        ["host-only", `http://${gateway}:${hostOnly.port}/`],
        ["other-session", `http://${otherIp}:8765/`],
        ["metadata", `http://${hosts.metadata}/`],
        ["internet", `http://${hosts.internet}/`],
        ["allowed", `http://${hosts.private}:${allowed}/`],
        ["private", `http://${hosts.private}:${blocked}/`],
      ])],
    );
    const lines = await results(me.container);
    for (const name of ["server", "server-loopback", "host-only", "other-session", "metadata", "private"]) expect(lines).toContain(`${name} unreachable`);
    expect(lines).toContain(`internet reached hello from ${hosts.internet}:80`);
    expect(lines).toContain(`allowed reached hello from ${hosts.private}:${allowed}`);
    expect(lines).toContain("base=http://127.0.0.1:4815/v1/anthropic");
    expect(lines).toContain("proxy=200");
    expect(anthropic.requests.length).toBe(before + 1);
    // The agent, exempt, still reaches the server: the session keeps working.
    expect((await open.owner.get(me.label)).status).toBe("running");
  }, 120_000);

  test("under none: nothing at all, the proxy still", async () => {
    const me = await sessionOn(closed, [
      "bash",
      "-c",
      networkProbes([["server", `${closed.url}/healthz`], ["internet", `http://${hosts.internet}/`], ["metadata", `http://${hosts.metadata}/`], ["private", `http://${hosts.private}/`]]),
    ]);
    const lines = await results(me.container);
    for (const name of ["server", "internet", "metadata", "private"]) expect(lines).toContain(`${name} unreachable`);
    expect(lines).toContain("proxy=200");
    expect((await closed.owner.get(me.label)).status).toBe("running");
  }, 120_000);
});

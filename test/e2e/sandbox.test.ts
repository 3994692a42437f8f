/**
 * The local provider's sandbox (bubblewrap), attacked from inside a session the way an outside
 * review did: the program tries to read the server's data dir, another session's workspace and
 * the host user's files, to find the agent and its token, and to signal it — every attempt fails
 * and the session keeps working. It runs at /workspace as an unprivileged host user, and the
 * session's process and memory limits hold. Needs bubblewrap (test/setup/install-deps.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sessionDir } from "../../server/providers/local.ts";
import type { LocalMachine } from "../../src/protocol/index.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { hostTargets, LIMITS_SCRIPT, limitsFound, networkProbes, readAttempts, runSwapAttack, saveText } from "../helpers/isolation.ts";
import { waitFor } from "../helpers/wait.ts";
import { networkInterfaces } from "node:os";
import { SESSION_DNS } from "../../server/providers/network.ts";
import { startAnthropicStandIn, type AnthropicStandIn } from "../helpers/anthropic.ts";
import { startStandInHosts, type StandInHosts } from "../helpers/stand-in-hosts.ts";

let server: TestServer;
const machines = new Map<string, LocalMachine>();

beforeAll(async () => {
  server = await startTestServer({
    env: { CATTY_SANDBOX: "bwrap", CATTY_SESSION_PIDS: "64", CATTY_SESSION_MEMORY_BYTES: String(256 * 1024 * 1024) },
    wrapProvider: (p) => ({
      ...p,
      async start(spec) {
        const machine = await p.start(spec);
        machines.set(spec.label, machine as LocalMachine);
        return machine;
      },
    }),
  });
}, 60_000);

afterAll(async () => {
  for (const s of await server.owner.list()) await server.owner.stop(s.label).catch(() => {});
  await server.stop();
});

/** Starts a session running `script` in bash; returns its label and host workspace path. */
async function session(script: string): Promise<{ label: string; workspace: string }> {
  const s = await server.owner.create({ command: ["bash", "-c", script], cols: 80, rows: 24 });
  return { label: s.label, workspace: join(sessionDir(server.dataDir, s.label), "workspace") };
}

/** The lines the session's script wrote to /workspace/result.txt, once it wrote `done`. */
async function results(workspace: string): Promise<string[]> {
  const file = join(workspace, "result.txt");
  const text = await waitFor(() => existsSync(file) && readFileSync(file, "utf8").includes("done\n") && readFileSync(file, "utf8"), {
    timeoutMs: 30_000,
    what: "the session's results",
  });
  return text.trim().split("\n");
}

const hostUid = (pid: number): number => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);

describe("sandboxed local sessions", () => {
  test("the attack from the review fails, and the session keeps working", async () => {
    const other = await session("echo other-secret > /workspace/secret.txt; sleep 300");
    await waitFor(() => existsSync(join(other.workspace, "secret.txt")), { what: "the other session's secret" });
    const targets = [...hostTargets(server.dataDir), join(other.workspace, "secret.txt")];
    const script = [
      "r=/workspace/result.txt",
      'echo "pwd=$(pwd)" >> $r',
      'echo "home=$HOME" >> $r',
      'echo x > /tmp/probe && echo "tmp writable" >> $r',
      'echo y > "$HOME/probe" && echo "home writable" >> $r',
      ...readAttempts(targets),
      // The agent's token, in any environment this program can see.
      'if grep -qs agt_ /proc/[0-9]*/environ; then echo "token found" >> $r; else echo "token hidden" >> $r; fi',
      'env | grep -q "^CATTY_" && echo "catty env" >> $r',
      "for i in $(seq 100); do [ -s /workspace/agent.pid ] && break; sleep 0.1; done",
      'if kill -0 "$(cat /workspace/agent.pid)" 2>/dev/null; then echo "agent signalled" >> $r; else echo "agent out of reach" >> $r; fi',
      'echo "procs=$(ls -d /proc/[0-9]* | wc -l)" >> $r',
      // The server, on the host's loopback as in these tests: out of reach (the session has its own).
      `if exec 3<>/dev/tcp/127.0.0.1/${new URL(server.url).port}; then echo "network ok" >> $r; else echo "no network" >> $r; fi`,
      "echo done >> $r",
      "while :; do echo alive > /workspace/alive.txt; sleep 0.2; done",
    ].join("\n");
    const me = await session(script);
    const machine = await waitFor(() => machines.get(me.label), { what: "the machine handle" });
    writeFileSync(join(me.workspace, "agent.pid"), String(machine.pid));
    const lines = await results(me.workspace);
    expect(lines).toContain("pwd=/workspace");
    expect(lines).toContain("home=/home/catty");
    expect(lines).toContain("tmp writable");
    expect(lines).toContain("home writable");
    for (const f of targets) expect(lines).toContain(`denied ${f}`);
    expect(lines).toContain("token hidden");
    expect(lines).not.toContain("catty env");
    expect(lines).toContain("agent out of reach");
    expect(lines).toContain("no network");
    // Its own process tree only: bash and what it runs.
    expect(Number(lines.find((l) => l.startsWith("procs="))?.slice(6))).toBeLessThan(10);
    // Still working, and the agent still answers for it.
    await waitFor(() => existsSync(join(me.workspace, "alive.txt")), { what: "the session to keep running" });
    expect((await server.owner.get(me.label)).status).toBe("running");
    // The program runs as an unprivileged user on the host.
    const pids = Bun.spawnSync(["pgrep", "-f", "echo alive > /workspace/alive.txt"]).stdout.toString().trim().split(/\s+/).map(Number);
    expect(pids.length).toBeGreaterThan(0);
    // bubblewrap's own monitor runs as the server's user outside; the program is what counts.
    const program = pids.filter((pid) => existsSync(`/proc/${pid}/comm`) && readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "bash");
    expect(program.length).toBeGreaterThan(0);
    for (const pid of program) expect(hostUid(pid)).not.toBe(0);
  }, 90_000);

  test("the review's chain against the agent: a watched directory, a parent and a file swapped for symlinks to the data dir reach neither sync-back nor a save", async () => {
    const canary = `canary-${crypto.randomUUID()}`;
    writeFileSync(join(server.dataDir, "canary-secret"), `${canary}\n`, { mode: 0o600 });
    const { session: me, received, saved } = await runSwapAttack(
      { api: server.owner, token: server.ownerToken, start: session, results: (s) => results(s.workspace) },
      server.dataDir,
      ["canary-secret", "master-key", "owner-token", "sessions"],
    );
    expect(saved).toContain("own 40");
    const masterKey = readFileSync(join(server.dataDir, "master-key"), "utf8").trim();
    for (const secret of [canary, masterKey, server.ownerToken]) {
      expect(received).not.toContain(secret);
      expect(saved).not.toContain(secret);
      expect(readFileSync(join(sessionDir(server.dataDir, me.label), "agent.log"), "utf8")).not.toContain(secret);
    }
  }, 90_000);

  test("a handed file lands in /workspace/.catty-uploads as the program's user; a symlink planted there does not carry the write out", async () => {
    const hand = (label: string, name: string, body: Uint8Array) =>
      fetch(`${server.url}/v1/sessions/${label}/files?name=${encodeURIComponent(name)}`, { method: "POST", headers: { Authorization: `Bearer ${server.ownerToken}` }, body });
    const running = (label: string) => waitFor(async () => (await server.owner.get(label)).status === "running", { what: `${label} running` });

    const plain = await session("sleep 300");
    await running(plain.label);
    const bytes = crypto.getRandomValues(new Uint8Array(100_000));
    const res = await hand(plain.label, "diagram.png", bytes);
    expect(res.status).toBe(201);
    const { path } = (await res.json()) as { path: string };
    expect(path).toMatch(/^\/workspace\/\.catty-uploads\/diagram-\d{8}-\d{6}\.png$/);
    const onHost = join(plain.workspace, path.slice("/workspace/".length));
    expect(new Uint8Array(readFileSync(onHost))).toEqual(bytes);
    expect(statSync(onHost).uid).not.toBe(0);
    expect(statSync(onHost).uid).toBe(statSync(plain.workspace).uid);

    // The program points .catty-uploads at the server's data dir (a path it cannot see, but the agent could).
    const before = readdirSync(server.dataDir).sort();
    const attacker = await session(`ln -s ${server.dataDir} /workspace/.catty-uploads && echo planted > /workspace/planted; sleep 300`);
    await waitFor(() => existsSync(join(attacker.workspace, "planted")), { what: "the planted symlink" });
    const refused = await hand(attacker.label, "payload.png", new Uint8Array([1, 2, 3]));
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { message: string }).message).toContain("could not take the file");
    expect(readdirSync(server.dataDir).sort()).toEqual(before);
    expect((await server.owner.get(attacker.label)).status).toBe("running");
  }, 60_000);

  // Limits need cgroups the server may create (as root); elsewhere the server says none apply.
  test.if(process.getuid?.() === 0 && (existsSync("/sys/fs/cgroup/pids") || existsSync("/sys/fs/cgroup/cgroup.controllers")))("the process limit stops a fork bomb, the memory limit a runaway allocation; the server stays responsive", async () => {

    const me = await session(LIMITS_SCRIPT);
    const { started, memoryExit } = limitsFound(await results(me.workspace));
    expect(started).toBeGreaterThan(0);
    expect(started).toBeLessThanOrEqual(64);
    expect(memoryExit).not.toBe(0);
    expect((await fetch(`${server.url}/healthz`)).ok).toBe(true);
    expect((await server.owner.get(me.label)).status).toBe("running");
    // The session's cgroups go with it.
    const groups = ["/sys/fs/cgroup/pids/catty", "/sys/fs/cgroup/catty"].map((d) => join(d, me.label)).filter((d) => existsSync(d));
    expect(groups.length).toBeGreaterThan(0);
    await server.owner.stop(me.label);
    await waitFor(() => groups.every((d) => !existsSync(d)), { what: "the session's cgroups to be removed" });
  }, 90_000);

  test.if(process.getuid?.() === 0)("each session's program runs as a host uid of its own: neither reaches the other's files or processes, not even through /proc", async () => {
    const { SANDBOX_UIDS } = await import("../../server/providers/sandbox.ts");
    /** A session whose program keeps a secret in its workspace; its program's host pid (bash, found by a mark in its script). */
    const start = async (name: string) => {
      const mark = `uid-test-${name}-${crypto.randomUUID()}`;
      const s = await session(`echo ${name}-secret > /workspace/secret.txt; : ${mark}; while :; do sleep 1; done`);
      const pid = await waitFor(
        () => {
          const pids = Bun.spawnSync(["pgrep", "-f", mark]).stdout.toString().trim().split(/\s+/).filter(Boolean).map(Number);
          return pids.find((p) => existsSync(`/proc/${p}/comm`) && readFileSync(`/proc/${p}/comm`, "utf8").trim() === "bash" && hostUid(p) !== 0);
        },
        { timeoutMs: 30_000, what: `${name}'s program` },
      );
      await waitFor(() => existsSync(join(s.workspace, "secret.txt")), { what: `${name}'s secret` });
      return { ...s, pid, uid: hostUid(pid) };
    };
    const a = await start("a");
    const b = await start("b");
    expect(a.uid).not.toBe(b.uid);
    for (const s of [a, b]) {
      expect(s.uid).toBeGreaterThanOrEqual(SANDBOX_UIDS.first);
      expect(s.uid).toBeLessThan(SANDBOX_UIDS.first + SANDBOX_UIDS.count);
      expect(statSync(s.workspace).uid).toBe(s.uid);
    }
    /** Runs `cmd` on the host as `uid` (as if the program had left every namespace); true when it succeeded. */
    const as = (uid: number, cmd: string[]): boolean =>
      Bun.spawnSync(["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--", ...cmd], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
    const viaProc = (them: { pid: number }) => [
      ["cat", `/proc/${them.pid}/root/workspace/secret.txt`],
      ["cat", `/proc/${them.pid}/cwd/secret.txt`],
      ["cat", `/proc/${them.pid}/environ`],
      ["kill", "-0", String(them.pid)],
    ];
    // Its own user gets there through /proc (so the attempts below could succeed)…
    for (const cmd of viaProc(b)) expect({ cmd, own: as(b.uid, cmd) }).toEqual({ cmd, own: true });
    // …the other session's user does not, there nor by the host path.
    for (const [me, them] of [[a, b], [b, a]] as const) {
      for (const cmd of [...viaProc(them), ["cat", join(them.workspace, "secret.txt")]]) {
        expect({ cmd, reached: as(me.uid, cmd) }).toEqual({ cmd, reached: false });
      }
    }
    await server.owner.stop(a.label);
    await server.owner.stop(b.label);
  }, 90_000);
});

/**
 * Each sandboxed session has a network of its own (server/providers/network.ts): its own
 * loopback, the internet through pasta, and the egress policy. Probed from inside against
 * stand-in hosts in a namespace of the test's own (test/helpers/stand-in-hosts.ts): one session
 * per policy, each probing everything once.
 */
describe("a sandboxed session's network", () => {
  let hosts: StandInHosts;
  let anthropic: AnthropicStandIn;
  let hostOnly: ReturnType<typeof Bun.serve>;
  let open: TestServer;
  let closed: TestServer;

  beforeAll(async () => {
    hosts = await startStandInHosts();
    anthropic = startAnthropicStandIn();
    hostOnly = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("host only\n") });
    const api = { CATTY_SANDBOX: "bwrap", CATTY_ANTHROPIC_API_KEY: "sk-ant-test", CATTY_ANTHROPIC_UPSTREAM: anthropic.url };
    open = await startTestServer({ env: { ...api, CATTY_SESSION_EGRESS_ALLOW: `${hosts.private}:${hosts.ports[0]}` } });
    closed = await startTestServer({ env: { ...api, CATTY_SESSION_EGRESS: "none" } });
  }, 60_000);

  afterAll(async () => {
    for (const s of [open, closed]) {
      if (!s) continue;
      for (const row of await s.owner.list()) await s.owner.stop(row.label).catch(() => {});
      await s.stop();
    }
    void hostOnly?.stop(true);
    anthropic?.stop();
    hosts?.dispose();
  });

  const hostAddress = (): string | undefined =>
    Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === "IPv4" && !a.internal && !a.address.startsWith("203.0.113."))?.address;

  test("under public: the internet and the allow-list, not the server, the host's loopback, another session, private ranges or the metadata service; the proxy works", async () => {
    const [allowed, blocked] = hosts.ports;
    const other = await open.owner.create({ command: ["python3", "-m", "http.server", "8765", "--bind", "0.0.0.0"], cols: 80, rows: 24 });
    // The other session's port is up (the agent sees it in the session's own namespace).
    await waitFor(async () => (await open.owner.get(other.label)).ports.some((p) => p.port === 8765), { timeoutMs: 30_000, what: "the other session's port" });
    const host = hostAddress();
    const targets: Array<[string, string]> = [
      ["server", `${open.url}/healthz`],
      ["host-only", `http://127.0.0.1:${hostOnly.port}/`],
      ["other-session", "http://127.0.0.1:8765/"],
      ...(host ? [["other-session-by-host", `http://${host}:8765/`] as [string, string]] : []),
      ["metadata", `http://${hosts.metadata}/`],
      ["internet", `http://${hosts.internet}/`],
      ["allowed", `http://${hosts.private}:${allowed}/`],
      ["private", `http://${hosts.private}:${blocked}/`],
    ];
    const before = anthropic.requests.length;
    const s = await open.owner.create({ command: ["bash", "-c", networkProbes(targets)], cols: 80, rows: 24 });
    const lines = await results(join(sessionDir(open.dataDir, s.label), "workspace"));
    for (const name of ["server", "host-only", "other-session", "other-session-by-host", "metadata", "private"]) {
      if (name === "other-session-by-host" && !host) continue;
      expect(lines).toContain(`${name} unreachable`);
    }
    expect(lines).toContain(`internet reached hello from ${hosts.internet}:80`);
    expect(lines).toContain(`allowed reached hello from ${hosts.private}:${allowed}`);
    expect(lines).toContain("base=http://127.0.0.1:4815/v1/anthropic");
    expect(lines).toContain("proxy=200");
    expect(anthropic.requests.length).toBe(before + 1);
    expect(lines).toContain(`dns=nameserver ${SESSION_DNS}`);
    // Still working.
    expect((await open.owner.get(s.label)).status).toBe("running");
  }, 90_000);

  test("under none: nothing at all, the proxy still", async () => {
    const s = await closed.owner.create(
      {
        command: ["bash", "-c", networkProbes([["server", `${closed.url}/healthz`], ["internet", `http://${hosts.internet}/`], ["metadata", `http://${hosts.metadata}/`], ["private", `http://${hosts.private}/`]])],
        cols: 80,
        rows: 24,
      },
    );
    const lines = await results(join(sessionDir(closed.dataDir, s.label), "workspace"));
    for (const name of ["server", "internet", "metadata", "private"]) expect(lines).toContain(`${name} unreachable`);
    expect(lines).toContain("proxy=200");
    expect((await closed.owner.get(s.label)).status).toBe("running");
  }, 60_000);
});

/** Each local session has a disk of its own (server/providers/disk.ts) with CATTY_SESSION_DISK_BYTES. */
describe("a local session's disk", () => {
  const MiB = 1024 * 1024;
  let limited: TestServer;

  beforeAll(async () => {
    limited = await startTestServer({
      env: { CATTY_SANDBOX: "bwrap", CATTY_SESSION_DISK_BYTES: String(64 * MiB), CATTY_SAVE_FIRST_MS: "300", CATTY_SAVE_INTERVAL_MS: "500" },
    });
  }, 60_000);

  afterAll(async () => {
    if (!limited) return;
    for (const row of await limited.owner.list()) await limited.owner.stop(row.label).catch(() => {});
    await limited.stop();
    // Whatever a failed test left mounted under the data dir.
    for (const line of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
      const at = line.split(" ")[1];
      if (at?.startsWith(`${limited.dataDir}/`)) Bun.spawnSync(["umount", "-l", at]);
    }
  });

  test("a session that fills its disk gets ENOSPC; the data dir and another session are untouched; its saves work again once it deletes the file", async () => {
    const other = await limited.owner.create({
      command: ["bash", "-c", "while [ ! -e /workspace/go ]; do sleep 0.1; done; echo still-working > /workspace/b.txt; sleep 300"],
      cols: 80,
      rows: 24,
    });
    const token = `after-${crypto.randomUUID()}`;
    const script = [
      "r=/workspace/result.txt",
      "echo start > $r",
      // More than the disk holds.
      "head -c 100M /dev/zero > /workspace/big 2>/tmp/err; code=$?",
      "free=$(df --output=avail -B1 /workspace | tail -1 | tr -d ' ')",
      "rm /workspace/big",
      'echo "fill=$code free=$free $(cat /tmp/err)" >> $r',
      `echo ${token} > /workspace/after.txt`,
      "echo done >> $r",
      "sleep 300",
    ].join("\n");
    const me = await limited.owner.create({ command: ["bash", "-c", script], cols: 80, rows: 24 });
    const lines = await results(join(sessionDir(limited.dataDir, me.label), "workspace"));
    const fill = lines.find((l) => l.startsWith("fill=")) ?? "";
    expect(fill).toMatch(/^fill=1 free= *\d+ .*No space left on device/);
    // Full: less than a MiB left when the write failed.
    expect(Number(/free= *(\d+)/.exec(fill)?.[1])).toBeLessThan(MiB);
    // What it wrote stayed in its own 64 MiB image: the data dir's file system did not take it.
    const image = join(limited.dataDir, "disks", `${me.label}.img`);
    expect(statSync(image).blocks * 512).toBeLessThanOrEqual(64 * MiB);
    expect(readFileSync(join(limited.dataDir, "master-key"), "utf8").length).toBeGreaterThan(0);
    // The other session goes on writing.
    writeFileSync(join(sessionDir(limited.dataDir, other.label), "workspace", "go"), "");
    await waitFor(() => existsSync(join(sessionDir(limited.dataDir, other.label), "workspace", "b.txt")), { what: "the other session's write" });
    // Its saves work again once the file is gone.
    await waitFor(
      async () => {
        const save = await limited.owner.latestSave(me.label).catch(() => null);
        return save !== null && (await saveText(limited.owner.resolveUrl(save.url), limited.ownerToken)).includes(token);
      },
      { timeoutMs: 60_000, what: "a save holding the file written after the disk was full" },
    );
    expect((await limited.owner.get(me.label)).status).toBe("running");
    // The session's end takes its disk away.
    await limited.owner.stop(me.label);
    await waitFor(() => !existsSync(image), { timeoutMs: 60_000, what: "the session's disk to go" });
  }, 180_000);
});

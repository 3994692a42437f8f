/**
 * A Docker engine of the test run's own: `dockerd` (Debian's docker.io, installed by
 * test/setup/install-deps.ts) with its data root, exec root and socket in a temp directory, no
 * bridge and no iptables rules (session containers use the host's network and dial the server on
 * 127.0.0.1). Started once per test process and stopped when it exits. The session image is
 * built into it once per process with `npm run session-image`'s code (image/build.ts), whose
 * Debian base is cached by content hash between runs.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { buildSessionImage, defaultCacheDir } from "../../image/build.ts";
import { createDockerClient, type DockerClient } from "../../server/providers/docker-api.ts";
import { LABELS } from "../../server/providers/docker.ts";
import { buildBinaries } from "./binaries.ts";
import { waitFor } from "./wait.ts";

export interface TestEngine {
  host: string;
  client: DockerClient;
  /** The session image built from this checkout's agent. */
  image: string;
  /** The container of a session (by its label), or null. */
  containerOf(label: string): Promise<string | null>;
  /** Copies a container's directory out into a new temp directory; returns its path. */
  copyOut(container: string, path: string): Promise<string>;
  /** A file of a container, or null when it is not there. */
  readFile(container: string, path: string): Promise<string | null>;
  /** Runs `sh -c script` in a throwaway container of the image; resolves to its output. */
  run(script: string): Promise<{ code: number; output: string }>;
}

let engine: Promise<TestEngine> | null = null;

/** The engine of this process, started on first use; its image holds `agentBin` (default: this checkout's). */
export function testEngine(agentBin?: string): Promise<TestEngine> {
  engine ??= start(agentBin);
  return engine;
}

async function start(agentBin: string | undefined): Promise<TestEngine> {
  const dockerd = Bun.which("dockerd") ?? "/usr/sbin/dockerd";
  const dir = mkdtempSync(join(tmpdir(), "catty-dockerd-"));
  const socket = join(dir, "docker.sock");
  const host = `unix://${socket}`;
  const logFile = join(dir, "dockerd.log");
  writeFileSync(logFile, "");
  mkdirSync(join(dir, "data"));
  const args = [
    dockerd,
    "--data-root", join(dir, "data"),
    "--exec-root", join(dir, "exec"),
    "--pidfile", join(dir, "dockerd.pid"),
    "-H", host,
    "--bridge=none",
    "--iptables=false",
    "--ip6tables=false",
  ];
  // A watchdog shell runs dockerd and, once this test process is gone (however it ended), stops
  // it (which stops its containers and containerd), unmounts what is left and removes the dir.
  const watchdog = [
    `"$@" >>'${logFile}' 2>&1 & d=$!`,
    `while kill -0 ${process.pid} 2>/dev/null && kill -0 $d 2>/dev/null; do sleep 1; done`,
    "kill -TERM $d 2>/dev/null; wait $d",
    `grep -o ' ${dir}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l`,
    `rm -rf '${dir}'`,
  ].join("\n");
  const proc: Subprocess = Bun.spawn(["setsid", "sh", "-c", watchdog, "dockerd", ...args], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
  proc.unref();
  const client = createDockerClient(host);
  await waitFor(async () => (await client.ping().then(() => true)), {
    timeoutMs: 60_000,
    what: `dockerd on ${socket} (its log: ${logFile})`,
  });
  const image = await buildSessionImage({
    docker: client,
    tag: "catty-session:test",
    agentBin: agentBin ?? (await buildBinaries()).agent,
    cacheDir: defaultCacheDir(),
    say: (line) => console.error(`[session image] ${line}`),
  });

  const call = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`http://docker/v1.41${path}`, { ...init, unix: socket } as RequestInit);

  return {
    host,
    client,
    image,
    async containerOf(label) {
      const found = await client.list([`${LABELS.session}=${label}`]);
      return found[0]?.Id ?? null;
    },
    async copyOut(container, path) {
      const res = await call(`/containers/${container}/archive?path=${encodeURIComponent(path)}`);
      if (!res.ok) throw new Error(`copying ${path} out of ${container}: ${res.status} ${await res.text()}`);
      const out = mkdtempSync(join(tmpdir(), "catty-copy-out-"));
      const tar = Bun.spawn(["tar", "-x", "-C", out, "--strip-components=1"], { stdin: new Uint8Array(await res.arrayBuffer()), stderr: "pipe" });
      if ((await tar.exited) !== 0) throw new Error(`tar: ${await new Response(tar.stderr).text()}`);
      return out;
    },
    async readFile(container, path) {
      const res = await call(`/containers/${container}/archive?path=${encodeURIComponent(path)}`);
      if (res.status === 404) return null;
      if (!res.ok) throw new Error(`reading ${path} of ${container}: ${res.status} ${await res.text()}`);
      const tar = Bun.spawn(["tar", "-xO"], { stdin: new Uint8Array(await res.arrayBuffer()), stdout: "pipe", stderr: "pipe" });
      const [text, code] = await Promise.all([new Response(tar.stdout).text(), tar.exited]);
      if (code !== 0) throw new Error(`tar: ${await new Response(tar.stderr).text()}`);
      return text;
    },
    async run(script) {
      const name = `catty-test-run-${crypto.randomUUID().slice(0, 8)}`;
      const created = await call(`/containers/create?name=${name}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ Image: image, Entrypoint: ["sh", "-c", script], Tty: true, HostConfig: { NetworkMode: "none" } }),
      });
      if (!created.ok) throw new Error(`create: ${await created.text()}`);
      const { Id } = (await created.json()) as { Id: string };
      try {
        const started = await call(`/containers/${Id}/start`, { method: "POST" });
        if (!started.ok) throw new Error(`start: ${await started.text()}`);
        const waited = await call(`/containers/${Id}/wait`, { method: "POST" });
        const { StatusCode } = (await waited.json()) as { StatusCode: number };
        const logs = await call(`/containers/${Id}/logs?stdout=1&stderr=1`);
        return { code: StatusCode, output: await logs.text() };
      } finally {
        await client.remove(Id);
      }
    },
  };
}

/** Removes the directory `copyOut` made. */
export function removeCopy(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

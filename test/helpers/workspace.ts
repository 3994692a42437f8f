/**
 * Helpers for the workspace end-to-end tests: a `catty` CLI bound to one temp home and one real
 * server (run without a TTY, asynchronously, so an in-process s3rver keeps answering while the
 * CLI talks to it), sessions started with `catty new` inside tmux, the local provider's on-disk
 * layout, project trees, directory comparison and crafted `.tar.gz` archives.
 */
import { afterAll, beforeAll } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import * as tar from "tar-stream";
import type { Session } from "../../src/protocol/index.ts";
import { buildBinaries, type Binaries } from "./binaries.ts";
import { ServerProcess } from "./server-process.ts";
import { Tmux } from "./tmux.ts";
import { waitFor } from "./wait.ts";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to the end without blocking the event loop. */
export async function run(argv: string[], opts: { cwd?: string; env?: Record<string, string | undefined> } = {}): Promise<RunResult> {
  const proc = Bun.spawn(argv, { cwd: opts.cwd, env: opts.env ?? process.env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** `git` with a fixed identity, so commits work with any HOME. */
export function git(cwd: string, ...args: string[]): Promise<RunResult> {
  // safe.directory: a sandboxed session's workspace belongs to its unprivileged user, not to this test.
  return run(["git", "-c", "user.name=Catty Test", "-c", "user.email=test@catty.invalid", "-c", "init.defaultBranch=main", "-c", "safe.directory=*", ...args], { cwd });
}

const LABEL_RE = /Session ([a-z]+-[a-z]+-\d{4}) started/;

/** One temp home logged in to one server, plus a tmux terminal using that home. */
export class CattyUser {
  readonly home = mkdtempSync(join(tmpdir(), "catty-ws-home-"));
  tmux: Tmux;
  private marks = 0;

  constructor(readonly bins: Binaries, readonly server: ServerProcess) {
    this.tmux = this.newTerminal();
  }

  private newTerminal(): Tmux {
    return new Tmux({ HOME: this.home, CATTY_HOME: this.home, PATH: `${this.bins.dir}:${process.env.PATH}`, PS1: "$ " });
  }

  /** A fresh terminal with a local shell (whatever a failed test left attached in the old one). */
  freshTerminal(): Tmux {
    this.tmux.kill();
    this.tmux = this.newTerminal();
    this.tmux.start({ cols: 120, rows: 40 });
    return this.tmux;
  }

  get env(): Record<string, string | undefined> {
    return { ...process.env, HOME: this.home, CATTY_HOME: this.home };
  }

  async login(): Promise<void> {
    const res = await this.cli(["login", "--api", this.server.url, "--token", this.server.ownerToken]);
    if (res.code !== 0) throw new Error(`catty login failed: ${res.stderr}`);
  }

  cli(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<RunResult> {
    return run([this.bins.catty, ...args], { cwd: opts.cwd, env: { ...this.env, ...opts.env } });
  }

  /** The owner's HTTP API. */
  api(method: string, path: string, body?: Uint8Array | object, headers: Record<string, string> = {}): Promise<Response> {
    const isJson = body !== undefined && !(body instanceof Uint8Array);
    return fetch(`${this.server.url}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${this.server.ownerToken}`,
        ...(isJson ? { "Content-Type": "application/json" } : {}),
        ...headers,
      },
      body: isJson ? JSON.stringify(body) : (body as Uint8Array | undefined),
    });
  }

  async session(label: string): Promise<Session> {
    const res = await this.api("GET", `/v1/sessions/${label}`);
    if (!res.ok) throw new Error(`GET session ${label}: ${res.status} ${await res.text()}`);
    return (await res.json()) as Session;
  }

  /** Waits until the session has at least `count` saves and returns it. */
  waitForSaves(label: string, count: number, timeoutMs = 15_000): Promise<Session> {
    return waitFor(
      async () => {
        const s = await this.session(label);
        return s.saves.length >= count ? s : null;
      },
      { timeoutMs, what: `${count} save(s) of ${label}` },
    );
  }

  waitForStatus(label: string, statuses: string[], timeoutMs = 15_000): Promise<Session> {
    return waitFor(
      async () => {
        const s = await this.session(label);
        return statuses.includes(s.status) ? s : null;
      },
      { timeoutMs, what: `${label} to be ${statuses.join(" or ")}` },
    );
  }

  /** A fresh marker name; `echo NAME-$((n+n))` prints a value the echoed command line does not contain. */
  mark(name: string): { command: string; printed: string } {
    const n = ++this.marks;
    return { command: `echo ${name}-$((${n}+${n}))`, printed: `${name}-${n + n}` };
  }

  /** Types a shell line (in the tmux shell or inside an attached session) and waits for it to finish. */
  async shell(line: string, timeoutMs = 15_000): Promise<string> {
    const m = this.mark("DONE");
    this.tmux.type(`${line}; ${m.command}`);
    return this.tmux.waitFor(m.printed, timeoutMs);
  }

  /**
   * `cd dir && catty new FLAGS -- bash` in tmux; resolves once bash runs inside the session.
   * `exitMarker` later gives catty's exit code (see `exitCode`).
   */
  async newSession(dir: string, flags: string[] = []): Promise<{ label: string; screen: string; exitMarker: string }> {
    const exitMarker = `NEW_EXIT_${++this.marks}`;
    this.freshTerminal();
    this.tmux.type(`cd ${dir} && catty new ${flags.join(" ")} -- bash --norc --noprofile; echo ${exitMarker}=$?`);
    const screen = await this.tmux.waitFor(LABEL_RE, 30_000);
    const label = LABEL_RE.exec(screen)?.[1] as string;
    // Type only once the session's bash has drawn its prompt: keys typed earlier can reach the
    // program out of order (the relay bug in the report), which is not what these tests are about.
    await this.tmux.waitFor(new RegExp(`${LABEL_RE.source}[\\s\\S]*bash-[\\d.]+[#$]`), 30_000);
    await this.shell("true", 30_000); // bash answers: the workspace is restored
    return { label, screen, exitMarker };
  }

  /** Detaches with Ctrl+C twice and waits for catty to exit 0. */
  async detach(label: string, exitMarker: string): Promise<void> {
    this.tmux.keys("C-c");
    this.tmux.keys("C-c");
    await this.tmux.waitFor(`Detached from ${label}`);
    const code = await this.exitCode(exitMarker);
    if (code !== 0) throw new Error(`catty exited ${code} on detach`);
  }

  async exitCode(marker: string, timeoutMs = 15_000): Promise<number> {
    const re = new RegExp(`${marker}=(\\d+)`);
    const screen = await this.tmux.waitFor(re, timeoutMs);
    return Number(re.exec(screen)?.[1]);
  }

  sessionDir(label: string): string {
    return join(this.server.dataDir, "sessions", label);
  }

  workspace(label: string): string {
    return join(this.sessionDir(label), "workspace");
  }

  /**
   * A directory holding the session's workspace as it is now: the workspace itself for local
   * sessions; a provider whose machines keep it elsewhere (a container) sets `copyWorkspace`.
   */
  copyWorkspace: (label: string) => Promise<string> = async (label) => this.workspace(label);

  agentPid(label: string): number {
    return Number(readFileSync(join(this.sessionDir(label), "agent.pid"), "utf8").trim());
  }

  agentLog(label: string): string {
    const file = join(this.sessionDir(label), "agent.log");
    return existsSync(file) ? readFileSync(file, "utf8") : "";
  }

  /** Stops every live session (best effort), the terminal, and removes the home. */
  async close(): Promise<void> {
    this.tmux.kill();
    // (A server that did not make the owner has no owner-token file: then there is nothing to stop.)
    const res = await Promise.resolve()
      .then(() => this.api("GET", "/v1/sessions"))
      .catch(() => null);
    const sessions = res?.ok ? ((await res.json()) as Session[]) : [];
    await Promise.all(
      sessions
        .filter((s) => ["starting", "running", "stopping"].includes(s.status))
        .map((s) => this.api("POST", `/v1/sessions/${s.label}/stop`, {}).catch(() => null)),
    );
    rmSync(this.home, { recursive: true, force: true });
  }
}

export { noise, writeTree } from "./fs.ts";

/** Relative paths of every file, symlink and directory (directories end in `/`), sorted. */
export function listTree(root: string, opts: { skip?: (rel: string) => boolean } = {}): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const entry of readdirSync(rel ? join(root, rel) : root, { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (opts.skip?.(child)) continue;
      if (entry.isDirectory()) {
        out.push(`${child}/`);
        walk(child);
      } else {
        out.push(child);
      }
    }
  };
  if (existsSync(root)) walk("");
  return out.sort();
}

/** What a workspace save leaves out (agent snapshot mode), as `diff -x` patterns. */
export const SNAPSHOT_EXCLUDED = ["node_modules", "__pycache__", ".venv", "venv", ".cache", ".npm", ".yarn"];

/** `diff -r` (symlinks compared as links), leaving out names matching `exclude`; "" when equal. */
export async function diffTrees(a: string, b: string, exclude: string[] = []): Promise<string> {
  const res = await run(["diff", "-r", "--no-dereference", ...exclude.flatMap((x) => ["-x", x]), a, b]);
  if (res.code > 1) throw new Error(`diff failed: ${res.stderr}`);
  return res.stdout + res.stderr;
}

export interface CraftedEntry {
  header: Partial<tar.Header> & { name: string };
  data?: string | Uint8Array;
}

/** A `.tar.gz` with exactly these entries, as hostile as asked (tar-stream writes what it is told). */
export async function craftTarGz(entries: CraftedEntry[]): Promise<Uint8Array> {
  return gzipSync(await tarBytes(entries, Number.POSITIVE_INFINITY));
}

/** A plain tar with exactly these entries. */
export async function craftTar(entries: CraftedEntry[]): Promise<Uint8Array> {
  return tarBytes(entries, Number.POSITIVE_INFINITY);
}

/**
 * A tar stream cut after `limit` bytes, gzipped: for entries that claim more data than is worth
 * generating (a decompression bomb's header), since extraction must refuse at the header.
 */
export async function craftTruncatedTarGz(entries: CraftedEntry[], limit: number): Promise<Uint8Array> {
  return gzipSync(await tarBytes(entries, limit));
}

async function tarBytes(entries: CraftedEntry[], limit: number): Promise<Uint8Array> {
  const pack = tar.pack();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const collected = new Promise<void>((resolve, reject) => {
    pack.on("data", (data: unknown) => {
      const chunk = data as Uint8Array;
      if (size >= limit) return;
      chunks.push(chunk);
      size += chunk.byteLength;
      if (size >= limit) resolve();
    });
    pack.on("end", () => resolve());
    pack.on("error", reject);
  });
  const writing = (async () => {
    for (const e of entries) {
      const data = typeof e.data === "string" ? Buffer.from(e.data) : e.data;
      if (e.header.size !== undefined && data !== undefined && e.header.size > data.byteLength) {
        // A header promising more than we give: write what we have and leave the stream hanging.
        const sink = pack.entry(e.header);
        sink.write(data);
        return;
      }
      await new Promise<void>((resolve, reject) => {
        const cb = (err?: Error | null) => (err ? reject(err) : resolve());
        if (data !== undefined) pack.entry(e.header, data, cb);
        else pack.entry(e.header, cb);
      });
    }
    pack.finalize();
  })();
  await Promise.race([collected, writing.then(() => collected)]);
  pack.destroy();
  return Buffer.concat(chunks).subarray(0, Number.isFinite(limit) ? limit : undefined);
}


/** A real server process (with `env`), the binaries and a logged-in user, for workspace e2e files. */
export interface WorkspaceFixture {
  bins: Binaries;
  server: ServerProcess;
  user: CattyUser;
  close(): Promise<void>;
}

export async function startWorkspaceServer(env: Record<string, string>): Promise<WorkspaceFixture> {
  const bins = await buildBinaries();
  const server = new ServerProcess(bins.server, env);
  await server.start();
  const user = new CattyUser(bins, server);
  await user.login();
  return {
    bins,
    server,
    user,
    async close() {
      await user.close();
      await server.stop();
      rmSync(server.dataDir, { recursive: true, force: true });
    },
  };
}

/** For a test file: a workspace fixture started before its tests and closed after them. */
export function workspaceServerForFile(env: Record<string, string> = {}): () => WorkspaceFixture {
  let fx: WorkspaceFixture | null = null;
  beforeAll(async () => {
    fx = await startWorkspaceServer(env);
  }, 60_000);
  afterAll(async () => {
    await fx?.close();
  });
  return () => {
    if (!fx) throw new Error("the workspace server is not started yet");
    return fx;
  };
}
